"""Raw records to typed columns, with a reason for every record that does not fit.

A raw record is one JSON text (a line of a JSON-lines file, or one element of
a JSON array). `with_typed_fields` checks it against a field list with
built-in expressions (Spark's VARIANT type tells a JSON string from a number,
which a plain `from_json` to a string column would silently convert) and
adds one column per field plus `_error`: null for a good record, else the
first problem found (`blank_line`, `malformed_json`, `not_a_json_object`,
`missing_field:<name>`, `wrong_type:<name>`).

`inspect_file` checks a raw file's bytes: whether a gzip file is complete and
intact (Spark's reader, told to skip corrupt files, stops at a truncated
member without saying so). Whether the bytes are UTF-8 is checked by Spark
(`is_valid_utf8` on the text as read: Spark keeps a line's bytes as they are,
and a Latin-1 or UTF-16 file would otherwise pass as text), in the readers'
`_valid_utf8` column.

`split_json_array` is the pure function that cuts a JSON array file into its
element texts, keeping the elements before a syntax error. The readers that
use these are the source formats' (`instructlake.jobs.sources`).
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import reduce
from typing import Iterator, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

RAW_PREVIEW_CHARS = 2000

_KINDS = {
    # JSON numbers arrive as integers or decimals; either is a valid double.
    "double": r"^(BIGINT|INT|SMALLINT|TINYINT|DOUBLE|FLOAT|DECIMAL.*)$",
    "bigint": r"^(BIGINT|INT|SMALLINT|TINYINT)$",
    "string": r"^STRING$",
    "boolean": r"^BOOLEAN$",
    "array<string>": r"^ARRAY<(STRING|VOID)>$",
}


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a key of _KINDS, also the Spark SQL type of the column
    required: bool = False


def _path(name: str) -> str:
    return f"$['{name}']"


def with_typed_fields(df: DataFrame, fields: list[Field], raw: str = "raw") -> DataFrame:
    """Adds a typed column per field and `_error` (see module doc).

    Each record is parsed once, into a column of its own: written as one
    expression, every check would parse the record again (Spark does not
    share work between the branches of a CASE WHEN).
    """
    parsed = df.select("*", F.try_parse_json(F.col(raw)).alias("_v"))
    v = F.col("_v")
    values = {f.name: F.try_variant_get(v, _path(f.name), "variant") for f in fields}
    parsed = parsed.select(
        "*", F.schema_of_variant(v).alias("_kind"),
        *[F.schema_of_variant(values[f.name]).alias(f"_kind_{f.name}") for f in fields],
    )
    checks: list[tuple[Column, Column]] = [
        (F.col(raw).isNull() | (F.trim(F.col(raw)) == ""), F.lit("blank_line")),
        (v.isNull(), F.lit("malformed_json")),
        (~F.col("_kind").startswith("OBJECT"), F.lit("not_a_json_object")),
    ]
    for f in fields:
        kind = F.col(f"_kind_{f.name}")
        absent = kind.isNull() | (kind == "VOID")
        if f.required:
            checks.append((absent, F.lit(f"missing_field:{f.name}")))
        checks.append((~absent & ~kind.rlike(_KINDS[f.type]), F.lit(f"wrong_type:{f.name}")))
    error = reduce(lambda acc, c: acc.when(c[0], c[1]), checks[1:], F.when(*checks[0]))
    out = parsed.withColumn("_error", error)
    out = out.withColumns({f.name: F.when(F.col("_error").isNull(), F.try_variant_get(v, _path(f.name), f.type)) for f in fields})
    return out.drop("_v", "_kind", *[f"_kind_{f.name}" for f in fields])


def canonical_text(fields: list[Field]) -> Column:
    """The typed fields as one unambiguous text: each value as `<bytes>:<text>` (a string as it
    is, an array as JSON, another value cast to a string; its length in UTF-8 bytes), a null as
    `-`, joined by `,`.

    Cheaper than JSON for long texts (nothing is escaped, no second encoding), and as exact:
    the length says where each value ends. The length is in bytes, which a string knows,
    rather than in characters, which would need a walk through every text.
    """
    def one(f: Field) -> Column:
        c = F.col(f.name)
        text = c if f.type == "string" else F.to_json(c) if f.type.startswith("array") else c.cast("string")
        return F.coalesce(F.concat(F.octet_length(text).cast("string"), F.lit(":"), text), F.lit("-"))

    return F.concat_ws(",", *[one(f) for f in fields])


def content_id(fields: list[Field]) -> Column:
    """A stable id of a record: sha256 of its typed fields (`canonical_text`)."""
    return F.sha2(canonical_text(fields), 256)


def split_json_array(text: Optional[str]) -> Iterator[tuple[int, str, Optional[str]]]:
    """Yield (index, element text, error) for each element of a JSON array text.

    Elements are cut with the JSON decoder, so their texts are exact slices of
    the input. A syntax error ends the scan with one last record holding the
    rest of the text and the reason; a file that is not an array at all is
    one record with reason `not_a_json_array`.
    """
    if text is None or not text.strip():
        yield 0, "", "empty_file"
        return
    decoder = json.JSONDecoder()
    n = len(text)

    def skip(i: int) -> int:
        while i < n and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if text[i] != "[":
        yield 0, text[:RAW_PREVIEW_CHARS], "not_a_json_array"
        return
    i = skip(i + 1)
    index = 0
    if i < n and text[i] == "]":
        i = skip(i + 1)
        if i < n:
            yield 0, text[i : i + RAW_PREVIEW_CHARS], "trailing_data_after_array"
        return
    while True:
        try:
            _, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            yield index, text[i : i + RAW_PREVIEW_CHARS], "malformed_json"
            return
        yield index, text[i:end], None
        index += 1
        i = skip(end)
        if i < n and text[i] == ",":
            i = skip(i + 1)
            continue
        if i < n and text[i] == "]":
            i = skip(i + 1)
            if i < n:
                yield index, text[i : i + RAW_PREVIEW_CHARS], "trailing_data_after_array"
            return
        yield index, text[i : i + RAW_PREVIEW_CHARS], "truncated_json_array"
        return


def _gunzip_chunks(content: bytes, problems: list[str]) -> Iterator[bytes]:
    """Decompressed chunks of a (possibly multi-member) gzip file; a problem is appended, not raised."""
    data = content
    while True:
        d = zlib.decompressobj(wbits=31)
        try:
            while not d.eof:
                out = d.decompress(data, 1 << 24)
                if out:
                    yield out
                data = d.unconsumed_tail
                if not data and not d.eof:
                    problems.append("truncated_gzip")
                    return
        except zlib.error:
            problems.append("corrupt_gzip")
            return
        data = d.unused_data
        if not data.strip(b"\x00"):
            return


def inspect_file(content: Optional[bytes], gzipped: bool) -> Optional[str]:
    """The problem of a raw file's bytes: None, `empty_file`, `truncated_gzip` or `corrupt_gzip`."""
    if not content:
        return "empty_file"
    if not gzipped:
        return None
    problems: list[str] = []
    empty = True
    for chunk in _gunzip_chunks(content, problems):
        empty = empty and not chunk
    if problems:
        return problems[0]
    return "empty_file" if empty else None
