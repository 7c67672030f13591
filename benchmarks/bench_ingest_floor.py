"""What Spark itself costs to read the HH records of a scale data set, step by step.

On the HH-RLHF files of a `gen_scale.py` data set (`--n`, default 10^6:
900,000 dialogues in 36 gzip files; made when missing), in one warm JVM
(local[2], the pipeline's session), each step timed `--repeat` times,
Spark's `noop` writer running the plan where nothing is written:

1. the gzip files read as lines, counted;
2. each line parsed into a VARIANT (`try_parse_json`);
3. and its two strings taken out (`try_variant_get`);
4. instead, `from_json` to two string columns (the parser the ingest does
   not use: it would turn a JSON number into a string);
5. the records as the ingest types and checks them (`with_typed_fields`)
   with their `content_id`;
6. the same written as Parquet (bronze's format, without Delta's commit);
7. the plain way: Python's `gzip` and `json.loads` of the same files in one
   process.

The floor under the ingest stage, against the baseline's whole read.

    .venv/bin/python benchmarks/bench_ingest_floor.py [--n 1000000] [--data bench-data] [--repeat 2]
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(name: str, fn, repeat: int) -> None:
    times = []
    for _ in range(repeat):
        started = time.monotonic()
        fn()
        times.append(time.monotonic() - started)
    print(f"{name:<62} " + "  ".join(f"{t:6.1f}s" for t in times), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="the data set (default 1000000)")
    p.add_argument("--data", type=Path, default=REPO / "bench-data", help="data sets of gen_scale.py (default ./bench-data)")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)

    from pyspark.sql import functions as F

    from benchmarks.gen_scale import generate
    from instructlake.core.config import SparkSettings
    from instructlake.jobs.sources.base import read_json_lines as read_records
    from instructlake.jobs.sources.hh_rlhf import FIELDS
    from instructlake.core.session import get_spark
    from instructlake.udfs.records import content_id, with_typed_fields

    files = sorted(str(f) for f in (generate(args.n, args.data.resolve()) / "hh-rlhf").glob("*/*.jsonl.gz"))
    spark = get_spark(SparkSettings())
    spark.range(1).count()

    def lines():
        return spark.read.text(files)

    def noop(df) -> None:
        df.write.format("noop").mode("overwrite").save()

    def records():
        typed = with_typed_fields(read_records(spark, files, tolerant=False), FIELDS)
        return typed.select(*[f.name for f in FIELDS], "source_file", "row_index", "_error", content_id(FIELDS).alias("content_id"))

    parsed = lambda: lines().select(F.try_parse_json("value").alias("v"))  # noqa: E731
    print(f"{len(files)} gzip files of {args.n:,} dialogues' data set; {args.repeat} runs each, warm JVM")
    with tempfile.TemporaryDirectory() as tmp:
        steps = [
            ("1. read the gzip lines, count", lambda: lines().count()),
            ("2. + parse each into a VARIANT", lambda: noop(parsed())),
            ("3. + its two strings out", lambda: noop(parsed().select(
                *[F.try_variant_get("v", f"$.{f.name}", "string") for f in FIELDS]))),
            ("4. from_json to two strings instead", lambda: noop(lines().select(
                F.from_json("value", ", ".join(f"{f.name} string" for f in FIELDS)).alias("r")).select("r.*"))),
            ("5. typed and checked as the ingest does, with content_id", lambda: noop(records())),
            ("6. the same written as Parquet", lambda: records().write.mode("overwrite").parquet(f"{tmp}/bronze")),
        ]
        timed("warm-up (step 5 once)", lambda: noop(records()), 1)
        for name, fn in steps:
            timed(name, fn, args.repeat)

    def plain() -> None:
        for path in files:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for line in f:
                    json.loads(line)

    timed("7. Python: gzip + json.loads, one process", plain, 1)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
