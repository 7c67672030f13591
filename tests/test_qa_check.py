"""`instructlake qa-check`: a QA data set of one's own through the conf's checks. The record parser
and the verdict line as pure functions; the command over good and broken lines in Spark (rows in =
rows out, in order, each keeping its own fields); a missing input as one line."""
from __future__ import annotations

import json

from conftest import CHEAP, local_conf
from instructlake.core.lake import RunContext
from instructlake.jobs.cli import main
from instructlake.jobs.stages.qa_check import SUMMARY, VERDICTS, run_qa_check
from instructlake.udfs.qa_checks import CHECKS, check_results, parse_record, score_qa, verdict_line

PARAGRAPH = (
    "Super Bowl 50 was an American football game to determine the champion of the National Football League (NFL) "
    "for the 2015 season. The American Football Conference (AFC) champion Denver Broncos defeated the National "
    "Football Conference (NFC) champion Carolina Panthers 24-10 to earn their third Super Bowl title. The game was "
    "played on February 7, 2016, at Levi's Stadium in the San Francisco Bay Area at Santa Clara, California."
)


def record(**fields) -> str:
    return json.dumps(fields)


def test_parse_record_reads_each_field_or_says_why_not():
    base = {"context": PARAGRAPH, "question": "Where was the game played?", "answer": "Levi's Stadium"}
    assert parse_record(record(**base)) == {**base, "qa_type": None, "input_reason": None}
    assert parse_record(record(paragraph="p", question="Who?", answer="a", type="Who"))["qa_type"] == "who"
    assert parse_record(record(context="c", question="q", answers=[{"text": "x", "answer_start": 0}]))["answer"] == "x"
    assert parse_record(record(context="c", question="q", answers=["y"]))["answer"] == "y"
    reasons = {
        "not json": "not_json", "": "not_json", "[1, 2]": "not_an_object", record(question="q", answer="a"): "missing_field:context",
        record(context="c", answer="a"): "missing_field:question", record(context="c", question="q"): "missing_field:answer",
        record(context="c", question=["q"], answer="a"): "not_text:question",
    }
    for line, reason in reasons.items():
        got = parse_record(line)
        assert got["input_reason"] == reason and got["question"] is None, line


def test_verdict_line_keeps_the_input_fields():
    assert json.loads(verdict_line(record(id=7, question="q"), {"drop_reason": None})) == {"id": 7, "question": "q", "drop_reason": None}
    assert json.loads(verdict_line(record(drop_reason="old"), {"drop_reason": "new"})) == {"drop_reason": "new"}
    assert json.loads(verdict_line("{broken", {"drop_reason": "not_json"})) == {"input": "{broken", "drop_reason": "not_json"}


def test_qa_check_over_good_and_broken_lines(spark, tmp_path):
    good = [
        {"id": "g1", "context": PARAGRAPH, "question": "Where was the game played?", "answer": "Levi's Stadium"},
        {"id": "g2", "context": PARAGRAPH, "question": "Who defeated the Carolina Panthers?", "answer": "Denver Broncos"},
        # Right words, wrong place: the answer of another question.
        {"id": "w1", "context": PARAGRAPH, "question": "Where was the game played?", "answer": "Denver Broncos"},
        {"id": "w2", "paragraph": PARAGRAPH, "question": "When was the game played?", "answer": "Carolina Panthers"},
    ]
    broken = ["this is not json", "[1, 2]", record(id="b3", context=PARAGRAPH, question="Who won?"),
              record(id="b4", context=PARAGRAPH, question=42, answer="x")]
    first, second = tmp_path / "in" / "a.jsonl", tmp_path / "in" / "b.jsonl"
    first.parent.mkdir()
    first.write_text("".join(json.dumps(r) + "\n" for r in good), encoding="utf-8")
    second.write_text("".join(line + "\n" for line in broken), encoding="utf-8")
    conf = local_conf(tmp_path)
    result = run_qa_check(spark, conf, [str(first.parent)], str(tmp_path / "out"), RunContext())

    out = [json.loads(x) for x in (tmp_path / "out" / VERDICTS).read_text(encoding="utf-8").splitlines()]
    assert len(out) == result.rows == 8 and [r["line"] for r in out] == list(range(1, 9))  # rows in = rows out, in order
    assert [r.get("id") for r in out] == ["g1", "g2", "w1", "w2", None, None, "b3", "b4"]
    assert out[4]["input"] == "this is not json" and out[5]["input"] == "[1, 2]"
    for r, source in zip(out[:4], good):
        assert {k: r[k] for k in source} == source  # the input's own fields, as they were
        want = check_results(score_qa(None, source["question"], source["answer"], PARAGRAPH), None, conf.qa.checks)
        assert r["drop_reason"] == next((want[c] for c in CHECKS if want[c]), None)
        assert r["drop_stage"] == ("qa_checks" if r["drop_reason"] else None) and r["grounding"] == 1.0
    assert [r["drop_reason"] for r in out] == [
        None, None, "answer_off_target", "answer_wrong_kind", "not_json", "not_an_object", "missing_field:answer", "not_text:question",
    ]
    assert all(r["drop_stage"] == "input" and r["grounding"] is None for r in out[4:])
    assert isinstance(out[0]["question_chars"], int) and out[0]["question_mark"] is True

    summary = json.loads((tmp_path / "out" / SUMMARY).read_text(encoding="utf-8"))
    assert (summary["rows"], summary["kept"], summary["dropped"]) == (8, 2, 6)
    assert summary["by_stage"] == {"input": 4, "qa_checks": 2} and sum(summary["by_reason"].values()) == 6
    assert summary["accepted_by_check"]["answer_location"] == 0.5 and summary["accepted_by_check"]["answer_kind"] == 0.75
    assert summary["checks"]["min_answer_location"] == 0.8

    again = run_qa_check(spark, conf, [str(second)], str(tmp_path / "out"), RunContext())  # the output is replaced
    assert again.rows == 4 and len((tmp_path / "out" / VERDICTS).read_text(encoding="utf-8").splitlines()) == 4
    assert again.accepted == {}


def test_qa_check_without_its_input_is_one_line(spark, tmp_path, capsys):
    code = main(["qa-check", "--conf", str(CHEAP), "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("instructlake: error: qa-check --input: input path") and "matches no file" in err[-1]


def test_line_numbers_follow_the_files_across_split_reads(spark, tmp_path):
    """A file read by several tasks still numbers its lines in file order, the files in name order."""
    from instructlake.jobs.stages.qa_check import _lines

    folder = tmp_path / "in"
    folder.mkdir()
    sizes = {"b.jsonl": 3000, "a.jsonl": 5, "c.jsonl": 700}
    for name, n in sizes.items():
        (folder / name).write_text("".join(record(f=name, i=i) + "\n" for i in range(n)), encoding="utf-8")
    expected = [record(f=name, i=i) for name in sorted(sizes) for i in range(sizes[name])]
    spark.conf.set("spark.sql.files.maxPartitionBytes", 16384)
    try:
        assert spark.read.text(str(folder)).rdd.getNumPartitions() > 3  # b.jsonl is split
        got = [(r["line"], r["value"]) for r in _lines(spark, [str(folder)]).collect()]
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert sorted(got) == list(enumerate(expected, start=1))
