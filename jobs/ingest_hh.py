"""Ingest Anthropic HH-RLHF preference files (JSON lines, optionally gzipped) into bronze.

Each line is one record `{"chosen": str, "rejected": str}`; its row index is
its line number (from 0) in its file. Run the whole ingest stage with
`instructlake ingest` or `spark-submit jobs/ingest.py`.
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from udfs.records import Field

FIELDS = [Field("chosen", "string", required=True), Field("rejected", "string", required=True)]


def read_lines(spark, file_uri: str) -> DataFrame:
    """(source_file, row_index, raw) for every line of one text file, in file order.

    Row indices come from the line's position: a compressed file is one
    partition (ids are 0..n-1 already); a splittable file gets each split's
    offset from one small count per split, so no shuffle is needed.
    """
    df = spark.read.text(file_uri).withColumn("_mid", F.monotonically_increasing_id())
    pid = F.shiftright(F.col("_mid"), 33)
    local = F.col("_mid") - F.shiftleft(pid, 33)
    if df.rdd.getNumPartitions() <= 1:
        index = F.col("_mid")
    else:
        counts = sorted(df.groupBy(pid.alias("pid")).count().collect())
        offsets, total = [], 0
        for row in counts:
            offsets += [F.lit(row["pid"]), F.lit(total)]
            total += row["count"]
        index = F.element_at(F.create_map(*offsets), pid) + local
    return df.select(
        F.lit(file_uri).alias("source_file"),
        index.cast("long").alias("row_index"),
        F.col("value").alias("raw"),
        F.lit(None).cast("string").alias("_read_error"),
    )


def read_records(spark, files: list[str]) -> DataFrame:
    return reduce(DataFrame.unionByName, [read_lines(spark, f) for f in files])
