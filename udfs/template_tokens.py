"""Chat-template tokens and turn markers in text: the neutralizer for prompts, the detectors for exports.

A tokenizer reads some strings as control tokens, not as text. llama-cpp-python
tokenizes a completion's prompt with special tokens parsed
(`Llama.create_completion` calls `tokenize(..., special=True)`), so
`<|im_start|>` inside a web paragraph is SmolLM2's token 1, the start of a chat
turn, and `<|endoftext|>` its token 0, the end of a document. A server of
another model does the same with its own tokens, and a trainer whose tokenizer
parses special tokens in text would read them in the exported data.

**Template tokens** (`TOKEN_RULES`; each rule one regular expression that
Python's `re` and Java's regex engine read alike):

- `<|name|>`: ChatML (`<|im_start|>`, `<|im_end|>`), `<|endoftext|>`, Llama 3
  (`<|begin_of_text|>`, `<|start_header_id|>`, `<|eot_id|>`), Phi, Zephyr, ...:
  any name of 1 to 64 ASCII letters, digits, `_`, `.`, `:`, `-` or `▁`;
  `<｜name｜>` with fullwidth bars (DeepSeek) likewise;
- `<<SYS>>`, `<</SYS>>` (Llama 2) and `[INST]`, `[/INST]` (Llama 2, Mistral);
- `<name>` for the names of `TAG_NAMES`: `<s>`, `</s>`, `<unk>`, `<pad>`,
  `<mask>`, `<bos>`, `<eos>` (Llama, Gemma, ...), `<start_of_turn>`,
  `<end_of_turn>` (Gemma), and the StarCoder tokens that the embedded SmolLM2
  has too (`<filename>`, `<repo_name>`, `<file_sep>`, `<gh_stars>`,
  `<issue_start>`, `<jupyter_code>`, `<empty_output>`, ...; `<fim_prefix>` and
  the other StarCoder ones).

HTML tags (`<b>`, `<br>`), generics (`List<String>`), the PII placeholders
(`<EMAIL>`) and operators such as Haskell's `<|>` are none of these.

**Neutralizing** (`neutralize`, and `neutralize_col` in Spark): each token's
ASCII brackets become look-alikes that no tokenizer reads as a token and that
Unicode NFKC leaves as they are: `<` becomes `‹` (U+2039), `>` becomes `›`
(U+203A), `[` becomes `⁅` (U+2045), `]` becomes `⁆` (U+2046). So `<|im_start|>`
becomes `‹|im_start|›` and `[INST]` becomes `⁅INST⁆`: still readable, the same
length, never a token. A text without a token is returned unchanged. The
neutralized text holds no token (`find_template_token` finds none in it).

**Extra turns** (`find_extra_turn`, `extra_turn_col`): a role header
(`ROLES`: `Human`, `Assistant`, `User` or `System`, capitalized or upper case,
then `:`) that opens the text or follows a blank line, after optional
whitespace. `\\n\\nHuman:` and `\\n\\nAssistant:` are the HH dialogue turns;
`User:` and `Assistant:` are the export template's own headers
(`User: {instruction}\\n\\nAssistant: {response}`), so a reply that goes on
with `\\n\\nUser: Thank you!` carries a turn of another speaker. A role word
inside a sentence, after a single line break, or in lower case is text.
"""
from __future__ import annotations

import re
from typing import Optional

from pyspark.sql import Column
from pyspark.sql import functions as F

from instructlake.udfs.dialogue import HWS, WS

_NAME = r"[A-Za-z0-9_.:\-\u2581]{1,64}"
TAG_NAMES = (
    "s", "/s", "unk", "pad", "mask", "bos", "eos", "start_of_turn", "end_of_turn",
    "repo_name", "reponame", "file_sep", "filename", "gh_stars", "issue_start", "issue_comment", "issue_closed",
    "jupyter_start", "jupyter_text", "jupyter_code", "jupyter_output", "jupyter_script", "empty_output",
    "fim_prefix", "fim_middle", "fim_suffix", "fim_pad", "commit_before", "commit_msg", "commit_after",
)
# (pattern whose group 1 is the token's inside, look-alike of its opening, look-alike of its end)
TOKEN_RULES = (
    (rf"<\|({_NAME})\|>", "\u2039|", "|\u203a"),
    (rf"<\uff5c({_NAME})\uff5c>", "\u2039\uff5c", "\uff5c\u203a"),
    (r"<<(/?SYS)>>", "\u2039\u2039", "\u203a\u203a"),
    (r"\[(/?INST)\]", "\u2045", "\u2046"),
    (r"<(" + "|".join(re.escape(n) for n in TAG_NAMES) + r")>", "\u2039", "\u203a"),
)
TEMPLATE_TOKEN = "|".join(f"(?:{pattern})" for pattern, _, _ in TOKEN_RULES)

ROLES = ("Human", "Assistant", "User", "System")
ROLE_HEADER = "(?:" + "|".join([*ROLES, *(r.upper() for r in ROLES)]) + "):"
EXTRA_TURN = rf"(?:^|\n{HWS}*\n){WS}*{ROLE_HEADER}"

_TOKEN_RE = re.compile(TEMPLATE_TOKEN)
_TURN_RE = re.compile(EXTRA_TURN)
_RULES_RE = [(re.compile(p), opening, end) for p, opening, end in TOKEN_RULES]
_LINE_BREAK = rf"{WS}*[\r\n]{WS}*"


def neutralize(text: Optional[str]) -> Optional[str]:
    """`text` with every template token's brackets replaced by look-alikes (see the module doc)."""
    if not text:
        return text
    for pattern, opening, end in _RULES_RE:
        text = pattern.sub(lambda m, o=opening, e=end: f"{o}{m.group(1)}{e}", text)
    return text


def find_template_token(text: Optional[str]) -> Optional[str]:
    """The first template token of `text`, or None."""
    m = _TOKEN_RE.search(text or "")
    return m.group(0) if m else None


def find_extra_turn(text: Optional[str]) -> Optional[str]:
    """The first turn marker of `text` (a role header opening it or after a blank line, with the
    whitespace before it), or None."""
    m = _TURN_RE.search(text or "")
    return m.group(0) if m else None


def one_line(text: Optional[str]) -> Optional[str]:
    """`text` neutralized, every line break (with the whitespace around it) one space: a value that
    fills a one-line slot of a prompt stays on its line."""
    return None if text is None else re.sub(_LINE_BREAK, " ", neutralize(text))


# --- Spark: the same rules as built-in Column expressions ----------------------------------------
# Every token starts with `<` or `[` and every turn marker ends with `:`: a byte search for those
# first spares most texts the regular expressions, which cost many times more (measured in
# docs/filters/index.md#template-tokens).


def _may_hold_token(text: Column) -> Column:
    return text.contains("<") | text.contains("[")


def neutralize_col(text: Column) -> Column:
    """`neutralize` as a Column expression; a text without a token is left as it is."""
    out = text
    for pattern, opening, end in TOKEN_RULES:
        out = F.regexp_replace(out, pattern, f"{opening}$1{end}")
    return F.when(_may_hold_token(text) & text.rlike(TEMPLATE_TOKEN), out).otherwise(text)


def one_line_col(text: Column) -> Column:
    """`one_line` as a Column expression."""
    neutral = neutralize_col(text)
    return F.when(neutral.rlike("[\r\n]"), F.regexp_replace(neutral, _LINE_BREAK, " ")).otherwise(neutral)


def template_tokens_count_col(text: Column) -> Column:
    """How many template tokens `text` holds (0 for null)."""
    return F.when(_may_hold_token(text), F.regexp_count(text, F.lit(TEMPLATE_TOKEN))).otherwise(F.lit(0))


def has_template_token_col(text: Column) -> Column:
    """True where `text` holds a template token (false for null)."""
    return F.when(_may_hold_token(text), text.rlike(TEMPLATE_TOKEN)).otherwise(F.lit(False))


def has_extra_turn_col(text: Column) -> Column:
    """True where `text` holds a turn marker (false for null)."""
    return F.when(text.contains(":"), text.rlike(EXTRA_TURN)).otherwise(F.lit(False))


def template_token_of_col(text: Column) -> Column:
    """The first template token of `text` ("" for none)."""
    return F.regexp_extract(text, TEMPLATE_TOKEN, 0)


def extra_turn_of_col(text: Column) -> Column:
    """The first turn marker of `text` ("" for none)."""
    return F.regexp_extract(text, EXTRA_TURN, 0)
