"""The exported pair text: a template around (instruction, response), and its inverse.

The default template is ``User: {instruction}\\n\\nAssistant: {response}<|endoftext|>``.
The exporter guarantees the round trip: the instruction never contains a
blank line (blank lines collapse to one newline) and never starts or ends
with whitespace, and the template puts a blank line right after the
instruction, so

- a reader that splits the text on its first ``\\n\\n`` gets the prefix plus
  the instruction, and
- `parse_pair(text)` returns (instruction, response) exactly as exported.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from instructlake.core.config import split_template
from instructlake.udfs.dialogue import collapse_blank_lines, collapse_blank_lines_col, strip_ws, strip_ws_col

DEFAULT_TEMPLATE = "User: {instruction}\n\nAssistant: {response}<|endoftext|>"


@dataclass(frozen=True)
class PairTemplate:
    prefix: str
    middle: str
    suffix: str

    @classmethod
    def parse(cls, template: str) -> "PairTemplate":
        """Split a template into its three literal parts; ValueError says what is wrong
        (`instructlake.core.config.split_template` holds the rules)."""
        return cls(*split_template(template))

    def render(self, instruction: str, response: str) -> str:
        return f"{self.prefix}{normalize_instruction(instruction)}{self.middle}{response}{self.suffix}"

    def render_col(self, instruction: Column, response: Column) -> Column:
        return F.concat(
            F.lit(self.prefix),
            normalize_instruction_col(instruction),
            F.lit(self.middle),
            response,
            F.lit(self.suffix),
        )

    def split(self, text: str) -> tuple[str, str]:
        if not text.startswith(self.prefix) or not text.endswith(self.suffix):
            raise ValueError("text does not match the template's prefix and suffix")
        body = text[len(self.prefix) : len(text) - len(self.suffix)]
        cut = body.find("\n\n")
        if cut < 0 or not body.startswith(self.middle, cut):
            raise ValueError("text has no instruction/response separator where the template puts it")
        return body[:cut], body[cut + len(self.middle) :]


def normalize_instruction(s: str) -> str:
    """Strip ASCII whitespace and collapse blank lines (idempotent)."""
    return collapse_blank_lines(strip_ws(s))


def normalize_instruction_col(c: Column) -> Column:
    return collapse_blank_lines_col(strip_ws_col(c))


def parse_pair(text: str, template: str = DEFAULT_TEMPLATE) -> tuple[str, str]:
    """(instruction, response) of an exported pair text; the exact inverse of the export."""
    return PairTemplate.parse(template).split(text)
