"""Stage 2, silver, last step: exact and near-duplicate pairs get a drop reason.

Only pairs that every filter kept take part (`drop_reason` null, or a reason
this step set earlier); rows dropped for other reasons keep their reason.
Texts are compared normalized by the one normalizer the decontamination
filter uses too (`instructlake.udfs.text`; `dedup.normalization`: NFKC, lower
case, punctuation and symbols to spaces, whitespace collapsed). The drop
stage of its drops is `dedup`.

Priority, which decides the survivor of every group: the position of the
pair's source in the conf's `sources` list, then `pair_id` (sha256 of the
raw instruction and response; it identifies a pair's text, where a bronze
row's `content_id` is shared by the generated pairs of one paragraph), then
`source_file`, `row_index`, `item` (for pairs of equal text within a source).
A dropped pair's reason names the survivor by its `pair_id`: the one kept row
with that `pair_id`.

1. Exact pairs (`exact_pairs`): one survivor per normalized (instruction,
   response) across all sources; the others get `duplicate_of:<pair_id>`.
2. Exact instructions (`exact_instructions`): among the survivors of 1, one
   per normalized instruction within a source (conf entry), same reason.
3. Near duplicates (`near`): among the survivors of 2 whose label is in
   `near_sources`, the word shingles (`shingle_words` words) of the normalized
   instruction and response, hashed (HashingTF) and min-hashed by Spark ML's
   `MinHashLSH` (`bands` x `rows_per_band` hashes); pairs with equal hashes
   in one band are candidates (a self-join on band keys), and a candidate
   whose exact Jaccard similarity of the shingle sets reaches `threshold` is
   a match.
   A pair is dropped when a higher-priority survivor of 2 matches it, with
   `near_duplicate_of:<pair_id>` of the highest-priority one. Chains are not
   followed: with A ~ B, B ~ C and A !~ C (priority A, B, C), B and C are both
   dropped (C matches B, which survived the exact steps), and C names B. A
   pair with no word has no shingle and is never a near duplicate.

Everything runs as Spark joins and windows: no pair goes to the driver.
`run_dedup` recomputes the decision over the whole table after each pairs
run and MERGEs only the rows whose `drop_reason` changes, in a commit of its
own that carries the pairs commit's metadata; when nothing changes there is
no commit. A crash between the two commits is repaired by the next run, which
recomputes the decision from the table as it is.
"""
from __future__ import annotations

import logging

from pyspark.ml.feature import HashingTF, MinHashLSH, NGram
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from instructlake.core.config import Config, DedupSettings
from instructlake.core.lake import Lake, commit_metadata, latest_version, merge_sql, read_version, sql_string
from instructlake.jobs.sources.base import KEYS
from instructlake.udfs.filters import DROP_REASON, DROP_STAGE, applies_to
from instructlake.udfs.text import normalized_col

log = logging.getLogger("instructlake.dedup")

DUPLICATE = "duplicate_of"
NEAR_DUPLICATE = "near_duplicate_of"
STAGE = "dedup"
HASH_FEATURES = 1 << 24  # shingles are hashed to this many indices before min-hashing


def with_shingles(df: DataFrame, text: str, k: int) -> DataFrame:
    """Adds `_shingles`: the distinct runs of `k` consecutive words of `text` (split on
    whitespace); the whole text when it has fewer words; empty when it has none."""
    df = df.withColumn("_words", F.array_remove(F.split(F.col(text), r"(?U)\s+"), ""))
    df = NGram(n=k, inputCol="_words", outputCol="_ngrams").transform(df)
    short = (F.size("_words") > 0) & (F.size("_words") < k)
    shingles = F.when(short, F.array(F.array_join("_words", " "))).otherwise(F.col("_ngrams"))
    return df.withColumn("_shingles", F.array_distinct(shingles)).drop("_words", "_ngrams")


def priority(conf: Config) -> Column:
    """The order that picks survivors (smallest first); unique per row, so it also identifies one."""
    order = [s.name for s in conf.enabled_sources]
    index = F.coalesce(F.array_position(F.array(*[F.lit(n) for n in order]), F.col("source_name")), F.lit(len(order) + 1))
    return F.struct(index.alias("src"), "pair_id", "source_file", "row_index", "item")


def _first_of_group(df: DataFrame, group: list[Column]) -> DataFrame:
    """Sets `_dup` to the group's first `pair_id` by priority on the other rows of the group
    (only rows whose `_dup` is still null take part)."""
    w = Window.partitionBy(*group, F.col("_dup").isNull()).orderBy("_prio")
    first = F.first("pair_id").over(w)
    return df.withColumn("_dup", F.when(F.col("_dup").isNull() & (F.row_number().over(w) > 1), first).otherwise(F.col("_dup")))


def exact_duplicates(df: DataFrame, spec: DedupSettings) -> DataFrame:
    """`_dup`: the survivor's pair_id on exact duplicates, null on survivors. Needs `_ni`, `_nr`, `_prio`."""
    df = df.withColumn("_dup", F.lit(None).cast("string"))
    if spec.exact_pairs:
        df = _first_of_group(df, [F.sha2(F.concat_ws("\u0000", "_ni", "_nr"), 256)])
    if spec.exact_instructions:
        df = _first_of_group(df, [F.col("source_name"), F.sha2(F.col("_ni"), 256)])
    return df


def with_band_keys(docs: DataFrame, spec: DedupSettings) -> DataFrame:
    """Adds `_bands`: one (band, key) per band, the key a hash of the band's `rows_per_band`
    min-hashes of the shingles (Spark ML's MinHashLSH over HashingTF indices)."""
    n, r = spec.bands * spec.rows_per_band, spec.rows_per_band
    docs = HashingTF(inputCol="_shingles", outputCol="_tf", numFeatures=HASH_FEATURES, binary=True).transform(docs)
    lsh = MinHashLSH(inputCol="_tf", outputCol="_mh", numHashTables=n, seed=spec.seed).fit(docs)
    # One expression per band, no lambda: Spark then computes the min-hashes once per row
    # (a column used inside a lambda is recomputed at every call).
    bands = F.array(*[F.struct(F.lit(j).alias("band"), F.xxhash64(F.slice("_mh", j * r + 1, r)).alias("key")) for j in range(spec.bands)])
    return lsh.transform(docs).withColumn("_bands", bands).drop("_tf", "_mh")


def near_duplicates(docs: DataFrame, spec: DedupSettings) -> DataFrame:
    """(`_prio`, `_near`): each pair that a higher-priority pair of `docs` matches, and the
    pair_id of the highest-priority match. `docs` holds `_prio` and `_shingles`."""
    docs = docs.where(F.size("_shingles") > 0)
    keyed = with_band_keys(docs, spec).select("_prio", F.explode("_bands").alias("b")).select("_prio", "b.band", "b.key")
    # Sort-merge joins throughout: a side's size estimate can fall under the broadcast threshold
    # while its shingle arrays, built into a hash table in the driver's heap, do not fit there.
    a, b = keyed.alias("a").hint("merge"), keyed.alias("b")
    candidates = (
        a.join(b, (F.col("a.band") == F.col("b.band")) & (F.col("a.key") == F.col("b.key")) & (F.col("a._prio") < F.col("b._prio")))
        .select(F.col("a._prio").alias("_hi"), F.col("b._prio").alias("_lo"))
        .distinct()
    )
    hi = docs.select(F.col("_prio").alias("_hi"), F.col("_shingles").alias("_sh"))
    lo = docs.select(F.col("_prio").alias("_lo"), F.col("_shingles").alias("_sl"))
    inter, union = F.size(F.array_intersect("_sh", "_sl")), F.size(F.array_union("_sh", "_sl"))
    matches = candidates.join(hi.hint("merge"), "_hi").join(lo.hint("merge"), "_lo").where(inter >= F.lit(spec.threshold) * union - 1e-9)
    return matches.groupBy(F.col("_lo").alias("_prio")).agg(F.min("_hi")["pair_id"].alias("_near"))


def dedup_reasons(pairs: DataFrame, conf: Config, cached: list | None = None) -> DataFrame:
    """The rows that take part (KEYS, `_current` reason) with their new `drop_reason`.

    The survivors of the exact steps are read twice (near-duplicate search, result), so they
    are persisted; the persisted DataFrames are appended to `cached` for the caller to unpersist.
    """
    spec = conf.dedup
    if not spec.enabled:  # only the reasons of an earlier dedup are cleared
        return pairs.where((F.col(DROP_STAGE) == STAGE)).select(
            *KEYS, F.col(DROP_REASON).alias("_current"), F.lit(None).cast("string").alias(DROP_REASON)
        )
    base = pairs.where(F.col(DROP_REASON).isNull() | (F.col(DROP_STAGE) == STAGE)).select(
        *KEYS, "source", "pair_id", F.col(DROP_REASON).alias("_current"),
        normalized_col(F.col("instruction"), spec.normalization).alias("_ni"),
        normalized_col(F.col("response"), spec.normalization).alias("_nr"),
        priority(conf).alias("_prio"),
    )
    exact = exact_duplicates(base, spec)
    if spec.near and cached is not None:
        exact = exact.persist()
        cached.append(exact)
    reason = F.when(F.col("_dup").isNotNull(), F.concat(F.lit(DUPLICATE + ":"), F.col("_dup")))
    if spec.near:
        docs = exact.where(F.col("_dup").isNull() & applies_to(spec.near_sources)).select(
            "_prio", F.concat_ws(" ", "_ni", "_nr").alias("_text")
        )
        docs = with_shingles(docs, "_text", spec.shingle_words).drop("_text")
        if cached is not None:
            docs = docs.persist()
            cached.append(docs)
        exact = exact.join(near_duplicates(docs, spec), "_prio", "left")
        reason = reason.when(F.col("_near").isNotNull(), F.concat(F.lit(NEAR_DUPLICATE + ":"), F.col("_near")))
    return exact.select(*KEYS, "_current", reason.alias(DROP_REASON))


def run_dedup(spark, conf: Config, lake: Lake, run_id: str) -> int:
    """Recompute the duplicate decision over the latest pairs table and MERGE the rows whose
    `drop_reason` changes (one commit with the latest commit's metadata, none when no row
    changes). Returns the number of rows changed."""
    version = latest_version(spark, lake.pairs)
    pairs = read_version(spark, lake.pairs, version)[0]
    cached: list[DataFrame] = []
    decided = dedup_reasons(pairs, conf, cached)
    changes = decided.where(~F.col("_current").eqNullSafe(F.col(DROP_REASON))).select(*KEYS, DROP_REASON).persist()
    try:
        changed = changes.count()
        if changed:
            metadata = commit_metadata(spark, lake.pairs, version) | {"run_id": run_id, "step": "dedup"}
            merge_sql(spark, changes, lake.pairs, KEYS, [
                f"WHEN MATCHED THEN UPDATE SET t.{DROP_REASON} = s.{DROP_REASON}, "
                f"t.{DROP_STAGE} = CASE WHEN s.{DROP_REASON} IS NOT NULL THEN {sql_string(STAGE)} END, "
                f"t.pairs_run_id = {sql_string(run_id)}"], metadata)
    finally:
        for df in [changes, *cached]:
            df.unpersist()
    log.info("dedup: %d pair(s) changed drop reason", changed)
    return changed
