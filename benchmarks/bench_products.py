"""The cost of the preference and conversations products at N dialogues (default 10^5).

On a data set of `benchmarks/gen_scale.py` (run it first: `--n 100000`), with
`benchmarks/bench.yaml`'s cheap filters: ingest, the pairs table, then each
product's silver table timed on its own; then exports into fresh folders,
alternating, `--repeat` times: the pairs' JSON parts alone, the parts plus the
preference product (conversational and standard), the parts plus the
conversations product (chat, openai, sharegpt). A product's export cost is its
export's time minus the parts-only time measured in the same round.

    .venv/bin/python benchmarks/bench_products.py [--n 100000] [--data bench-data] [--repeat 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.run_bench import aligned, bench_conf  # noqa: E402

ON = ["products.preference.enabled=true", "products.conversations.enabled=true"]  # bench.yaml has them off
OFF = {"preference": "products.preference.enabled=false", "conversations": "products.conversations.enabled=false"}
VARIANTS = {
    "pairs only": ["export.formats=[json_parts]", *ON, OFF["preference"], OFF["conversations"]],
    "+ preference": ["export.formats=[json_parts]", *ON, OFF["conversations"]],
    "+ conversations": ["export.formats=[json_parts]", *ON, OFF["preference"]],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--data", type=Path, default=REPO / "bench-data")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--driver-memory", default="4g")
    args = p.parse_args()
    data = args.data / str(args.n)
    if not data.exists():
        print(f"no data set at {data}: run `.venv/bin/python benchmarks/gen_scale.py --n {args.n}` first", file=sys.stderr)
        return 2

    from instructlake.core.lake import RunContext
    from instructlake.core.session import get_spark
    from instructlake.jobs.runner import load_config
    from instructlake.jobs.stages.export import run_export
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.jobs.stages.pairs import run_pairs
    from instructlake.jobs.stages.products import run_product
    from instructlake.core.lake import Lake
    from instructlake.udfs.filters.decontamination import decontamination_summaries

    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        work = Path(tmp)
        conf_path = bench_conf(data, work, args.driver_memory)
        conf = load_config(conf_path, ON)
        spark = get_spark(conf.spark)
        rows = [["step", "seconds", "rows kept"]]

        def timed(name: str, step, kept=lambda r: "") -> None:
            started = time.monotonic()
            result = step()
            rows.append([name, f"{time.monotonic() - started:.1f}", str(kept(result))])

        run = RunContext()
        timed("ingest", lambda: run_ingest(spark, conf, run))
        timed("pairs table", lambda: run_pairs(spark, conf, run), lambda r: sum(n for _, k, n in r.counts if k is None))
        for name in ("preference", "conversations"):
            timed(f"{name} table", lambda name=name: run_product(spark, conf, name, run, Lake.of(conf), decontamination_summaries(spark, conf.filters)),
                  lambda r: r.kept)
        print(f"{args.n} dialogues ({data})")
        print(aligned(rows, left=(0,)))

        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for i in range(args.repeat + 1):  # the first round warms up
            for variant, overrides in VARIANTS.items():
                c = load_config(conf_path, [*overrides, f"paths.output={(work / f'out-{i}-{len(times[variant])}').as_uri()}"])
                started = time.monotonic()
                run_export(spark, c, RunContext())
                if i:
                    times[variant].append(time.monotonic() - started)
        base = min(times["pairs only"])
        out = [["export", "best s", "all s", "cost of the product s"]]
        for variant, ts in times.items():
            out.append([variant, f"{min(ts):.1f}", ", ".join(f"{t:.1f}" for t in ts),
                        "-" if variant == "pairs only" else f"{min(ts) - base:.1f}"])
        print(aligned(out, left=(0,)))
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
