"""Stage 1, bronze: raw source files into one Delta table per configured source.

Each source's format (`instructlake.jobs.sources`) says how its files are
read and what its records hold.

Every row keeps its raw fields (typed) plus provenance: `source` (label),
`source_name`, `source_file` (URI), `row_index` (within that file),
`content_id` (sha256 of the record's typed fields, `instructlake.udfs.records.canonical_text`),
`ingest_run_id` and `ingested_at`.

Bad input never stops or shrinks a run silently: a record that does not fit
the source's schema goes to the `quarantine` table with its file, row index,
raw text (truncated) and reason, and the good records of the same file still
go through. A file-level problem (an empty file, a truncated or corrupt gzip
file) is one quarantine row with `row_index` -1. For every file the job
checks rows read = rows in bronze + rows quarantined, and fails loudly if not.

Oversized and hostile input is bounded (`ingest:` in the conf,
`instructlake.core.config.IngestSettings`): a record over `max_record_bytes`
is quarantined by its length, unparsed; a gzip file is decompressed once in
bounded chunks before it is read, and one that expands beyond its bounds (a
gzip bomb) or a file read whole that is larger than `max_file_bytes` is a
file-level quarantine row and is not read at all.

Re-runs are idempotent and incremental: the `ingest_log` table remembers
each file ingested (size, modification time, counts); a file already there
unchanged is not read again, a new file is read alone, a changed file
replaces its old rows, and the rows of a file no longer among the inputs are
removed. Every change to a table is a single commit: an append when only new
files are read and bronze holds none of their rows, else a MERGE keyed on
(source_file, row_index); so a crash at any point followed by a re-run gives
no duplicate and no missing row.

New files are read once: the records are parsed, checked and written to
bronze in one pass, whose counts (rows read, bad rows, the files that have
any) Spark collects as it writes (an `Observation`); the good rows per file
are counted on bronze's `source_file` column, and only files with bad
records are read a second time, for their quarantine rows and counts. Replaced files (changed or
re-read after a crash) go through a cached MERGE instead.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

from instructlake.core import storage
from instructlake.core.config import Config, IngestSettings, Source
from instructlake.core.errors import IngestCheckError
from instructlake.core.faults import checkpoint
from instructlake.core.lake import (
    Lake, RunContext, append_rows, commit_metrics, is_delta, merge_rows, read_table, sql_string, stats_only_on,
)
from instructlake.jobs.sources import format_of
from instructlake.jobs.sources.base import READ_SCHEMA
from instructlake.udfs.records import RAW_PREVIEW_CHARS, content_id, gzip_bound, inspect_file, with_typed_fields

log = logging.getLogger("instructlake.ingest")

PROVENANCE = ["source", "source_name", "source_file", "row_index", "content_id", "ingest_run_id", "ingested_at"]
QUARANTINE_COLUMNS = ["source", "source_name", "source_file", "row_index", "raw", "reason", "ingest_run_id", "ingested_at"]
FILE_LEVEL_ROW = -1
DAMAGED = ("truncated_gzip", "corrupt_gzip")  # file problems whose files are still read, for what they hold
REFUSED = ("gzip_bomb", "file_too_large")     # file problems whose files are not read at all
# Spark hands a file's bytes to a Python task as one value (at most 2 GiB): larger gzip files are
# read without the expansion check.
MAX_INSPECTED_BYTES = 1 << 30
BRONZE_PROPERTIES = stats_only_on(["source_file", "row_index"])  # what the ingest and pairs filter bronze on
LOG_SCHEMA = (
    "source_name string, source_file string, file_size long, file_mtime long, rows_read long, "
    "rows_ingested long, rows_quarantined long, file_errors array<string>, ingest_run_id string, ingested_at timestamp"
)


@dataclass
class IngestResult:
    source: str
    files: list[str]
    table: str
    read_files: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    rows: int = 0
    quarantined: int = 0


def inspect_files(spark, files: list[str], limits: Optional[IngestSettings] = None, whole: bool = False) -> dict[str, str]:
    """File problems ({file: reason}: a truncated or corrupt gzip file, an empty one; with
    `limits`, a gzip file expanding beyond them, `gzip_bomb`, or for a file read whole
    (`whole`) `file_too_large`).

    Each file's bytes are checked in a Spark task (see `instructlake.udfs.records.inspect_file`);
    only the findings come back to the driver.
    """
    def inspect(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            found = [inspect_file(content, path.endswith(".gz"), limits, whole)
                     for path, content in zip(batch["path"], batch["content"])]
            yield pd.DataFrame({"path": batch["path"], "problem": found})

    rows = (
        spark.read.format("binaryFile").load(files)
        .select("path", "content")
        .mapInPandas(inspect, "path string, problem string")
        .where(F.col("problem").isNotNull())
        .collect()
    )
    return {r["path"]: r["problem"] for r in rows}


def check_bounds(spark, files: list[str], sizes: dict[str, int], limits: IngestSettings, whole: bool) -> dict[str, str]:
    """The problems known before reading ({file: reason}): for a format read whole (`whole`), a
    plain file of more than `max_file_bytes` (by its size, at no cost), and for every gzip file
    of at most `MAX_INSPECTED_BYTES` its damage or an expansion beyond the bounds (`inspect_files`).
    Plain files of lines are not read here."""
    problems = {f: "file_too_large" for f in files
                if whole and not f.endswith(".gz") and sizes[f] > limits.max_file_bytes}
    gz = [f for f in files if f.endswith(".gz") and 0 < sizes[f] <= MAX_INSPECTED_BYTES]
    for f in files:
        if f.endswith(".gz") and sizes[f] > MAX_INSPECTED_BYTES:
            log.warning("%s: %d bytes of gzip, too large to check its expansion in one task; read unchecked", f, sizes[f])
    if gz:
        problems.update(inspect_files(spark, gz, limits, whole))
    return problems


def _beyond(file: str, reason: str, size: int, limits: IngestSettings, whole: bool) -> str:
    """The bound a refused file of `size` bytes passed, in words."""
    if not file.endswith(".gz"):
        return f"{size} bytes, more than ingest.max_file_bytes ({limits.max_file_bytes} bytes)"
    bound, _ = gzip_bound(size, limits, whole)
    keys = "ingest.max_file_bytes" if reason == "file_too_large" else "ingest.max_expanded_bytes and ingest.max_expansion_ratio"
    return f"it expands to more than {bound} bytes ({keys})"


def _with_encoding_error(records: DataFrame, line_based: bool) -> DataFrame:
    """Adds `_encoding_error` = 'invalid_utf8' on records whose bytes are not UTF-8."""
    bad = ~F.col("_valid_utf8")
    if not line_based:  # in a file read whole, only the elements holding the decoder's U+FFFD are affected
        bad = bad & F.col("raw").contains("\ufffd")
    return records.withColumn("_encoding_error", F.when(bad, F.lit("invalid_utf8")))


def _ingest_logs(spark, lake: Lake) -> dict[str, dict[str, dict]]:
    """{source name: {file: its ingest log entry}}."""
    if not is_delta(spark, lake.ingest_log):
        return {}
    out: dict[str, dict[str, dict]] = {}
    for r in read_table(spark, lake.ingest_log).collect():
        out.setdefault(r["source_name"], {})[r["source_file"]] = r.asDict()
    return out


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


def _file_in(files: list[str]) -> str:
    """SQL: the target row is of one of `files`."""
    return f"t.source_file IN ({', '.join(sql_string(f) for f in files)})" if files else "false"


def _bronze_holds_rows_of(spark, uri: str, files: list[str]) -> bool:
    """Whether the bronze table at `uri` has rows of `files` (left by a run that crashed before its log)."""
    if not is_delta(spark, uri):
        return False
    return bool(read_table(spark, uri).where(F.col("source_file").isin(files)).limit(1).count())


@dataclass
class _Written:
    rows_read: int                    # records read from the files (good and bad)
    bad: dict[str, int]               # bad records per file, for the files that have any
    good: dict[str, int]              # good records per file
    records: Optional[DataFrame]      # the stamped records (cached on the MERGE path), for the quarantine rows
    cached: bool = False
    bad_total: int = 0                # bad records of the first pass (the append path)


def _append_new(spark, stamped: DataFrame, fields, uri: str, files: list[str], meta: dict, run_id: str) -> _Written:
    """One pass: the good records are appended to bronze while Spark counts the records, the bad
    ones and names the files that have any (a set of at most as many names as files). The good rows
    per file are then counted on bronze's narrow `source_file` column, and the bad ones per file
    on the second read of those files (`_with_bad_counts`): no per-file expression runs on every row."""
    bad = F.col("_reason").isNotNull()
    seen = Observation()
    watched = stamped.observe(
        seen, F.count(F.lit(1)).alias("rows"), F.count_if(bad).alias("bad"),
        F.collect_set(F.when(bad, F.col("source_file"))).alias("bad_files"),
    )
    append_rows(watched.where(~bad).select(*[f.name for f in fields], *PROVENANCE), uri, meta, BRONZE_PROPERTIES)
    metrics = seen.get
    good_rows = metrics["rows"] - metrics["bad"]
    written = commit_metrics(spark, uri).get("numOutputRows")
    if written is None or int(written) != good_rows:
        raise IngestCheckError(f"{uri}: {good_rows} good rows read but the commit wrote {written}")
    good = _rows_per_file(spark, uri, files, F.col("ingest_run_id") == run_id)
    if sum(good.values()) != good_rows:
        raise IngestCheckError(f"{uri}: {good_rows} good rows read but bronze holds {sum(good.values())} of this run")
    return _Written(metrics["rows"], dict.fromkeys(sorted(metrics["bad_files"]), 0), good, stamped, bad_total=metrics["bad"])


def _with_bad_counts(written: _Written, records: DataFrame) -> _Written:
    """`written` with its bad rows per file counted on `records`, the second read of the files that
    have any; they must add up to the bad rows the first pass counted."""
    counts = records.where(F.col("_reason").isNotNull()).groupBy("source_file").count().collect()
    written.bad = {r["source_file"]: r["count"] for r in counts}
    written.records = records
    if sum(written.bad.values()) != written.bad_total:
        raise IngestCheckError(f"{written.bad_total} bad rows read but {sum(written.bad.values())} found again in "
                               f"{len(written.bad)} file(s)")
    return written


def _merge_replaced(spark, stamped: DataFrame, fields, uri: str, replaced: list[str], meta: dict) -> _Written:
    """Changed or re-read files: their rows are upserted by (source_file, row_index) and rows of
    files gone or replaced are deleted, in one MERGE; the records are cached for the counts."""
    cached = stamped.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = cached.groupBy("source_file").agg(
            F.count(F.lit(1)).alias("rows"), F.count_if(F.col("_reason").isNotNull()).alias("bad")
        ).collect()
        merge_rows(
            spark, cached.where(F.col("_reason").isNull()).select(*[f.name for f in fields], *PROVENANCE), uri,
            ["source_file", "row_index"], meta,
            update_when="t.content_id <> s.content_id",
            delete_when=_file_in(replaced) if replaced else None,
        )
    except Exception:
        cached.unpersist()
        raise
    bad = {r["source_file"]: r["bad"] for r in counts if r["bad"]}
    return _Written(sum(r["rows"] for r in counts), bad, _rows_per_file(spark, uri, sorted(r["source_file"] for r in counts)), cached, True)


def _rows_per_file(spark, uri: str, files: list[str], where: Optional[Column] = None) -> dict[str, int]:
    if not files:
        return {}
    rows = read_table(spark, uri).where(F.col("source_file").isin(files))
    if where is not None:
        rows = rows.where(where)
    return {r["source_file"]: r["count"] for r in rows.groupBy("source_file").count().collect()}


def ingest_source(spark, source: Source, files: list[str], lake: Lake, run: RunContext,
                  logged: Optional[dict[str, dict]] = None, limits: Optional[IngestSettings] = None) -> IngestResult:
    """Bring the source's bronze table up to date with its files; `logged`: its ingest log entries
    by file (read here when None); `limits`: the conf's `ingest` bounds (the defaults when None)."""
    started = time.monotonic()
    limits = limits or IngestSettings()
    result = IngestResult(source.name, files, lake.bronze(source.name))
    status = storage.file_status(spark, files)
    if logged is None:
        logged = _ingest_logs(spark, lake).get(source.name, {})
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
    fmt = format_of(source)
    fields, line_based = fmt.fields, fmt.line_based
    uri = lake.bronze(source.name)
    meta = {"stage": "ingest", "run_id": run.run_id, "source_name": source.name}
    problems: dict[str, str] = {}
    written = _Written(0, {}, {}, None)
    replaced = changed + removed
    try:
        if to_read:
            problems = check_bounds(spark, to_read, {f: status[f][0] for f in to_read}, limits, whole=not line_based)
        readable = [f for f in to_read if problems.get(f) not in REFUSED]
        if readable or (to_read and not is_delta(spark, uri)):  # (a first run whose every file is refused makes the table)

            def stamped(files: list[str], tolerant: bool) -> DataFrame:
                read = (fmt.read(spark, files, tolerant=tolerant, max_record_bytes=limits.max_record_bytes) if files
                        else spark.createDataFrame([], READ_SCHEMA))
                records = _with_encoding_error(read, line_based)
                out = _stamp(with_typed_fields(records, fields, max_record_bytes=limits.max_record_bytes), source, fields, run)
                # Only a quarantined record needs its raw text (the preview).
                return out.withColumn("raw", F.when(F.col("_reason").isNotNull(), F.substring("raw", 1, RAW_PREVIEW_CHARS)))

            def write(tolerant: bool) -> _Written:
                if replaced or _bronze_holds_rows_of(spark, uri, readable):
                    return _merge_replaced(spark, stamped(readable, tolerant), fields, uri, replaced, meta)
                out = _append_new(spark, stamped(readable, tolerant), fields, uri, readable, meta, run.run_id)
                if out.bad:  # the second read, of the files with bad records only
                    out = _with_bad_counts(out, stamped(sorted(out.bad), tolerant))
                return out

            damaged = [f for f in readable if problems.get(f) in DAMAGED]
            if damaged:  # known before reading: the files are read for what they hold
                written = write(tolerant=True)
            else:
                try:  # files read as they are: a damaged file the checks missed fails the pass ...
                    written = write(tolerant=False)
                except IngestCheckError:
                    raise
                except Exception as error:  # ... then each file's bytes are checked, and the damaged ones quarantined
                    found = inspect_files(spark, readable)
                    if not found:
                        raise
                    problems.update(found)
                    log.warning("%s: %d damaged or empty file(s); reading what the others hold (%s)",
                                source.name, len(found), str(error).splitlines()[0][:200])
                    written = write(tolerant=True)
        elif replaced:  # no file to read: delete the rows of the files gone or replaced
            empty = read_table(spark, uri).limit(0)
            merge_rows(spark, empty, uri, ["source_file", "row_index"], meta, delete_when=_file_in(replaced))
        checkpoint("ingest.bronze_written")
        ingested = written.good
        counts = {f: ingested.get(f, 0) + written.bad.get(f, 0) for f in to_read}
        for f in to_read:
            if status[f][0] == 0:  # Spark's binary reader skips empty files: tell them here
                problems[f] = "empty_file"
            elif counts[f] == 0 and f not in problems:
                problems[f] = "empty_file" if line_based else "no_records"  # e.g. a gzip file of nothing
        bad = _file_level_rows(spark, source, problems, run)
        if written.bad:
            bad = _quarantine_rows(written.records.where(F.col("source_file").isin(list(written.bad)))).unionByName(bad)
        if not written.bad and not problems and not replaced and is_delta(spark, lake.quarantine):
            log.info("%s: nothing to quarantine", source.name)
        else:
            merge_rows(
                spark, bad, lake.quarantine, ["source_name", "source_file", "row_index"], meta,
                update_when="t.raw <> s.raw OR t.reason <> s.reason",
                delete_when=f"t.source_name = {sql_string(source.name)} AND {_file_in(replaced)}" if replaced else None,
            )
        entries = _check_and_log(spark, source, lake, to_read, removed, written, ingested, problems, status, run,
                             new_only=not set(to_read) & set(logged))
    finally:
        if written.cached:
            written.records.unpersist()
    result.rows = sum(e["rows_ingested"] for e in entries.values()) + sum(
        logged[f]["rows_ingested"] for f in files if f not in entries
    )
    result.quarantined = sum(e["rows_quarantined"] for e in entries.values()) + sum(
        logged[f]["rows_quarantined"] for f in files if f not in entries
    )
    for f, reason in sorted(problems.items()):
        if reason in REFUSED:
            log.warning("%s: file problem %s: %s: %s; not read (quarantined)", source.name, reason, f,
                        _beyond(f, reason, status[f][0], limits, not line_based))
        else:
            log.warning("%s: file problem %s: %s (quarantined)", source.name, reason, f)
    log.info(
        "%s: %d rows in bronze, %d quarantined, %.1fs",
        source.name, result.rows, result.quarantined, time.monotonic() - started,
    )
    return result


def _check_and_log(spark, source, lake, to_read, removed, written: _Written, ingested, problems, status, run,
                   new_only: bool = False) -> dict[str, dict]:
    """Check that every record read is in bronze or in quarantine, file by file, then record the
    files in the log (an append when none of them is there yet and none is gone)."""
    quarantined = _rows_per_file(
        spark, lake.quarantine, to_read, (F.col("source_name") == source.name) & (F.col("row_index") != FILE_LEVEL_ROW)
    ) if written.bad or written.cached else {}
    for f in to_read:
        if quarantined.get(f, 0) != written.bad.get(f, 0):
            raise IngestCheckError(
                f"{source.name}: {f}: {written.bad.get(f, 0)} bad rows read but {quarantined.get(f, 0)} quarantined"
            )
    stored = sum(ingested.values()) + sum(quarantined.values())
    if stored != written.rows_read:
        raise IngestCheckError(
            f"{source.name}: {written.rows_read} rows read from {len(to_read)} file(s) but {sum(ingested.values())} "
            f"ingested + {sum(quarantined.values())} quarantined"
        )
    entries = {}
    for f in to_read:
        ok, bad = ingested.get(f, 0), quarantined.get(f, 0)
        entries[f] = {
            "source_name": source.name, "source_file": f, "file_size": status[f][0], "file_mtime": status[f][1],
            "rows_read": ok + bad, "rows_ingested": ok, "rows_quarantined": bad,
            "file_errors": [problems[f]] if f in problems else [], "ingest_run_id": run.run_id,
            "ingested_at": run.started_at,
        }
    rows = spark.createDataFrame([tuple(e.values()) for e in entries.values()], LOG_SCHEMA)
    meta = {"stage": "ingest", "run_id": run.run_id, "source_name": source.name}
    if new_only and not removed:
        append_rows(rows, lake.ingest_log, meta)
        return entries
    merge_rows(
        spark, rows, lake.ingest_log, ["source_name", "source_file"], meta,
        update_when="true",
        delete_when=f"t.source_name = {sql_string(source.name)} AND {_file_in(removed)}" if removed else None,
    )
    return entries


def run_ingest(spark, conf: Config, run: RunContext | None = None) -> list[IngestResult]:
    """Ingest every enabled source; returns what each read and holds."""
    run = run or RunContext()
    lake = Lake.of(conf)
    # Every input must exist before anything is written.
    inputs = {s.name: storage.expand_inputs(spark, s.paths, f"source {s.name!r}") for s in conf.enabled_sources}
    logs = _ingest_logs(spark, lake)
    return [ingest_source(spark, s, inputs[s.name], lake, run, logs.get(s.name, {}), conf.ingest) for s in conf.enabled_sources]

