"""Every turn of an HH-format dialogue: whole conversations and preference pairs.

The turn rules are the first-exchange split's (`instructlake.udfs.dialogue`):
a turn starts at ``\\n\\nHuman:`` or ``\\n\\nAssistant:`` (``Human:`` at the
very start), CRLF and lone CR become LF, consecutive turns of one speaker are
merged (joined by one newline, empty ones vanish), every turn is stripped of
ASCII whitespace and blank lines inside a user turn collapse to one newline.
So the first (user, assistant) of `turns` is always the first exchange that
`split_first_exchange` returns (a test checks it on real data).

- `conversation(dialogue)`: the chat messages of a dialogue. A dialogue that
  has no first exchange gets that split's reason (`empty_dialogue`, ...). A
  later turn that cannot be trained on cuts the conversation after the last
  assistant turn before it, and `cut` says why: `empty_turn` (a turn with no
  text) or `unanswered_final_turn` (the dialogue ends on a user turn).
- `preference(chosen, rejected)`: the conversation the two share up to the
  final assistant turn (the prompt), and the final reply of each; or why the
  record makes no pair, checked in the order of `PREFERENCE_ERRORS`.

The Spark forms (`conversation_col`, `preference_col`) run these same
functions in a pandas UDF.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Optional

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from instructlake.udfs.dialogue import WS, collapse_blank_lines, split_first_exchange, strip_ws

USER, ASSISTANT = "user", "assistant"
_MARKER = re.compile(r"\n\n(Human|Assistant):")
_HEAD = re.compile(rf"\A{WS}*Human:")

CUT_REASONS = ("empty_turn", "unanswered_final_turn")
PREFERENCE_ERRORS = (
    "malformed_chosen",     # `chosen` has no first exchange
    "malformed_rejected",   # `rejected` has no first exchange
    "no_final_reply",       # a side ends on a user turn
    "empty_prompt_turn",    # a turn of the shared conversation has no text
    "empty_chosen",
    "empty_rejected",
    "prompts_differ",       # the turns before the final replies are not the same
    "identical_replies",
)

MESSAGES_TYPE = ArrayType(StructType([StructField("role", StringType()), StructField("content", StringType())]))
CONVERSATION_TYPE = StructType([StructField("messages", MESSAGES_TYPE), StructField("error", StringType()),
                                StructField("cut", StringType())])
PREFERENCE_TYPE = StructType([StructField("prompt", MESSAGES_TYPE), StructField("chosen", StringType()),
                              StructField("rejected", StringType()), StructField("error", StringType())])

Message = tuple[str, str]  # (role, content)


class Conversation(NamedTuple):
    messages: Optional[list[Message]]
    error: Optional[str]
    cut: Optional[str]


class Preference(NamedTuple):
    prompt: Optional[list[Message]]
    chosen: Optional[str]
    rejected: Optional[str]
    error: Optional[str]


def turns(dialogue: Optional[str]) -> Optional[list[Message]]:
    """The merged turns of a dialogue that starts with a Human turn (None when it does not).

    Turns may be empty ("" content); roles alternate, the first is the user's."""
    if dialogue is None:
        return None
    text = re.sub(r"\r\n?", "\n", dialogue)
    head = _HEAD.match(text)
    if head is None:
        return None
    pieces = _MARKER.split(text[head.end():])
    raw = [(USER, pieces[0])] + [(USER if who == "Human" else ASSISTANT, said) for who, said in zip(pieces[1::2], pieces[2::2])]
    merged: list[tuple[str, list[str]]] = []
    for role, said in raw:
        if merged and merged[-1][0] == role:
            merged[-1][1].append(said)
        else:
            merged.append((role, [said]))
    out = []
    for role, said in merged:
        content = "\n".join(s for s in (strip_ws(p) for p in said) if s)
        out.append((role, collapse_blank_lines(content) if role == USER else content))
    return out


def conversation(dialogue: Optional[str]) -> Conversation:
    """The chat messages of a dialogue (see the module doc)."""
    first = split_first_exchange(dialogue)
    if first.error:
        return Conversation(None, first.error, None)
    all_turns = turns(dialogue)
    kept: list[Message] = []
    cut = None
    for k in range(0, len(all_turns), 2):
        exchange = all_turns[k:k + 2]
        if len(exchange) < 2:
            cut = "unanswered_final_turn" if exchange[0][1] else "empty_turn"
            break
        if not exchange[0][1] or not exchange[1][1]:
            cut = "empty_turn"
            break
        kept += exchange
    return Conversation(kept, None, cut)


def preference(chosen: Optional[str], rejected: Optional[str]) -> Preference:
    """The shared prompt and the two final replies of an HH-RLHF record (see the module doc)."""
    sides = []
    for name, dialogue in (("chosen", chosen), ("rejected", rejected)):
        if split_first_exchange(dialogue).error:
            return Preference(None, None, None, f"malformed_{name}")
        sides.append(turns(dialogue))
    if any(side[-1][0] != ASSISTANT for side in sides):
        return Preference(None, None, None, "no_final_reply")
    (prompt, chosen_reply), (rejected_prompt, rejected_reply) = ((s[:-1], s[-1][1]) for s in sides)
    if any(not content for _, content in prompt):
        return Preference(None, None, None, "empty_prompt_turn")
    if not chosen_reply:
        return Preference(None, None, None, "empty_chosen")
    if not rejected_reply:
        return Preference(None, None, None, "empty_rejected")
    if prompt != rejected_prompt:
        return Preference(None, None, None, "prompts_differ")
    if chosen_reply == rejected_reply:
        return Preference(None, None, None, "identical_replies")
    return Preference(prompt, chosen_reply, rejected_reply, None)


def _messages(pairs: Optional[list[Message]]) -> Optional[list[dict]]:
    return None if pairs is None else [{"role": r, "content": c} for r, c in pairs]


def _conversations(dialogues: pd.Series) -> pd.DataFrame:
    rows = [conversation(d) for d in dialogues]
    return pd.DataFrame({"messages": [_messages(r.messages) for r in rows],
                         "error": [r.error for r in rows], "cut": [r.cut for r in rows]})


def _preferences(chosen: pd.Series, rejected: pd.Series) -> pd.DataFrame:
    rows = [preference(c, r) for c, r in zip(chosen, rejected)]
    return pd.DataFrame({"prompt": [_messages(r.prompt) for r in rows], "chosen": [r.chosen for r in rows],
                         "rejected": [r.rejected for r in rows], "error": [r.error for r in rows]})


def conversation_col(dialogue: Column) -> Column:
    """`conversation` as a struct column (messages, error, cut)."""
    return F.pandas_udf(_conversations, CONVERSATION_TYPE)(dialogue)  # made per call: a classic or a Connect UDF


def preference_col(chosen: Column, rejected: Column) -> Column:
    """`preference` as a struct column (prompt, chosen, rejected, error)."""
    return F.pandas_udf(_preferences, PREFERENCE_TYPE)(chosen, rejected)


def turns_text(messages: Column, role: Optional[str] = None) -> Column:
    """The contents of `messages` (of one role, or all) joined by a blank line: the text the
    filters judge."""
    chosen = messages if role is None else F.filter(messages, lambda m: m["role"] == role)
    return F.array_join(F.transform(chosen, lambda m: m["content"]), "\n\n")
