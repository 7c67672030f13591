"""Ingest Anthropic HH-RLHF preference files (JSON lines, optionally gzipped) into bronze.

Each line is one record `{"chosen": str, "rejected": str}`; its row index is
its line number (from 0) in its file. Run the whole ingest stage with
`instructlake ingest` or `spark-submit jobs/ingest.py`.
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.lake import with_position
from udfs.records import Field

FIELDS = [Field("chosen", "string", required=True), Field("rejected", "string", required=True)]


def read_lines(spark, file_uri: str, tolerant: bool = True) -> DataFrame:
    """`READ_SCHEMA` rows (source_file, row_index, raw, _read_error, _valid_utf8) for every line of
    one text file, in file order.

    A compressed file is one partition; a splittable one gets each split's
    offset from a count per split (see `with_position`), so no shuffle is needed.
    Spark's text reader keeps a line's bytes as they are: `_valid_utf8` tells
    whether they are UTF-8. `tolerant`: a truncated or corrupt gzip file gives
    the lines before the damage (the ingest then checks the file and
    quarantines it); otherwise it fails the job.
    """
    lines = with_position(spark.read.option("ignoreCorruptFiles", str(tolerant).lower()).text(file_uri), "row_index")
    return lines.select(
        F.lit(file_uri).alias("source_file"),
        "row_index",
        F.col("value").alias("raw"),
        F.lit(None).cast("string").alias("_read_error"),
        F.is_valid_utf8("value").alias("_valid_utf8"),
    )


def read_records(spark, files: list[str], tolerant: bool = True) -> DataFrame:
    return reduce(DataFrame.unionByName, [read_lines(spark, f, tolerant) for f in files])
