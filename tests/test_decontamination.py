"""Benchmark decontamination: planted benchmark items are caught, clean pairs pass, and the
Spark n-grams equal the pure-Python reference. The benchmarks are the real files shipped in
data/sample (HumanEval, MBPP, GSM8K test, SQuAD v1.1 dev); their index is built once per
test session and shared by every test here."""
from __future__ import annotations

import gzip
import json

import pytest
from pyspark.sql import functions as F

from conftest import LOCAL, SAMPLE, local_conf, release_dir
from instructlake.core.confload import ConfigError
from instructlake.core.lake import Lake, RunContext, commit_metadata, latest_version
from instructlake.udfs.filters.decontamination import ITEM_COLUMN, filter_decontamination, ngrams, ngrams_col, with_tokens
from instructlake.udfs.text import normalize

SCHEMA = "source string, instruction string, response string, drop_reason string"


def humaneval(k: int) -> dict:
    with gzip.open(SAMPLE / "humaneval/HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f][k]


def mbpp(task_id: int) -> dict:
    with open(SAMPLE / "mbpp/mbpp.jsonl", encoding="utf-8") as f:
        return next(r for r in map(json.loads, f) if r["task_id"] == task_id)


def gsm8k(line: int) -> dict:
    with open(SAMPLE / "benchmarks/gsm8k/test.jsonl", encoding="utf-8") as f:
        return [json.loads(x) for x in f][line]


def reference_item_texts() -> dict[str, list[str]]:
    """Each benchmark's item texts as the filter's docs say: fields joined by newlines."""
    with gzip.open(SAMPLE / "humaneval/HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        he = [json.loads(line) for line in f]
    with open(SAMPLE / "mbpp/mbpp.jsonl", encoding="utf-8") as f:
        tasks = [r for r in map(json.loads, f) if 11 <= r["task_id"] <= 510]
    with open(SAMPLE / "benchmarks/gsm8k/test.jsonl", encoding="utf-8") as f:
        problems = [json.loads(x) for x in f]
    paragraphs = [
        p
        for half in ("dev", "test")
        for a in json.loads((SAMPLE / f"benchmarks/squad/v1.1-dev-halves/{half}-v1.1.json").read_text(encoding="utf-8"))["data"]
        for p in a["paragraphs"]
    ]
    return {
        "humaneval": [r["prompt"] + "\n" + r["canonical_solution"] for r in he],
        "mbpp": [r["text"] + "\n" + r["code"] for r in tasks],
        "gsm8k": [r["question"] + "\n" + r["answer"] for r in problems],
        "squad": [p["context"] + "\n" + "\n".join(q["question"] for q in p["qas"]) for p in paragraphs],
    }


def squad_paragraph(k: int) -> dict:
    doc = json.loads((SAMPLE / "benchmarks/squad/v1.1-dev-halves/test-v1.1.json").read_text(encoding="utf-8"))
    return [p for a in doc["data"] for p in a["paragraphs"]][k]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return next(f for f in local_conf(tmp_path_factory.mktemp("conf"), conf=LOCAL).filters if f.rule == "decontamination")


# --- the pure functions --------------------------------------------------------------------


def test_ngrams():
    assert ngrams("a b c d", 2) == ["a b", "b c", "c d"]
    assert ngrams("a b c d", 4) == ["a b c d"]
    assert ngrams("a b c", 4) == []
    assert ngrams("", 1) == []


def test_spark_ngrams_equal_the_reference(spark, spec):
    texts = [
        humaneval(0)["prompt"],
        mbpp(17)["code"],
        gsm8k(5)["question"],
        squad_paragraph(0)["context"],
        "Ｔｈｅ ﬁnal ＣＯＤＥ: «Ça va?»",
        "short text",
        "",
        None,
    ]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "i int, text string")
    for n in (13, 3):
        got = {
            r["i"]: r["grams"]
            for r in with_tokens(df, "text", spec).select("i", ngrams_col(F.col("tokens"), n).alias("grams")).collect()
        }
        assert got == {i: ngrams(normalize(t), n) for i, t in enumerate(texts)}
    assert len(got[0]) > 50


# --- the filter ------------------------------------------------------------------------------


def test_planted_benchmark_items_are_caught(spark, spec):
    he0, he2 = humaneval(0), humaneval(2)
    task = mbpp(17)
    para = squad_paragraph(3)
    first_id = para["qas"][0]["id"]
    words = normalize(he0["prompt"]).split()
    rows = [
        ("planted_humaneval", "Can you write this function?", "Sure, here it is:\n" + he0["prompt"] + "    pass\n", None),
        ("clean", "What is a peanut gallery?", "It is an old name for the cheapest seats in a theatre, and for the people who sat in them and heckled the actors.", None),
        # Task 17's text (10 words) and code (9 words) are each shorter than n: found as text + code.
        ("planted_mbpp", task["text"], task["code"], None),
        ("mbpp_train_split", mbpp(700)["text"], mbpp(700)["code"], None),
        ("planted_gsm8k", gsm8k(5)["question"], "Let me think step by step.", None),
        ("planted_squad", "Summarize this text.\n" + para["context"], "It is about a game.", None),
        ("short_phrase", "Explain this line: " + " ".join(words[:12]), "It checks whether two numbers are close.", None),
        ("already_dropped", "x", he0["prompt"], "response_too_short"),
        ("two_benchmarks", gsm8k(5)["question"], he2["prompt"] + "\n" + he0["prompt"], None),
    ]
    df = spark.createDataFrame(rows, SCHEMA)
    got = {
        r["source"]: (r["drop_reason"], r[ITEM_COLUMN])
        for r in filter_decontamination(df, spec).select("source", "drop_reason", ITEM_COLUMN).collect()
    }
    assert got == {
        "planted_humaneval": ("contaminated:humaneval", "HumanEval/0"),
        "clean": (None, None),
        "planted_mbpp": ("contaminated:mbpp", "mbpp/17"),
        "mbpp_train_split": (None, None),  # task 700 is outside task_ids [11, 510]
        "planted_gsm8k": ("contaminated:gsm8k", "gsm8k/test/5"),
        "planted_squad": ("contaminated:squad", f"squad/dev/{first_id}"),
        "short_phrase": (None, None),  # 12 shared words < n = 13
        "already_dropped": ("response_too_short", None),
        # humaneval is listed before gsm8k; HumanEval/0 comes before HumanEval/2 in its file.
        "two_benchmarks": ("contaminated:humaneval", "HumanEval/0"),
    }


def test_sources_and_sides_are_respected(spark, spec):
    from dataclasses import replace

    prompt = humaneval(1)["prompt"]
    df = spark.createDataFrame(
        [("hh_helpful", prompt, "ok", None), ("hh_harmless", "hi", prompt, None)], SCHEMA
    )
    only_responses = filter_decontamination(df, replace(spec, text="response"))
    assert {r["source"]: r["drop_reason"] for r in only_responses.collect()} == {"hh_helpful": None, "hh_harmless": "contaminated:humaneval"}
    only_helpful = filter_decontamination(df, replace(spec, sources=["hh_helpful"]))
    assert {r["source"]: r[ITEM_COLUMN] for r in only_helpful.collect()} == {"hh_helpful": "HumanEval/1", "hh_harmless": None}


def test_bad_benchmark_file_stops_with_its_name(spark, spec, tmp_path):
    from dataclasses import replace

    from instructlake.udfs.filters.decontamination import Benchmark

    bad = tmp_path / "gsm8k.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": "no answer"\n', encoding="utf-8")
    broken = replace(spec, benchmarks=[Benchmark(name="gsm8k", format="gsm8k", paths=[str(bad)])])
    df = spark.createDataFrame([("hh_helpful", "a", "b", None)], SCHEMA)
    with pytest.raises(ValueError, match=r"benchmark 'gsm8k': .*gsm8k\.jsonl: record 1 "):
        filter_decontamination(df, broken).collect()
    missing = replace(spec, benchmarks=[Benchmark(name="gsm8k", format="gsm8k", paths=[str(tmp_path / "nope.jsonl")])])
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        filter_decontamination(df, missing).collect()


def test_conf_checks(tmp_path):
    with pytest.raises(ConfigError, match="task_ids: only the mbpp format"):
        local_conf(tmp_path, "filters.decontamination.benchmarks.gsm8k.task_ids=[1, 2]", conf=LOCAL)
    with pytest.raises(ConfigError, match=r"fields\[0\]: humaneval items have prompt, canonical_solution"):
        local_conf(tmp_path, "filters.decontamination.benchmarks.humaneval.fields=[test]", conf=LOCAL)
    with pytest.raises(ConfigError, match="duplicate benchmark name"):
        local_conf(tmp_path, "filters.decontamination.benchmarks.mbpp.name=humaneval", conf=LOCAL)


# --- through the pipeline --------------------------------------------------------------------


def test_pipeline_drops_contaminated_pairs_and_records_the_benchmarks(spark, tmp_path):
    from instructlake.jobs.runner import run_pipeline
    from instructlake.jobs.stages.pairs import pairs_digest

    planted = "Sure, here is the function:\n" + humaneval(0)["prompt"] + "    return False"
    clean = "Peanuts are legumes that grow underground; they are roasted and salted, ground into butter, or pressed for oil in many kitchens."
    dialogues = [
        ("Please write a Python function that checks if numbers are close.", planted),
        ("What are peanuts?", clean),
    ]
    path = tmp_path / "dialogues.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for human, assistant in dialogues:
            chosen = f"\n\nHuman: {human}\n\nAssistant: {assistant}"
            f.write(json.dumps({"chosen": chosen, "rejected": chosen}) + "\n")
    conf = local_conf(
        tmp_path,
        f"sources.helpful_online.paths=[{path}]",
        "sources.helpful_rejection_sampled.enabled=false",
        "sources.red_team_attempts.enabled=false",
        conf=LOCAL,
    )
    run_pipeline(spark, conf, RunContext())
    lake = Lake.of(conf)
    pairs = {r["response"]: (r["drop_reason"], r[ITEM_COLUMN]) for r in spark.read.format("delta").load(lake.pairs).collect()}
    assert pairs == {planted: ("contaminated:humaneval", "HumanEval/0"), clean: (None, None)}

    release = release_dir(tmp_path / "out")
    exported = [text for part in release.glob("*_part*.json") for _, text in json.loads(part.read_text(encoding="utf-8"))]
    assert len(exported) == 1 and clean in exported[0] and not any("has_close_elements" in t for t in exported)

    meta = commit_metadata(spark, lake.pairs, latest_version(spark, lake.pairs))["decontamination"]["decontamination"]
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["decontamination"]["decontamination"] == meta
    assert meta["ngram"] == 13
    # Items, short items and distinct n-grams as the pure reference counts them on the same files.
    reference = {
        name: (len(texts), sum(len(normalize(t).split()) < 13 for t in texts), len({g for t in texts for g in ngrams(normalize(t), 13)}))
        for name, texts in reference_item_texts().items()
    }
    assert {b["name"]: (b["items"], b["items_short"], b["ngrams"]) for b in meta["benchmarks"]} == reference
    summary = {b["name"]: (b["items"], [f["sha256"] for f in b["files"]]) for b in meta["benchmarks"]}
    assert summary == {
        "humaneval": (164, ["b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"]),
        "mbpp": (500, ["0b5e07b5b40fedd01c57b7c9177b79f8b2eebd72c304c928605d91a7237d2f33"]),
        "gsm8k": (1319, ["3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"]),
        "squad": (2067, ["bf8ebb60a161d0594f455be869ff3a476d2fe07da92ab1ecb0dea41f50ea64f3", "f0a16b507dbb983d1a04315b6a189e539aa15c91c4ccfb849b0392593daf80dd"]),
    }
    # A changed benchmark file (another sha256) changes the digest, so every pair is recomputed.
    changed = json.loads(json.dumps({"decontamination": meta}))
    changed["decontamination"]["benchmarks"][0]["files"][0]["sha256"] = "0" * 64
    assert pairs_digest(conf, {"decontamination": meta}) != pairs_digest(conf, changed)
