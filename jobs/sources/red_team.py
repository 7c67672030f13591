"""Anthropic red_team_attempts files.

Despite its upstream name (`red_team_attempts.jsonl.gz`) the file is ONE JSON
array; each element is a record, and its row index is its position in the
array. Note the real field name `task_descripton_harmlessness_score`
(misspelled in the data itself). The candidate pair is the first exchange of
`transcript`, with the red-teamer's `rating` as `red_team_rating`; the
conversations product takes every turn of `transcript`.
"""
from __future__ import annotations

from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from instructlake.udfs.records import Field, split_json_array
from instructlake.jobs.sources.base import DIALOGUE_SPLIT, SourceFormat, dialogue_candidates, read_whole_files

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


def read(spark, files: list[str], tolerant: bool = True, max_record_bytes: Optional[int] = None) -> DataFrame:
    """`READ_SCHEMA` rows for each element of the JSON-array files."""
    return read_whole_files(spark, files, _split, checkpoint_name="worker.red_team_split", tolerant=tolerant,
                            max_record_bytes=max_record_bytes)


def candidates(spark, conf, lake, source, bronze: DataFrame, derived) -> DataFrame:
    return dialogue_candidates(source, bronze, "transcript", F.col("rating"))


FORMAT = SourceFormat(
    name="red_team", fields=FIELDS, read=read, line_based=False, candidates=candidates,
    stages=(DIALOGUE_SPLIT,), describe="red-team JSON arrays: the first exchange of `transcript`, with its rating",
    dialogue="transcript", rating="rating",
)
