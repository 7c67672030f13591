"""The benchmark harness (`benchmarks/run_bench.py`, what `make bench` runs) end to end at a
small N: it generates the data set, runs the plain script and instructlake (a fresh JVM, then
the same work again in that warm JVM), checks that they produce the same pairs and prints the
table. Its own Spark process, as `make bench` starts it; the timings themselves are not tested."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

IMPLS = ["baseline", "instructlake", "instructlake, warm JVM"]


def test_bench_runs_both_implementations_and_they_make_the_same_pairs(tmp_path):
    n = 400
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run_bench.py"), "--n", str(n), "--data", str(tmp_path / "data"),
         "--work", str(work), "--driver-memory", "1g"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "data" / str(n) / "gen.json").read_text())["n"] == n
    rows = json.loads((work / "results.json").read_text())
    assert [r["impl"] for r in rows] == IMPLS
    assert all(r["n"] == n and r["same_pairs"] and r["rows_read"] == n for r in rows)
    kept = {r["rows_kept"] for r in rows}
    assert len(kept) == 1 and 0 < next(iter(kept)) < n  # the filters drop some, never all
    cold, warm = rows[1], rows[2]
    assert cold["session_s"] > 0 and warm["session_s"] is None  # the warm run starts no session
    for r in (cold, warm):
        assert r["work_s"] == sum(r[f"{stage}_s"] for stage in ("ingest", "pairs", "export")) > 0
        assert 0 < r["peak_rss"]["jvm"] <= r["peak_rss"]["total"]  # each run's own peak, the JVM's included
    assert rows[0]["peak_rss"]["total"] > 0 and rows[0]["peak_rss"]["jvm"] == 0  # the baseline: Python alone
    # --driver-memory reached the JVM: its heap is the 1 GiB asked for (less a survivor space with
    # some collectors), not the default 2 GiB.
    assert rows[0]["jvm_max_heap"] is None and cold["jvm_max_heap"] == warm["jvm_max_heap"]
    assert 0.9 * (1 << 30) <= cold["jvm_max_heap"] <= 1 << 30
    # What the JVM holds beyond the heap, from its memory beans: peaks, so the warm run's are at least
    # the cold's; all of it within the JVM's RSS.
    assert rows[0]["jvm_off_heap"] is None
    for kind in ("metaspace", "code"):
        assert 0 < cold["jvm_off_heap"][kind] <= warm["jvm_off_heap"][kind]
    for r in (cold, warm):
        assert sum(r["jvm_off_heap"].values()) < r["peak_rss"]["jvm"]
    # The table: a header, a rule, one line per implementation that says the pairs are the same.
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["N", "impl"] and set(lines[1]) <= {"-", " "}
    body = lines[2:5]
    assert [line.split()[1] for line in body] == ["baseline", "instructlake", "instructlake,"]
    assert all(" yes " in line for line in body)
    assert "--driver-memory 1g (the JVM's max heap: " in proc.stdout
    assert sum(line.startswith(f"N={n} instructlake") and "beyond the heap, metaspace" in line for line in lines) == 2
    assert not (work / str(n)).exists()  # the lakes and outputs are removed unless --keep


def test_memory_breakdown_of_the_jvm_at_a_small_n(tmp_path):
    """`benchmarks/bench_memory.py`: the JVM's RSS split by its own Native Memory Tracking, at the
    peak and after each stage, in a fresh JVM with a 1 GiB heap."""
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("jcmd") and not (java_home and (Path(java_home) / "bin" / "jcmd").is_file()):
        pytest.skip("jcmd is not installed (it comes with a JDK)")
    n, work = 400, tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_memory.py"), "--n", str(n), "--data", str(tmp_path / "data"),
         "--work", str(work), "--driver-memory", "1g"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [result] = json.loads((work / "memory.json").read_text())
    assert result["n"] == n and 0.9 * (1 << 30) <= result["heap_max"] <= 1 << 30
    moments = [*result["after"].values(), result["peak"]]
    assert list(result["after"]) == ["ingest", "pairs", "export"] and all(m["seconds"] > 0 for m in result["after"].values())
    for m in moments:
        # The heap committed never exceeds the configured one; the JVM's own native memory (metaspace,
        # code, GC, threads) is there; the three parts add up to the anonymous RSS, within the RSS.
        assert 0 < m["heap"] <= result["heap_max"] and m["jvm_native"] > 50 << 20
        assert m["heap"] + m["jvm_native"] + m["untracked"] <= m["rss"]
    assert result["peak"]["rss"] == max(m["rss"] for m in moments)
    assert result["peak"]["stage"] in ("ingest", "pairs", "export")
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["N", "when"] and sum(line.startswith(f"{n} ") for line in lines) == 4
    assert "--driver-memory 1g (the JVM's max heap: " in proc.stdout
    assert not (work / f"memory-{n}").exists()
