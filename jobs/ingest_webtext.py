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

from pyspark.sql import DataFrame

from udfs.records import Field, read_whole_files

FIELDS = [
    Field("doc_id", "string", required=True),
    Field("title", "string"),
    Field("section", "string"),
    Field("paragraph_index", "bigint", required=True),
    Field("line", "bigint"),
    Field("text", "string", required=True),
    Field("text_format", "string", required=True),
]


def _paragraphs(text, source_file):
    from udfs.webtext import paragraph_records

    return paragraph_records(text, source_file)


def read_records(spark, files: list[str], tolerant: bool = True) -> DataFrame:
    """`READ_SCHEMA` rows for each paragraph or bad record of the files."""
    return read_whole_files(spark, files, _paragraphs, tolerant=tolerant)
