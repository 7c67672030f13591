"""Programs per second of the sandbox: every MBPP train task run with its own code and tests.

Runs the tasks one after the other in this process (`instructlake.udfs.sandbox.run_program`),
first under bubblewrap, then under the `process` fallback, and prints for each
the programs per second, the mean and 95th-percentile seconds per program, and
the statuses (the pass rate of MBPP's own solutions). One program at a time is
one core; the pipeline runs `spark.default.parallelism` of them at once.

    .venv/bin/python benchmarks/bench_sandbox.py [--mbpp data/sample/mbpp/mbpp.jsonl] [--kinds bwrap process]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instructlake.jobs.sources.mbpp import mbpp_split  # noqa: E402
from instructlake.udfs.sandbox import SandboxSettings, run_program  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mbpp", default=str(REPO / "data" / "sample" / "mbpp" / "mbpp.jsonl"))
    p.add_argument("--kinds", nargs="+", default=["bwrap", "process"])
    args = p.parse_args()
    tasks = [t for t in map(json.loads, Path(args.mbpp).read_text(encoding="utf-8").splitlines()) if mbpp_split(t["task_id"]) == "train"]
    for kind in args.kinds:
        settings = SandboxSettings(kind=kind)
        seconds, statuses = [], Counter()
        started = time.monotonic()
        for t in tasks:
            code = (t["test_setup_code"] or "") + "\n" + t["code"]
            r = run_program(code, "\n".join(t["test_list"]), settings)
            seconds.append(r.duration_s)
            statuses[r.status if r.status == "passed" else f"{r.status}:{r.reason}"] += 1
        wall = time.monotonic() - started
        p95 = sorted(seconds)[int(0.95 * (len(seconds) - 1))]
        print(f"{kind:8s} {len(tasks)} programs in {wall:.1f}s: {len(tasks) / wall:.1f}/s, "
              f"mean {statistics.mean(seconds) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; "
              f"passed {statuses['passed']}/{len(tasks)}; {dict(sorted(statuses.items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
