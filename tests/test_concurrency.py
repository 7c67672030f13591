"""Two runs on one lake: the lake's lock makes them take turns, and a lost Delta commit race is
run again or ends in one line."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from conftest import CHEAP, REPO, local_conf, release_dir
from test_reliability import GOOD, Paused, cli_args, jsonl, part_bytes
from instructlake.core.config import Paths
from instructlake.core.lake import Lake, RunContext, conflict_of, merge_rows
from instructlake.core.lock import LOCK_FILE, holding
from instructlake.core.storage import machine_local
from instructlake.jobs import runner
from instructlake.jobs.runner import ConcurrentWriteError, Options, Stage, run_pipeline

ONLY_HH = ["sources.helpful_rejection_sampled.enabled=false", "sources.red_team_attempts.enabled=false",
           "sources.wikitext.enabled=false"]


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "instructlake.jobs.cli", *args], cwd=REPO, text=True,
                            env={**os.environ, "PYSPARK_PYTHON": sys.executable},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """The process's stderr lines up to the first that contains `text`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if text in line:
                return lines
    proc.kill()
    pytest.fail(f"no line with {text!r}:\n{''.join(lines)[-3000:]}")


def test_only_local_folders_are_locked():
    assert machine_local("file:///tmp/lake") == "/tmp/lake" and machine_local("/tmp/lake/") == "/tmp/lake"
    for shared in ("s3a://bucket/lake", "abfss://c@a.dfs.core.windows.net/lake", "dbfs:/lake",
                   "/Volumes/main/x/lake", "/dbfs/lake", "/Workspace/Users/lake"):
        assert machine_local(shared) is None
    assert Paths().lock_wait_s == 3600


def test_a_run_that_cannot_have_the_lock_stops_with_one_line(tmp_path):
    """The lock is taken before Spark starts: a run finding it held stops at once, naming the holder."""
    lake, out = tmp_path / "lake", tmp_path / "out"
    with holding([(f"lake {lake}", lake.as_uri())], wait_s=0):
        with holding([(f"lake {lake}", lake.as_uri())], wait_s=0):  # re-entrant in one process
            pass
        proc = subprocess.run(
            [sys.executable, "-m", "instructlake.jobs.cli", "pairs", "--conf", str(CHEAP), "--lake", lake.as_uri(),
             "--output", out.as_uri(), "--set", "paths.lock_wait_s=0.3"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 2, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"instructlake: error: lake {lake} is in use by pid {os.getpid()} on ")
    assert "waited 0.3s (paths.lock_wait_s)" in error and "Traceback" not in proc.stderr
    assert not (lake / "bronze").exists()  # nothing was written
    # Released with its holder: now anyone may take it.
    with holding([(f"lake {lake}", lake.as_uri())], wait_s=0):
        assert json.loads((lake / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_two_runs_and_a_racing_pairs_take_turns_and_publish_one_release(spark, tmp_path):
    """`run` is stopped mid-ingest (holding the lake); a second `run` and a `pairs` wait for it.
    When the first dies (SIGKILL: its lock goes with it), the others go on in turn: no row lost
    or doubled, and the release equals an undisturbed run's."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(jsonl(GOOD[:150]) + b"{bad line\n")
    (raw / "b.jsonl").write_bytes(jsonl(GOOD[150:]))
    hh = [f"sources.helpful_online.paths=[{raw}]", *ONLY_HH]
    first = Paused(tmp_path, "ingest.bronze_written", [*cli_args("run", CHEAP, tmp_path), *sets(*hh)])
    first.wait_for_checkpoint()
    second = cli([*cli_args("run", CHEAP, tmp_path), *sets(*hh)])
    racing = cli([*cli_args("pairs", CHEAP, tmp_path), *sets(*hh)])
    for waiting in (second, racing):
        seen = wait_for_line(waiting, "is in use by")
        assert f"pid {first.proc.pid}" in seen[-1] and "`instructlake run" in seen[-1]
    first.kill_all()
    for proc in (second, racing):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    conf = local_conf(tmp_path, *hh)
    lake = Lake.of(conf)
    bronze = spark.read.format("delta").load(lake.bronze("helpful_online"))
    assert bronze.count() == 300 and bronze.select("source_file", "row_index").distinct().count() == 300
    assert [r["reason"] for r in spark.read.format("delta").load(lake.quarantine).collect()] == ["malformed_json"]
    pairs = spark.read.format("delta").load(lake.pairs)
    assert pairs.count() == 300 and pairs.select("source_file", "row_index", "item").distinct().count() == 300
    undisturbed = local_conf(tmp_path / "u", *hh)
    run_pipeline(spark, undisturbed, RunContext())
    assert part_bytes(tmp_path / "out") == part_bytes(tmp_path / "u" / "out")
    manifest = json.loads((release_dir(tmp_path / "out") / "manifest.json").read_text())
    for part in manifest["parts"]:
        assert hashlib.sha256((release_dir(tmp_path / "out") / part["file"]).read_bytes()).hexdigest() == part["sha256"]


def lost_commit_race(spark, uri: str, tmp_path: Path) -> Exception:
    """A real lost race: a MERGE whose source waits, in its Spark task, until a DELETE of the same
    table has committed; Delta then refuses the MERGE's commit. Returns the MERGE's exception."""
    started, go = tmp_path / "merge-started", tmp_path / "delete-committed"

    def wait_for_delete(batches):
        started.touch()
        while not go.exists():
            time.sleep(0.02)
        yield from batches

    source = spark.range(5).select(F.col("id").alias("k"), F.lit("new").alias("v")).repartition(1) \
        .mapInPandas(wait_for_delete, "k long, v string")
    caught: list[Exception] = []

    def merge():
        try:
            merge_rows(spark, source, uri, ["k"], {"stage": "test"}, update_when="true")
        except Exception as e:  # noqa: BLE001: the test inspects it
            caught.append(e)

    thread = threading.Thread(target=merge)
    thread.start()
    while not started.exists() and thread.is_alive():
        time.sleep(0.02)
    spark.sql(f"DELETE FROM delta.`{uri}` WHERE k = 1")
    go.touch()
    thread.join()
    assert len(caught) == 1, "the MERGE committed despite the DELETE"
    return caught[0]


def test_a_lost_delta_commit_race_runs_the_stage_again_or_ends_in_one_line(spark, tmp_path, caplog):
    uri = (tmp_path / "t").as_uri()
    spark.range(5).select(F.col("id").alias("k"), F.lit("old").alias("v")).write.format("delta").save(uri)
    error = lost_commit_race(spark, uri, tmp_path)
    kind, line = conflict_of(error)
    assert kind.startswith("DELTA_CONCURRENT_") and "concurrent" in line and "\n" not in line
    assert conflict_of(RuntimeError("wrapped")) is None
    wrapped = RuntimeError("stage failed")
    wrapped.__cause__ = error
    assert conflict_of(wrapped) == conflict_of(error)

    calls = []

    def flaky(spark_, conf, run, options):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return "done"

    conf = local_conf(tmp_path)
    with caplog.at_level(logging.WARNING, logger="instructlake.run"):
        assert runner._attempts(Stage("pairs", "", flaky), spark, conf, RunContext(), Options()) == "done"
    assert len(calls) == 2 and "running the stage again (attempt 2 of 3)" in caplog.text

    def always(spark_, conf, run, options):
        raise error

    with pytest.raises(ConcurrentWriteError) as stopped:
        runner._attempts(Stage("pairs", "", always), spark, conf, RunContext(), Options())
    message = str(stopped.value)
    assert "\n" not in message and message.startswith("stage pairs: another writer changed the same Delta tables 3 times")
    assert line[:200] in message and "Py4J" not in message
