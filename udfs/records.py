"""Raw records to typed columns, with a reason for every record that does not fit.

A raw record is one JSON text (a line of a JSON-lines file, or one element of
a JSON array). `with_typed_fields` checks it against a field list with
built-in expressions (Spark's VARIANT type tells a JSON string from a number,
which a plain `from_json` to a string column would silently convert) and
adds one column per field plus `_error`: null for a good record, else the
first problem found (`record_too_large`, `blank_line`, `too_deeply_nested`,
`malformed_json`, `not_a_json_object`, `missing_field:<name>`,
`wrong_type:<name>`). A record over the size bound is never parsed.

`inspect_file` checks a raw file's bytes: whether a gzip file is complete and
intact (Spark's reader, told to skip corrupt files, stops at a truncated
member without saying so), and whether it expands beyond its bounds (a gzip
bomb), decompressing in bounded chunks and stopping at the bound. Whether
the bytes are UTF-8 is checked by Spark (`is_valid_utf8` on the text as read:
Spark keeps a line's bytes as they are, and a Latin-1 or UTF-16 file would
otherwise pass as text), in the readers' `_valid_utf8` column.

`split_json_array` is the pure function that cuts a JSON array file into its
element texts, keeping the elements before a syntax error, and the elements
after one nested too deeply for the JSON decoder. The readers that use these
are the source formats' (`instructlake.jobs.sources`).
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from functools import reduce
from typing import Iterator, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.core.config import IngestSettings

RAW_PREVIEW_CHARS = 2000
# Spark's JSON parser (Jackson) refuses a document nested deeper than this.
MAX_JSON_DEPTH = 1000

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


def _opens_too_deep(raw: Column) -> Column:
    """Whether a record opens more than `MAX_JSON_DEPTH` arrays or objects one inside the other
    from its start (an object through its first key): then that depth is what Spark's parser
    refused. Only for records it refused; every pattern is possessive or a plain character
    class, which Java's regex engine matches without recursion (a repeated group would recurse
    once per repetition and overflow the stack on deep input)."""
    keys_out = F.regexp_replace(raw, r'\{\s*+"[^"\\]*+"\s*+:', "{")
    openers = F.regexp_extract(F.regexp_replace(keys_out, r"\s+", ""), r"^[\[{]*+", 0)
    return F.length(openers) > MAX_JSON_DEPTH


def with_typed_fields(df: DataFrame, fields: list[Field], raw: str = "raw",
                      max_record_bytes: Optional[int] = None) -> DataFrame:
    """Adds a typed column per field and `_error` (see module doc); a record of more than
    `max_record_bytes` UTF-8 bytes is `record_too_large` and is not parsed.

    Each record is parsed once, into a column of its own: written as one
    expression, every check would parse the record again (Spark does not
    share work between the branches of a CASE WHEN).
    """
    fits = F.octet_length(F.col(raw)) <= max_record_bytes if max_record_bytes else F.lit(True)
    parsed = df.select("*", F.when(fits, F.try_parse_json(F.col(raw))).alias("_v"))
    v = F.col("_v")
    values = {f.name: F.try_variant_get(v, _path(f.name), "variant") for f in fields}
    parsed = parsed.select(
        "*", F.schema_of_variant(v).alias("_kind"),
        *[F.schema_of_variant(values[f.name]).alias(f"_kind_{f.name}") for f in fields],
    )
    checks: list[tuple[Column, Column]] = [
        (~fits, F.lit("record_too_large")),  # first: the checks below would each go through it whole
        (F.col(raw).isNull() | (F.trim(F.col(raw)) == ""), F.lit("blank_line")),
        (v.isNull() & _opens_too_deep(F.col(raw)), F.lit("too_deeply_nested")),
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


# A JSON string (escapes and all), a run of opening brackets, a run of closing ones, or a quote that
# opens a string never closed: all that matters to find where a nested value ends.
_BRACKET_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+|"')


def _value_end(text: str, start: int) -> Optional[int]:
    """Where the array or object that starts at `text[start]` ends, found by matching brackets
    outside strings without recursion (the value may be nested too deeply for the JSON decoder);
    None when it never closes. Runs of brackets count at once, so 10^6 nested ones are two steps."""
    depth = 0
    for m in _BRACKET_TOKENS.finditer(text, start):
        first, length = text[m.start()], m.end() - m.start()
        if first == '"':
            if length == 1:
                return None
        elif first in "[{":
            depth += length
        elif length >= depth:
            return m.start() + depth
        else:
            depth -= length
    return None


def split_json_array(text: Optional[str]) -> Iterator[tuple[int, str, Optional[str]]]:
    """Yield (index, element text, error) for each element of a JSON array text.

    Elements are cut with the JSON decoder, so their texts are exact slices of
    the input. A syntax error ends the scan with one last record holding the
    rest of the text and the reason; a file that is not an array at all is
    one record with reason `not_a_json_array`. An element nested more deeply
    than the decoder can follow (Python's recursion limit, about 1,000
    levels) is one record with reason `too_deeply_nested` (its first 2,000
    characters); its end is found by matching brackets, and the elements
    after it are cut as before (when it never closes, it is the last record).
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
        except json.JSONDecodeError:
            yield index, text[i : i + RAW_PREVIEW_CHARS], "malformed_json"
            return
        except RecursionError:
            closed = _value_end(text, i)
            yield index, text[i : i + RAW_PREVIEW_CHARS], "too_deeply_nested"
            if closed is None:
                return
            end = closed
        else:
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


GZIP_MAGIC = b"\x1f\x8b"
INFLATE_IN = 1 << 20    # compressed bytes given to the decompressor at a time
INFLATE_OUT = 1 << 22   # the most bytes one decompressed chunk holds (4 MiB)


def _gunzip_chunks(content: bytes, problems: list[str]) -> Iterator[bytes]:
    """Decompressed chunks (at most `INFLATE_OUT` bytes each) of a (possibly multi-member) gzip
    file; a problem is appended, not raised. The input is fed in slices of `INFLATE_IN` bytes, so
    neither the input left over nor an output chunk grows with the file or its expansion."""
    view = memoryview(content)
    pos, n = 0, len(content)
    while True:
        d = zlib.decompressobj(wbits=31)
        pending = b""
        try:
            while not d.eof:
                if not pending:
                    if pos >= n:
                        problems.append("truncated_gzip")
                        return
                    pending = view[pos : pos + INFLATE_IN]
                    pos += len(pending)
                out = d.decompress(pending, INFLATE_OUT)
                if out:
                    yield out
                pending = d.unconsumed_tail
        except zlib.error:
            problems.append("corrupt_gzip")
            return
        pos -= len(d.unused_data)  # where the next member, if any, starts
        if content[pos : pos + 2] != GZIP_MAGIC and not bytes(view[pos:]).strip(b"\x00"):
            return  # the end, or zero padding


def gzip_bound(compressed_bytes: int, limits: IngestSettings, whole: bool = False) -> tuple[int, str]:
    """(the most bytes a gzip file of `compressed_bytes` may expand to, the reason when it expands
    to more): `gzip_bomb` beyond `max_expanded_bytes`, or beyond `max_expansion_ratio` times its
    size once past `max_record_bytes`; for a file read whole, `file_too_large` beyond
    `max_file_bytes` where that comes first."""
    bomb = min(limits.max_expanded_bytes, max(limits.max_record_bytes, int(limits.max_expansion_ratio * compressed_bytes)))
    if whole and limits.max_file_bytes < bomb:
        return limits.max_file_bytes, "file_too_large"
    return bomb, "gzip_bomb"


def inspect_file(content: Optional[bytes], gzipped: bool, limits: Optional[IngestSettings] = None,
                 whole: bool = False) -> Optional[str]:
    """The problem of a raw file's bytes: None, `empty_file`, `truncated_gzip`, `corrupt_gzip`, or
    with `limits`, `gzip_bomb` or (`whole`: the file is read whole) `file_too_large` (see
    `gzip_bound`). Decompression stops as soon as a bound is passed; besides the compressed
    bytes it holds at most about 16 MiB (three chunks of `INFLATE_OUT` and a slice of input)."""
    if not content:
        return "empty_file"
    if not gzipped:
        return None
    bound, over = gzip_bound(len(content), limits, whole) if limits is not None else (None, None)
    problems: list[str] = []
    expanded = 0
    for chunk in _gunzip_chunks(content, problems):
        expanded += len(chunk)
        if bound is not None and expanded > bound:
            return over
    if problems:
        return problems[0]
    return "empty_file" if not expanded else None
