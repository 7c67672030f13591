"""The silver tables of the preference and conversations products, from the same bronze tables.

The seed's dataset (the `pairs` table) is one product of the lake; these are
two more, made in the pairs stage after it, with the same provenance, filters
(`instructlake.udfs.filters`), drop reasons and drop stages. Nothing is
deleted: a row that makes no product row keeps its reason.

- `silver/preference`: one row per record of a source whose format has a
  `chosen` and a `rejected` conversation (HH-RLHF). `prompt` holds the turns
  the two share up to the final assistant turn (chat messages), `response`
  the chosen final reply and `rejected` the other one
  (`instructlake.udfs.conversation.preference`); `instruction` is the
  prompt's turns as one text (joined by blank lines), the text the filters
  judge with `response`. A record that makes no pair is dropped at stage
  `preference_split` with its reason (`identical_replies`, `prompts_differ`,
  `no_final_reply`, `empty_chosen`, `empty_rejected`, ...). The
  `response_length` filters bound the rejected reply too (`rejected_too_short`,
  `rejected_too_long`); with `dedup_prompts`, a prompt seen before (normalized)
  is dropped as `duplicate_prompt_of:<content_id>` (stage `dedup`).
- `silver/conversations`: one row per dialogue (HH `chosen`, red-team
  `transcript`): `messages`, every turn that can be trained on
  (`instructlake.udfs.conversation.conversation`), `cut` (why later turns were
  left out, or null) and `turns`. A dialogue without a first exchange is
  dropped at stage `dialogue_split`. The product's `filters` judge the first
  exchange (`instruction`, `response`, as the pairs table does);
  `every_turn_filters` judge every later exchange too, and the first failing
  one drops the conversation with that filter's reason, `failed_exchange`
  saying which (1 is the first). With `dedup`, a conversation whose whole
  normalized text was seen before is dropped as `duplicate_of:<content_id>`.

Each row keeps its bronze row's `source_name`, `source_file`, `row_index` and
`content_id` (the exported `id`). A table is rebuilt whole, in one commit,
when its bronze tables or its conf (product settings, filters, benchmarks)
changed since its last commit; otherwise it is left as it is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from functools import reduce
from typing import Optional

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from instructlake.core.config import Config, FilterSpec, Source
from instructlake.core.confload import to_dict
from instructlake.core.errors import ConfigError, MissingTableError
from instructlake.core.lake import Lake, RunContext, commit_metadata, is_delta, latest_version, overwrite, read_version, stats_only_on
from instructlake.jobs.sources import format_of
from instructlake.jobs.sources.base import DIALOGUE_SPLIT, label_rank
from instructlake.jobs.stages.pairs import drop_counts, with_text_lengths
from instructlake.udfs.conversation import conversation_col, preference_col, turns_text
from instructlake.udfs.filters import DROP_REASON, DROP_STAGE, apply_filters, applies_to, filter_of, scorer_names, set_reason
from instructlake.udfs.filters.decontamination import decontamination_summaries
from instructlake.udfs.filters.length import LengthFilter
from instructlake.udfs.text import normalized_col

log = logging.getLogger("instructlake.products")

PRODUCTS = ("preference", "conversations")
PREFERENCE_SPLIT = "preference_split"
DEDUP = "dedup"
ROW_KEYS = ["source_name", "source_file", "row_index"]
PROVENANCE = ["source", "source_name", "source_format", "source_file", "row_index", "content_id", "ingest_run_id"]
PROPERTIES = stats_only_on(["source", *ROW_KEYS, DROP_REASON])
# What the sources' formats must declare for each product (`SourceFormat` fields).
NEEDS = {"preference": "preference", "conversations": "dialogue"}


@dataclass
class ProductResult:
    name: str
    table: str
    version: int
    counts: list[tuple[str, Optional[str], int]]  # (source, drop reason kind, rows); None: kept
    stages: list[tuple[str, Optional[str], int]]  # (source, drop stage, rows); None: kept
    cuts: dict[str, dict[str, int]] = field(default_factory=dict)  # conversations: {source: {cut: rows}}
    rebuilt: bool = False

    @property
    def kept(self) -> int:
        return sum(n for _, kind, n in self.counts if kind is None)


def enabled_products(conf: Config) -> list[str]:
    """The products the conf enables that have at least one source."""
    return [name for name in PRODUCTS if getattr(conf.products, name).enabled and product_sources(conf, name)]


def product_sources(conf: Config, name: str) -> list[Source]:
    """The enabled sources a product is made from (its `sources`, else every source whose format can)."""
    listed = getattr(conf.products, name).sources
    out = []
    for source in conf.enabled_sources:
        if listed is not None and source.name not in listed:
            continue
        if getattr(format_of(source), NEEDS[name]) is None:
            if listed is not None:
                raise ConfigError(f"products.{name}.sources",
                                  f"source {source.name!r} (format {source.format}) has no {NEEDS[name]} for the {name} product")
            continue
        out.append(source)
    return out


def product_filters(conf: Config, name: str, keys: Optional[list[str]], what: str = "filters") -> list[FilterSpec]:
    """The enabled filters of `filters` whose keys are `keys` (None: every one that does not rewrite
    texts), in conf order. A filter that rewrites texts cannot judge a product: a one-line error."""
    chosen = [s for s in conf.filters if s.enabled and (keys is None or s.key in keys)]
    rewriting = [s.key for s in chosen if filter_of(s).rewrite and filter_of(s).rewrite(s) is not None]
    if keys is None:
        return [s for s in chosen if s.key not in rewriting]
    if rewriting:
        raise ConfigError(f"products.{name}.{what}", f"filter {rewriting[0]!r} rewrites texts, which only the pairs are "
                          "exported with; leave it out, or give it `action: drop`")
    return chosen


def every_turn_filters(conf: Config) -> list[FilterSpec]:
    keys = conf.products.conversations.every_turn_filters
    if keys is None:
        keys = [s.key for s in conf.filters if s.rule == "toxicity"]
    return product_filters(conf, "conversations", keys, "every_turn_filters")


def bronze_versions(spark, lake: Lake, sources: list[Source]) -> dict[str, int]:
    """The latest version of each source's bronze table (a missing one: a one-line error)."""
    versions = {}
    for source in sources:
        uri = lake.bronze(source.name)
        if not is_delta(spark, uri):
            raise MissingTableError(f"bronze table for source {source.name!r} not found at {uri}; run `instructlake ingest` first")
        versions[source.name] = latest_version(spark, uri)
    return versions


def _provenance(source: Source, bronze: DataFrame, **extra: Column) -> DataFrame:
    return bronze.select(
        F.lit(source.label).alias("source"), F.lit(source.name).alias("source_name"), F.lit(source.format).alias("source_format"),
        "source_file", "row_index", "content_id", "ingest_run_id", *[c.alias(n) for n, c in extra.items()],
    )


def _union(parts: list[DataFrame]) -> DataFrame:
    return reduce(DataFrame.unionByName, parts)


def _split_failed(error: Column, stage: str) -> tuple[Column, Column]:
    return error.alias(DROP_REASON), F.when(error.isNotNull(), F.lit(stage)).alias(DROP_STAGE)


def preference_rows(spark, conf: Config, lake: Lake, sources: list[Source], versions: dict[str, int]) -> DataFrame:
    """The preference table's rows (see the module doc), from bronze at `versions`."""
    parts = []
    for source in sources:
        bronze = read_version(spark, lake.bronze(source.name), versions[source.name])[0]
        chosen, rejected = format_of(source).preference
        parts.append(_provenance(source, bronze, _p=preference_col(F.col(chosen), F.col(rejected))))
    p = F.col("_p")
    df = _union(parts).select(
        *PROVENANCE, p["prompt"].alias("prompt"), turns_text(p["prompt"]).alias("instruction"),
        p["chosen"].alias("response"), p["rejected"].alias("rejected"),
        F.lit(None).cast("double").alias("red_team_rating"), F.lit(False).alias("is_code"),
        *_split_failed(p["error"], PREFERENCE_SPLIT),
    )
    specs = product_filters(conf, "preference", conf.products.preference.filters)
    df = apply_filters(with_text_lengths(df), specs).withColumn("rejected_chars", F.length("rejected"))
    for spec in specs:  # the response's length bounds bind the rejected reply too
        if isinstance(spec, LengthFilter) and spec.side == "response":
            on = applies_to(spec.sources)
            rules = []
            if spec.min_chars is not None:
                rules.append((on & (F.col("rejected_chars") < spec.min_chars), "rejected_too_short"))
            if spec.max_chars is not None:
                rules.append((on & (F.col("rejected_chars") > spec.max_chars), "rejected_too_long"))
            df = set_reason(df, rules, spec.key)
    if conf.products.preference.dedup_prompts:
        df = drop_repeats(df, conf, turns_text(F.col("prompt")), "duplicate_prompt_of")
    return df


def conversation_rows(spark, conf: Config, lake: Lake, sources: list[Source], versions: dict[str, int]) -> DataFrame:
    """The conversations table's rows (see the module doc), from bronze at `versions`."""
    parts = []
    for source in sources:
        bronze = read_version(spark, lake.bronze(source.name), versions[source.name])[0]
        fmt = format_of(source)
        rating = F.col(fmt.rating).cast("double") if fmt.rating else F.lit(None).cast("double")
        parts.append(_provenance(source, bronze, _c=conversation_col(F.col(fmt.dialogue)), red_team_rating=rating))
    c = F.col("_c")
    messages = c["messages"]
    df = _union(parts).select(
        *PROVENANCE, messages.alias("messages"), c["cut"].alias("cut"), F.size(messages).alias("turns"),
        messages[0]["content"].alias("instruction"), messages[1]["content"].alias("response"),
        "red_team_rating", F.lit(False).alias("is_code"), *_split_failed(c["error"], DIALOGUE_SPLIT),
    ).withColumn("turns", F.when(F.col("messages").isNotNull(), F.col("turns")))
    df = apply_filters(with_text_lengths(df), product_filters(conf, "conversations", conf.products.conversations.filters))
    df = judge_later_turns(df, every_turn_filters(conf))
    if conf.products.conversations.dedup:
        df = drop_repeats(df, conf, turns_text(F.col("messages")), "duplicate_of")
    return df


def judge_later_turns(df: DataFrame, specs: list[FilterSpec]) -> DataFrame:
    """`df` with the first later exchange that fails a filter of `specs` dropping its conversation
    (that filter's reason and stage) and `failed_exchange` (1-based; null when none failed)."""
    df = df.withColumn("failed_exchange", F.lit(None).cast("int"))
    if not specs:
        return df
    exchanges = (F.size("messages") / 2).cast("int")
    later = (
        df.where(F.col(DROP_REASON).isNull() & (exchanges > 1))
        .select(*ROW_KEYS, "source", "red_team_rating", "is_code", "messages",
                F.explode(F.sequence(F.lit(1), exchanges - 1)).alias("_k"))
        .select(*ROW_KEYS, "source", "red_team_rating", "is_code", "_k",
                F.col("messages")[F.col("_k") * 2]["content"].alias("instruction"),
                F.col("messages")[F.col("_k") * 2 + 1]["content"].alias("response"),
                F.lit(None).cast("string").alias(DROP_REASON), F.lit(None).cast("string").alias(DROP_STAGE))
    )
    judged = apply_filters(with_text_lengths(later), specs)
    first_failed = (
        judged.where(F.col(DROP_REASON).isNotNull())
        .groupBy(*ROW_KEYS)
        .agg(F.min_by(F.struct(F.col(DROP_REASON).alias("reason"), F.col(DROP_STAGE).alias("stage"), "_k"), "_k").alias("_f"))
    )
    joined = df.join(first_failed, ROW_KEYS, "left")
    newly = F.col(DROP_REASON).isNull() & F.col("_f").isNotNull()
    return joined.withColumns({
        DROP_STAGE: F.when(newly, F.col("_f.stage")).otherwise(F.col(DROP_STAGE)),
        "failed_exchange": F.when(newly, F.col("_f._k") + 1),
        DROP_REASON: F.when(newly, F.col("_f.reason")).otherwise(F.col(DROP_REASON)),
    }).drop("_f")


def drop_repeats(df: DataFrame, conf: Config, text: Column, reason: str) -> DataFrame:
    """Among the kept rows, those whose normalized `text` an earlier row has (sources in conf
    order, then the smallest content id) are dropped as `<reason>:<content_id of that row>`."""
    keyed = df.where(F.col(DROP_REASON).isNull()).select(
        *ROW_KEYS, "content_id", label_rank(conf.label_order).alias("_rank"), F.sha2(normalized_col(text, conf.dedup.normalization), 256).alias("_text"))
    order = Window.partitionBy("_text").orderBy("_rank", "content_id", *ROW_KEYS)
    repeats = (
        keyed.withColumn("_n", F.row_number().over(order)).withColumn("_first", F.first("content_id").over(order))
        .where(F.col("_n") > 1).select(*ROW_KEYS, "_first")
    )
    joined = df.join(repeats, ROW_KEYS, "left")
    return set_reason(joined, [(F.col("_first").isNotNull(), F.concat(F.lit(f"{reason}:"), F.col("_first")))], DEDUP).drop("_first")


BUILDERS = {"preference": preference_rows, "conversations": conversation_rows}


def product_digest(conf: Config, name: str, benchmarks: dict) -> str:
    """What a product table's content depends on besides its bronze rows."""
    relevant = {
        "product": name, "settings": to_dict(getattr(conf.products, name)), "filters": [to_dict(f) for f in conf.filters],
        "normalization": to_dict(conf.dedup.normalization), "labels": conf.label_order, "benchmarks": benchmarks,
        "sources": [(s.name, s.label, s.format) for s in product_sources(conf, name)],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def cut_counts(table: DataFrame) -> dict[str, dict[str, int]]:
    """{source: {cut reason: conversations}} of the kept conversations of `table` that were cut."""
    rows = (table.where(F.col(DROP_REASON).isNull() & F.col("cut").isNotNull())
            .groupBy("source", "cut").count().collect())
    out: dict[str, dict[str, int]] = {}
    for r in sorted(rows, key=lambda r: (r["source"], r["cut"])):
        out.setdefault(r["source"], {})[r["cut"]] = r["count"]
    return out


def run_product(spark, conf: Config, name: str, run: RunContext, lake: Lake, benchmarks: dict) -> ProductResult:
    """Bring one product's silver table up to date with bronze and the conf."""
    started = time.monotonic()
    uri = getattr(lake, name)
    sources = product_sources(conf, name)
    digest = product_digest(conf, name, benchmarks)
    versions = bronze_versions(spark, lake, sources)
    previous = commit_metadata(spark, uri, latest_version(spark, uri)) if is_delta(spark, uri) else None
    rebuilt = previous is None or previous.get("conf_digest") != digest or previous.get("bronze_versions") != versions
    if rebuilt:
        rows = BUILDERS[name](spark, conf, lake, sources, versions).withColumn("products_run_id", F.lit(run.run_id))
        specs = product_filters(conf, name, getattr(conf.products, name).filters)
        metadata = {"stage": name, "run_id": run.run_id, "conf_digest": digest, "bronze_versions": versions,
                    "scorers": scorer_names(specs)}
        overwrite(rows, uri, metadata, PROPERTIES)
    version = latest_version(spark, uri)
    counts, stages = drop_counts(spark, uri, version)
    cuts = cut_counts(read_version(spark, uri, version)[0]) if name == "conversations" else {}
    result = ProductResult(name, uri, version, counts, stages, cuts, rebuilt)
    log.info("%s: %d rows, %d kept -> %s (v%d%s), %.1fs", name, sum(n for _, _, n in counts), result.kept, uri, version,
             "" if rebuilt else ", up to date", time.monotonic() - started)
    return result


def run_products(spark, conf: Config, run: RunContext | None = None) -> dict[str, ProductResult]:
    """Every enabled product's silver table (see the module doc), by product name."""
    run = run or RunContext()
    lake = Lake.of(conf)
    names = enabled_products(conf)
    benchmarks = decontamination_summaries(spark, conf.filters) if names else {}
    return {name: run_product(spark, conf, name, run, lake, benchmarks) for name in names}
