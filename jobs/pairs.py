"""Stage 2, silver: one `pairs` row per candidate pair from every bronze table.

Columns: `source` (label), `source_name`, `source_format`, provenance
(`source_file`, `row_index`, `item`, `content_id`, `ingest_run_id`), `instruction`,
`response`, score columns (`instruction_chars`, `response_chars`,
`red_team_rating`), `pair_id` (sha256 of instruction and response),
`drop_reason` (null when kept; else the dialogue-split failure, the first
failing filter in conf order, or `duplicate_of:<pair_id>` /
`near_duplicate_of:<pair_id>` from the dedup step, `jobs.dedup`, which runs
last over the whole table in a commit of its own). Nothing is deleted here:
dropped rows stay, with their reason. The model filters' score columns follow (`lang`,
`lang_prob`, `instruction_<class>`, `response_<class>`; null on rows dropped
before the filter ran). The commit records the bronze versions it read and,
under `scorers`, the versioned name of each model filter's scorer by filter
name (e.g. `{"toxicity": "toxicity/detoxify-original"}`), and under
`decontamination` the benchmarks checked (files with sha256, item counts; see
`udfs.decontamination`), which are part of the conf digest: a changed
benchmark file recomputes every pair.

The candidates of a `web_text` source are its rows of the generate stage's
`silver/qa` table (one per generated question, `item` = `<type>/<k>`), their
`drop_reason` the question-answer checks' one; the commit records the qa
table version read (`qa_version`).

The candidates of a code source (`conala`, `mbpp`, `humaneval`, and the generated
functions of `python_code`) come from `jobs.generate_code.code_pair_rows`, with the
execution result of their program (`exec_status`, `exec_reason`, `exec_duration_s`,
`exec_stderr_tail`); the commit records the code tables' versions (`code_versions`).

    spark-submit jobs/pairs.py --conf conf/local.yaml
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file by spark-submit
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.config import Config, Source
from jobs.confload import to_dict
from jobs.lake import Lake, RunContext, commit_metadata, is_delta, latest_version, overwrite, read_version, stats_only_on
from udfs.decontamination import decontamination_summaries
from udfs.dialogue import with_first_exchange as split_dialogues
from udfs.filters import DROP_REASON, apply_filters, reason_kind, scorer_names, with_text_lengths

log = logging.getLogger("instructlake.pairs")

DIALOGUE_COLUMN = {"hh_rlhf": "chosen", "red_team": "transcript"}

PAIR_COLUMNS = [
    "source", "source_name", "source_format", "source_file", "row_index", "item", "content_id", "ingest_run_id",
    "instruction", "response", "instruction_chars", "response_chars", "red_team_rating", "pair_id", DROP_REASON,
    "pairs_run_id",
]
# `item` tells apart the pairs of one bronze row: "" for a dialogue, `<type>/<k>` for the
# generated questions of a web_text paragraph (see jobs.generate_qa).
KEYS = ["source_name", "source_file", "row_index", "item"]
# Delta keeps per-file statistics only of the columns the jobs filter the table on, not of the texts.
PAIRS_PROPERTIES = stats_only_on(["source", *KEYS, DROP_REASON])


class MissingTableError(RuntimeError):
    pass


@dataclass
class PairsResult:
    table: str
    version: int
    bronze_versions: dict[str, int]
    counts: list[tuple[str, str | None, int]]  # (source, drop_reason, rows)


def with_first_exchange(bronze: DataFrame, source: Source) -> DataFrame:
    """Bronze rows to candidate pairs: the dialogue split plus provenance; `drop_reason` holds split failures."""
    rating = F.col("rating") if source.format == "red_team" else F.lit(None).cast("double")
    split = split_dialogues(bronze.withColumn("_rating", rating), DIALOGUE_COLUMN[source.format], ("instruction", "response", DROP_REASON))
    return split.select(
        F.lit(source.label).alias("source"),
        F.lit(source.name).alias("source_name"),
        F.lit(source.format).alias("source_format"),
        "source_file",
        "row_index",
        F.lit("").alias("item"),
        "content_id",
        "ingest_run_id",
        "instruction",
        "response",
        F.col("_rating").alias("red_team_rating"),
        DROP_REASON,
    )


def with_pair_id(df: DataFrame) -> DataFrame:
    return df.withColumn(
        "pair_id",
        F.when(F.col("instruction").isNotNull(), F.sha2(F.concat_ws("\u0000", "instruction", "response"), 256)),
    )


def _derived_rows(spark, conf: Config, lake: Lake, source: Source, bronze: DataFrame, qa_version, code_versions):
    """The candidates a generate step builds for a source (web_text: silver/qa; the code formats:
    `jobs.generate_code`), or None for a source whose bronze rows are dialogues."""
    from jobs.generate_code import CODE_FORMATS, code_pair_rows

    if source.format == "web_text":
        from jobs.generate_qa import qa_pair_rows

        return qa_pair_rows(spark, lake, source, qa_version)
    if source.format in CODE_FORMATS:
        return code_pair_rows(spark, conf, lake, source, bronze, code_versions)
    return None


def build_pairs(
    spark, conf: Config, lake: Lake, run: RunContext, done: DataFrame | None = None, qa_version: int | None = None,
    code_versions: dict | None = None,
) -> tuple[DataFrame, dict[str, int]]:
    """The pairs DataFrame (not yet written) and the bronze versions it reads.

    `done` holds (source_name, source_file, row_index, item, content_id) of pairs
    already computed: those bronze rows are left out before any scoring. The
    pairs of a `web_text` source are its rows of the qa table (version
    `qa_version`), written by the generate stage.
    """
    parts, versions = [], {}
    for source in conf.enabled_sources:
        uri = lake.bronze(source.name)
        if not is_delta(spark, uri):
            raise MissingTableError(
                f"bronze table for source {source.name!r} not found at {uri}; run `instructlake ingest` first"
            )
        bronze, versions[source.name] = read_version(spark, uri)
        rows = _derived_rows(spark, conf, lake, source, bronze, qa_version, code_versions)
        if rows is not None:
            if done is not None:
                rows = rows.join(
                    done.where(F.col("source_name") == source.name).drop("source_name"),
                    ["source_file", "row_index", "item", "content_id"],
                    "left_anti",
                )
            parts.append(rows)
            continue
        if done is not None:
            bronze = bronze.join(
                done.where(F.col("source_name") == source.name).drop("source_name", "item"),
                ["source_file", "row_index", "content_id"],
                "left_anti",
            )
        parts.append(with_first_exchange(bronze, source))
    pairs = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    pairs = pairs.transform(with_text_lengths).transform(apply_filters, conf.filters).transform(with_pair_id)
    return pairs.withColumn("pairs_run_id", F.lit(run.run_id)).select(*PAIR_COLUMNS, *[c for c in pairs.columns if c not in PAIR_COLUMNS]), versions


def pairs_digest(conf: Config, benchmarks: dict | None = None) -> str:
    """What the content of a pairs row depends on besides its bronze row: the sources, the filters
    and the content of the decontamination benchmarks (`benchmarks`, their summaries)."""
    relevant = {
        "sources": [(s.name, s.label, s.format) for s in conf.enabled_sources],
        "filters": [to_dict(f) for f in conf.filters],
        "dedup": to_dict(conf.dedup),
        "keys": KEYS,
    }
    if benchmarks:
        relevant["benchmarks"] = benchmarks
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _bronze_keys(spark, conf: Config, lake: Lake, versions: dict[str, int], qa_version: int | None = None,
                 code_versions: dict | None = None) -> DataFrame:
    def keys(s: Source) -> DataFrame:
        bronze = read_version(spark, lake.bronze(s.name), versions[s.name])[0]
        derived = _derived_rows(spark, conf, lake, s, bronze, qa_version, code_versions)
        if derived is not None:
            return derived.select(*KEYS, "content_id")
        return bronze.select(F.lit(s.name).alias("source_name"), "source_file", "row_index", F.lit("").alias("item"), "content_id")

    return reduce(DataFrame.unionByName, [keys(s) for s in conf.enabled_sources])


def update_pairs(
    spark, conf: Config, lake: Lake, run: RunContext, metadata: dict, previous_qa_version: int | None = None,
    previous_code_versions: dict | None = None,
) -> dict[str, int] | None:
    """Score only the bronze rows that have no pair yet, and drop pairs whose bronze row is gone,
    in one MERGE commit. Returns the bronze versions read, or None when nothing changed."""
    from delta.tables import DeltaTable

    qa_version, code_versions = metadata.get("qa_version"), metadata.get("code_versions")
    done = spark.read.format("delta").load(lake.pairs).select(*KEYS, "content_id")
    new, versions = build_pairs(spark, conf, lake, run, done, qa_version, code_versions)
    if versions == metadata.get("bronze_versions") and qa_version == previous_qa_version and code_versions == previous_code_versions:
        return None
    current = _bronze_keys(spark, conf, lake, versions, qa_version, code_versions)
    new_keys = current.join(done, [*KEYS, "content_id"], "left_anti").select(*KEYS)
    stale = (
        done.join(current, [*KEYS, "content_id"], "left_anti")
        .join(new_keys, KEYS, "left_anti")  # a changed row is updated, not deleted
    )
    changes = new.withColumn("_op", F.lit("upsert")).unionByName(
        stale.withColumn("_op", F.lit("delete")), allowMissingColumns=True
    )
    cond = reduce(lambda a, b: a & b, [F.col(f"t.{k}") == F.col(f"s.{k}") for k in KEYS])
    is_delete = F.col("s._op") == "delete"
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", json.dumps(metadata | {"bronze_versions": versions}, sort_keys=True))
    try:
        (
            DeltaTable.forPath(spark, lake.pairs).alias("t").merge(changes.alias("s"), cond)
            .whenMatchedDelete(condition=is_delete)
            # Every column of the new rows, the model filters' scores included (not only PAIR_COLUMNS).
            .whenMatchedUpdate(set={c: F.col(f"s.{c}") for c in new.columns})
            .whenNotMatchedInsert(condition=~is_delete, values={c: F.col(f"s.{c}") for c in new.columns})
            .execute()
        )
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
    return versions


def drop_counts(spark, uri: str, version: int) -> list[tuple[str, str | None, int]]:
    """Rows per (source, drop reason kind): `duplicate_of:<pair_id>` counts as `duplicate_of`."""
    rows = (
        spark.read.format("delta").option("versionAsOf", version).load(uri)
        .groupBy("source", reason_kind(F.col(DROP_REASON)).alias(DROP_REASON)).count()
        .orderBy("source", F.col(DROP_REASON).asc_nulls_first())
        .collect()
    )
    return [(r["source"], r[DROP_REASON], r["count"]) for r in rows]


def _qa_version(spark, conf: Config, lake: Lake) -> int | None:
    """The latest version of the generate stage's qa table when a web_text source is enabled."""
    from jobs.generate_qa import qa_table

    if not any(s.format == "web_text" for s in conf.enabled_sources):
        return None
    uri = qa_table(lake)
    return latest_version(spark, uri) if is_delta(spark, uri) else None


def run_pairs(spark, conf: Config, run: RunContext | None = None, full: bool = False) -> PairsResult:
    """Bring the pairs table up to date with bronze.

    Incremental by default: only bronze rows without a pair are split and
    scored (rows of untouched files keep their scores and `pairs_run_id`). A
    change of the sources, filters or dedup settings in the conf, or
    `full=True`, recomputes every pair instead. Then `jobs.dedup` recomputes
    the duplicates over the whole table and commits the reasons that change.
    Nothing changed means no new table version.
    """
    run = run or RunContext()
    lake = Lake.of(conf)
    started = time.monotonic()
    log_version = latest_version(spark, lake.ingest_log) if is_delta(spark, lake.ingest_log) else None
    qa_version = _qa_version(spark, conf, lake)
    from jobs.generate_code import code_versions

    benchmarks = decontamination_summaries(spark, conf.filters)
    digest = pairs_digest(conf, benchmarks)
    metadata = {"stage": "pairs", "run_id": run.run_id, "scorers": scorer_names(conf.filters), "conf_digest": digest, "ingest_log_version": log_version, "qa_version": qa_version,
                "code_versions": code_versions(spark, conf, lake)}
    if benchmarks:
        metadata["decontamination"] = benchmarks
    previous = commit_metadata(spark, lake.pairs, latest_version(spark, lake.pairs)) if is_delta(spark, lake.pairs) else None
    if full or previous is None or previous.get("conf_digest") != digest:
        why = "forced" if full else "no table yet" if previous is None else "sources, filters or benchmarks changed"
        log.info("recomputing every pair (%s)", why)
        pairs, versions = build_pairs(spark, conf, lake, run, qa_version=qa_version, code_versions=metadata["code_versions"])
        overwrite(pairs, lake.pairs, metadata | {"bronze_versions": versions}, PAIRS_PROPERTIES)
    else:
        versions = update_pairs(
            spark, conf, lake, run, metadata | {"bronze_versions": previous.get("bronze_versions")}, previous.get("qa_version"),
            previous.get("code_versions"),
        )
        if versions is None:
            versions = previous["bronze_versions"]
            log.info("up to date with bronze, nothing to score")
    from jobs.dedup import run_dedup

    run_dedup(spark, conf, lake, run.run_id)
    version = latest_version(spark, lake.pairs)
    counts = drop_counts(spark, lake.pairs, version)
    kept = sum(n for _, reason, n in counts if reason is None)
    total = sum(n for _, _, n in counts)
    log.info("%d candidate pairs, %d kept -> %s (v%d), %.1fs", total, kept, lake.pairs, version, time.monotonic() - started)
    return PairsResult(lake.pairs, version, versions, counts)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import main as cli_main

    return cli_main(["pairs", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    raise SystemExit(main())
