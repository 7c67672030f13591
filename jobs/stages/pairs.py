"""Stage 2, silver: one `pairs` row per candidate pair from every bronze table.

Each source's format (`instructlake.jobs.sources`) makes its candidates: the
first exchange of a dialogue, a generated question on a paragraph, a code
task with the result of its tests; the generated functions of the generate
stage join them under their own label. Columns: `CANDIDATE_COLUMNS`
(`source` label, `source_name`, `source_format`, provenance `source_file`,
`row_index`, `item`, `content_id`, `ingest_run_id`, `instruction`,
`response`, `red_team_rating`, `is_code`, `drop_reason`, `drop_stage`),
the text lengths `instruction_chars`, `response_chars`, `pair_id` (sha256 of
instruction and response) and `pairs_run_id`, then the columns the formats
and filters add (`exec_*` of the code formats; `lang`, `lang_prob`,
`instruction_<class>`, `response_<class>` of the model filters, null on rows
dropped before the filter ran).

`drop_reason` is null when the pair is kept; else the candidate's own reason
(a failed split, a check of a generated question, a program that did not
pass), the first failing filter in conf order, or `duplicate_of:<pair_id>` /
`near_duplicate_of:<pair_id>` from the dedup step (`instructlake.jobs.stages.dedup`),
which runs last over the whole table in a commit of its own. `drop_stage`
says which step or filter dropped it (the filter's `name`, else its `rule`).
Nothing is deleted here: dropped rows stay, with their reason.

The commit records the bronze versions it read, the qa and code tables'
versions, under `scorers` the versioned name of each model filter's scorer
by filter key (e.g. `{"toxicity": "toxicity/detoxify-original"}`), and under
`decontamination` the benchmarks checked (files with sha256, item counts),
which are part of the conf digest: a changed benchmark file recomputes every
pair.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from functools import reduce
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from instructlake.core.config import Config
from instructlake.core.confload import to_dict
from instructlake.core.errors import MissingTableError
from instructlake.core.lake import (
    Lake, RunContext, commit_metadata, is_delta, latest_version, merge_sql, overwrite, read_table, read_version, stats_only_on,
)
from instructlake.jobs.sources import format_of, sources_made
from instructlake.jobs.sources.base import CANDIDATE_COLUMNS, KEYS, Derived
from instructlake.jobs.stages.dedup import run_dedup
from instructlake.jobs.stages.generate_code import code_versions, generated_candidates
from instructlake.udfs.filters import DROP_REASON, DROP_STAGE, apply_filters, reason_kind, scorer_names
from instructlake.udfs.filters.decontamination import decontamination_summaries

log = logging.getLogger("instructlake.pairs")

PAIR_COLUMNS = [*CANDIDATE_COLUMNS, "instruction_chars", "response_chars", "pair_id", "pairs_run_id"]
# Delta keeps per-file statistics only of the columns the jobs filter the table on, not of the texts.
PAIRS_PROPERTIES = stats_only_on(["source", *KEYS, DROP_REASON])


@dataclass
class PairsResult:
    table: str
    version: int
    bronze_versions: dict[str, int]
    counts: list[tuple[str, str | None, int]]  # (source, drop reason kind, rows); None: kept
    stages: list[tuple[str, str | None, int]]  # (source, drop stage, rows); None: kept
    products: dict = field(default_factory=dict)  # the other products' tables (instructlake.jobs.stages.products)


def with_pair_id(df: DataFrame) -> DataFrame:
    return df.withColumn(
        "pair_id",
        F.when(F.col("instruction").isNotNull(), F.sha2(F.concat_ws("\u0000", "instruction", "response"), 256)),
    )


def with_text_lengths(df: DataFrame) -> DataFrame:
    """Adds `instruction_chars` and `response_chars` (characters, null when there is no pair)."""
    return df.withColumn("instruction_chars", F.length("instruction")).withColumn("response_chars", F.length("response"))


def candidates(spark, conf: Config, lake: Lake, derived: Derived) -> tuple[DataFrame, dict[str, int]]:
    """Every candidate pair (before the filters) and the bronze versions read."""
    parts, versions = [], {}
    for source in conf.enabled_sources:
        uri = lake.bronze(source.name)
        if not is_delta(spark, uri):
            raise MissingTableError(
                f"bronze table for source {source.name!r} not found at {uri}; run `instructlake ingest` first"
            )
        bronze, versions[source.name] = read_version(spark, uri)
        parts.append(format_of(source).candidates(spark, conf, lake, source, bronze, derived))
    generated = generated_candidates(spark, conf, lake, derived.code_versions)
    if generated is not None:
        parts.append(generated)
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts), versions


def build_pairs(spark, conf: Config, lake: Lake, run: RunContext, derived: Derived, done: Optional[DataFrame] = None,
                ) -> tuple[DataFrame, dict[str, int]]:
    """The pairs DataFrame (not yet written) and the bronze versions it reads.

    `done` holds (KEYS, content_id) of pairs already computed: those candidates
    are left out before any scoring.
    """
    pairs, versions = candidates(spark, conf, lake, derived)
    if done is not None:
        pairs = pairs.join(done, [*KEYS, "content_id"], "left_anti")
    pairs = pairs.transform(with_text_lengths).transform(apply_filters, conf.filters).transform(with_pair_id)
    pairs = pairs.withColumn("pairs_run_id", F.lit(run.run_id))
    return pairs.select(*PAIR_COLUMNS, *[c for c in pairs.columns if c not in PAIR_COLUMNS]), versions


def pairs_digest(conf: Config, benchmarks: dict | None = None) -> str:
    """What the content of a pairs row depends on besides its bronze row: the sources, the filters
    and the content of the decontamination benchmarks (`benchmarks`, their summaries)."""
    relevant = {
        "sources": [(s.name, s.label, s.format) for s in conf.enabled_sources],
        "filters": [to_dict(f) for f in conf.filters],
        "dedup": to_dict(conf.dedup),
        "keys": KEYS,
        "columns": PAIR_COLUMNS,
    }
    if benchmarks:
        relevant["benchmarks"] = benchmarks
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def update_pairs(spark, conf: Config, lake: Lake, run: RunContext, metadata: dict, previous: dict) -> Optional[dict[str, int]]:
    """Score only the candidates that have no pair yet, and drop pairs whose candidate is gone, in
    one MERGE commit. Returns the bronze versions read, or None when nothing changed."""
    derived = Derived(metadata.get("qa_version"), metadata.get("code_versions"))
    done = read_table(spark, lake.pairs).select(*KEYS, "content_id")
    new, versions = build_pairs(spark, conf, lake, run, derived, done)
    unchanged = (versions == previous.get("bronze_versions") and derived.qa_version == previous.get("qa_version")
                 and derived.code_versions == previous.get("code_versions"))
    if unchanged:
        return None
    current = candidates(spark, conf, lake, derived)[0].select(*KEYS, "content_id")
    new_keys = current.join(done, [*KEYS, "content_id"], "left_anti").select(*KEYS)
    stale = (
        done.join(current, [*KEYS, "content_id"], "left_anti")
        .join(new_keys, KEYS, "left_anti")  # a changed row is updated, not deleted
    )
    changes = new.withColumn("_op", F.lit("upsert")).unionByName(
        stale.withColumn("_op", F.lit("delete")), allowMissingColumns=True
    )
    columns = [f"`{c}`" for c in new.columns]  # every column of the new rows, the model filters' scores included
    merge_sql(spark, changes, lake.pairs, KEYS, [
        "WHEN MATCHED AND s._op = 'delete' THEN DELETE",
        "WHEN MATCHED THEN UPDATE SET " + ", ".join(f"t.{c} = s.{c}" for c in columns),
        f"WHEN NOT MATCHED AND s._op <> 'delete' THEN INSERT ({', '.join(columns)}) VALUES ({', '.join('s.' + c for c in columns)})",
    ], metadata | {"bronze_versions": versions})
    return versions


def drop_counts(spark, uri: str, version: int) -> tuple[list, list]:
    """Rows per (source, drop reason kind) (`duplicate_of:<pair_id>` counts as `duplicate_of`), and
    per (source, drop stage); None stands for the kept rows."""
    rows = (
        read_version(spark, uri, version)[0]
        .groupBy("source", DROP_STAGE, reason_kind(F.col(DROP_REASON)).alias("kind")).count()
        .collect()
    )
    by_kind: dict = {}
    by_stage: dict = {}
    for r in rows:
        by_kind[(r["source"], r["kind"])] = by_kind.get((r["source"], r["kind"]), 0) + r["count"]
        by_stage[(r["source"], r[DROP_STAGE])] = by_stage.get((r["source"], r[DROP_STAGE]), 0) + r["count"]
    order = lambda item: (item[0][0], item[0][1] is not None, item[0][1] or "")  # noqa: E731
    return ([(s, k, n) for (s, k), n in sorted(by_kind.items(), key=order)],
            [(s, st, n) for (s, st), n in sorted(by_stage.items(), key=order)])


def _qa_version(spark, conf: Config, lake: Lake) -> int | None:
    """The latest version of the generate stage's qa table when a source has paragraphs."""
    if not sources_made(conf, "paragraphs"):
        return None
    return latest_version(spark, lake.qa) if is_delta(spark, lake.qa) else None


def run_pairs(spark, conf: Config, run: RunContext | None = None, full: bool = False) -> PairsResult:
    """Bring the pairs table up to date with bronze.

    Incremental by default: only candidates without a pair are scored (rows of
    untouched files keep their scores and `pairs_run_id`). A change of the
    sources, filters or dedup settings in the conf, or `full=True`,
    recomputes every pair instead. Then the dedup step recomputes the
    duplicates over the whole table and commits the reasons that change.
    Nothing changed means no new table version.
    """
    run = run or RunContext()
    lake = Lake.of(conf)
    started = time.monotonic()
    log_version = latest_version(spark, lake.ingest_log) if is_delta(spark, lake.ingest_log) else None
    derived = Derived(_qa_version(spark, conf, lake), code_versions(spark, conf, lake))
    benchmarks = decontamination_summaries(spark, conf.filters)
    digest = pairs_digest(conf, benchmarks)
    metadata = {"stage": "pairs", "run_id": run.run_id, "scorers": scorer_names(conf.filters), "conf_digest": digest,
                "ingest_log_version": log_version, "qa_version": derived.qa_version, "code_versions": derived.code_versions}
    if benchmarks:
        metadata["decontamination"] = benchmarks
    previous = commit_metadata(spark, lake.pairs, latest_version(spark, lake.pairs)) if is_delta(spark, lake.pairs) else None
    if full or previous is None or previous.get("conf_digest") != digest:
        why = "forced" if full else "no table yet" if previous is None else "sources, filters or benchmarks changed"
        log.info("recomputing every pair (%s)", why)
        pairs, versions = build_pairs(spark, conf, lake, run, derived)
        overwrite(pairs, lake.pairs, metadata | {"bronze_versions": versions}, PAIRS_PROPERTIES)
    else:
        versions = update_pairs(spark, conf, lake, run, metadata, previous)
        if versions is None:
            versions = previous["bronze_versions"]
            log.info("up to date with bronze, nothing to score")
    run_dedup(spark, conf, lake, run.run_id)
    version = latest_version(spark, lake.pairs)
    counts, stages = drop_counts(spark, lake.pairs, version)
    kept = sum(n for _, reason, n in counts if reason is None)
    total = sum(n for _, _, n in counts)
    log.info("%d candidate pairs, %d kept -> %s (v%d), %.1fs", total, kept, lake.pairs, version, time.monotonic() - started)
    return PairsResult(lake.pairs, version, versions, counts, stages)
