"""Web text (WikiText raw, plain text, JSON lines with `text`, SQuAD JSON): bronze paragraphs.

One bronze row per paragraph: `doc_id`, `title`, `section` (WikiText's
heading path, e.g. `Career / 2000 – 2005`), `paragraph_index` (within the
document), `line` (the line of the file it starts on; null for SQuAD),
`text` (detokenized for WikiText), `text_format`, plus the provenance columns
every bronze row has. `row_index` counts the paragraphs (and bad records) of
the file from 0. The format of a file comes from its name (see
`instructlake.udfs.webtext.file_format`); bad records (a malformed JSON line,
a document without text, a SQuAD paragraph without a context) are
quarantined with their reason like any other source's.

Each file is read whole by one Spark task (the WikiText article structure
needs the lines in order), so one file must fit a Python worker's memory:
split very large dumps into several files.

The candidates are the generate stage's question-answer pairs on the
paragraphs (`silver/qa`, one row per generated question, `item` =
`<type>/<k>`), with the checks' drop reasons and stages.
"""
from __future__ import annotations

from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from instructlake.core.errors import MissingTableError
from instructlake.core.lake import is_delta, read_version
from instructlake.udfs.records import Field
from instructlake.udfs.webtext import paragraph_records
from instructlake.jobs.sources.base import SourceFormat, candidate_rows, read_whole_files

FIELDS = [
    Field("doc_id", "string", required=True),
    Field("title", "string"),
    Field("section", "string"),
    Field("paragraph_index", "bigint", required=True),
    Field("line", "bigint"),
    Field("text", "string", required=True),
    Field("text_format", "string", required=True),
]
# The drop stages of a generated question-answer pair, in order (see instructlake.jobs.stages.generate_qa).
STAGES = ("generation", "qa_checks", "qa_verify", "qa_duplicates", "qa_balance")


def read(spark, files: list[str], tolerant: bool = True, max_record_bytes: Optional[int] = None) -> DataFrame:
    """`READ_SCHEMA` rows for each paragraph or bad record of the files."""
    return read_whole_files(spark, files, paragraph_records, tolerant=tolerant, max_record_bytes=max_record_bytes)


def candidates(spark, conf, lake, source, bronze: DataFrame, derived) -> DataFrame:
    """The qa rows of the source (the qa table at `derived.qa_version`) as candidate pairs."""
    if derived.qa_version is None or not is_delta(spark, lake.qa):
        raise MissingTableError(f"qa table for source {source.name!r} not found at {lake.qa}; run `instructlake generate` first")
    qa, _ = read_version(spark, lake.qa, derived.qa_version)
    return candidate_rows(
        source, qa.where(F.col("source_name") == source.name), instruction=F.col("instruction"), response=F.col("response"),
        reason=F.col("qa_drop_reason"), stage=F.col("qa_drop_stage"), is_code=False, item=F.col("item"),
    )


FORMAT = SourceFormat(
    name="web_text", fields=FIELDS, read=read, line_based=False, candidates=candidates, stages=STAGES,
    generated="paragraphs", describe="web text paragraphs: question-answer pairs generated on them",
)
