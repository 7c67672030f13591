"""The red-team rating filter: keeps the attacks whose success rating (0-4) lies in [min, max].

The red-team records carry the red-teamer's own rating of how well the attack
worked (0: it failed, 4: it succeeded); the seed keeps 0, 1 and 2. The rating
is the pairs' `red_team_rating` column (null for sources without one). The
filter judges the rated rows of its `sources` (all sources when omitted);
a row of a listed source without a rating is dropped as
`red_team_rating_missing`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from instructlake.core.config import FilterSpec
from instructlake.core.errors import ConfigError
from instructlake.udfs.filters.base import Filter, applies_to, set_reason


@dataclass(kw_only=True)
class RedTeamRatingFilter(FilterSpec):
    """Keeps red-team pairs whose attack-success rating (0-4) lies in [min_rating, max_rating]."""

    rule: Literal["red_team_rating"]
    min_rating: float = field(default=0.0, metadata={"min": 0, "max": 4})
    max_rating: float = field(default=2.0, metadata={"min": 0, "max": 4})

    def validate(self) -> None:
        if self.min_rating > self.max_rating:
            raise ConfigError("max_rating", f"must be >= min_rating ({self.min_rating}), got {self.max_rating}")


def filter_red_team_rating(df: DataFrame, spec: RedTeamRatingFilter, texts_seen=None) -> DataFrame:
    """`red_team_rating_too_high`, `red_team_rating_too_low`, `red_team_rating_missing` (see module doc)."""
    applies = applies_to(spec.sources)
    rating = F.col("red_team_rating")
    rules = [] if spec.sources is None else [(applies & rating.isNull(), "red_team_rating_missing")]
    rules += [
        (applies & (rating > spec.max_rating), "red_team_rating_too_high"),
        (applies & (rating < spec.min_rating), "red_team_rating_too_low"),
    ]
    return set_reason(df, rules, spec.key)


FILTER = Filter(
    spec=RedTeamRatingFilter,
    apply=filter_red_team_rating,
    reasons=("red_team_rating_too_high", "red_team_rating_too_low", "red_team_rating_missing"),
)
