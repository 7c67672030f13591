"""Stage 1, bronze: raw source files into one Delta table per configured source.

Every row keeps its raw fields (typed) plus provenance: `source` (label),
`source_name`, `source_file` (URI), `row_index` (within that file),
`content_id` (sha256 of the record's fields as canonical JSON),
`ingest_run_id` and `ingested_at`. Records that do not fit the source's
schema go to the `quarantine` table with their reason and raw text
(truncated) instead. Rows are inserted by MERGE on (source_file, row_index),
so ingesting the same files again adds nothing.

    spark-submit jobs/ingest.py --conf conf/local.yaml
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file by spark-submit
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging
import time
from dataclasses import dataclass

from pyspark.sql import functions as F

from jobs import ingest_hh, ingest_red_team, storage
from jobs.config import Config, Source
from jobs.lake import Lake, RunContext, insert_new, latest_version
from udfs.records import RAW_PREVIEW_CHARS, content_id, with_typed_fields

log = logging.getLogger("instructlake.ingest")

READERS = {
    "hh_rlhf": (ingest_hh.read_records, ingest_hh.FIELDS),
    "red_team": (ingest_red_team.read_records, ingest_red_team.FIELDS),
}

PROVENANCE = ["source", "source_name", "source_file", "row_index", "content_id", "ingest_run_id", "ingested_at"]
QUARANTINE_COLUMNS = ["source", "source_name", "source_file", "row_index", "raw", "reason", "ingest_run_id", "ingested_at"]


@dataclass
class IngestResult:
    source: str
    files: list[str]
    table: str
    version: int
    rows: int
    quarantined: int


def ingest_source(spark, source: Source, files: list[str], lake: Lake, run: RunContext) -> IngestResult:
    started = time.monotonic()
    log.info("%s: %d file(s) -> %s", source.name, len(files), lake.bronze(source.name))
    read_records, fields = READERS[source.format]
    records = with_typed_fields(read_records(spark, files), fields)
    reason = F.coalesce(F.col("_read_error"), F.col("_error"))
    stamped = records.withColumns(
        {
            "_reason": reason,
            "source": F.lit(source.label),
            "source_name": F.lit(source.name),
            "content_id": content_id(fields),
            "ingest_run_id": F.lit(run.run_id),
            "ingested_at": F.lit(run.started_at).cast("timestamp"),
        }
    )
    good = stamped.where(F.col("_reason").isNull()).select(*[f.name for f in fields], *PROVENANCE)
    bad = stamped.where(F.col("_reason").isNotNull()).select(
        *[
            F.substring("raw", 1, RAW_PREVIEW_CHARS).alias("raw") if c == "raw"
            else F.col("_reason").alias("reason") if c == "reason"
            else F.col(c)
            for c in QUARANTINE_COLUMNS
        ]
    )
    meta = {"stage": "ingest", "run_id": run.run_id, "source_name": source.name}
    insert_new(spark, good, lake.bronze(source.name), ["source_file", "row_index"], meta)
    insert_new(spark, bad, lake.quarantine, ["source_name", "source_file", "row_index"], meta)

    version = latest_version(spark, lake.bronze(source.name))
    rows = spark.read.format("delta").load(lake.bronze(source.name)).where(F.col("source_file").isin(files)).count()
    quarantined = (
        spark.read.format("delta").load(lake.quarantine)
        .where((F.col("source_name") == source.name) & F.col("source_file").isin(files))
        .count()
    )
    log.info(
        "%s: %d rows in bronze (v%d), %d quarantined, %.1fs",
        source.name, rows, version, quarantined, time.monotonic() - started,
    )
    return IngestResult(source.name, files, lake.bronze(source.name), version, rows, quarantined)


def run_ingest(spark, conf: Config, run: RunContext | None = None) -> list[IngestResult]:
    """Ingest every enabled source; returns what each wrote."""
    run = run or RunContext()
    lake = Lake.of(conf)
    # Every input must exist before anything is written.
    inputs = {s.name: storage.expand_inputs(spark, s.paths, f"source {s.name!r}") for s in conf.enabled_sources}
    return [ingest_source(spark, s, inputs[s.name], lake, run) for s in conf.enabled_sources]


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import main as cli_main

    return cli_main(["ingest", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    raise SystemExit(main())
