"""The template-token filter: drops pairs whose texts carry a raw chat-template token or an extra turn.

A text that holds `<|im_start|>`, `<|endoftext|>`, `[INST]`, `</s>`, ... (the
tokens of `instructlake.udfs.template_tokens`) would be read as a control
token by a tokenizer that parses special tokens in text; a text that holds a
role header at its start or after a blank line (`\\n\\nHuman:`,
`\\n\\nUser:`, ...) carries a turn of another speaker into one message. Either
is `template_token` or `extra_turn` (in that order), on every source, the
dialogues included.

The filter judges every text a row exports: `instruction` and `response`,
and where the frame has them the preference pairs' `rejected` reply and
the contents of `prompt` (the preference pairs' shared turns) and of
`messages` (every turn of a conversation). Built-in Column expressions
only (`rlike`); no model, no Python per row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.core.config import FilterSpec
from instructlake.udfs.filters.base import Filter, applies_to, set_reason
from instructlake.udfs.template_tokens import has_extra_turn_col, has_template_token_col

TEXTS = ("instruction", "response", "rejected")  # the text columns judged, where the frame has them
MESSAGE_ARRAYS = ("prompt", "messages")          # arrays of chat messages (role, content), where it has them


@dataclass(kw_only=True)
class TemplateTokensFilter(FilterSpec):
    """Drops pairs whose texts carry a raw chat-template token (`template_token`) or a role header
    at their start or after a blank line (`extra_turn`)."""

    rule: Literal["template_tokens"]


def any_text(df: DataFrame, test) -> Column:
    """True where `test` holds for one of the row's texts (`TEXTS`, and the contents of
    `MESSAGE_ARRAYS`, those of them the frame has)."""
    checks = [test(F.col(c)) for c in TEXTS if c in df.columns]
    checks += [F.coalesce(F.exists(c, lambda m: test(m["content"])), F.lit(False)) for c in MESSAGE_ARRAYS if c in df.columns]
    out = F.lit(False)
    for check in checks:
        out = out | check
    return out


def filter_template_tokens(df: DataFrame, spec: TemplateTokensFilter, texts_seen=None) -> DataFrame:
    """`template_token`, then `extra_turn` (see module doc)."""
    applies = applies_to(spec.sources)
    return set_reason(df, [
        (applies & any_text(df, has_template_token_col), "template_token"),
        (applies & any_text(df, has_extra_turn_col), "extra_turn"),
    ], spec.key)


FILTER = Filter(
    spec=TemplateTokensFilter,
    apply=filter_template_tokens,
    reasons=("template_token", "extra_turn"),
)
