"""Cheap filters over the pairs table: score columns, then drop reasons from conf.

Scorers add columns (`with_*`); filters only set `drop_reason` (`filter_*`),
and only on rows that no earlier filter dropped, so `drop_reason` is always
the first failing filter in conf order. Everything here is built-in Column
expressions: no Python runs per row.
"""
from __future__ import annotations

from functools import reduce
from typing import Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.config import FilterSpec, LengthFilter, RedTeamRatingFilter

DROP_REASON = "drop_reason"


def with_text_lengths(df: DataFrame) -> DataFrame:
    """Adds `instruction_chars` and `response_chars` (characters, null when the split failed)."""
    return df.withColumn("instruction_chars", F.length("instruction")).withColumn(
        "response_chars", F.length("response")
    )


def _applies(labels: Optional[list[str]]) -> Column:
    return F.lit(True) if labels is None else F.col("source").isin(labels)


def _set_reason(df: DataFrame, rules: list[tuple[Column, str]]) -> DataFrame:
    """Sets `drop_reason` to the first rule whose condition holds, on kept rows only."""
    decision = reduce(
        lambda acc, rule: acc.when(rule[0], F.lit(rule[1])),
        rules,
        F.when(F.col(DROP_REASON).isNotNull(), F.col(DROP_REASON)),
    )
    return df.withColumn(DROP_REASON, decision)


def filter_length(df: DataFrame, spec: LengthFilter) -> DataFrame:
    """Drops pairs whose instruction or response length lies outside [min_chars, max_chars]."""
    what = "instruction" if spec.rule == "instruction_length" else "response"
    chars = F.col(f"{what}_chars")
    applies = _applies(spec.sources)
    rules = []
    if spec.min_chars is not None:
        rules.append((applies & (chars < spec.min_chars), f"{what}_too_short"))
    if spec.max_chars is not None:
        rules.append((applies & (chars > spec.max_chars), f"{what}_too_long"))
    return _set_reason(df, rules)


def filter_red_team_rating(df: DataFrame, spec: RedTeamRatingFilter) -> DataFrame:
    """Drops red-team pairs rated outside [min_rating, max_rating] (0 = attack failed, 4 = succeeded).

    Applies to rows from `red_team`-format sources (restricted further to
    `spec.sources` when set); a missing rating is a drop reason of its own.
    """
    applies = _applies(spec.sources) & (F.col("source_format") == "red_team")
    rating = F.col("red_team_rating")
    return _set_reason(
        df,
        [
            (applies & rating.isNull(), "red_team_rating_missing"),
            (applies & (rating > spec.max_rating), "red_team_rating_too_high"),
            (applies & (rating < spec.min_rating), "red_team_rating_too_low"),
        ],
    )


FILTERS = {
    "instruction_length": filter_length,
    "response_length": filter_length,
    "red_team_rating": filter_red_team_rating,
}


def apply_filters(df: DataFrame, specs: list[FilterSpec]) -> DataFrame:
    """Applies every configured filter in conf order."""
    for spec in specs:
        df = df.transform(FILTERS[spec.rule], spec)
    return df
