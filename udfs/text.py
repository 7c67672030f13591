"""The one text normalizer, shared by the decontamination filter and the dedup step.

`normalize(text, spec)` is the reference: Unicode NFKC, lower case, every
Unicode punctuation (P*) and symbol (S*) code point as a space (`a+b`,
`a + b` and `a_b` all give `a b`), then whitespace runs collapsed to one
space and the ends trimmed; each step but the last one switched by the conf
(`Normalization`). `normalized_col` is the same function in a pandas UDF
(Spark has no NFKC), so the two can never disagree.
"""
from __future__ import annotations

import sys
import unicodedata
from functools import lru_cache
from typing import Optional

import pandas as pd
from pyspark.sql import Column
from pyspark.sql.functions import pandas_udf

from instructlake.core.config import Normalization

DEFAULT = Normalization()


@lru_cache(maxsize=1)
def _punctuation_to_space() -> dict[int, str]:
    """str.translate table: every Unicode punctuation (P*) and symbol (S*) code point to a space."""
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] in "PS"}


def normalize(text: Optional[str], spec: Normalization = DEFAULT) -> str:
    """The text as word tokens joined by single spaces ("" for None or a blank text)."""
    if not text:
        return ""
    if spec.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if spec.lowercase:
        text = text.lower()
    if spec.strip_punctuation:
        text = text.translate(_punctuation_to_space())
    return " ".join(text.split())


def normalized_col(text: Column, spec: Normalization = DEFAULT) -> Column:
    """`normalize` of a string column ("" for null)."""

    @pandas_udf("string")
    def run(texts: pd.Series) -> pd.Series:
        return texts.map(lambda t: normalize(None if pd.isna(t) else t, spec))

    return run(text)
