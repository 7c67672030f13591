"""The rows an export publishes and the files trainers load.

Selection (`export.max_rows_per_source`, `export.source_weights`): per source
label, the kept pairs in a seeded hash order (`export.seed`), of which the
first `quota` rows are exported. A cap bounds a source's rows; weights mix
the listed sources in those proportions, as many rows as the capped counts
allow (labels not listed keep all their capped rows). Only the per-source
counts come to the driver.

Split: a row is in `validation` when the first 32 bits of
sha256("split:" + content_id), read as a fraction of 2^32, fall below
`export.validation_fraction`; else in `train`. The same content is always in
the same split, whatever the seed, the order or the other rows.

Formats (`export.formats`), each written by Spark, one file per split and
`rows_per_part` rows (or `num_parts`), named
`<name>-<format>-<split>-<k>.<ext>` (k from 00001) in the release folder:

- `jsonl`: `{"id", "source", "instruction", "response", "meta"}` a line;
  `id` is the pair's content id, `meta` its provenance and scores.
- `chat`: `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}`
  a line, the conversational format of TRL's SFT trainer.
- `parquet`: the columns of `jsonl`, `meta` a struct.

The seed's JSON parts (`json_parts`, instructlake.jobs.stages.export) hold every exported row.
"""
from __future__ import annotations

import math
from typing import Optional

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from instructlake.core import storage
from instructlake.core.config import Config
from instructlake.udfs.filters import rewrites

SPLITS = ("train", "validation")
EXTENSIONS = {"jsonl": "jsonl", "chat": "jsonl", "parquet": "parquet"}
SPLIT = "split"
# Provenance and score columns copied into `meta` when the pairs table has them.
META_COLUMNS = ("source_name", "item", "pair_id", "red_team_rating", "lang", "lang_prob")
META_PREFIXES = ("instruction_", "response_")
NOT_META = ("instruction_chars", "response_chars")


def with_exported_texts(df: DataFrame, conf: Config) -> DataFrame:
    """`df` with each side's text as exported: the text a rewriting filter wrote (PII redaction,
    the last such filter in conf order), where it wrote one; else the text as it is."""
    for _, columns in rewrites(conf.filters):
        for side, column in (("instruction", columns.instruction), ("response", columns.response)):
            if column in df.columns:
                df = df.withColumn(side, F.coalesce(F.col(column), F.col(side)))
    return df


def seeded_hash(seed: int) -> Column:
    """The seeded, deterministic order of the pairs (independent of file locations)."""
    return F.sha2(F.concat_ws(":", F.lit(str(seed)), F.col("content_id"), F.col("source_name"), F.col("row_index")), 256)


def split_col(fraction: float) -> Column:
    """`train` or `validation` by a hash of the content id (see the module docstring)."""
    bucket = F.conv(F.substring(F.sha2(F.concat(F.lit("split:"), F.col("content_id")), 256), 1, 8), 16, 10).cast("double")
    return F.when(bucket < F.lit(fraction * 2**32), F.lit("validation")).otherwise(F.lit("train"))


def source_quotas(available: dict[str, int], caps: Optional[dict[str, int]], weights: Optional[dict[str, float]]) -> dict[str, int]:
    """Rows exported per source label, from the kept rows per label."""
    capped = {s: min(n, (caps or {}).get(s, n)) for s, n in available.items()}
    if not weights:
        return capped
    mixed = {s: w for s, w in weights.items() if s in capped}
    total_weight = sum(mixed.values())
    positive = [capped[s] * total_weight / w for s, w in mixed.items() if w > 0]
    mix_rows = min(positive) if positive else 0
    quotas = dict(capped)
    for s, w in mixed.items():
        quotas[s] = min(capped[s], math.floor(mix_rows * w / total_weight + 1e-9)) if total_weight else 0
    return quotas


def select_rows(kept: DataFrame, conf: Config) -> tuple[DataFrame, Optional[dict]]:
    """The exported rows of `kept` and {"available", "quotas"} per label (None: no selection set)."""
    e = conf.export
    if not e.max_rows_per_source and not e.source_weights:
        return kept, None
    available = {r["source"]: r["count"] for r in kept.groupBy("source").count().collect()}
    quotas = source_quotas(available, e.max_rows_per_source, e.source_weights)
    limit = F.lit(0)
    for label, n in quotas.items():
        limit = F.when(F.col("source") == label, F.lit(n)).otherwise(limit)
    position = F.row_number().over(Window.partitionBy("source").orderBy(seeded_hash(e.seed), "source_file", "item"))
    chosen = kept.withColumn("_pos", position).where(F.col("_pos") <= limit).drop("_pos")
    return chosen, {"available": dict(sorted(available.items())), "quotas": dict(sorted(quotas.items()))}


def meta_col(columns: list[str]) -> Column:
    names = [c for c in columns if c in META_COLUMNS or (c.startswith(META_PREFIXES) and c not in NOT_META)]
    return F.struct(F.col(SPLIT), *[F.col(c) for c in names])


def payload(fmt: str, df: DataFrame) -> list[Column]:
    """The written columns of one format: a JSON `line`, or Parquet's columns."""
    record = [F.col("content_id").alias("id"), F.col("source"), F.col("instruction"), F.col("response"),
              meta_col(df.columns).alias("meta")]
    if fmt == "parquet":
        return record
    if fmt == "jsonl":
        return [F.to_json(F.struct(*record), {"ignoreNullFields": "false"}).alias("line")]
    turn = lambda role, text: F.struct(F.lit(role).alias("role"), F.col(text).alias("content"))  # noqa: E731
    return [F.to_json(F.struct(F.array(turn("user", "instruction"), turn("assistant", "response")).alias("messages"))).alias("line")]


def file_name(conf: Config, fmt: str, split: str, k: int) -> str:
    return f"{conf.export.name}-{fmt}-{split}-{k:05d}.{EXTENSIONS[fmt]}"


def with_parts(numbered: DataFrame, conf: Config) -> tuple[DataFrame, dict[tuple[str, int], int]]:
    """`numbered` (sorted by split first, with its global `idx`) plus `part`, the file of its
    split each row goes to, and `_split_idx`; and the rows per (split, part)."""
    counts = {r[SPLIT]: r["count"] for r in numbered.groupBy(SPLIT).count().collect()}
    offset, start, per_part, rows_of = F.lit(0), 0, {}, {}
    for split in SPLITS:  # sorted by split: train's rows come first
        n = counts.get(split, 0)
        offset = F.when(F.col(SPLIT) == split, F.lit(start)).otherwise(offset)
        per_part[split] = conf.export.rows_per_part or max(1, math.ceil(n / conf.export.num_parts))
        for k in range(math.ceil(n / per_part[split])):
            rows_of[(split, k + 1)] = min(per_part[split], n - k * per_part[split])
        start += n
    size = F.lit(1)
    for split, rpp in per_part.items():
        size = F.when(F.col(SPLIT) == split, F.lit(rpp)).otherwise(size)
    local = F.col("idx") - offset
    placed = numbered.withColumn("_split_idx", local).withColumn("part", (F.floor(local / size) + 1).cast("int"))
    return placed, rows_of


def write_formats(spark, numbered: DataFrame, conf: Config, release: str, staging: str) -> list[dict]:
    """Write every format of `export.formats` but json_parts from `numbered` (see `with_parts`);
    returns [{file, format, split, rows}]."""
    fmts = [f for f in conf.export.formats if f != "json_parts"]
    if not fmts:
        return []
    placed, rows_of = with_parts(numbered, conf)
    written = []
    for fmt in fmts:
        uri = storage.join(staging, fmt)
        data = (placed.select(*payload(fmt, placed), SPLIT, "part", "_split_idx")
                .repartition(SPLIT, "part").sortWithinPartitions(SPLIT, "part", "_split_idx").drop("_split_idx")
                .write.mode("overwrite").partitionBy(SPLIT, "part"))
        data.parquet(uri) if fmt == "parquet" else data.text(uri)
        for (split, part), n in sorted(rows_of.items()):
            written.append(_place(spark, uri, release, conf, fmt, split, part, n))
    return written


def _place(spark, uri: str, release: str, conf: Config, fmt: str, split: str, part: int, rows: int) -> dict:
    """Move the one data file Spark wrote for (split, part) into the release folder."""
    ext = ".parquet" if fmt == "parquet" else ".txt"
    folder = storage.join(uri, f"{SPLIT}={split}", f"part={part}")
    files = [f for f in storage.list_files(spark, folder) if f.endswith(ext)]
    if len(files) != 1:
        raise RuntimeError(f"expected one {fmt} file for {split} part {part}, found {len(files)}")
    name = file_name(conf, fmt, split, part)
    storage.rename(spark, files[0], storage.join(release, name))
    return {"file": name, "format": fmt, "split": split, "rows": rows}
