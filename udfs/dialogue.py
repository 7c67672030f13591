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

from pyspark.sql import Column
from pyspark.sql import functions as F

WS = r"[ \t\n\x0B\f\r]"
HWS = r"[ \t\x0B\f\r]"  # whitespace but newline

# Java and Python spell "end of input" differently (\z and \Z).
_HEAD = rf"^{WS}*Human:"
_PAIR_BODY = rf"{WS}*Human:(.*?)\n\nAssistant:(.*?)(?=\n\nHuman:|"
PAIR_RE_JAVA = rf"(?s)^{_PAIR_BODY}\z)"
PAIR_RE_PY = re.compile(rf"\A{_PAIR_BODY}\Z)", re.S)
_HEAD_PY = re.compile(rf"\A{WS}*Human:")
# One or more turn markers of the same speaker (empty turns included) become one newline.
MERGE_HUMAN = rf"(?:{WS}*\n\nHuman:)+{WS}*"
MERGE_ASSISTANT = rf"(?:{WS}*\n\nAssistant:)+{WS}*"
STRIP_JAVA = rf"^{WS}+|{WS}+\z"
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

def strip_ws_col(c: Column) -> Column:
    return F.regexp_replace(c, STRIP_JAVA, "")


def collapse_blank_lines_col(c: Column) -> Column:
    return F.regexp_replace(c, BLANK_LINES, "\n")


def split_first_exchange_cols(dialogue: Column) -> tuple[Column, Column, Column]:
    """(instruction, response, error) Columns for a dialogue Column; see module doc."""
    text = F.regexp_replace(dialogue, NEWLINES_JAVA, "\n")
    matched = text.rlike(PAIR_RE_JAVA)
    instruction = collapse_blank_lines_col(
        strip_ws_col(F.regexp_replace(F.regexp_extract(text, PAIR_RE_JAVA, 1), MERGE_HUMAN, "\n"))
    )
    response = strip_ws_col(F.regexp_replace(F.regexp_extract(text, PAIR_RE_JAVA, 2), MERGE_ASSISTANT, "\n"))
    error = (
        F.when(text.isNull() | (strip_ws_col(text) == ""), F.lit("empty_dialogue"))
        .when(~text.rlike(f"(?s){_HEAD}") & ~text.contains("Human:"), F.lit("no_human_turn"))
        .when(~text.rlike(f"(?s){_HEAD}"), F.lit("text_before_first_human_turn"))
        .when(~matched, F.lit("no_assistant_reply"))
        .when(instruction == "", F.lit("empty_instruction"))
        .when(response == "", F.lit("empty_response"))
    )
    ok = error.isNull()
    return (
        F.when(ok, instruction),
        F.when(ok, response),
        error,
    )
