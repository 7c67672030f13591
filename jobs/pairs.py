"""Stage 2, silver: one `pairs` row per candidate pair from every bronze table.

Columns: `source` (label), `source_name`, `source_format`, provenance
(`source_file`, `row_index`, `content_id`, `ingest_run_id`), `instruction`,
`response`, score columns (`instruction_chars`, `response_chars`,
`red_team_rating`), `pair_id` (sha256 of instruction and response),
`drop_reason` (null when kept; else the dialogue-split failure or the first
failing filter in conf order). Nothing is deleted here: dropped rows stay,
with their reason. The model filters' score columns follow (`lang`,
`lang_prob`, `instruction_<class>`, `response_<class>`; null on rows dropped
before the filter ran). The commit records the bronze versions it read and,
under `scorers`, the versioned name of each model filter's scorer by filter
name (e.g. `{"toxicity": "toxicity/detoxify-original"}`).

    spark-submit jobs/pairs.py --conf conf/local.yaml
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file by spark-submit
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging
import time
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.config import Config, Source
from jobs.lake import Lake, RunContext, is_delta, latest_version, overwrite, read_version
from udfs.dialogue import split_first_exchange_cols
from udfs.filters import DROP_REASON, apply_filters, scorer_names, with_text_lengths

log = logging.getLogger("instructlake.pairs")

DIALOGUE_COLUMN = {"hh_rlhf": "chosen", "red_team": "transcript"}

PAIR_COLUMNS = [
    "source", "source_name", "source_format", "source_file", "row_index", "content_id", "ingest_run_id",
    "instruction", "response", "instruction_chars", "response_chars", "red_team_rating", "pair_id", DROP_REASON,
]


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
    instruction, response, error = split_first_exchange_cols(F.col(DIALOGUE_COLUMN[source.format]))
    rating = F.col("rating") if source.format == "red_team" else F.lit(None).cast("double")
    return bronze.select(
        F.lit(source.label).alias("source"),
        F.lit(source.name).alias("source_name"),
        F.lit(source.format).alias("source_format"),
        "source_file",
        "row_index",
        "content_id",
        "ingest_run_id",
        instruction.alias("instruction"),
        response.alias("response"),
        rating.alias("red_team_rating"),
        error.alias(DROP_REASON),
    )


def with_pair_id(df: DataFrame) -> DataFrame:
    return df.withColumn(
        "pair_id",
        F.when(F.col("instruction").isNotNull(), F.sha2(F.concat_ws("\u0000", "instruction", "response"), 256)),
    )


def build_pairs(spark, conf: Config, lake: Lake) -> tuple[DataFrame, dict[str, int]]:
    """The pairs DataFrame (not yet written) and the bronze versions it reads."""
    parts, versions = [], {}
    for source in conf.enabled_sources:
        uri = lake.bronze(source.name)
        if not is_delta(spark, uri):
            raise MissingTableError(
                f"bronze table for source {source.name!r} not found at {uri}; run `instructlake ingest` first"
            )
        bronze, versions[source.name] = read_version(spark, uri)
        parts.append(with_first_exchange(bronze, source))
    pairs = reduce(DataFrame.unionByName, parts)
    pairs = pairs.transform(with_text_lengths).transform(apply_filters, conf.filters).transform(with_pair_id)
    return pairs.select(*PAIR_COLUMNS, *[c for c in pairs.columns if c not in PAIR_COLUMNS]), versions


def drop_counts(spark, uri: str, version: int) -> list[tuple[str, str | None, int]]:
    rows = (
        spark.read.format("delta").option("versionAsOf", version).load(uri)
        .groupBy("source", DROP_REASON).count()
        .orderBy("source", F.col(DROP_REASON).asc_nulls_first())
        .collect()
    )
    return [(r["source"], r[DROP_REASON], r["count"]) for r in rows]


def run_pairs(spark, conf: Config, run: RunContext | None = None) -> PairsResult:
    run = run or RunContext()
    lake = Lake.of(conf)
    started = time.monotonic()
    pairs, versions = build_pairs(spark, conf, lake)
    overwrite(pairs, lake.pairs, {"stage": "pairs", "run_id": run.run_id, "bronze_versions": versions, "scorers": scorer_names(conf.filters)})
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
