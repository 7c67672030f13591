"""Time of an export by what it writes, on a lake that `make run` (or any pipeline run) built.

Each variant is one `run_export` into a fresh output folder, after a warm-up
export (Spark started, the pairs table read once):

- parts: `export.formats: [json_parts]`, the default (parts, report, card);
- all: json_parts, jsonl, chat and parquet (validation fraction 0.05).

The report and card are part of both. Prints seconds per variant and the
rows exported.

    .venv/bin/python benchmarks/bench_export.py [--conf conf/local.yaml] [--repeat 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VARIANTS = {
    "parts": ["export.formats=[json_parts]"],
    "all": ["export.formats=[json_parts,jsonl,chat,parquet]"],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conf", default=str(REPO / "conf" / "local.yaml"))
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()

    from instructlake.jobs.runner import load_config
    from instructlake.jobs.stages.export import run_export
    from instructlake.core.lake import RunContext
    from instructlake.core.session import get_spark

    base = load_config(args.conf)
    spark = get_spark(base.spark)
    with tempfile.TemporaryDirectory() as tmp:
        def export(name: str, overrides: list[str]) -> tuple[float, int]:
            conf = load_config(args.conf, [*overrides, f"paths.output={Path(tmp, name).as_uri()}"])
            started = time.monotonic()
            result = run_export(spark, conf, RunContext())
            return time.monotonic() - started, result.total_rows

        export("warmup", VARIANTS["parts"])
        for name, overrides in VARIANTS.items():
            times = []
            for i in range(args.repeat):
                seconds, rows = export(f"{name}{i}", overrides)
                times.append(seconds)
            print(f"{name:<6} {rows} rows: " + ", ".join(f"{t:.1f}s" for t in times) + f" (best {min(times):.1f}s)")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
