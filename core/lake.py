"""The table catalog (where each Delta table lives) and the Delta operations every stage shares."""
from __future__ import annotations

import json
import re
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from instructlake.core import storage
from instructlake.core.config import Config
from instructlake.core.errors import causes
from instructlake.core.tables import column_comment, table_comment


@dataclass(frozen=True)
class Lake:
    """Every table of a build: bronze per source, the quarantine and ingest log, and the silver
    tables of the generate and pairs stages. A table is a path under the root URI
    (`<root>/silver/pairs`), or with `catalog` (`<catalog>.<schema>`) a name in the metastore
    (`<catalog>.<schema>.silver_pairs`); every function of this module takes either (`is_name`)."""

    root: str
    catalog: Optional[str] = None

    @classmethod
    def of(cls, conf: Config) -> "Lake":
        return cls(storage.resolve(conf.paths.lake), conf.paths.catalog)

    def table(self, *parts: str) -> str:
        """The path or name of the table `parts` (e.g. ("silver", "pairs"))."""
        if self.catalog:
            return f"{self.catalog}.{'_'.join(parts)}"
        return storage.join(self.root, *parts)

    def bronze(self, source_name: str) -> str:
        return self.table("bronze", source_name)

    @property
    def quarantine(self) -> str:
        return self.table("quarantine")

    @property
    def ingest_log(self) -> str:
        return self.table("ingest_log")

    @property
    def pairs(self) -> str:
        return self.table("silver", "pairs")

    @property
    def preference(self) -> str:
        return self.table("silver", "preference")

    @property
    def conversations(self) -> str:
        return self.table("silver", "conversations")

    @property
    def paragraphs(self) -> str:
        return self.table("silver", "paragraphs")

    @property
    def generations(self) -> str:
        """The cache of model calls (`instructlake.core.cache`)."""
        return self.table("silver", "generations")

    @property
    def qa(self) -> str:
        return self.table("silver", "qa")

    @property
    def code_functions(self) -> str:
        return self.table("silver", "code_functions")

    @property
    def executions(self) -> str:
        """The cache of program runs (`instructlake.core.cache`)."""
        return self.table("silver", "executions")


@dataclass
class RunContext:
    """Identity of one pipeline run, stamped on rows and outputs."""

    run_id: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8])
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0))


def git_commit() -> str:
    """The commit of the code that runs, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=Path(__file__).resolve().parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


_ID_BITS = 33  # monotonically_increasing_id() puts the partition index above bit 33


def with_position(df: DataFrame, name: str, ids: str | None = None) -> DataFrame:
    """Adds `name`: each row's 0-based position in `df`'s row order.

    No shuffle and no collect of rows: one small count per partition gives
    each partition's offset. The order is that of `monotonically_increasing_id()`,
    taken here, or earlier into the column `ids` (for rows that were sorted
    and materialized: reading files back does not keep partition order).
    `df` is read twice, so it must give the same rows every time.
    """
    if ids is None:
        if not storage.is_connect(df.sparkSession) and df.rdd.getNumPartitions() <= 1:
            return df.withColumn(name, F.monotonically_increasing_id())
        ids = "_mid"
        df = df.withColumn(ids, F.monotonically_increasing_id())
    return with_position_and_total(df, name, ids)[0]


def with_position_and_total(df: DataFrame, name: str, ids: str) -> tuple[DataFrame, int]:
    """(`df` with `name`, each row's 0-based position in the order of the column `ids` (see
    `with_position`), the number of rows), from the same per-partition counts."""
    pid = F.shiftright(F.col(ids), _ID_BITS)
    local = F.col(ids) - F.shiftleft(pid, _ID_BITS)
    offsets, total = [], 0
    for row in sorted(df.groupBy(pid.alias("pid")).count().collect()):
        offsets += [F.lit(row["pid"]), F.lit(total)]
        total += row["count"]
    if not offsets:
        return df.withColumn(name, F.lit(0).cast("long")).drop(ids), 0
    position = F.element_at(F.create_map(*offsets), pid) + local
    return df.withColumn(name, position.cast("long")).drop(ids), total


# Delta's error classes for a commit that lost to a concurrent one (its optimistic concurrency),
# and the exception classes that carry them.
_CONFLICT_CLASS = re.compile(r"\b(DELTA_CONCURRENT_[A-Z_]+|DELTA_METADATA_CHANGED|DELTA_PROTOCOL_CHANGED)\b")
_CONFLICT_EXCEPTION = re.compile(r"\b(Concurrent(?:Append|DeleteRead|DeleteDelete|Transaction|Write)Exception|"
                                 r"MetadataChangedException|ProtocolChangedException)\b")


def conflict_of(error: BaseException) -> Optional[tuple[str, str]]:
    """(Delta's error class, its message line) when `error` (or one it was raised from) is a lost
    commit race, e.g. ("DELTA_CONCURRENT_APPEND", "... a concurrent DELETE added data to table
    ..."); else None."""
    for e in causes(error):
        text = f"{type(e).__name__}: {e}"
        for pattern in (_CONFLICT_CLASS, _CONFLICT_EXCEPTION):
            found = pattern.search(text)
            if found:
                line = next(l for l in text.splitlines() if found.group(1) in l)
                return found.group(1), re.sub(r"^(?:[\w.$]+(?:Error|Exception): )+", "", line.strip())
    return None


def is_name(table: str) -> bool:
    """Whether `table` is a metastore name (`catalog.schema.table`) rather than a path or URI."""
    return "/" not in table


def sql_table(uri: str) -> str:
    """How SQL names the table: its name, or ``delta.`<path>` ``."""
    return uri if is_name(uri) else f"delta.`{uri}`"


def is_delta(spark, uri: str) -> bool:
    """Whether the table exists (a Delta table at the path, or a table of that name)."""
    if is_name(uri):
        return bool(spark.catalog.tableExists(uri))
    return any(f.endswith(".json") for f in storage.list_files(spark, storage.join(uri, "_delta_log")))


# Delta's Python `DeltaTable` API needs a Delta plugin on a Spark Connect server, which is not
# published for this Delta version: history, details and MERGE go through Delta's SQL, which
# both a classic and a Connect session run.
def history(spark, uri: str, limit: Optional[int] = None) -> DataFrame:
    return spark.sql(f"DESCRIBE HISTORY {sql_table(uri)}" + (f" LIMIT {int(limit)}" if limit else ""))


def location(spark, uri: str) -> str:
    """Where a table's files are (its path, for a table by name)."""
    return spark.sql(f"DESCRIBE DETAIL {sql_table(uri)}").select("location").first()[0]


def read_table(spark, uri: str) -> DataFrame:
    """The latest version of a table (path or name)."""
    return spark.read.table(uri) if is_name(uri) else spark.read.format("delta").load(uri)


def latest_version(spark, uri: str) -> int:
    return int(history(spark, uri, 1).select("version").first()[0])


def read_version(spark, uri: str, version: Optional[int] = None) -> tuple[DataFrame, int]:
    """The table at `version` (default: the latest), and that version number."""
    if version is None:
        version = latest_version(spark, uri)
    if is_name(uri):
        return spark.sql(f"SELECT * FROM {uri} VERSION AS OF {int(version)}"), version
    return spark.read.format("delta").option("versionAsOf", version).load(uri), version


def commit_metadata(spark, uri: str, version: int) -> dict:
    """The JSON user metadata stored with a table version by `write_with_metadata`."""
    rows = history(spark, uri).where(F.col("version") == version).select("userMetadata").collect()
    if not rows or not rows[0][0]:
        return {}
    return json.loads(rows[0][0])


def commit_metrics(spark, uri: str) -> dict:
    """The operation metrics of the table's latest commit (e.g. `numOutputRows`), as strings."""
    row = history(spark, uri, 1).select("operationMetrics").first()
    return dict(row[0] or {}) if row else {}


def overwrite(df: DataFrame, uri: str, metadata: dict, properties: Optional[dict] = None) -> None:
    """Replace a table's content in one Delta commit that carries `metadata` (`properties`: table
    properties of a table this creates)."""
    save(df.sparkSession, _writer(df, "overwrite", metadata, properties, is_name(uri)).option("overwriteSchema", "true"), uri,
         json.dumps(metadata, sort_keys=True))


def stats_only_on(columns: list[str]) -> dict:
    """Table properties that limit Delta's per-file statistics to `columns` (those the jobs filter
    on): by default Delta computes them for the first 32 columns, long texts included, on every write."""
    return {"delta.dataSkippingStatsColumns": ",".join(columns)}


def save(spark, writer, uri: str, user_metadata: Optional[str] = None) -> None:
    """`writer.save(uri)` for a path. For a name: `saveAsTable` creates the table (and its schema);
    an existing table is written at its location, as a path (the same Delta table; and a
    write by name would not report a `DataFrame.observe`'s metrics, which the ingest checks)."""
    if not is_name(uri):
        writer.save(uri)
    elif is_delta(spark, uri):
        writer.save(location(spark, uri))
    else:
        schema = uri.rsplit(".", 1)[0]
        if not spark.catalog.databaseExists(schema):
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        writer.saveAsTable(uri)
        comment = table_comment(uri)
        if comment:  # a commit of its own, with the same user metadata as the write (stages read it back)
            with commit_info(spark, user_metadata):
                spark.sql(f"COMMENT ON TABLE {uri} IS '{comment.replace(chr(39), chr(39) * 2)}'")


def with_comments(df: DataFrame) -> DataFrame:
    """`df` with each column's comment (`instructlake.core.tables`) in its field metadata, which a
    table created or written by name keeps as the column's comment."""
    return df.select(*[
        F.col(f"`{c}`").alias(c, metadata={"comment": column_comment(c)}) if column_comment(c) else F.col(f"`{c}`")
        for c in df.columns])


def _writer(df: DataFrame, mode: str, metadata: dict, properties: Optional[dict], named: bool = False):
    if named:
        df = with_comments(df)
    w = df.write.format("delta").mode(mode).option("userMetadata", json.dumps(metadata, sort_keys=True))
    for key, value in (properties or {}).items():  # applied when the write creates the table
        w = w.option(key, value)
    return w


def append_rows(df: DataFrame, uri: str, metadata: dict, properties: Optional[dict] = None) -> None:
    """Append `df` to the table at `uri` (creating it, with the table `properties`, if needed) in one
    Delta commit that carries `metadata`."""
    spark = df.sparkSession
    if is_name(uri) and not is_delta(spark, uri):  # created empty first, then written at its location (`save`)
        empty = spark.createDataFrame([], df.schema)  # not df.limit(0): that would be a run of df's plan
        save(spark, _writer(empty, "append", {"created": True}, properties, True), uri, json.dumps({"created": True}))
    save(spark, _writer(df, "append", metadata, properties, is_name(uri)), uri, json.dumps(metadata, sort_keys=True))


@contextmanager
def commit_info(spark, metadata: dict | str | None):
    """Within the block, Delta commits made through the DeltaTable API (MERGE, UPDATE, DELETE) or SQL
    carry `metadata` (a dict, or its JSON) as their user metadata (writes take it as an option instead)."""
    key = "spark.databricks.delta.commitInfo.userMetadata"
    if metadata is None:
        yield
        return
    spark.conf.set(key, metadata if isinstance(metadata, str) else json.dumps(metadata, sort_keys=True))
    try:
        yield
    finally:
        spark.conf.unset(key)


def merge_rows(
    spark,
    df: DataFrame,
    uri: str,
    keys: list[str],
    metadata: dict,
    update_when: Optional[str] = None,
    delete_when: Optional[str] = None,
) -> None:
    """Upsert `df` into the table at `uri` by `keys` in one Delta commit (creating the table if needed).

    Rows whose keys are new are inserted; matched rows are updated only where
    `update_when` holds (their content changed); target rows that `df` does not
    match are deleted where `delete_when` holds (files replaced or gone).
    Conditions are SQL and refer to the target as `t` and to `df` as `s`.
    Re-running with the same rows changes nothing.
    """
    if not is_delta(spark, uri):
        save(spark, _writer(df, "error", metadata, None, is_name(uri)), uri, json.dumps(metadata, sort_keys=True))
        return
    clauses = [f"WHEN MATCHED AND ({update_when}) THEN UPDATE SET *"] if update_when is not None else []
    clauses.append("WHEN NOT MATCHED THEN INSERT *")
    if delete_when is not None:
        clauses.append(f"WHEN NOT MATCHED BY SOURCE AND ({delete_when}) THEN DELETE")
    merge_sql(spark, df, uri, keys, clauses, metadata)


def merge_sql(spark, source: DataFrame, uri: str, keys: list[str], clauses: list[str], metadata: dict) -> None:
    """`MERGE INTO` the table (as `t`) from `source` (as `s`) on equal `keys`, with the SQL
    `clauses` (WHEN ... THEN ...), in one commit that carries `metadata`."""
    view = f"instructlake_merge_{uuid.uuid4().hex[:12]}"
    source.createOrReplaceTempView(view)
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    try:
        with commit_info(spark, metadata):
            spark.sql(f"MERGE INTO {sql_table(uri)} AS t USING {view} AS s ON {on} {' '.join(clauses)}")
    finally:
        spark.catalog.dropTempView(view)


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def content_digest(df: DataFrame) -> str:
    """An order-independent digest of a DataFrame's rows: row count and the sum of row hashes."""
    row = df.select(F.xxhash64(*df.columns).cast("decimal(38,0)").alias("h")).agg(F.count(F.lit(1)), F.sum("h")).first()
    return f"{row[0]}:{row[1] or 0}"


def write_if_changed(spark, df: DataFrame, uri: str, metadata: dict) -> tuple[int, bool]:
    """Overwrite the table with `df` in one commit unless it already holds the same rows;
    returns (table version, written)."""
    digest = content_digest(df)
    if is_delta(spark, uri):
        version = latest_version(spark, uri)
        if commit_metadata(spark, uri, version).get("content_digest") == digest:
            return version, False
    overwrite(df, uri, metadata | {"content_digest": digest})
    return latest_version(spark, uri), True
