"""Every turn of a dialogue: whole conversations and preference pairs (the pure functions, their
agreement with the first-exchange split on real data, and their Spark forms)."""
from __future__ import annotations

import gzip
import json

import pytest

from conftest import SAMPLE
from instructlake.udfs.conversation import Conversation, Preference, conversation, conversation_col, preference, preference_col, turns
from instructlake.udfs.dialogue import split_first_exchange

U, A = "user", "assistant"

CONVERSATIONS = [
    ("two exchanges", "\n\nHuman: A?\n\nAssistant: B.\n\nHuman: C?\n\nAssistant: D.",
     Conversation([(U, "A?"), (A, "B."), (U, "C?"), (A, "D.")], None, None)),
    ("consecutive turns of one speaker merge", "\n\nHuman: A\n\nHuman: B\n\nAssistant: C\n\nAssistant:  \n\nAssistant: D",
     Conversation([(U, "A\nB"), (A, "C\nD")], None, None)),
    ("ends on a user turn", "\n\nHuman: A?\n\nAssistant: B.\n\nHuman: C?",
     Conversation([(U, "A?"), (A, "B.")], None, "unanswered_final_turn")),
    ("an empty later reply", "\n\nHuman: A?\n\nAssistant: B.\n\nHuman: C?\n\nAssistant:   ",
     Conversation([(U, "A?"), (A, "B.")], None, "empty_turn")),
    ("an empty later user turn before more turns", "Human: A\n\nAssistant: B\n\nHuman:\n\nAssistant: C\n\nHuman: D\n\nAssistant: E",
     Conversation([(U, "A"), (A, "B")], None, "empty_turn")),
    ("a trailing empty user turn", "Human: A\n\nAssistant: B\n\nHuman:  ",
     Conversation([(U, "A"), (A, "B")], None, "empty_turn")),
    ("blank lines in a user turn collapse, CRLF", "\r\n\r\nHuman: one\r\n\r\ntwo\r\n\r\nAssistant: x\r\n\r\ny",
     Conversation([(U, "one\ntwo"), (A, "x\n\ny")], None, None)),
    ("no first exchange", "\n\nHuman: anyone?", Conversation(None, "no_assistant_reply", None)),
    ("text before the first turn", "hello\n\nHuman: A\n\nAssistant: B", Conversation(None, "text_before_first_human_turn", None)),
    ("None", None, Conversation(None, "empty_dialogue", None)),
]


@pytest.mark.parametrize("name,dialogue,expected", CONVERSATIONS, ids=[c[0] for c in CONVERSATIONS])
def test_conversation(name, dialogue, expected):
    assert conversation(dialogue) == expected


def _hh(*turns_: str) -> str:
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {t}" for i, t in enumerate(turns_))


PREFERENCES = [
    ("a pair", _hh("Hi", "Hello", "Tell me a joke", "No."), _hh("Hi", "Hello", "Tell me a joke", "Why did the chicken..."),
     Preference([(U, "Hi"), (A, "Hello"), (U, "Tell me a joke")], "No.", "Why did the chicken...", None)),
    ("identical replies", _hh("Q", "same"), _hh("Q", "same"), Preference(None, None, None, "identical_replies")),
    ("prompts differ", _hh("Q", "a", "R", "x"), _hh("Q", "b", "R", "y"), Preference(None, None, None, "prompts_differ")),
    ("chosen ends on a user turn", _hh("Q", "a", "more?"), _hh("Q", "b"), Preference(None, None, None, "no_final_reply")),
    ("empty chosen reply", _hh("Q", "a", "R", ""), _hh("Q", "a", "R", "y"), Preference(None, None, None, "empty_chosen")),
    ("empty rejected reply", _hh("Q", "a", "R", "x"), _hh("Q", "a", "R", " "), Preference(None, None, None, "empty_rejected")),
    ("an empty turn in the prompt", _hh("Q", "a", "", "b", "S", "x"), _hh("Q", "a", "", "b", "S", "y"),
     Preference(None, None, None, "empty_prompt_turn")),
    ("malformed chosen", "no turns", _hh("Q", "a"), Preference(None, None, None, "malformed_chosen")),
    ("malformed rejected", _hh("Q", "a"), None, Preference(None, None, None, "malformed_rejected")),
]


@pytest.mark.parametrize("name,chosen,rejected,expected", PREFERENCES, ids=[c[0] for c in PREFERENCES])
def test_preference(name, chosen, rejected, expected):
    assert preference(chosen, rejected) == expected


def _sample_records() -> list[dict]:
    records = []
    for path in sorted((SAMPLE / "hh-rlhf").glob("*/*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            records += [json.loads(line) for line in f]
    return records


def test_first_turns_are_the_first_exchange_on_real_data():
    """On every sample dialogue (both sides), the first user and assistant turns are exactly the
    first-exchange split's instruction and response, and a kept pair's sides rebuild the record."""
    records = _sample_records()
    red_team = json.loads((SAMPLE / "red-team-attempts" / "red_team_attempts.json").read_text(encoding="utf-8"))
    dialogues = [r[k] for r in records for k in ("chosen", "rejected")] + [r["transcript"] for r in red_team]
    multi = 0
    for dialogue in dialogues:
        first, whole = split_first_exchange(dialogue), conversation(dialogue)
        assert whole.error == first.error
        if first.error is None:
            assert whole.messages[:2] == [(U, first.instruction), (A, first.response)]
            assert [role for role, _ in whole.messages] == [U, A] * (len(whole.messages) // 2)
            multi += len(whole.messages) > 2
    assert multi > 100  # the sample has many multi-turn dialogues
    pairs = [preference(r["chosen"], r["rejected"]) for r in records]
    made = [p for p in pairs if p.error is None]
    assert len(made) > 0.9 * len(records)
    for (record, p) in zip(records, pairs):
        if p.error is None:
            assert turns(record["chosen"]) == p.prompt + [(A, p.chosen)]
            assert turns(record["rejected"]) == p.prompt + [(A, p.rejected)]


def test_spark_forms_agree_with_the_pure_functions(spark):
    rows = [(d, c, r) for (_, d, _), (_, c, r, _) in zip(CONVERSATIONS, PREFERENCES)]
    df = spark.createDataFrame(rows, "dialogue string, chosen string, rejected string")
    out = df.select(conversation_col(df.dialogue).alias("c"), preference_col(df.chosen, df.rejected).alias("p")).collect()
    for (dialogue, chosen, rejected), row in zip(rows, out):
        want_c, want_p = conversation(dialogue), preference(chosen, rejected)
        got_messages = None if row.c.messages is None else [(m.role, m.content) for m in row.c.messages]
        assert (got_messages, row.c.error, row.c.cut) == tuple(want_c)
        got_prompt = None if row.p.prompt is None else [(m.role, m.content) for m in row.p.prompt]
        assert (got_prompt, row.p.chosen, row.p.rejected, row.p.error) == tuple(want_p)
