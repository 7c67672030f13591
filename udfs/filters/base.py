"""What every filter shares: the columns it sets, the decision helpers, and what it declares.

A filter scores, then decides. Its scorers add columns (`with_*`); its
decision sets `drop_reason` (why) and `drop_stage` (which filter: the spec's
`key`, its `name` or else its `rule`) on the rows no earlier filter dropped,
so `drop_reason` is always the first failing filter in conf order. Rows are
never deleted. The model filters score only the rows still kept when their
turn comes; rows dropped before keep null scores.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import reduce
from typing import Callable, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.core.config import FilterSpec

DROP_REASON = "drop_reason"
DROP_STAGE = "drop_stage"


@dataclass(frozen=True)
class Rewrite:
    """A filter that rewrites texts instead of (or as well as) dropping them: the column holding
    the new text of each side (null where the text is unchanged), and a column of tags saying what
    was rewritten (an array of strings, e.g. the kinds of personal data). The export writes the new
    text, the report and the card count the rows and tags; silver keeps both texts."""

    instruction: str
    response: str
    tags: str


@dataclass(frozen=True)
class Filter:
    """What a filter module declares (as `FILTER`) for the registry.

    - `spec`: its conf spec, a `FilterSpec` subclass whose `rule` names it;
    - `apply(df, spec, texts_seen)`: scores and decides (see the module doc);
      `texts_seen` is a Spark accumulator that counts the texts a model saw,
      or None;
    - `reasons`: the drop reasons it sets (a reason `kind:detail` listed by
      its kind);
    - `scorer(spec)`: the versioned name of its model (`lang/langdetect-1.0.9`),
      recorded with every pairs commit; None for a filter without a model;
    - `rewrite(spec)`: the columns of rewritten texts, when the spec rewrites.
    """

    spec: type[FilterSpec]
    apply: Callable[..., DataFrame]
    reasons: tuple[str, ...]
    scorer: Optional[Callable[[FilterSpec], str]] = None
    rewrite: Optional[Callable[[FilterSpec], Optional[Rewrite]]] = None

    @property
    def rules(self) -> tuple[str, ...]:
        """The conf `rule` values of the spec (its `rule` field's Literal)."""
        return typing.get_args(typing.get_type_hints(self.spec)["rule"])


def reason_kind(reason: Column) -> Column:
    """A drop reason's kind: the part before its first `:` (`duplicate_of:<pair_id>` ->
    `duplicate_of`); a reason without `:` is its own kind, null stays null."""
    return F.substring_index(reason, ":", 1)


def applies_to(labels: Optional[list[str]]) -> Column:
    """True on rows of the given source labels (all rows when None, none when empty)."""
    if labels is None:
        return F.lit(True)
    return F.col("source").isin(labels) if labels else F.lit(False)


def kept() -> Column:
    """True on the rows no filter or step has dropped yet."""
    return F.col(DROP_REASON).isNull()


def set_reason(df: DataFrame, rules: list[tuple[Column, Column | str]], stage: str) -> DataFrame:
    """Sets `drop_reason` to the first rule whose condition holds, and `drop_stage` to `stage`,
    on kept rows only (`drop_stage` is null exactly where `drop_reason` is)."""
    if not rules:
        return df
    decision = reduce(
        lambda acc, rule: acc.when(rule[0], rule[1] if isinstance(rule[1], Column) else F.lit(rule[1])),
        rules,
        F.when(F.col(DROP_REASON).isNotNull(), F.col(DROP_REASON)),
    )
    earlier = F.col(DROP_STAGE) if DROP_STAGE in df.columns else F.lit(None).cast("string")
    newly = F.col(DROP_REASON).isNull() & decision.isNotNull()
    out = df.withColumn(DROP_STAGE, F.when(newly, F.lit(stage)).otherwise(earlier))
    return out.withColumn(DROP_REASON, decision)
