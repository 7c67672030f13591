"""Exact and near-duplicate pairs (instructlake.jobs.stages.dedup), on real HH-RLHF dialogues with planted copies.

The pipeline test writes small HH and red-team files whose duplicates are known
by construction; the equivalence test compares the Spark result with the
plain-Python reference of tests/dedup_reference.py (exact Jaccard, no MinHash)
on real pairs of the shared HH test file.
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

import dedup_reference as ref
from conftest import SAMPLE, local_conf
from instructlake.core.lake import Lake, RunContext, commit_metadata, latest_version

HH_SAMPLE = SAMPLE / "hh-rlhf/helpful-online/test.jsonl.gz"


def first_exchange(dialogue: str) -> tuple[str, str]:
    """The first Human turn and the first Assistant reply (None when the dialogue has no reply)."""
    human = dialogue.split("\n\nHuman:", 1)[-1].split("\n\nAssistant:", 1)
    if len(human) < 2:
        return None
    return human[0].strip(), re.split(r"\n\n(?:Human|Assistant):", human[1], maxsplit=1)[0].strip()


def with_word(text: str, index: int, word: str) -> str:
    """`text` with its `index`-th word replaced (the whitespace around words kept)."""
    m = list(re.finditer(r"\S+", text))[index]
    return text[: m.start()] + word + text[m.end() :]


def dialogue(instruction: str, response: str) -> str:
    return f"\n\nHuman: {instruction}\n\nAssistant: {response}"


def write_hh(path: Path, exchanges: list[tuple[str, str]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for instruction, response in exchanges:
            f.write(json.dumps({"chosen": dialogue(instruction, response), "rejected": dialogue(instruction, "No.")}) + "\n")
    return path


def write_red_team(path: Path, exchanges: list[tuple[str, str]]) -> Path:
    template = json.loads((SAMPLE / "red-team-attempts/red_team_attempts.json").read_text(encoding="utf-8"))[0]
    path.write_text(json.dumps([template | {"transcript": dialogue(*e), "rating": 0.0} for e in exchanges]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def planted(spark, tmp_path_factory):
    """Three sources (conf order: helpful_online, helpful_rejection_sampled, red_team_attempts) with
    planted duplicates; returns the conf, the first run's result and the exchanges by name."""
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.jobs.stages.pairs import run_pairs

    with gzip.open(HH_SAMPLE, "rt", encoding="utf-8") as f:
        real = [first_exchange(json.loads(line)["chosen"]) for line in f]
    indonesia, centripetal, music, skin, milkshake, meat = (real[i] for i in (3, 10, 12, 13, 14, 15))
    x = {
        "indonesia": indonesia,
        "centripetal": centripetal,
        "music": music,
        "same_instruction": (centripetal[0], skin[1]),  # the instruction of centripetal, another answer
        "chain_a": skin,
        "milkshake": milkshake,
        "meat": meat,
        # Case, whitespace and a no-break space: the same pair once normalized.
        "indonesia_variant": (indonesia[0].lower(), indonesia[1].replace(" ", "  ", 3).replace(" ", "\u00a0", 1)),
        "chain_b": (skin[0], with_word(skin[1], 20, "lotion")),
        "chain_c": (skin[0], with_word(with_word(skin[1], 20, "lotion"), 55, "ointment")),
        "music_copy": (music[0], with_word(with_word(music[1], 30, "band"), 31, "albums")),
    }
    tmp = tmp_path_factory.mktemp("dedup")
    online = ["indonesia", "centripetal", "music", "same_instruction", "chain_a", "milkshake"]
    rejection = ["indonesia_variant", "chain_b", "meat"]
    red_team = ["music_copy", "chain_c"]
    files = {
        "helpful_online": write_hh(tmp / "online.jsonl.gz", [x[n] for n in online]),
        "helpful_rejection_sampled": write_hh(tmp / "rejection.jsonl.gz", [x[n] for n in rejection]),
        "red_team_attempts": write_red_team(tmp / "red_team.json", [x[n] for n in red_team]),
    }
    conf = local_conf(tmp, *[f"sources.{s}.paths=[{p}]" for s, p in files.items()])
    run_ingest(spark, conf, RunContext())
    result = run_pairs(spark, conf, RunContext())
    where = {n: ("helpful_online", i) for i, n in enumerate(online)}
    where |= {n: ("helpful_rejection_sampled", i) for i, n in enumerate(rejection)}
    where |= {n: ("red_team_attempts", i) for i, n in enumerate(red_team)}
    return conf, result, x, where


def table_rows(spark, conf, where) -> dict[str, dict]:
    rows = spark.read.format("delta").load(Lake.of(conf).pairs).select("source_name", "row_index", "pair_id", "drop_reason").collect()
    by_key = {(r["source_name"], r["row_index"]): r.asDict() for r in rows}
    return {name: by_key[key] for name, key in where.items()}


def test_planted_duplicates_get_the_right_survivor_and_reason(spark, planted):
    conf, result, x, where = planted
    # The planted near copies are within the default threshold, the chain's ends are not.
    sim = {
        (a, b): ref.jaccard(*(ref.shingles(ref.normalize(f"{x[n][0]} {x[n][1]}"), 5) for n in (a, b)))
        for a, b in [("chain_a", "chain_b"), ("chain_b", "chain_c"), ("chain_a", "chain_c"), ("music", "music_copy")]
    }
    assert sim[("chain_a", "chain_b")] >= 0.8 and sim[("chain_b", "chain_c")] >= 0.8 and sim[("music", "music_copy")] >= 0.8
    assert sim[("chain_a", "chain_c")] < 0.8
    rows = table_rows(spark, conf, where)
    pid = {n: r["pair_id"] for n, r in rows.items()}
    first_of_same_instruction = min(["centripetal", "same_instruction"], key=pid.get)
    other = "same_instruction" if first_of_same_instruction == "centripetal" else "centripetal"
    want = {
        "indonesia": None,
        "indonesia_variant": f"duplicate_of:{pid['indonesia']}",  # across sources: the first source wins
        "centripetal": None,
        "same_instruction": None,
        other: f"duplicate_of:{pid[first_of_same_instruction]}",  # within a source: the smaller pair_id wins
        "music": None,
        "music_copy": f"near_duplicate_of:{pid['music']}",  # an HH pair copied into red team, two words changed
        # The chain A ~ B ~ C, A !~ C: B survives the exact steps, so C is B's near duplicate.
        "chain_a": None,
        "chain_b": f"near_duplicate_of:{pid['chain_a']}",
        "chain_c": f"near_duplicate_of:{pid['chain_b']}",
        "milkshake": None,
        "meat": None,
    }
    assert {n: r["drop_reason"] for n, r in rows.items()} == want
    # Counts are grouped by the reason's kind, in the result and in the CLI summary.
    assert result.counts == [
        ("hh_harmless", "near_duplicate_of", 2),
        ("hh_helpful", None, 6), ("hh_helpful", "duplicate_of", 2), ("hh_helpful", "near_duplicate_of", 1),
    ]


def test_rerun_without_change_adds_no_version_and_a_lost_dedup_commit_is_repaired(spark, planted):
    from delta.tables import DeltaTable

    from instructlake.jobs.stages.pairs import run_pairs

    conf, result, x, where = planted
    lake = Lake.of(conf)
    before = table_rows(spark, conf, where)
    again = run_pairs(spark, conf, RunContext())
    assert again.version == result.version == latest_version(spark, lake.pairs) and again.counts == result.counts
    # A run stopped after the pairs commit (here: one with the same metadata that keeps the near
    # duplicates) and before the dedup commit: the next run recomputes the decision and commits it.
    metadata = json.dumps(commit_metadata(spark, lake.pairs, result.version))
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", metadata)
    try:
        DeltaTable.forPath(spark, lake.pairs).update(F.col("drop_reason").startswith("near_duplicate_of:"), {"drop_reason": F.lit(None)})
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
    assert table_rows(spark, conf, where)["chain_c"]["drop_reason"] is None
    run = RunContext()
    repaired = run_pairs(spark, conf, run)
    assert repaired.version == result.version + 2 and table_rows(spark, conf, where) == before
    assert repaired.counts == result.counts
    # the rows whose reason the repair changed carry its run id
    near = spark.read.format("delta").load(lake.pairs).where(F.col("drop_reason").startswith("near_duplicate_of:"))
    assert near.count() and {r["pairs_run_id"] for r in near.select("pairs_run_id").collect()} == {run.run_id}


def real_pairs(shared_data: Path, n: int) -> list[dict]:
    """`n` first exchanges of the shared HH helpful-online test file and, every fourth, a copy in a
    second source with one to four words changed (some within the threshold, some not)."""
    with gzip.open(shared_data / "hh-rlhf/helpful-online/test.jsonl.gz", "rt", encoding="utf-8") as f:
        exchanges = [e for line, _ in zip(f, range(n)) if (e := first_exchange(json.loads(line)["chosen"]))]
    rows = []
    for i, (instruction, response) in enumerate(exchanges):
        rows.append(("helpful_online", i, instruction, response))
        words = len(response.split())
        if i % 4 == 0 and words > 8:
            for k in range(1 + i % 16 // 4):
                response = with_word(response, (k * 7 + 3) % words, f"changed{k}")
            rows.append(("helpful_rejection_sampled", i, instruction, response))
    return [
        {"source_name": s, "source_file": f"file:/{s}.jsonl.gz", "row_index": r, "item": "", "source": "hh_helpful",
         "instruction": ins, "response": resp, "pair_id": ref.pair_id(ins, resp), "drop_reason": None}
        for s, r, ins, resp in rows
    ]


def test_spark_near_dedup_equals_the_exact_jaccard_reference(spark, shared_data, tmp_path):
    from instructlake.jobs.stages.dedup import dedup_reasons

    rows = real_pairs(shared_data, 400)
    # 40 bands of 3 rows: a pair at similarity 0.8 is a candidate with probability 1 - 3e-13.
    threshold = 0.8
    conf = local_conf(tmp_path, f"dedup.threshold={threshold}", "dedup.bands=40", "dedup.rows_per_band=3", "dedup.near_sources=null")
    order = [s.name for s in conf.enabled_sources]
    df = spark.createDataFrame(rows, "source_name string, source_file string, row_index long, item string, source string, "
                               "instruction string, response string, pair_id string, drop_reason string")
    df = df.withColumn("drop_stage", F.lit(None).cast("string"))
    got = {(r["source_name"], r["row_index"]): r["drop_reason"] for r in dedup_reasons(df, conf).collect()}
    for r in rows:
        r["key"] = (order.index(r["source_name"]), r["pair_id"], r["source_file"], r["row_index"], "")
    reasons = ref.dedup(rows, 5, threshold)
    want = {(r["source_name"], r["row_index"]): reasons[r["key"]] for r in rows}
    assert got == want
    near = [v for v in want.values() if v and v.startswith("near_duplicate_of:")]
    assert len(near) >= 30  # the planted copies are found: not two empty results compared


def test_conf_rejects_an_unknown_near_source_label_and_a_bad_threshold(tmp_path):
    from instructlake.core.confload import ConfigError

    with pytest.raises(ConfigError, match=r"dedup\.near_sources: unknown source label 'nope'"):
        local_conf(tmp_path, "dedup.near_sources=[nope]")
    with pytest.raises(ConfigError, match=r"dedup\.threshold"):
        local_conf(tmp_path, "dedup.threshold=1.5")
