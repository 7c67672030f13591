"""Length filters: bounds on the instruction's or the response's length in characters.

Scored by the pairs stage (`instruction_chars`, `response_chars`, after the
dialogue split); this filter only decides: `<side>_too_short`,
`<side>_too_long`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from instructlake.core.config import FilterSpec
from instructlake.core.errors import ConfigError
from instructlake.udfs.filters.base import Filter, applies_to, set_reason


@dataclass(kw_only=True)
class LengthFilter(FilterSpec):
    """Bounds on a text's length in characters (after the dialogue split)."""

    rule: Literal["instruction_length", "response_length"]
    min_chars: Optional[int] = field(default=None, metadata={"min": 0})
    max_chars: Optional[int] = field(default=None, metadata={"min": 1})

    def validate(self) -> None:
        if self.min_chars is None and self.max_chars is None:
            raise ConfigError("min_chars", "set min_chars, max_chars or both")
        if self.min_chars is not None and self.max_chars is not None and self.min_chars > self.max_chars:
            raise ConfigError("max_chars", f"must be >= min_chars ({self.min_chars}), got {self.max_chars}")

    @property
    def side(self) -> str:
        return "instruction" if self.rule == "instruction_length" else "response"


def filter_length(df: DataFrame, spec: LengthFilter, texts_seen=None) -> DataFrame:
    """Drops pairs whose instruction or response length lies outside [min_chars, max_chars]."""
    chars = F.col(f"{spec.side}_chars")
    applies = applies_to(spec.sources)
    rules = []
    if spec.min_chars is not None:
        rules.append((applies & (chars < spec.min_chars), f"{spec.side}_too_short"))
    if spec.max_chars is not None:
        rules.append((applies & (chars > spec.max_chars), f"{spec.side}_too_long"))
    return set_reason(df, rules, spec.key)


FILTER = Filter(
    spec=LengthFilter,
    apply=filter_length,
    reasons=("instruction_too_short", "instruction_too_long", "response_too_short", "response_too_long"),
)
