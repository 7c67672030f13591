"""Ingest Anthropic red_team_attempts files into bronze.

Despite its upstream name (`red_team_attempts.jsonl.gz`) the file is ONE JSON
array; each element is a record, and its row index is its position in the
array. Note the real field name `task_descripton_harmlessness_score`
(misspelled in the data itself). Run the whole ingest stage with
`instructlake ingest` or `spark-submit jobs/ingest.py`.
"""
from __future__ import annotations

from functools import reduce
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from udfs.records import Field, split_json_array

FIELDS = [
    Field("transcript", "string", required=True),
    Field("min_harmlessness_score_transcript", "double"),
    Field("num_params", "string"),
    Field("model_type", "string"),
    Field("rating", "double"),
    Field("task_description", "string"),
    Field("task_descripton_harmlessness_score", "double"),
    Field("red_team_member_id", "bigint"),
    Field("is_upworker", "boolean"),
    Field("tags", "array<string>"),
]

_SCHEMA = "source_file string, row_index long, raw string, _read_error string"


def _explode_arrays(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    from jobs.faults import checkpoint

    for batch in batches:
        checkpoint("worker.red_team_split")
        rows = [
            (source_file, index, raw, error)
            for source_file, text in zip(batch["source_file"], batch["value"])
            for index, raw, error in split_json_array(text)
        ]
        yield pd.DataFrame(rows, columns=["source_file", "row_index", "raw", "_read_error"])


def read_array(spark, file_uri: str) -> DataFrame:
    """(source_file, row_index, raw, _read_error) for each element of one JSON-array file."""
    whole = (
        spark.read.option("ignoreCorruptFiles", "true")
        .text(file_uri, wholetext=True)
        .select(F.lit(file_uri).alias("source_file"), "value")
    )
    return whole.mapInPandas(_explode_arrays, _SCHEMA)


def read_records(spark, files: list[str]) -> DataFrame:
    return reduce(DataFrame.unionByName, [read_array(spark, f) for f in files])
