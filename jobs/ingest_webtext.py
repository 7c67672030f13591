"""Ingest web text (WikiText raw, plain text, JSON lines with `text`, SQuAD JSON) into bronze paragraphs.

One bronze row per paragraph: `doc_id`, `title`, `section` (WikiText's
heading path, e.g. `Career / 2000 – 2005`), `paragraph_index` (within the
document), `line` (the line of the file it starts on; null for SQuAD),
`text` (detokenized for WikiText), `text_format`, plus the provenance columns
every bronze row has. `row_index` counts the paragraphs (and bad records) of
the file from 0. The format of a file comes from its name (see
`udfs.webtext.file_format`); bad records (a malformed JSON line, a document
without text, a SQuAD paragraph without a context) are quarantined with
their reason like any other source's.

Each file is read whole by one Spark task (the WikiText article structure
needs the lines in order), so one file must fit a Python worker's memory:
split very large dumps into several files. Run the whole ingest stage with
`instructlake ingest` or `spark-submit jobs/ingest.py`.
"""
from __future__ import annotations

from functools import reduce
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from udfs.records import Field

FIELDS = [
    Field("doc_id", "string", required=True),
    Field("title", "string"),
    Field("section", "string"),
    Field("paragraph_index", "bigint", required=True),
    Field("line", "bigint"),
    Field("text", "string", required=True),
    Field("text_format", "string", required=True),
]

_SCHEMA = "source_file string, row_index long, raw string, _read_error string"


def _paragraphs(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    from udfs.webtext import paragraph_records

    for batch in batches:
        rows = [
            (source_file, index, raw, error)
            for source_file, text in zip(batch["source_file"], batch["value"])
            for index, raw, error in paragraph_records(text, source_file)
        ]
        yield pd.DataFrame(rows, columns=["source_file", "row_index", "raw", "_read_error"])


def read_file(spark, file_uri: str) -> DataFrame:
    """(source_file, row_index, raw, _read_error) for each paragraph or bad record of one file."""
    whole = (
        spark.read.option("ignoreCorruptFiles", "true")
        .text(file_uri, wholetext=True)
        .select(F.lit(file_uri).alias("source_file"), "value")
    )
    return whole.mapInPandas(_paragraphs, _SCHEMA)


def read_records(spark, files: list[str]) -> DataFrame:
    return reduce(DataFrame.unionByName, [read_file(spark, f) for f in files])
