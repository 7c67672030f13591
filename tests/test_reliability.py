"""Faults injected for real: bad bytes on disk, SIGKILL of real processes, a killed Python worker."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from conftest import CHEAP, NO_CODE_ARGS, REPO, local_conf, release_dir
from instructlake.jobs.stages.export import run_export
from instructlake.jobs.stages.ingest import run_ingest
from instructlake.core.lake import Lake, RunContext
from instructlake.jobs.stages.pairs import run_pairs
from instructlake.jobs.runner import run_pipeline
from instructlake.udfs.filters import reason_kind

GOOD = [
    {"chosen": f"\n\nHuman: Question number {i}?\n\nAssistant: " + "A helpful answer. " * 8, "rejected": "x"}
    for i in range(300)
]


def jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def part_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in release_dir(out).glob("*_part*.json")}


def only_hh(tmp_path, paths, *extra):
    return local_conf(
        tmp_path, f"sources.helpful_online.paths={json.dumps([str(p) for p in paths])}",
        "sources.helpful_rejection_sampled.enabled=false", "sources.red_team_attempts.enabled=false", *extra,
    )


# --- 1. bad input -----------------------------------------------------------

def test_bad_input_is_quarantined_with_reasons(spark, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = [
        json.dumps(GOOD[0]),
        "{corrupt json",
        json.dumps({"rejected": "no chosen"}),
        json.dumps({"chosen": ["not", "a", "string"], "rejected": "x"}),
        "",
        json.dumps(GOOD[1]),
    ]
    mixed = raw / "mixed.jsonl"
    mixed.write_bytes(("\n".join(lines) + "\n").encode() + json.dumps({"chosen": "caf\xe9", "rejected": "x"}, ensure_ascii=False).encode("latin-1") + b"\n")
    full = gzip.compress(jsonl(GOOD[:200]), mtime=0)
    truncated = raw / "truncated.jsonl.gz"
    truncated.write_bytes(full[: len(full) // 2])
    (raw / "empty.jsonl").write_bytes(b"")
    rt_lines = tmp_path / "rt" / "red_team_lines.jsonl"
    rt_lines.parent.mkdir()
    rt_lines.write_text('{"transcript": "\\n\\nHuman: a\\n\\nAssistant: b", "rating": 0}\n{"transcript": "x", "rating": 1}\n')
    rt_broken = tmp_path / "rt" / "broken_array.json"
    rt_broken.write_text('[{"transcript": "\\n\\nHuman: How do I choose a strong password?\\n\\nAssistant: Use a long passphrase made of several random words, and never reuse it on other websites.", "rating": 0.0}, {"transcript": 5}, {"transcript": "\\n\\nHuman: cut')

    conf = local_conf(
        tmp_path, f"sources.helpful_online.paths=[{raw}]", "sources.helpful_rejection_sampled.enabled=false",
        f"sources.red_team_attempts.paths=[{tmp_path / 'rt'}]",
    )
    result = run_pipeline(spark, conf, RunContext())
    lake = Lake.of(conf)
    q = {
        (Path(r["source_file"]).name, r["row_index"], r["reason"])
        for r in spark.read.format("delta").load(lake.quarantine).collect()
    }
    # What a truncated gzip stream still holds: its complete lines get through.
    partial = zlib.decompressobj(wbits=31).decompress(full[: len(full) // 2])
    complete = partial.count(b"\n")
    expected_q = {
        ("mixed.jsonl", 1, "malformed_json"),
        ("mixed.jsonl", 2, "missing_field:chosen"),
        ("mixed.jsonl", 3, "wrong_type:chosen"),
        ("mixed.jsonl", 4, "blank_line"),
        ("mixed.jsonl", 6, "invalid_utf8"),
        ("truncated.jsonl.gz", -1, "truncated_gzip"),
        ("empty.jsonl", -1, "empty_file"),
        ("red_team_lines.jsonl", 0, "not_a_json_array"),
        ("broken_array.json", 1, "wrong_type:transcript"),
        ("broken_array.json", 2, "malformed_json"),
    }
    if partial.endswith(b"\n"):
        assert q == expected_q
    else:  # the cut line, if the reader hands it over, is quarantined as what it is
        assert q - {("truncated.jsonl.gz", complete, "malformed_json")} == expected_q
    bronze = spark.read.format("delta").load(lake.bronze("helpful_online"))
    per_file = {Path(r["source_file"]).name: r["count"] for r in bronze.groupBy("source_file").count().collect()}
    assert per_file == {"mixed.jsonl": 2, "truncated.jsonl.gz": complete}
    assert spark.read.format("delta").load(lake.bronze("red_team_attempts")).count() == 1
    # rows read = ingested + quarantined, file by file, in the manifest.
    inputs = {Path(i["uri"]).name: i for i in result.export.manifest["inputs"]}
    assert set(inputs) == {"mixed.jsonl", "truncated.jsonl.gz", "empty.jsonl", "red_team_lines.jsonl", "broken_array.json"}
    for i in inputs.values():
        assert i["rows_read"] == i["rows_ingested"] + i["rows_quarantined"]
    assert (inputs["mixed.jsonl"]["rows_read"], inputs["mixed.jsonl"]["rows_quarantined"]) == (7, 5)
    assert inputs["truncated.jsonl.gz"]["file_errors"] == ["truncated_gzip"]
    assert inputs["empty.jsonl"] == {**inputs["empty.jsonl"], "rows_read": 0, "file_errors": ["empty_file"]}
    assert inputs["broken_array.json"]["rows_read"] == 3
    # The good pairs made it to the dataset.
    # (mixed.jsonl's two good dialogues are in the truncated file too: one of each pair is a duplicate.)
    helpful = result.export.manifest["counts"]["hh_helpful"]
    assert (helpful["kept"], helpful["dropped"]["dedup"]) == (complete, {"rows": 2, "reasons": {"duplicate_of": 2}})
    assert result.export.manifest["counts"]["hh_harmless"]["kept"] == 1


def test_unreadable_conf_and_missing_conf_stop_at_once(tmp_path):
    """(A missing input path: tests/test_pipeline.py; a conf error: the CLI tests there.)"""
    unreadable = tmp_path / "a-folder.yaml"  # a folder: unreadable even for root, who reads any file
    unreadable.mkdir()
    proc = subprocess.run([sys.executable, "-m", "instructlake.jobs.cli", "ingest", "--conf", str(unreadable)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and f"{unreadable}: cannot read configuration file" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    proc = subprocess.run([sys.executable, "-m", "instructlake.jobs.cli", "ingest", "--conf", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and f"{tmp_path / 'nope.yaml'}: configuration file not found" in proc.stderr


# --- 2 and 3. idempotent and incremental ------------------------------------

def test_incremental_build_processes_only_new_rows(spark, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(jsonl(GOOD[:100]))
    conf = only_hh(tmp_path, [raw])
    first = run_pipeline(spark, conf, RunContext(run_id="run-1"))
    lake = Lake.of(conf)
    (raw / "b.jsonl.gz").write_bytes(gzip.compress(jsonl(GOOD[100:150]), mtime=0))
    second = run_pipeline(spark, conf, RunContext(run_id="run-2"))
    assert [r.read_files for r in second.ingest] == [[(raw / "b.jsonl.gz").as_uri().replace("file:///", "file:/")]]
    bronze = spark.read.format("delta").load(lake.bronze("helpful_online"))
    assert {(Path(r["source_file"]).name, r["ingest_run_id"]): r["count"] for r in bronze.groupBy("source_file", "ingest_run_id").count().collect()} == {
        ("a.jsonl", "run-1"): 100, ("b.jsonl.gz", "run-2"): 50,
    }
    pairs = spark.read.format("delta").load(lake.pairs)
    # Rows of the untouched file were not rescored: they keep the first run's id.
    assert {(Path(r["source_file"]).name, r["pairs_run_id"]): r["count"] for r in pairs.groupBy("source_file", "pairs_run_id").count().collect()} == {
        ("a.jsonl", "run-1"): 100, ("b.jsonl.gz", "run-2"): 50,
    }
    assert second.export.total_rows == 150 > first.export.total_rows
    # The republished parts equal a full build from scratch on the same files.
    fresh = run_pipeline(spark, only_hh(tmp_path / "fresh", [raw]), RunContext())
    assert part_bytes(tmp_path / "out") == part_bytes(tmp_path / "fresh" / "out")
    assert fresh.export.parts == second.export.parts
    # A changed file replaces its rows; a removed file's rows leave bronze and silver.
    (raw / "a.jsonl").write_bytes(jsonl(GOOD[:10]))
    (raw / "b.jsonl.gz").unlink()
    third = run_pipeline(spark, conf, RunContext(run_id="run-3"))
    assert spark.read.format("delta").load(lake.bronze("helpful_online")).count() == 10
    assert spark.read.format("delta").load(lake.pairs).count() == 10 and third.export.total_rows == 10


# --- 4. crash-safe publishing and ingest ------------------------------------

class Paused:
    """A real CLI process run until it reaches a named checkpoint, where it blocks until killed."""

    def __init__(self, tmp_path: Path, checkpoint: str, args: list[str]):
        self.fifo = tmp_path / f"pause-{checkpoint}.fifo"
        os.mkfifo(self.fifo)
        self.reader = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.keepalive = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)  # no EOF before the process writes
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "INSTRUCTLAKE_PAUSE_AT": checkpoint, "INSTRUCTLAKE_PAUSE_FIFO": str(self.fifo)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "instructlake.jobs.cli", *args], cwd=REPO, env=env, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def wait_for_checkpoint(self, timeout: float = 300) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            ready, _, _ = select.select([self.reader], [], [], 1.0)
            if ready:
                buf += os.read(self.reader, 4096)
            elif self.proc.poll() is not None:
                out, err = self.proc.communicate()
                pytest.fail(f"process ended ({self.proc.returncode}) before its checkpoint:\n{err[-3000:]}")
            elif time.monotonic() > deadline:
                self.kill_all()
                pytest.fail("checkpoint not reached in time")
        name, pid = buf.decode().split()
        return name, int(pid)

    def kill_all(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        os.close(self.reader)
        os.close(self.keepalive)


def cli_args(stage, conf_path, tmp_path):
    return [stage, "--conf", str(conf_path), "--set", f"paths.lake={(tmp_path / 'lake').as_uri()}",
            "--set", f"paths.output={(tmp_path / 'out').as_uri()}", *NO_CODE_ARGS]


def test_export_killed_mid_write_leaves_previous_release(spark, tmp_path):
    conf = local_conf(tmp_path, "export.rows_per_part=100")
    run_pipeline(spark, conf, RunContext())
    out = tmp_path / "out"
    previous = release_dir(out)
    previous_bytes = {p.name: p.read_bytes() for p in previous.iterdir()}
    # A new build differs: fewer pairs kept.
    changed = local_conf(tmp_path, "export.rows_per_part=100", "filters.response_length.min_chars=400")
    run_pairs(spark, changed)
    paused = Paused(tmp_path, "export.part_published", [*cli_args("export", CHEAP, tmp_path),
                                                           "--set", "export.rows_per_part=100"])
    name, pid = paused.wait_for_checkpoint()
    assert name == "export.part_published" and pid == paused.proc.pid
    paused.kill_all()  # SIGKILL to the driver and its JVM, with one part of the new release written
    assert paused.proc.returncode == -signal.SIGKILL
    # Readers still see the previous complete release, byte for byte.
    assert release_dir(out) == previous
    assert {p.name: p.read_bytes() for p in previous.iterdir()} == previous_bytes
    half_written = [d for d in (out / "releases").iterdir() if d != previous]
    assert len(half_written) == 1 and not (half_written[0] / "manifest.json").exists()
    assert len(list(half_written[0].glob("*_part*.json"))) == 1
    # A re-run publishes the new release: the same bytes as an uninterrupted export, and clears the debris.
    rerun = run_export(spark, changed, RunContext())
    uninterrupted = run_export(spark, local_conf(tmp_path / "u", f"paths.lake={(tmp_path / 'lake').as_uri()}", "export.rows_per_part=100",
                                                 "filters.response_length.min_chars=400"), RunContext())
    assert part_bytes(out) == part_bytes(tmp_path / "u" / "out") and part_bytes(out) != {k: v for k, v in previous_bytes.items() if "_part" in k}
    assert rerun.total_rows == uninterrupted.total_rows
    assert not half_written[0].exists() and not (out / "_staging").exists()
    manifest = json.loads((release_dir(out) / "manifest.json").read_text())
    for part in manifest["parts"]:
        assert hashlib.sha256((release_dir(out) / part["file"]).read_bytes()).hexdigest() == part["sha256"]


def test_ingest_killed_between_commits_then_rerun(spark, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(jsonl(GOOD[:120]) + b"{bad line\n")
    only = [f"sources.helpful_online.paths=[{raw}]", "sources.helpful_rejection_sampled.enabled=false",
            "sources.red_team_attempts.enabled=false"]
    args = cli_args("ingest", CHEAP, tmp_path)
    paused = Paused(tmp_path, "ingest.bronze_written", [*args, *[a for o in only for a in ("--set", o)]])
    paused.wait_for_checkpoint()
    paused.kill_all()  # bronze committed; quarantine and ingest log not yet
    conf = local_conf(tmp_path, *only)
    lake = Lake.of(conf)
    assert spark.read.format("delta").load(lake.bronze("helpful_online")).count() == 120
    result = run_ingest(spark, conf, RunContext())
    bronze = spark.read.format("delta").load(lake.bronze("helpful_online"))
    assert bronze.count() == 120 and bronze.select("row_index").distinct().count() == 120
    assert sorted(r[0] for r in bronze.select("row_index").collect()) == list(range(120))
    q = spark.read.format("delta").load(lake.quarantine).collect()
    assert [(r["row_index"], r["reason"]) for r in q] == [(120, "malformed_json")]
    assert (result[0].rows, result[0].quarantined) == (120, 1)


# --- 6. task retries ----------------------------------------------------------

def test_killed_python_workers_are_retried(spark, tmp_path):
    """One run loses a Python worker twice: in the ingest's red-team array split, and in the pairs
    stage's language scorer (a pandas UDF) after a batch. Spark retries each task; the tables equal
    an undisturbed run's."""
    import yaml

    # the scorer whose worker is killed, alone but for the template-token filter the export requires
    language_only = "filters=[{rule: template_tokens}, {rule: language}]"
    conf = local_conf(tmp_path, language_only)
    reference_conf = local_conf(tmp_path / "u", language_only)
    run_ingest(spark, reference_conf, RunContext())
    undisturbed = run_pairs(spark, reference_conf)
    conf_file = tmp_path / "conf.yaml"  # exactly the conf of this test, for the process to kill
    conf_file.write_text(yaml.safe_dump(conf.as_dict()))
    paused = Paused(tmp_path, "worker.red_team_split,worker.language_scored",
                    ["run", "--conf", str(conf_file), "--set", "spark.master=local[2,4]"])
    for checkpoint in ("worker.red_team_split", "worker.language_scored"):
        name, pid = paused.wait_for_checkpoint()
        assert name == checkpoint and pid != paused.proc.pid  # a Python worker, not the driver
        os.kill(pid, signal.SIGKILL)
    out, err = paused.proc.communicate(timeout=600)
    os.close(paused.reader)
    os.close(paused.keepalive)
    assert paused.proc.returncode == 0, err[-3000:]
    cols = ["source_file", "row_index", "content_id", "transcript", "rating"]
    got = spark.read.format("delta").load(Lake.of(conf).bronze("red_team_attempts")).select(*cols).orderBy("row_index").collect()
    want = spark.read.format("delta").load(Lake.of(reference_conf).bronze("red_team_attempts")).select(*cols).orderBy("row_index").collect()
    assert len(got) == 60 and [r[1:] for r in got] == [r[1:] for r in want]
    cols = ["source_name", "source_file", "row_index", "instruction", "response", "lang", "lang_prob", "drop_reason"]

    def rows(c):
        return spark.read.format("delta").load(Lake.of(c).pairs).select(*cols).orderBy(*cols[:3]).collect()

    got, want = rows(conf), rows(reference_conf)
    assert len(got) == 660 and sum(r["lang"] is not None for r in got) > 600
    # Same rows, scores and reasons as the undisturbed run (the files differ only by folder).
    strip = [(r["source_name"], Path(r["source_file"]).name, *list(r)[2:]) for r in got]
    assert strip == [(r["source_name"], Path(r["source_file"]).name, *list(r)[2:]) for r in want]
    kinds = spark.read.format("delta").load(Lake.of(conf).pairs).groupBy("source", reason_kind(F.col("drop_reason")).alias("kind"))
    assert sorted(undisturbed.counts, key=str) == sorted([(r["source"], r["kind"], r["count"]) for r in kinds.count().collect()], key=str)
