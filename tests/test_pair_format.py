"""The exported pair text and its exact inverse, parse_pair()."""
from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from instructlake.udfs.pair_format import DEFAULT_TEMPLATE, PairTemplate, parse_pair

PAIRS = [
    ("What is 2+2?", "4."),
    ("Para one.\n\n\nPara two.\n  \nPara three.", "Reply\n\nwith blank lines\n\n"),
    ("  padded  ", "  padded response"),
    ("Über naïve café? 🚀", "Oui — très bien. 東京"),
    ("ends with a newline\n", "r"),
    ("quotes \" and \\ backslashes", "<|endoftext|> inside the response"),
    ("x" * 100_000, "y" * 100_000),
]


@pytest.mark.parametrize("instruction,response", PAIRS)
def test_round_trip(instruction, response):
    t = PairTemplate.parse(DEFAULT_TEMPLATE)
    text = t.render(instruction, response)
    got_instruction, got_response = parse_pair(text)
    assert got_response == response
    assert "\n\n" not in got_instruction
    assert got_instruction == got_instruction.strip()
    # A reader splitting on the first blank line gets the (prefixed) instruction.
    assert text.split("\n\n", 1)[0] == "User: " + got_instruction


def test_default_rendering():
    assert PairTemplate.parse(DEFAULT_TEMPLATE).render("Hi", "Hello") == "User: Hi\n\nAssistant: Hello<|endoftext|>"


def test_spark_rendering_matches_python(spark):
    t = PairTemplate.parse(DEFAULT_TEMPLATE)
    df = spark.createDataFrame(list(enumerate(PAIRS)), "i int, p struct<a:string,b:string>")
    rows = df.select("i", t.render_col(F.col("p.a"), F.col("p.b")).alias("text")).orderBy("i").collect()
    assert [r["text"] for r in rows] == [t.render(a, b) for a, b in PAIRS]


def test_custom_template_round_trip():
    template = "### Instruction:\n{instruction}\n\n### Response:\n{response}"
    text = PairTemplate.parse(template).render("Do X\n\nthen Y", "Done.")
    assert text == "### Instruction:\nDo X\nthen Y\n\n### Response:\nDone."
    assert parse_pair(text, template) == ("Do X\nthen Y", "Done.")


@pytest.mark.parametrize(
    "template,message",
    [
        ("User: {instruction}", "{response} exactly once"),
        ("{instruction}{instruction}\n\n{response}", "{instruction} exactly once"),
        ("{response}\n\n{instruction}", "must come before"),
        ("User: {instruction} Assistant: {response}", "must start with a blank line"),
        ("A\n\nB {instruction}\n\n{response}", "must not contain a blank line"),
    ],
)
def test_invalid_templates(template, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        PairTemplate.parse(template)


def test_parse_pair_rejects_foreign_text():
    with pytest.raises(ValueError):
        parse_pair("Human: hi\n\nAssistant: yo")
    with pytest.raises(ValueError):
        parse_pair("User: no separator<|endoftext|>")


def test_json_element_round_trip():
    text = PairTemplate.parse(DEFAULT_TEMPLATE).render(*PAIRS[3])
    element = json.loads(json.dumps(["hh_helpful", text]))
    assert parse_pair(element[1]) == (PAIRS[3][0], PAIRS[3][1])
