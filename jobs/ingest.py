"""Stage 1, bronze: raw source files into one Delta table per configured source.

Every row keeps its raw fields (typed) plus provenance: `source` (label),
`source_name`, `source_file` (URI), `row_index` (within that file),
`content_id` (sha256 of the record's fields as canonical JSON),
`ingest_run_id` and `ingested_at`.

Bad input never stops or shrinks a run silently: a record that does not fit
the source's schema goes to the `quarantine` table with its file, row index,
raw text (truncated) and reason, and the good records of the same file still
go through. A file-level problem (an empty file, a truncated or corrupt gzip
file) is one quarantine row with `row_index` -1. For every file the job
checks rows read = rows in bronze + rows quarantined, and fails loudly if not.

Re-runs are idempotent and incremental: the `ingest_log` table remembers
each file ingested (size, modification time, counts); a file already there
unchanged is not read again, a new file is read alone, a changed file
replaces its old rows, and the rows of a file no longer among the inputs are
removed. All changes to a table are single MERGE commits keyed on
(source_file, row_index), so a crash at any point followed by a re-run gives
no duplicate and no missing row.

    spark-submit jobs/ingest.py --conf conf/local.yaml
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file by spark-submit
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import ingest_code, ingest_hh, ingest_red_team, ingest_webtext, storage
from jobs.config import Config, Source
from jobs.faults import checkpoint
from jobs.lake import Lake, RunContext, is_delta, merge_rows
from udfs.records import RAW_PREVIEW_CHARS, content_id, inspect_file, with_typed_fields

log = logging.getLogger("instructlake.ingest")

# format: (reader, fields, one record per line?)
READERS = {
    "hh_rlhf": (ingest_hh.read_records, ingest_hh.FIELDS, True),
    "red_team": (ingest_red_team.read_records, ingest_red_team.FIELDS, False),
    "web_text": (ingest_webtext.read_records, ingest_webtext.FIELDS, False),
    "conala": (ingest_code.read_conala, ingest_code.CONALA_FIELDS, False),
    "mbpp": (ingest_code.read_lines, ingest_code.MBPP_FIELDS, True),
    "humaneval": (ingest_code.read_lines, ingest_code.HUMANEVAL_FIELDS, True),
}

PROVENANCE = ["source", "source_name", "source_file", "row_index", "content_id", "ingest_run_id", "ingested_at"]
QUARANTINE_COLUMNS = ["source", "source_name", "source_file", "row_index", "raw", "reason", "ingest_run_id", "ingested_at"]
FILE_LEVEL_ROW = -1
LOG_SCHEMA = (
    "source_name string, source_file string, file_size long, file_mtime long, rows_read long, "
    "rows_ingested long, rows_quarantined long, file_errors array<string>, ingest_run_id string, ingested_at timestamp"
)


class IngestCheckError(RuntimeError):
    """Rows read and rows written disagree for a file: a bug, never silently accepted."""


@dataclass
class IngestResult:
    source: str
    files: list[str]
    table: str
    read_files: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    rows: int = 0
    quarantined: int = 0


def _inspect(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        found = [inspect_file(content, path.endswith(".gz")) for path, content in zip(batch["path"], batch["content"])]
        yield pd.DataFrame(
            {"path": batch["path"], "problem": [p for p, _ in found], "bad_lines": [b for _, b in found]}
        )


def inspect_files(spark, files: list[str]) -> tuple[dict[str, str], dict[str, list[int]]]:
    """File problems ({file: reason}) and lines that are not UTF-8 ({file: [row index]}).

    Each file's bytes are checked in a Spark task (see `udfs.records.inspect_file`);
    only the findings come back to the driver.
    """
    rows = (
        spark.read.format("binaryFile").load(files)
        .select("path", "content")
        .mapInPandas(_inspect, "path string, problem string, bad_lines array<long>")
        .where(F.col("problem").isNotNull() | (F.size("bad_lines") > 0))
        .collect()
    )
    problems = {r["path"]: r["problem"] for r in rows if r["problem"]}
    bad_lines = {r["path"]: list(r["bad_lines"]) for r in rows if r["bad_lines"]}
    return problems, bad_lines


def _encoding_error(spark, records: DataFrame, line_based: bool, bad_lines: dict[str, list[int]]) -> DataFrame:
    """Adds `_encoding_error` = 'invalid_utf8' on records whose bytes are not UTF-8."""
    if not bad_lines:
        return records.withColumn("_encoding_error", F.lit(None).cast("string"))
    if line_based:
        bad = spark.createDataFrame(
            [(f, i) for f, lines in bad_lines.items() for i in lines], "source_file string, row_index long"
        ).withColumn("_encoding_error", F.lit("invalid_utf8"))
        return records.join(F.broadcast(bad), ["source_file", "row_index"], "left")
    # In a JSON array only the elements holding the decoder's U+FFFD are affected.
    flagged = F.col("source_file").isin(list(bad_lines)) & F.col("raw").contains("\ufffd")
    return records.withColumn("_encoding_error", F.when(flagged, F.lit("invalid_utf8")))


def _ingest_log(spark, lake: Lake, source: Source) -> dict[str, dict]:
    if not is_delta(spark, lake.ingest_log):
        return {}
    rows = spark.read.format("delta").load(lake.ingest_log).where(F.col("source_name") == source.name).collect()
    return {r["source_file"]: r.asDict() for r in rows}


def _stamp(records: DataFrame, source: Source, fields, run: RunContext) -> DataFrame:
    return records.withColumns(
        {
            "_reason": F.coalesce(F.col("_read_error"), F.col("_encoding_error"), F.col("_error")),
            "source": F.lit(source.label),
            "source_name": F.lit(source.name),
            "content_id": content_id(fields),
            "ingest_run_id": F.lit(run.run_id),
            "ingested_at": F.lit(run.started_at).cast("timestamp"),
        }
    )


def _quarantine_rows(stamped: DataFrame) -> DataFrame:
    return stamped.where(F.col("_reason").isNotNull()).select(
        "source", "source_name", "source_file", "row_index",
        F.substring("raw", 1, RAW_PREVIEW_CHARS).alias("raw"),
        F.col("_reason").alias("reason"), "ingest_run_id", "ingested_at",
    )


def _file_level_rows(spark, source: Source, problems: dict[str, str], run: RunContext) -> DataFrame:
    rows = [(source.label, source.name, f, FILE_LEVEL_ROW, "", reason, run.run_id, run.started_at) for f, reason in sorted(problems.items())]
    schema = "source string, source_name string, source_file string, row_index long, raw string, reason string, ingest_run_id string, ingested_at timestamp"
    return spark.createDataFrame(rows, schema)


def _file_in(files: list[str]) -> Column:
    return F.col("t.source_file").isin(files) if files else F.lit(False)


def ingest_source(spark, source: Source, files: list[str], lake: Lake, run: RunContext) -> IngestResult:
    started = time.monotonic()
    result = IngestResult(source.name, files, lake.bronze(source.name))
    status = storage.file_status(spark, files)
    logged = _ingest_log(spark, lake, source)
    to_read = [f for f in files if f not in logged or (logged[f]["file_size"], logged[f]["file_mtime"]) != status[f]]
    changed = [f for f in to_read if f in logged]
    removed = sorted(set(logged) - set(files))
    result.read_files, result.removed_files = to_read, removed
    if not to_read and not removed:
        result.rows = sum(logged[f]["rows_ingested"] for f in files)
        result.quarantined = sum(logged[f]["rows_quarantined"] for f in files)
        log.info("%s: %d file(s) up to date, nothing to read", source.name, len(files))
        return result
    log.info(
        "%s: reading %d of %d file(s) (%d changed, %d removed) -> %s",
        source.name, len(to_read), len(files), len(changed), len(removed), lake.bronze(source.name),
    )
    read_records, fields, line_based = READERS[source.format]
    stamped = None
    counts: dict[str, int] = {}
    problems: dict[str, str] = {}
    if to_read:
        problems, bad_lines = inspect_files(spark, to_read)
        records = _encoding_error(spark, read_records(spark, to_read), line_based, bad_lines)
        stamped = _stamp(with_typed_fields(records, fields), source, fields, run)
        # Only a quarantined record needs its raw text (the preview): the cache holds no second copy of good ones.
        stamped = stamped.withColumn("raw", F.when(F.col("_reason").isNotNull(), F.substring("raw", 1, RAW_PREVIEW_CHARS)))
        stamped = stamped.persist(StorageLevel.MEMORY_AND_DISK)
        counts = {r["source_file"]: r["count"] for r in stamped.groupBy("source_file").count().collect()}
        for f in to_read:
            if status[f][0] == 0:  # Spark's binary reader skips empty files: tell them here
                problems[f] = "empty_file"
            elif counts.get(f, 0) == 0 and f not in problems:
                problems[f] = "no_records"
    try:
        replaced = changed + removed
        meta = {"stage": "ingest", "run_id": run.run_id, "source_name": source.name}
        good = (
            stamped.where(F.col("_reason").isNull()).select(*[f.name for f in fields], *PROVENANCE)
            if stamped is not None
            else spark.read.format("delta").load(lake.bronze(source.name)).limit(0)
        )
        merge_rows(
            spark, good, lake.bronze(source.name), ["source_file", "row_index"], meta,
            update_when=F.col("t.content_id") != F.col("s.content_id"),
            delete_when=_file_in(replaced) if replaced else None,
        )
        checkpoint("ingest.bronze_written")
        bad = _file_level_rows(spark, source, problems, run)
        if stamped is not None:
            bad = _quarantine_rows(stamped).unionByName(bad)
        merge_rows(
            spark, bad, lake.quarantine, ["source_name", "source_file", "row_index"], meta,
            update_when=(F.col("t.raw") != F.col("s.raw")) | (F.col("t.reason") != F.col("s.reason")),
            delete_when=(F.col("t.source_name") == source.name) & _file_in(replaced) if replaced else None,
        )
        entries = _check_and_log(spark, source, lake, to_read, removed, counts, problems, status, run)
    finally:
        if stamped is not None:
            stamped.unpersist()
    result.rows = sum(e["rows_ingested"] for e in entries.values()) + sum(
        logged[f]["rows_ingested"] for f in files if f not in entries
    )
    result.quarantined = sum(e["rows_quarantined"] for e in entries.values()) + sum(
        logged[f]["rows_quarantined"] for f in files if f not in entries
    )
    for f, reason in sorted(problems.items()):
        log.warning("%s: file problem %s: %s (quarantined)", source.name, reason, f)
    log.info(
        "%s: %d rows in bronze, %d quarantined, %.1fs",
        source.name, result.rows, result.quarantined, time.monotonic() - started,
    )
    return result


def _check_and_log(spark, source, lake, to_read, removed, counts, problems, status, run) -> dict[str, dict]:
    """Check rows read = ingested + quarantined for each file read, then record the files in the log."""
    if not to_read and not removed:
        return {}
    ingested = {
        r["source_file"]: r["count"]
        for r in spark.read.format("delta").load(lake.bronze(source.name))
        .where(F.col("source_file").isin(to_read)).groupBy("source_file").count().collect()
    } if to_read else {}
    quarantined = {
        r["source_file"]: r["count"]
        for r in spark.read.format("delta").load(lake.quarantine)
        .where((F.col("source_name") == source.name) & F.col("source_file").isin(to_read) & (F.col("row_index") != FILE_LEVEL_ROW))
        .groupBy("source_file").count().collect()
    } if to_read else {}
    entries = {}
    for f in to_read:
        read, ok, bad = counts.get(f, 0), ingested.get(f, 0), quarantined.get(f, 0)
        if read != ok + bad:
            raise IngestCheckError(f"{source.name}: {f}: {read} rows read but {ok} ingested + {bad} quarantined")
        entries[f] = {
            "source_name": source.name, "source_file": f, "file_size": status[f][0], "file_mtime": status[f][1],
            "rows_read": read, "rows_ingested": ok, "rows_quarantined": bad,
            "file_errors": [problems[f]] if f in problems else [], "ingest_run_id": run.run_id,
            "ingested_at": run.started_at,
        }
    rows = spark.createDataFrame([tuple(e.values()) for e in entries.values()], LOG_SCHEMA)
    merge_rows(
        spark, rows, lake.ingest_log, ["source_name", "source_file"],
        {"stage": "ingest", "run_id": run.run_id, "source_name": source.name},
        update_when=F.lit(True),
        delete_when=(F.col("t.source_name") == source.name) & _file_in(removed) if removed else None,
    )
    return entries


def run_ingest(spark, conf: Config, run: RunContext | None = None) -> list[IngestResult]:
    """Ingest every enabled source; returns what each read and holds."""
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
