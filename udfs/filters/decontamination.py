"""Benchmark decontamination: drop a pair that shares a word n-gram with an evaluation item.

Three layers. The pure functions `normalize` (NFKC, lower case, Unicode
punctuation and symbols to spaces, whitespace collapsed) and `ngrams` (word
n-grams of a normalized text) are the reference. `with_ngram_hashes` is their
Spark form: `normalize` runs in a pandas UDF (Spark has no NFKC), the rest
are built-in expressions: the normalized text is split into word tokens, every
window of `n` tokens joined with one space, and each n-gram string hashed with
`xxhash64` (64 bits). `filter_decontamination` is the transform: the n-gram
hashes of the benchmark texts (read with Spark from the benchmark files) are
joined with those of the pairs still kept; a hit sets `drop_reason` to
`contaminated:<benchmark>` and `contaminated_item` to the item's id.

The checked text of a pair is its instruction and response joined by a
newline (`text: pair`), or one side. The checked text of a benchmark item is
its fields joined by newlines, in this order (`Benchmark.fields` narrows them),
so that an item whose parts are each short (MBPP task 17: a 10-word task and a
9-word function) is still found in a pair that holds both, and a pair that
holds the HumanEval prompt followed by its solution matches across the seam:

| format | fields | item id |
|---|---|---|
| `humaneval` | `prompt`, `canonical_solution` | its `task_id` (`HumanEval/0`) |
| `mbpp` | `text`, `code`; tasks of `task_ids` only | `<name>/<task_id>` (`mbpp/17`) |
| `gsm8k` | `question`, `answer` | `<name>/<split>/<line>` (`gsm8k/test/5`, line from 0 over the files in order) |
| `squad` | one item per paragraph: `context`, then its questions one a line | `<name>/<split>/<id of the paragraph's first question>` |

An item of fewer than `n` tokens has no n-gram and cannot match: it is
counted (`items_short` in the summary), not checked; so is a pair that
shares only a phrase shorter than `n` words with an item. When a pair matches
several items, the first benchmark in conf order wins, then the item that
comes first in that benchmark's files. Two different n-grams with the same
64-bit hash would be a false hit; at a million benchmark n-grams and a
billion pair n-grams that is about one chance in 20,000.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from functools import reduce
from typing import Literal, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.core import storage
from instructlake.core.session import application_id
from instructlake.core.config import FilterSpec, Normalization, check_name
from instructlake.core.confload import to_dict
from instructlake.core.errors import ConfigError
from instructlake.core.lake import with_position
from instructlake.udfs.filters.base import DROP_REASON, Filter, applies_to, set_reason
from instructlake.udfs.text import normalized_col

log = logging.getLogger("instructlake.decontamination")

ITEM_COLUMN = "contaminated_item"
REASON_PREFIX = "contaminated:"

# --- conf ----------------------------------------------------------------------------------

BENCHMARK_FIELDS = {
    "humaneval": ("prompt", "canonical_solution"),
    "mbpp": ("text", "code"),
    "gsm8k": ("question", "answer"),
    "squad": ("context", "question"),
}


@dataclass
class Benchmark:
    """An evaluation set whose text must not appear in a pair (see this module).

    `fields` are the parts of an item that are checked, joined in this order into
    one text (default: all of the format's, `BENCHMARK_FIELDS`); `split` is the label in the item ids of
    `gsm8k` and `squad` (`gsm8k/test/5`, `squad/dev/<id>`); `task_ids` is the
    inclusive [first, last] range of MBPP task ids kept (its test split is 11-510).
    """

    name: str
    format: Literal["humaneval", "mbpp", "gsm8k", "squad"]
    paths: list[str]
    split: str = "test"
    task_ids: Optional[list[int]] = None
    fields: Optional[list[str]] = None

    def validate(self) -> None:
        check_name("name", self.name)
        if not self.paths:
            raise ConfigError("paths", "at least one input path is required")
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.split):
            raise ConfigError("split", f"must be a plain label such as test or dev, got {self.split!r}")
        if self.task_ids is not None:
            if self.format != "mbpp":
                raise ConfigError("task_ids", "only the mbpp format has task ids to select")
            if len(self.task_ids) != 2 or self.task_ids[0] > self.task_ids[1]:
                raise ConfigError("task_ids", f"expected [first, last] with first <= last, got {self.task_ids}")
        for i, f in enumerate(self.fields or []):
            if f not in BENCHMARK_FIELDS[self.format]:
                raise ConfigError(f"fields[{i}]", f"{self.format} items have {', '.join(BENCHMARK_FIELDS[self.format])}, got {f!r}")
        if self.fields is not None and not self.fields:
            raise ConfigError("fields", "list at least one field, or leave it out for all")

    @property
    def checked_fields(self) -> list[str]:
        return list(self.fields or BENCHMARK_FIELDS[self.format])


@dataclass(kw_only=True)
class DecontaminationFilter(FilterSpec):
    """Drops a pair that shares a word n-gram with a benchmark item (`contaminated:<benchmark>`).

    `text` says what of the pair is checked: `pair` (instruction and response as
    one text, default), `instruction` or `response`. A benchmark item of fewer
    than `ngram` tokens cannot match and is counted as `items_short` in the
    commit metadata.
    """

    rule: Literal["decontamination"]
    benchmarks: list[Benchmark] = field(default_factory=list)
    ngram: int = field(default=13, metadata={"min": 1})
    normalization: Normalization = field(default_factory=Normalization)
    text: Literal["pair", "instruction", "response"] = "pair"

    def validate(self) -> None:
        if not self.benchmarks:
            raise ConfigError("benchmarks", "list at least one benchmark")
        names = [b.name for b in self.benchmarks]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ConfigError(f"benchmarks[{i}].name", f"duplicate benchmark name {n!r}")


# --- pure reference (the normalizer is `instructlake.udfs.text.normalize`) --------------------


def ngrams(normalized: str, n: int) -> list[str]:
    """The word n-grams of a normalized text, in order ([] when it has fewer than n tokens)."""
    tokens = normalized.split()
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


# --- Spark ------------------------------------------------------------------------------------


def tokens_col(normalized: Column) -> Column:
    """The word tokens of a normalized text column (an empty array for "")."""
    return F.when(normalized == "", F.array().cast("array<string>")).otherwise(F.split(normalized, " "))


def ngrams_col(tokens: Column, n: int) -> Column:
    """The array of word n-grams of a token array column, built-in expressions only."""
    windows = F.transform(F.sequence(F.lit(0), F.size(tokens) - n), lambda i: F.array_join(F.slice(tokens, i + 1, n), " "))
    return F.when(F.size(tokens) >= n, windows).otherwise(F.array().cast("array<string>"))


def with_tokens(df: DataFrame, text: str, spec: DecontaminationFilter) -> DataFrame:
    """Adds `tokens`, the word tokens of `normalize(df[text])` (a column of its own: Spark
    does not allow a Python UDF inside the n-grams' higher-order functions)."""
    return df.withColumn("_norm", normalized_col(F.col(text), spec.normalization)).withColumn("tokens", tokens_col(F.col("_norm"))).drop("_norm")


def with_ngram_hashes(df: DataFrame, text: str, spec: DecontaminationFilter) -> DataFrame:
    """One row per n-gram of `df[text]` (none for a text shorter than n tokens): `df`'s other
    columns plus `ngram_hash` (xxhash64 of the n-gram string)."""
    grams = ngrams_col(F.col("tokens"), spec.ngram)
    return (
        with_tokens(df, text, spec).withColumn("_ngram", F.explode(grams))
        .withColumn("ngram_hash", F.xxhash64("_ngram")).drop("_ngram", "tokens", text)
    )


def _json_lines(spark, files: list[str], schema: str, required: list[str], bench: Benchmark) -> DataFrame:
    """Records of JSON-lines files (gzip or not) with `line` (position over the files in order);
    a record that is not JSON or lacks a required field stops the run, naming the file."""
    raw = reduce(DataFrame.unionByName, [spark.read.text(f).withColumn("file", F.lit(f)) for f in files])
    rows = with_position(raw, "line").withColumn("r", F.from_json("value", schema)).select("file", "line", "r.*")
    bad = rows.where(reduce(lambda a, b: a | b, [F.col(c).isNull() for c in required])).select("file", "line").first()
    if bad is not None:
        raise ValueError(
            f"benchmark {bench.name!r}: {bad['file']}: record {bad['line']} (from 0, over the benchmark's files) is not a "
            f"{bench.format} JSON object with {', '.join(required)}"
        )
    return rows


SQUAD_SCHEMA = "data array<struct<paragraphs: array<struct<context: string, qas: array<struct<id: string, question: string>>>>>>"


def _squad_paragraphs(spark, file: str) -> DataFrame:
    doc = spark.read.schema(SQUAD_SCHEMA).option("multiLine", True).json(file)
    return (
        doc.select(F.explode("data").alias("a")).select(F.explode("a.paragraphs").alias("p"))
        .select(F.col("p.context").alias("context"), F.transform("p.qas", lambda q: q["question"]).alias("questions"),
                F.col("p.qas")[0]["id"].alias("first_id"))
    )


def _squad_items(spark, files: list[str], bench: Benchmark) -> DataFrame:
    """One row per paragraph, in file order: item, pos, context, questions."""
    paragraphs = with_position(reduce(DataFrame.unionByName, [_squad_paragraphs(spark, f) for f in files]), "pos")
    item = F.concat_ws("/", F.lit(bench.name), F.lit(bench.split), F.col("first_id"))
    return paragraphs.select(item.alias("item"), "pos", "context", "questions")


def benchmark_files(spark, bench: Benchmark) -> list[str]:
    """The benchmark's file URIs. A relative path is looked up in the working folder, then in
    the repository root (where `data/sample/` is), as the prompt files are: a notebook runs
    from its own folder."""
    return storage.expand_inputs(spark, [storage.find_file(p) for p in bench.paths], f"benchmark {bench.name!r}")


def _joined(fields: list[Column]) -> Column:
    """The item's checked fields as one text, one field a line (null fields left out)."""
    return F.concat_ws("\n", *fields)


def benchmark_texts(spark, bench: Benchmark) -> DataFrame:
    """(item, pos, text): one row per item of a benchmark, `text` its checked fields joined by
    newlines in the order of `checked_fields`, `pos` the item's place in the files."""
    files = benchmark_files(spark, bench)
    fields = bench.checked_fields
    if bench.format == "squad":
        items = _squad_items(spark, files, bench)
        parts = {"context": F.col("context"), "question": F.array_join("questions", "\n")}
        return items.select("item", "pos", _joined([parts[f] for f in fields]).alias("text"))
    if bench.format == "humaneval":
        rows = _json_lines(spark, files, "task_id string, prompt string, canonical_solution string", ["task_id", "prompt", "canonical_solution"], bench)
        item = F.col("task_id")
    elif bench.format == "mbpp":
        rows = _json_lines(spark, files, "task_id long, text string, code string", ["task_id", "text", "code"], bench)
        if bench.task_ids is not None:
            rows = rows.where(F.col("task_id").between(*bench.task_ids))
        item = F.concat_ws("/", F.lit(bench.name), F.col("task_id").cast("string"))
    else:
        rows = _json_lines(spark, files, "question string, answer string", ["question", "answer"], bench)
        item = F.concat_ws("/", F.lit(bench.name), F.lit(bench.split), F.col("line").cast("string"))
    return rows.select(item.alias("item"), F.col("line").alias("pos"), _joined([F.col(f) for f in fields]).alias("text"))


@dataclass(frozen=True)
class BenchmarkIndex:
    """The n-grams of a filter's benchmarks, cached in Spark: `table` has one row per distinct
    `ngram_hash` with `hit`, the first (rank in conf, item pos, benchmark, item) holding it;
    `summary` says what was read (see `benchmark_summary`)."""

    table: DataFrame
    summary: dict


_INDEXES: dict[tuple, BenchmarkIndex] = {}
_KEEP_INDEXES = 2  # cached tables kept per process (a test run switches between a few confs)


def _file_digests(spark, files: list[str]) -> list[dict]:
    rows = spark.read.format("binaryFile").load(files).select("path", "length", F.sha2("content", 256).alias("sha256")).collect()
    by_path = {r["path"]: r for r in rows}
    return [{"uri": f, "bytes": by_path[f]["length"], "sha256": by_path[f]["sha256"]} for f in files]


def _build_index(spark, spec: DecontaminationFilter, files: dict[str, list[dict]]) -> BenchmarkIndex:
    texts = reduce(DataFrame.unionByName, [
        with_tokens(benchmark_texts(spark, b), "text", spec).select(F.lit(rank).alias("rank"), F.lit(b.name).alias("benchmark"), "item", "pos", "tokens")
        for rank, b in enumerate(spec.benchmarks)
    ]).persist()
    grams = texts.select(
        "benchmark", F.explode(F.transform(ngrams_col(F.col("tokens"), spec.ngram), lambda g: F.xxhash64(g))).alias("ngram_hash"),
        F.struct("rank", "pos", "benchmark", "item").alias("hit"),
    )
    table = grams.groupBy("ngram_hash").agg(F.min("hit").alias("hit")).persist()
    table.count()
    counts = {
        r["benchmark"]: r
        for r in texts.groupBy("benchmark").agg(
            F.count("*").alias("items"), F.sum((F.size("tokens") < spec.ngram).cast("long")).alias("items_short"),
        ).collect()
    }
    distinct = {r["benchmark"]: r["ngrams"] for r in grams.groupBy("benchmark").agg(F.countDistinct("ngram_hash").alias("ngrams")).collect()}
    texts.unpersist()
    for b in spec.benchmarks:
        if b.name not in counts:
            raise ValueError(f"benchmark {b.name!r}: no {b.format} items in {', '.join(f['uri'] for f in files[b.name])}")
    summary = {"ngram": spec.ngram, "benchmarks": [
        {
            "name": b.name, "format": b.format, "files": files[b.name],
            "items": counts[b.name]["items"], "items_short": counts[b.name]["items_short"],
            "ngrams": distinct.get(b.name, 0),
        }
        for b in spec.benchmarks
    ]}
    return BenchmarkIndex(table, summary)


def benchmark_index(spark, spec: DecontaminationFilter) -> BenchmarkIndex:
    """The `BenchmarkIndex` of a filter, built once per Spark application for the same benchmark
    settings and file contents (sha256): every pairs run of a process reuses it."""
    files = {b.name: _file_digests(spark, benchmark_files(spark, b)) for b in spec.benchmarks}
    settings = {"ngram": spec.ngram, "normalization": to_dict(spec.normalization), "benchmarks": to_dict(spec.benchmarks)}
    key = (application_id(spark), json.dumps(settings, sort_keys=True), json.dumps(files, sort_keys=True))
    if key not in _INDEXES:
        log.info("decontamination: reading %d benchmark(s)", len(spec.benchmarks))
        while len(_INDEXES) >= _KEEP_INDEXES:
            _INDEXES.pop(next(iter(_INDEXES))).table.unpersist()
        _INDEXES[key] = _build_index(spark, spec, files)
        log.info("decontamination: %s", ", ".join(f"{b['name']} {b['items']} items, {b['ngrams']} n-grams" for b in _INDEXES[key].summary["benchmarks"]))
    return _INDEXES[key]


def pair_text(spec: DecontaminationFilter) -> Column:
    """The text of a pair that is checked: instruction and response as one text (`pair`), or one side."""
    if spec.text == "pair":
        return F.concat_ws("\n", "instruction", "response")
    return F.col(spec.text)


def filter_decontamination(df: DataFrame, spec: DecontaminationFilter, texts_seen=None) -> DataFrame:
    """Sets `contaminated:<benchmark>` and `contaminated_item` on the kept pairs (of `spec.sources`)
    that share an n-gram with a benchmark text; other rows keep their reason and a null item."""
    spark = df.sparkSession
    wanted = F.col(DROP_REASON).isNull() & applies_to(spec.sources)
    keyed = df.withColumn("_dc_key", F.sha2(F.concat_ws("\u0000", "instruction", "response"), 256))
    candidates = keyed.where(wanted).select("_dc_key", pair_text(spec).alias("text")).dropDuplicates(["_dc_key"])
    pair_grams = with_ngram_hashes(candidates, "text", spec)
    hits = (
        pair_grams.join(F.broadcast(benchmark_index(spark, spec).table), "ngram_hash")
        .groupBy("_dc_key").agg(F.min("hit").alias("_dc_hit"))
    )
    hit = wanted & F.col("_dc_hit").isNotNull()
    # The item first: set_reason fills drop_reason, after which `wanted` no longer holds.
    out = keyed.join(hits, "_dc_key", "left").withColumn(ITEM_COLUMN, F.when(hit, F.col("_dc_hit.item")))
    out = set_reason(out, [(hit & (F.col("_dc_hit.benchmark") == b.name), REASON_PREFIX + b.name) for b in spec.benchmarks], spec.key)
    return out.drop("_dc_key", "_dc_hit")


def benchmark_summary(spark, spec: DecontaminationFilter) -> dict:
    """What a filter checks against, for the pairs digest and commit metadata: `ngram` and per
    benchmark its files (uri, bytes, sha256), items, texts, texts shorter than n tokens (which
    cannot match) and distinct n-grams."""
    return benchmark_index(spark, spec).summary


def decontamination_summaries(spark, specs: list[FilterSpec]) -> dict[str, dict]:
    """`benchmark_summary` of every enabled decontamination filter, by filter key."""
    return {spec.key: benchmark_summary(spark, spec) for spec in specs if isinstance(spec, DecontaminationFilter) and spec.enabled}


FILTER = Filter(spec=DecontaminationFilter, apply=filter_decontamination, reasons=("contaminated",))
