"""The peers benchmark's parts (`benchmarks/peers.py`): the DuckDB port of the cheap path keeps the
same pairs as the plain script (which `tests/test_bench.py` checks against instructlake), and the
event-log reader finds the stages that stay at one task while their input grows. The timings
themselves are not tested."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO))

from benchmarks.run_bench import element_digests  # noqa: E402
from benchmarks.spark_jobs import listing, read_jobs, serial_stages  # noqa: E402

pytest.importorskip("duckdb")


def test_duckdb_keeps_the_same_pairs_as_the_plain_script(tmp_path):
    from benchmarks.gen_scale import generate

    data = generate(600, tmp_path / "data")
    outs = {}
    for name, script, extra in (("plain", "baseline.py", []), ("duckdb", "duckdb_peer.py", ["--threads", "1"])):
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), str(data), str(tmp_path / name),
                               "--rows-per-part", "100", *extra], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[name] = json.loads(proc.stdout.splitlines()[-1])
        outs[name]["elements"] = element_digests(sorted((tmp_path / name).glob("*_part*.json")))
    plain, duck = outs["plain"], outs["duckdb"]
    assert duck["rows_read"] == plain["rows_read"] == 600
    assert 0 < duck["rows_kept"] == plain["rows_kept"] < 600  # the filters drop some, never all
    assert duck["elements"] == plain["elements"]
    assert duck["parts"] == plain["parts"] == -(-plain["rows_kept"] // 100)


def _events(stages: list[tuple[int, int, int]]) -> list[dict]:
    """A job per (stage id, tasks, bytes read by its one task)."""
    out = []
    for job, (stage, tasks, read) in enumerate(stages):
        info = {"Stage ID": stage, "Stage Name": f"collect at x.py:{stage}", "Number of Tasks": tasks,
                "Submission Time": 1000, "Completion Time": 3000}
        out += [
            {"Event": "SparkListenerJobStart", "Job ID": job, "Submission Time": 1000, "Stage Infos": [info],
             "Properties": {"callSite.short": f"collect at x.py:{stage}"}},
            {"Event": "SparkListenerTaskEnd", "Stage ID": stage, "Task Info": {"Launch Time": 1000, "Finish Time": 2000},
             "Task Metrics": {"Input Metrics": {"Bytes Read": read, "Records Read": read // 100}}},
            {"Event": "SparkListenerStageCompleted", "Stage Info": info},
            {"Event": "SparkListenerJobEnd", "Job ID": job, "Completion Time": 3000},
        ]
    return out


def test_a_stage_that_stays_at_one_task_while_its_input_grows_is_named(tmp_path):
    mib = 1 << 20
    logs = []
    for n, scale in (("small", 1), ("large", 10)):
        # job 0: one task over a growing input (serial); job 1: one task over a fixed small input (a
        # final aggregate); job 2: tasks that grow with the input (parallel)
        path = tmp_path / f"events_1_{n}"
        lines = _events([(0, 1, 50 * mib * scale), (1, 1, 1000), (2, 4 * scale, 50 * mib * scale)])
        path.write_text("".join(json.dumps(e) + "\n" for e in lines))
        logs.append(read_jobs([path]))
    small, large = logs
    assert [j.site for j in large] == ["collect at x.py:0", "collect at x.py:1", "collect at x.py:2"]
    assert [[s.tasks for s in j.run_stages] for j in large] == [[1], [1], [40]]
    assert large[0].seconds == 2.0 and large[0].run_stages[0].bytes_in == 500 * mib
    found = serial_stages(small, large)
    assert len(found) == 1 and found[0].startswith("job 0 (collect at x.py:0): stage 'collect at x.py:0' one task, input 50.0 -> 500.0 MiB")
    assert listing(large).splitlines()[0] == "3 jobs, 6.0 s in jobs"
