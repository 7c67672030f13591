"""The dialogue split: first Human turn and first Assistant reply of an HH-format dialogue.

An HH-RLHF dialogue is ``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ..."``.
A turn starts at ``\\n\\nHuman:`` or ``\\n\\nAssistant:`` (or at ``Human:`` at the
very start, after optional whitespace); a ``Human:`` inside a sentence is text.

Rules (the pure function and the Spark expressions implement the same ones,
and a test checks that they agree on real data and edge cases):

- CRLF and lone CR become LF first.
- Consecutive turns of the same speaker are merged, joined by one newline
  (Open-Assistant style data has them): the instruction is every Human turn
  before the first Assistant turn; the response is every Assistant turn
  before the next Human turn.
- Both halves are stripped of ASCII whitespace, and blank lines inside the
  instruction collapse to one newline (so the exported text can be split on
  its first blank line).
- Failures give a reason instead of an exception, checked in this order:
  `empty_dialogue` (null or whitespace only), `no_human_turn`,
  `text_before_first_human_turn`, `no_assistant_reply`, `empty_instruction`,
  `empty_response`.

Whitespace here is ASCII whitespace (space, tab, LF, VT, FF, CR) on both
sides, so that Python's `re` and Java's regex engine agree.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

WS = r"[ \t\n\x0B\f\r]"
HWS = r"[ \t\x0B\f\r]"  # whitespace but newline

PAIR_RE_PY = re.compile(rf"\A{WS}*Human:(.*?)\n\nAssistant:(.*?)(?=\n\nHuman:|\Z)", re.S)
_HEAD_PY = re.compile(rf"\A{WS}*Human:")
# One or more turn markers of the same speaker (empty turns included) become one newline.
MERGE_HUMAN = rf"(?:{WS}*\n\nHuman:)+{WS}*"
MERGE_ASSISTANT = rf"(?:{WS}*\n\nAssistant:)+{WS}*"
BLANK_LINES = rf"\n(?:{HWS}*\n)+"
NEWLINES_JAVA = r"\r\n?"

DIALOGUE_ERRORS = (
    "empty_dialogue",
    "no_human_turn",
    "text_before_first_human_turn",
    "no_assistant_reply",
    "empty_instruction",
    "empty_response",
)


class Exchange(NamedTuple):
    instruction: Optional[str]
    response: Optional[str]
    error: Optional[str]


def strip_ws(s: str) -> str:
    return re.sub(rf"\A{WS}+|{WS}+\Z", "", s)


def collapse_blank_lines(s: str) -> str:
    """Collapse every run of blank lines to a single newline."""
    return re.sub(BLANK_LINES, "\n", s)


def split_first_exchange(dialogue: Optional[str]) -> Exchange:
    """The first (instruction, response) of an HH-format dialogue, or the reason there is none."""
    if dialogue is None:
        return Exchange(None, None, "empty_dialogue")
    text = re.sub(r"\r\n?", "\n", dialogue)
    if strip_ws(text) == "":
        return Exchange(None, None, "empty_dialogue")
    if not _HEAD_PY.match(text):
        reason = "text_before_first_human_turn" if "Human:" in text else "no_human_turn"
        return Exchange(None, None, reason)
    m = PAIR_RE_PY.match(text)
    if m is None:
        return Exchange(None, None, "no_assistant_reply")
    instruction = collapse_blank_lines(strip_ws(re.sub(MERGE_HUMAN, "\n", m.group(1))))
    response = strip_ws(re.sub(MERGE_ASSISTANT, "\n", m.group(2)))
    if instruction == "":
        return Exchange(None, None, "empty_instruction")
    if response == "":
        return Exchange(None, None, "empty_response")
    return Exchange(instruction, response, None)


# --- Spark: the same rules as built-in Column expressions (no Python round trip) ---
# Spark's `substr` of a text counts every character of it first, so the turns are cut by
# bytes: `substring_index` finds a marker and copies what comes before it, the byte length
# of that tells where the rest starts, and a `substr` of the text's bytes copies the rest. A
# long dialogue is thus scanned once for a CR, once for its first reply, and otherwise only
# copied; the trims and a regular expression (only where it can change something: a CR, a
# repeated turn marker, a newline) run on the short halves.
# Every intermediate is referenced as few times as it can be: a filter on the result (the
# decontamination's, on `drop_reason`) is pushed below these columns with their definitions
# written into it, so each extra reference multiplies the filter's generated code (a right
# trim only where a text ends with whitespace made it outgrow Java's 64 KB method limit).

WS_CHARS = " \t\n\x0b\f\r"
_HUMAN, _ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
_REST = 1 << 30  # "to the end" for substr


def strip_ws_col(c: Column) -> Column:
    return F.btrim(c, F.lit(WS_CHARS))


def collapse_blank_lines_col(c: Column) -> Column:
    return F.when(c.contains("\n"), F.regexp_replace(c, BLANK_LINES, "\n")).otherwise(c)


def _merge_turns(c: Column, marker: str, pattern: str) -> Column:
    return F.when(c.contains(marker), F.regexp_replace(c, pattern, "\n")).otherwise(c)


def _bytes_from(c: Column, start: Column) -> Column:
    """The text from its 1-based byte position `start` to its end (`start` on a character boundary)."""
    return F.substr(c.cast("binary"), start, F.lit(_REST)).cast("string")


def with_first_exchange(df: DataFrame, dialogue: str, names: tuple[str, str, str] = ("instruction", "response", "error")) -> DataFrame:
    """`df` with three columns added from its `dialogue` column: the instruction, the response and the
    error (see module doc); instruction and response are null when the error is not.

    Each intermediate text is a column of its own, computed once: written as one nested
    expression, every branch of the CASE WHEN that picks the error would compute the
    split again (Spark shares no work between the branches).
    """
    instruction, response, error = names
    text = F.col(dialogue)
    staged = df.withColumn("_text", F.when(text.contains("\r"), F.regexp_replace(text, NEWLINES_JAVA, "\n")).otherwise(text))
    staged = staged.withColumn("_body", F.ltrim(F.col("_text"), F.lit(WS_CHARS)))
    # "Human:" and the first turns, up to the first reply (all of the body when there is none)
    staged = staged.withColumn("_upto", F.substring_index(F.col("_body"), _ASSISTANT, 1))
    staged = staged.withColumn("_replied", F.octet_length("_upto") < F.octet_length("_body"))
    staged = staged.withColumns({
        "_first": _bytes_from(F.col("_upto"), F.lit(len("Human:") + 1)),
        "_reply": F.substring_index(_bytes_from(F.col("_body"), F.octet_length("_upto") + len(_ASSISTANT) + 1), _HUMAN, 1),
    })
    # The merged turns are columns of their own before the trims: nested inside them, the
    # same split, filters and pair_id of the 10^6 set took 15.5-16.9 s against 14.2 s (warm).
    staged = staged.withColumns({
        "_instruction": _merge_turns(F.col("_first"), _HUMAN, MERGE_HUMAN),
        "_response": _merge_turns(F.col("_reply"), _ASSISTANT, MERGE_ASSISTANT),
    })
    staged = staged.withColumns({
        "_instruction": collapse_blank_lines_col(strip_ws_col(F.col("_instruction"))),
        "_response": strip_ws_col(F.col("_response")),
    })
    head = F.col("_body").startswith("Human:")
    why = (
        F.when(F.col("_text").isNull() | (F.col("_body") == ""), F.lit("empty_dialogue"))
        .when(~head & ~F.col("_text").contains("Human:"), F.lit("no_human_turn"))
        .when(~head, F.lit("text_before_first_human_turn"))
        .when(~F.col("_replied"), F.lit("no_assistant_reply"))
        .when(F.col("_instruction") == "", F.lit("empty_instruction"))
        .when(F.col("_response") == "", F.lit("empty_response"))
    )
    staged = staged.withColumn(error, why)
    ok = F.col(error).isNull()
    return staged.withColumns({instruction: F.when(ok, F.col("_instruction")), response: F.when(ok, F.col("_response"))}).drop(
        "_text", "_body", "_upto", "_replied", "_first", "_reply", "_instruction", "_response"
    )
