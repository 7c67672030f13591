"""The dialogue split: the pure function, and the Spark expressions that must agree with it."""
from __future__ import annotations

import gzip
import json

import pytest

from instructlake.udfs.dialogue import Exchange, split_first_exchange, with_first_exchange

CASES = [
    # (name, dialogue, expected Exchange)
    ("leading blank line", "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?",
     Exchange("Hi there", "Hello! How can I help?", None)),
    ("no leading newlines", "Human: Hi\n\nAssistant: Hello",
     Exchange("Hi", "Hello", None)),
    ("multi-turn keeps the first exchange", "\n\nHuman: A?\n\nAssistant: B.\n\nHuman: C?\n\nAssistant: D.",
     Exchange("A?", "B.", None)),
    ("no assistant turn", "\n\nHuman: Is anyone there?", Exchange(None, None, "no_assistant_reply")),
    ("empty reply", "\n\nHuman: Hello?\n\nAssistant:", Exchange(None, None, "empty_response")),
    ("whitespace-only reply before next turn", "\n\nHuman: Hello?\n\nAssistant:   \n\nHuman: Still there?\n\nAssistant: Yes.",
     Exchange(None, None, "empty_response")),
    ("empty instruction", "\n\nHuman:  \n\nAssistant: Hi", Exchange(None, None, "empty_instruction")),
    ("consecutive human turns merge", "\n\nHuman: First part.\n\nHuman: Second part?\n\nAssistant: Answer.",
     Exchange("First part.\nSecond part?", "Answer.", None)),
    ("an empty human turn between human turns", "\n\nHuman: A\n\nHuman:  \n\nHuman: B\n\nAssistant: C",
     Exchange("A\nB", "C", None)),
    ("consecutive assistant turns merge", "\n\nHuman: Q\n\nAssistant: One.\n\nAssistant: Two.\n\nHuman: next",
     Exchange("Q", "One.\nTwo.", None)),
    ("CRLF", "\r\n\r\nHuman: Line one\r\nline two\r\n\r\nAssistant: Reply\r\nmore\r\n",
     Exchange("Line one\nline two", "Reply\nmore", None)),
    ("unicode", "\n\nHuman: ¿Dónde está la estación? 🚉 東京\n\nAssistant: Está a la derecha — 右です。",
     Exchange("¿Dónde está la estación? 🚉 東京", "Está a la derecha — 右です。", None)),
    ("Human: inside a sentence is text", "\n\nHuman: The label said Human: do not eat.\n\nAssistant: Good advice. Assistant: noted.",
     Exchange("The label said Human: do not eat.", "Good advice. Assistant: noted.", None)),
    ("text before the first human turn", "Preamble\n\nHuman: Hi\n\nAssistant: Hello",
     Exchange(None, None, "text_before_first_human_turn")),
    ("starts with the assistant", "\n\nAssistant: Hello\n\nHuman: Hi\n\nAssistant: Yes",
     Exchange(None, None, "text_before_first_human_turn")),
    ("no human turn at all", "just some text", Exchange(None, None, "no_human_turn")),
    ("empty string", "", Exchange(None, None, "empty_dialogue")),
    ("whitespace only", " \n\t ", Exchange(None, None, "empty_dialogue")),
    ("None", None, Exchange(None, None, "empty_dialogue")),
    ("blank lines inside the instruction collapse", "\n\nHuman: Para one.\n \nPara two.\n\nAssistant: Ok",
     Exchange("Para one.\nPara two.", "Ok", None)),
    ("single newlines inside a turn", "\n\nHuman: line a\nline b\n\nAssistant: x\ny",
     Exchange("line a\nline b", "x\ny", None)),
    ("whitespace of every kind around multi-byte halves", "\n\nHuman:\t\x0b\f Ünïcode 東京 \t\n\nAssistant: \f答え\x0b \n\nHuman: x",
     Exchange("Ünïcode 東京", "答え", None)),
    ("a reply running to the end, four-byte characters", "Human: 🚉?\n\nAssistant: 🚉!", Exchange("🚉?", "🚉!", None)),
    ("non-breaking space is not stripped", "\n\nHuman: \u00a0hi\u00a0\n\nAssistant: yo",
     Exchange("\u00a0hi\u00a0", "yo", None)),
]

LONG = "\n\nHuman: " + "word " * 200_000 + "\n\nAssistant: " + "reply " * 200_000 + "\n\nHuman: more"


@pytest.mark.parametrize("name,dialogue,expected", CASES, ids=[c[0] for c in CASES])
def test_split_pure(name, dialogue, expected):
    assert split_first_exchange(dialogue) == expected


def test_split_very_long_text():
    got = split_first_exchange(LONG)
    assert got.error is None
    assert got.instruction == ("word " * 200_000).strip()
    assert got.response == ("reply " * 200_000).strip()


def _spark_split(spark, dialogues):
    df = spark.createDataFrame([(i, d) for i, d in enumerate(dialogues)], "i long, d string")
    rows = with_first_exchange(df, "d", ("a", "b", "e")).select("i", "a", "b", "e").orderBy("i").collect()
    return [Exchange(r["a"], r["b"], r["e"]) for r in rows]


def test_spark_expressions_agree_on_edge_cases(spark):
    dialogues = [c[1] for c in CASES] + [LONG]
    assert _spark_split(spark, dialogues) == [split_first_exchange(d) for d in dialogues]


def test_spark_expressions_agree_on_real_data(spark, shared_data):
    dialogues = []
    for name in ("helpful-online", "helpful-rejection-sampled"):
        with gzip.open(shared_data / "hh-rlhf" / name / "test.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                dialogues += [rec["chosen"], rec["rejected"]]
    assert len(dialogues) == 2 * 3886
    expected = [split_first_exchange(d) for d in dialogues]
    assert _spark_split(spark, dialogues) == expected
    # The real data exercises both paths.
    assert sum(e.error is None for e in expected) > 7000
    assert {e.error for e in expected} >= {None, "empty_response"}
