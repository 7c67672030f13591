"""Anthropic HH-RLHF preference files (JSON lines, optionally gzipped).

Each line is one record `{"chosen": str, "rejected": str}`; its row index is
its line number (from 0) in its file. The candidate pair is the first
exchange of `chosen` (first Human turn, first Assistant reply); the
conversations product takes every turn of `chosen`, the preference product
the final replies of `chosen` and `rejected`.
"""
from __future__ import annotations

from pyspark.sql import DataFrame

from instructlake.udfs.records import Field
from instructlake.jobs.sources.base import DIALOGUE_SPLIT, SourceFormat, dialogue_candidates, read_json_lines

FIELDS = [Field("chosen", "string", required=True), Field("rejected", "string", required=True)]


def candidates(spark, conf, lake, source, bronze: DataFrame, derived) -> DataFrame:
    return dialogue_candidates(source, bronze, "chosen")


FORMAT = SourceFormat(
    name="hh_rlhf", fields=FIELDS, read=read_json_lines, line_based=True, candidates=candidates,
    stages=(DIALOGUE_SPLIT,), describe="HH-RLHF JSON lines: the first exchange of `chosen`",
    dialogue="chosen", preference=("chosen", "rejected"),
)
