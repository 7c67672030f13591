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

Formats, each written by Spark, one file per split and `rows_per_part` rows
(or `num_parts`), named `<name>-<format>-<split>-<k>.<ext>` for the pairs and
`<name>-<product>-<format>-<split>-<k>.jsonl` for the other products (k from
00001), in the release folder. `id` is always the content id of the bronze row
the row comes from (`meta` adds its source name, file and row index):

The pairs (`export.formats`):

- `jsonl`: `{"id", "source", "instruction", "response", "meta"}` a line,
  `meta` the provenance and scores;
- `chat`: `{"id", "source", "messages": [{"role": "user", ...}, {"role":
  "assistant", ...}], "meta"}`, the conversational format of TRL's SFT trainer;
- `openai`: `{"messages": [...]}` and nothing else, OpenAI's fine-tuning JSONL
  (the `chat` file of the same split and part has the ids, line for line);
- `sharegpt`: `{"id", "source", "conversations": [{"from": "human", "value"},
  {"from": "gpt", "value"}]}`;
- `alpaca`: `{"instruction", "input": "", "output", "id", "source"}`;
- `parquet`: the columns of `jsonl`, `meta` a struct.

Preference pairs (`products.preference.formats`), TRL's preference formats:
`conversational` (`{"id", "source", "prompt": [messages], "chosen":
[{"role": "assistant", ...}], "rejected": [...], "meta"}`) and `standard`
(`prompt`, `chosen`, `rejected` as strings; the prompt in the export
template's words, see `standard_prompt`).

Conversations (`products.conversations.formats`): `chat` (`{"id", "source",
"messages", "meta"}`), `openai` (`messages` alone), `sharegpt`.

The seed's JSON parts (`json_parts`, instructlake.jobs.stages.export) hold every exported pair.

Every exported row is checked before it is written (`check_exported_texts`):
none of its texts (instruction, response, a preference pair's rejected reply,
the contents of its prompt or conversation messages) may hold a raw
chat-template token or an extra turn (`instructlake.udfs.template_tokens`).
The `template_tokens` filter drops such pairs in the pairs stage; a row that
holds one anyway (the filter left out of the conf, or limited to some
sources) stops the export with one line naming its id and field, before
anything is published.
"""
from __future__ import annotations

import json
import math
from typing import Optional

from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F

from instructlake.core import storage
from instructlake.core.config import Config
from instructlake.core.errors import InstructlakeError
from instructlake.udfs.filters import rewrites
from instructlake.udfs.pair_format import PairTemplate
from instructlake.udfs.template_tokens import extra_turn_of_col, has_extra_turn_col, has_template_token_col, template_token_of_col

SPLITS = ("train", "validation")
PAIRS = "pairs"  # the seed's product: the pairs table
EXTENSIONS = {"parquet": "parquet"}  # every other format is JSON lines
SPLIT = "split"
# Provenance and score columns copied into `meta` when the pairs table has them.
META_COLUMNS = ("source_name", "source_file", "row_index", "item", "pair_id", "red_team_rating", "lang", "lang_prob")
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


def _message(role: str | Column, content: Column) -> Column:
    return F.struct((F.lit(role) if isinstance(role, str) else role).alias("role"), content.alias("content"))


def _sharegpt(messages: Column) -> Column:
    """Chat messages as ShareGPT turns: `from` human / gpt, `value`."""
    return F.transform(messages, lambda m: F.struct(
        F.when(m["role"] == "user", F.lit("human")).when(m["role"] == "assistant", F.lit("gpt")).otherwise(m["role"]).alias("from"),
        m["content"].alias("value")))


def _line(*fields: Column) -> list[Column]:
    return [F.to_json(F.struct(*fields), {"ignoreNullFields": "false"}).alias("line")]


def pair_messages() -> Column:
    return F.array(_message("user", F.col("instruction")), _message("assistant", F.col("response")))


def pairs_payload(fmt: str, df: DataFrame) -> list[Column]:
    """The written columns of one format of the pairs: a JSON `line`, or Parquet's columns."""
    ident = [F.col("content_id").alias("id"), F.col("source")]
    record = [*ident, F.col("instruction"), F.col("response"), meta_col(df.columns).alias("meta")]
    if fmt == "parquet":
        return record
    if fmt == "jsonl":
        return _line(*record)
    if fmt == "openai":  # nothing but `messages`: OpenAI's fine-tuning files take no other key
        return [F.to_json(F.struct(pair_messages().alias("messages"))).alias("line")]
    if fmt == "sharegpt":
        return _line(*ident, _sharegpt(pair_messages()).alias("conversations"))
    if fmt == "alpaca":
        return _line(F.col("instruction"), F.lit("").alias("input"), F.col("response").alias("output"), *ident)
    return _line(*ident, pair_messages().alias("messages"), meta_col(df.columns).alias("meta"))  # chat


def product_meta(df: DataFrame) -> Column:
    """A product row's provenance (its bronze row) and scores, as `meta`."""
    names = [c for c in ("source_name", "source_file", "row_index", "turns", "cut", "red_team_rating", "lang", "lang_prob")
             if c in df.columns]
    names += [c for c in df.columns if c.startswith(META_PREFIXES) and c not in NOT_META]
    return F.struct(F.col(SPLIT), *[F.col(c) for c in names])


def standard_prompt(template: PairTemplate) -> Column:
    """The prompt's messages as one string in the export template's words: each user turn as
    `<prefix><text>`, each assistant turn as `<middle><text>`, exchanges apart by a blank line,
    ending with `<middle>`; the reply follows it (as in the seed's rendering of a pair)."""
    def turn(m: Column, i: Column) -> Column:
        user = F.concat(F.when(i > 0, F.lit("\n\n")).otherwise(F.lit("")), F.lit(template.prefix), m["content"])
        return F.when(m["role"] == "user", user).otherwise(F.concat(F.lit(template.middle), m["content"]))

    return F.concat(F.array_join(F.transform(F.col("prompt"), turn), ""), F.lit(template.middle))


def preference_payload(fmt: str, df: DataFrame, conf: Config) -> list[Column]:
    """TRL's preference formats: conversational (`prompt` messages, `chosen`/`rejected` one assistant
    message each) or standard (the same as strings)."""
    ident = [F.col("content_id").alias("id"), F.col("source")]
    if fmt == "conversational":
        sides = [F.col("prompt"), F.array(_message("assistant", F.col("response"))).alias("chosen"),
                 F.array(_message("assistant", F.col("rejected"))).alias("rejected")]
    else:
        sides = [standard_prompt(PairTemplate.parse(conf.export.template)).alias("prompt"), F.col("response").alias("chosen"),
                 F.col("rejected")]
    return _line(*ident, *sides, product_meta(df).alias("meta"))


def conversations_payload(fmt: str, df: DataFrame) -> list[Column]:
    """Whole conversations: chat (`messages`), openai (`messages` alone) or sharegpt (`conversations`)."""
    ident = [F.col("content_id").alias("id"), F.col("source")]
    if fmt == "openai":
        return [F.to_json(F.struct(F.col("messages"))).alias("line")]
    if fmt == "sharegpt":
        return _line(*ident, _sharegpt(F.col("messages")).alias("conversations"))
    return _line(*ident, F.col("messages"), product_meta(df).alias("meta"))


def payload(product: str, fmt: str, df: DataFrame, conf: Config) -> list[Column]:
    if product == "preference":
        return preference_payload(fmt, df, conf)
    if product == "conversations":
        return conversations_payload(fmt, df)
    return pairs_payload(fmt, df)


def formats_of(conf: Config, product: str) -> list[str]:
    """The formats of a product that `write_formats` writes (json_parts has its own writer)."""
    if product == PAIRS:
        return [f for f in conf.export.formats if f != "json_parts"]
    return list(getattr(conf.products, product).formats)


def file_stem(conf: Config, product: str, fmt: str) -> str:
    """`<name>-<format>` for the pairs, `<name>-<product>-<format>` for the other products."""
    return f"{conf.export.name}-{fmt}" if product == PAIRS else f"{conf.export.name}-{product}-{fmt}"


def file_name(conf: Config, product: str, fmt: str, split: str, k: int) -> str:
    return f"{file_stem(conf, product, fmt)}-{split}-{k:05d}.{EXTENSIONS.get(fmt, 'jsonl')}"


def config_name(product: str, fmt: str, first: bool) -> str:
    """The dataset card's config of a product's format: the format's name for the pairs, the
    product's name for its first format, `<product>_<format>` for the others."""
    if product == PAIRS:
        return fmt
    return product if first else f"{product}_{fmt}"


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


class ExportCheckError(InstructlakeError):
    """An exported row holds a raw chat-template token or an extra turn."""


_PROBLEMS = (("a raw template token", has_template_token_col, template_token_of_col),
             ("an extra turn", has_extra_turn_col, extra_turn_of_col))
# What each product exports: (column, name in the files) of its texts, and its arrays of chat messages.
EXPORTED_TEXTS = {
    PAIRS: ((("instruction", "instruction"), ("response", "response")), ()),
    "preference": ((("response", "chosen"), ("rejected", "rejected")), ("prompt",)),
    "conversations": ((), ("messages",)),
}


def _on_content(test):
    """`test` of a chat message's content, as a one-argument function (Spark reads a second one as the index)."""
    return lambda m: test(m["content"])


def text_problem(product: str) -> Column:
    """The first problem of a row's exported texts (`EXPORTED_TEXTS`: its messages, then its texts),
    as a struct (field, problem, found); null when none."""
    texts, arrays = EXPORTED_TEXTS[product]
    found = []
    for column in arrays:
        for problem, has, of in _PROBLEMS:
            at = F.array_position(F.transform(column, _on_content(has)), True)
            content = F.element_at(column, at.cast("int"))["content"]
            found.append(F.when(at > 0, F.struct(
                F.concat(F.lit(f"{column}["), (at - 1).cast("string"), F.lit("].content")).alias("field"),
                F.lit(problem).alias("problem"), of(content).alias("found"))))
    for column, name in texts:
        for problem, has, of in _PROBLEMS:
            found.append(F.when(has(F.col(column)), F.struct(
                F.lit(name).alias("field"), F.lit(problem).alias("problem"), of(F.col(column)).alias("found"))))
    return F.coalesce(*found)


def _first_problem(product: str) -> Column:
    """The aggregate `bad`: the row of the smallest id among those of `product` with a `text_problem`."""
    problem = text_problem(product)
    return F.min(F.when(problem.isNotNull(), F.struct(
        F.col("content_id").alias("id"), "source", "source_name", "row_index", problem.alias("p")))).alias("bad")


def _raise_for(row, product: str) -> None:
    if row is not None:
        p = row["p"]
        raise ExportCheckError(
            f"export: {product} row {row['id']} (source {row['source']}, {row['source_name']} row {row['row_index']}): "
            f"{p['field']} holds {p['problem']} {json.dumps(p['found'], ensure_ascii=False)}; the template_tokens filter "
            "of `filters:` drops such rows in the pairs stage (docs/filters/index.md#template-tokens)"
        )


def check_exported_texts(df: DataFrame, product: str = PAIRS) -> None:
    """Raises ExportCheckError (one line: the row's id, source and field) when a row of `df`, the
    rows of `product` about to be exported, has a `text_problem`; the row of the smallest id is
    named. One aggregation: nothing but that row reaches the driver."""
    _raise_for(df.select(_first_problem(product)).first()["bad"], product)


class TextCheck:
    """`check_exported_texts` done by the write of the rows instead of a pass of its own: `watch`
    puts an `Observation` of the first problem on the rows a write reads, `verify` raises after
    that write (its files are still unpublished)."""

    def __init__(self, product: str = PAIRS):
        self.product, self.seen, self.watched = product, Observation(), False

    def watch(self, df: DataFrame) -> DataFrame:
        self.watched = True
        return df.observe(self.seen, _first_problem(self.product))

    def verify(self) -> None:
        if self.watched:
            _raise_for(self.seen.get["bad"], self.product)


def write_formats(spark, numbered: DataFrame, conf: Config, release: str, staging: str, product: str = "pairs") -> list[dict]:
    """Write every format of a product (`formats_of`) from `numbered` (see `with_parts`);
    returns [{file, product, format, split, rows}]. The rows of a product other than the pairs are
    checked here (`check_exported_texts`); the pairs, once for all their formats, by the export."""
    fmts = formats_of(conf, product)
    if not fmts:
        return []
    if product != PAIRS:
        check_exported_texts(numbered, product)
    placed, rows_of = with_parts(numbered, conf)
    written = []
    for fmt in fmts:
        uri = storage.join(staging, product, fmt)
        data = (placed.select(*payload(product, fmt, placed, conf), SPLIT, "part", "_split_idx")
                .repartition(SPLIT, "part").sortWithinPartitions(SPLIT, "part", "_split_idx").drop("_split_idx")
                .write.mode("overwrite").partitionBy(SPLIT, "part"))
        data.parquet(uri) if fmt == "parquet" else data.text(uri)
        for (split, part), n in sorted(rows_of.items()):
            written.append(_place(spark, uri, release, conf, product, fmt, split, part, n))
    return written


def _place(spark, uri: str, release: str, conf: Config, product: str, fmt: str, split: str, part: int, rows: int) -> dict:
    """Move the one data file Spark wrote for (split, part) into the release folder."""
    ext = ".parquet" if fmt == "parquet" else ".txt"
    folder = storage.join(uri, f"{SPLIT}={split}", f"part={part}")
    files = [f for f in storage.list_files(spark, folder) if f.endswith(ext)]
    if len(files) != 1:
        raise RuntimeError(f"expected one {fmt} file for {split} part {part}, found {len(files)}")
    name = file_name(conf, product, fmt, split, part)
    storage.rename(spark, files[0], storage.join(release, name))
    return {"file": name, "product": product, "format": fmt, "split": split, "rows": rows}
