"""What a source format declares, and the readers and candidate columns the formats share.

A source format (one module of `instructlake.jobs.sources`, declaring
`FORMAT`) says how its raw files are read (`read`: one `READ_SCHEMA` row per
record), what its bronze table holds (`fields`, typed and checked by
`instructlake.udfs.records.with_typed_fields`), and how its candidate pairs
are made (`candidates`: the bronze rows, and for some formats a table the
generate stage wrote, to rows of `CANDIDATE_COLUMNS`). Nothing outside the
format modules asks which format a source has.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce
from typing import Callable, Iterator, Optional

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.core.config import Source
from instructlake.core.faults import checkpoint
from instructlake.core.lake import with_position
from instructlake.udfs.filters import DROP_REASON, DROP_STAGE
from instructlake.udfs.dialogue import with_first_exchange
from instructlake.udfs.records import RAW_PREVIEW_CHARS, Field

READ_SCHEMA = "source_file string, row_index long, raw string, _read_error string, _valid_utf8 boolean"
# (file text, file URI) -> (row_index, raw record, read error) for each record of the file
RecordSplitter = Callable[[Optional[str], str], Iterator[tuple[int, Optional[str], Optional[str]]]]

# A candidate pair's key in the pairs table. `item` tells apart the pairs of one bronze row: ""
# for a dialogue, `<type>/<k>` for the generated questions of a web_text paragraph.
KEYS = ["source_name", "source_file", "row_index", "item"]
DIALOGUE_SPLIT = "dialogue_split"  # the drop stage of a dialogue without a first exchange
# The columns every format's candidates have, in this order (a format may add its own after them).
CANDIDATE_COLUMNS = [
    "source", "source_name", "source_format", "source_file", "row_index", "item", "content_id", "ingest_run_id",
    "instruction", "response", "red_team_rating", "is_code", DROP_REASON, DROP_STAGE,
]


@dataclass(frozen=True)
class Derived:
    """The versions of the tables the generate stage wrote that candidates are made from."""

    qa_version: Optional[int] = None
    code_versions: Optional[dict] = None


@dataclass(frozen=True)
class SourceFormat:
    """A source format (see the module doc).

    - `read(spark, files, tolerant, max_record_bytes)`: `READ_SCHEMA` rows of
      the files; `tolerant`: a truncated or corrupt gzip file gives what could
      be read; `max_record_bytes`: a record longer than this is
      `record_too_large` with its preview (the ingest checks it again in the
      JVM, in UTF-8 bytes, before parsing);
    - `line_based`: one record per line (else the files are read whole);
    - `candidates(spark, conf, lake, source, bronze, derived)`: the candidate pairs;
    - `stages`: the drop stages its candidates can carry, in pipeline order;
    - `is_code`: its pairs are code (filters of natural language skip them);
    - `generated`: its candidates come from a table of the generate stage
      (`paragraphs`: questions on its paragraphs; `programs`: its programs run);
    - `programs(bronze)`: (code, tests) of the programs to verify, for a
      format whose tasks have tests;
    - `dialogue`: the bronze column holding a whole HH-format dialogue (the
      conversations product), `rating` its red-team rating column, and
      `preference` the (chosen, rejected) columns of a preference record (the
      preference product); None where the format has none.
    """

    name: str
    fields: list[Field]
    read: Callable[..., DataFrame]
    line_based: bool
    candidates: Callable[..., DataFrame]
    stages: tuple[str, ...]
    is_code: bool = False
    generated: Optional[str] = None
    programs: Optional[Callable[[DataFrame], DataFrame]] = None
    describe: str = ""
    extra_columns: tuple[str, ...] = field(default=())
    dialogue: Optional[str] = None
    rating: Optional[str] = None
    preference: Optional[tuple[str, str]] = None


def label_rank(conf_labels: list[str]) -> Column:
    """Each row's position of its `source` label in `conf_labels` (the conf's label order); labels
    not listed come after them."""
    rank = F.lit(len(conf_labels))
    for i, label in reversed(list(enumerate(conf_labels))):
        rank = F.when(F.col("source") == label, F.lit(i)).otherwise(rank)
    return rank


def candidate_rows(source: Source, rows: DataFrame, *, instruction: Column, response: Column, reason: Column,
                   stage: str | Column, is_code: bool, rating: Optional[Column] = None, item: Optional[Column] = None,
                   content_id: Optional[Column] = None, source_file: Optional[Column] = None,
                   row_index: Optional[Column] = None, ingest_run_id: Optional[Column] = None,
                   label: Optional[str] = None, source_format: Optional[str] = None,
                   extra: tuple[Column, ...] = ()) -> DataFrame:
    """`rows` as candidates in `CANDIDATE_COLUMNS`; `drop_stage` is `stage` (a name, or a column)
    where `reason` is set."""
    return rows.select(
        F.lit(label or source.label).alias("source"), F.lit(source.name).alias("source_name"),
        F.lit(source_format or source.format).alias("source_format"),
        (source_file if source_file is not None else F.col("source_file")).alias("source_file"),
        (row_index if row_index is not None else F.col("row_index")).alias("row_index"),
        (item if item is not None else F.lit("")).alias("item"),
        (content_id if content_id is not None else F.col("content_id")).alias("content_id"),
        (ingest_run_id if ingest_run_id is not None else F.col("ingest_run_id")).alias("ingest_run_id"),
        instruction.alias("instruction"), response.alias("response"),
        (rating if rating is not None else F.lit(None).cast("double")).alias("red_team_rating"),
        F.lit(is_code).alias("is_code"),
        reason.alias(DROP_REASON), F.when(reason.isNotNull(), stage if isinstance(stage, Column) else F.lit(stage)).alias(DROP_STAGE),
        *extra,
    )


# --- readers ------------------------------------------------------------------------------------


def read_json_lines(spark, files: list[str], tolerant: bool = True, max_record_bytes: Optional[int] = None) -> DataFrame:
    """`READ_SCHEMA` rows for every line of text files (gzipped or not), in file order.

    A gzip file is one partition, its lines numbered by their ids; a splittable
    one gets each split's offset from a count per split (see `instructlake.core.lake.with_position`),
    so no shuffle is needed. Spark's text reader keeps a line's bytes as they
    are: `_valid_utf8` tells whether they are UTF-8. `tolerant`: a truncated or
    corrupt gzip file gives the lines before the damage (the ingest then checks
    the file and quarantines it); otherwise it fails the job. A line is
    handed over whole, however long: the ingest quarantines one over
    `max_record_bytes` by its length before parsing it, so it is not checked here.
    """
    def one(file_uri: str) -> DataFrame:
        lines = spark.read.option("ignoreCorruptFiles", str(tolerant).lower()).text(file_uri)
        # A gzip file cannot be split, so it is one partition, whose ids count its lines from 0:
        # nothing to ask Spark per file (planning a file's read to count its partitions is serial
        # work of the driver, once per file).
        lines = (lines.withColumn("row_index", F.monotonically_increasing_id()) if file_uri.endswith(".gz")
                 else with_position(lines, "row_index"))
        return lines.select(
            F.lit(file_uri).alias("source_file"), "row_index", F.col("value").alias("raw"),
            F.lit(None).cast("string").alias("_read_error"), F.is_valid_utf8("value").alias("_valid_utf8"),
        )

    return reduce(DataFrame.unionByName, [one(f) for f in files])


def read_whole_files(spark, files: list[str], split: RecordSplitter, checkpoint_name: Optional[str] = None,
                     tolerant: bool = True, max_record_bytes: Optional[int] = None) -> DataFrame:
    """`READ_SCHEMA` rows for the records of files that must be read whole (a JSON array, WikiText
    articles): each file is one Spark task, its text split into records by `split` in a Python worker.

    `checkpoint_name` names a fault checkpoint (`instructlake.core.faults`) passed once per batch.
    `tolerant`: as for `read_json_lines`. A record of more than `max_record_bytes` characters
    (so at least as many UTF-8 bytes) leaves the worker as its preview, `record_too_large`. A
    splitter that meets nesting deeper than Python's JSON decoder follows, and does not handle it
    itself, ends its file there: one last record `too_deeply_nested`, not a failed task.
    """
    limit = max_record_bytes or None

    def bounded(raw: Optional[str], error: Optional[str]) -> tuple[Optional[str], Optional[str]]:
        if limit is not None and error is None and raw is not None and len(raw) > limit:
            return raw[:RAW_PREVIEW_CHARS], "record_too_large"
        return raw, error

    def records(text: Optional[str], source_file: str) -> Iterator[tuple[int, Optional[str], Optional[str]]]:
        index = -1
        try:
            for index, raw, error in split(text, source_file):
                yield index, raw, error
        except RecursionError:
            yield index + 1, "", "too_deeply_nested"

    def explode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if checkpoint_name:
                checkpoint(checkpoint_name)
            rows = [
                (source_file, index, *bounded(raw, error), valid)
                for source_file, text, valid in zip(batch["source_file"], batch["value"], batch["_valid_utf8"])
                for index, raw, error in records(text, source_file)
            ]
            yield pd.DataFrame(rows, columns=["source_file", "row_index", "raw", "_read_error", "_valid_utf8"])

    option = str(tolerant).lower()
    whole = reduce(
        DataFrame.unionByName,
        [
            spark.read.option("ignoreCorruptFiles", option).text(f, wholetext=True)
            .select(F.lit(f).alias("source_file"), "value", F.is_valid_utf8("value").alias("_valid_utf8"))
            for f in files
        ],
    )
    return whole.mapInPandas(explode, READ_SCHEMA)


def dialogue_candidates(source: Source, bronze: DataFrame, dialogue: str, rating: Optional[Column] = None) -> DataFrame:
    """The first exchange of each dialogue (`instructlake.udfs.dialogue`): its failures are
    `dialogue_split` drops."""
    split = with_first_exchange(bronze.withColumn("_rating", rating if rating is not None else F.lit(None).cast("double")),
                                dialogue, ("instruction", "response", "_split_error"))
    return candidate_rows(source, split, instruction=F.col("instruction"), response=F.col("response"),
                          reason=F.col("_split_error"), stage=DIALOGUE_SPLIT, is_code=False, rating=F.col("_rating"))
