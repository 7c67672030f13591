"""Ingest Anthropic red_team_attempts files into bronze.

Despite its upstream name (`red_team_attempts.jsonl.gz`) the file is ONE JSON
array; each element is a record, and its row index is its position in the
array. Note the real field name `task_descripton_harmlessness_score`
(misspelled in the data itself). Run the whole ingest stage with
`instructlake ingest` or `spark-submit jobs/ingest.py`.
"""
from __future__ import annotations

from pyspark.sql import DataFrame

from udfs.records import Field, read_whole_files, split_json_array

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


def _split(text, source_file):
    return split_json_array(text)


def read_records(spark, files: list[str], tolerant: bool = True) -> DataFrame:
    """`READ_SCHEMA` rows for each element of the JSON-array files."""
    return read_whole_files(spark, files, _split, checkpoint_name="worker.red_team_split", tolerant=tolerant)
