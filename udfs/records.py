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
member without saying so), and which lines are not valid UTF-8 (Spark's
decoder silently puts U+FFFD in place of such bytes, so a Latin-1 or UTF-16
file would otherwise pass as text).

`split_json_array` is the pure function that cuts a JSON array file into its
element texts, keeping the elements before a syntax error.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import reduce
from typing import Callable, Iterator, Optional

import pandas as pd

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
    """Adds a typed column per field and `_error` (see module doc)."""
    v = F.try_parse_json(F.col(raw))
    checks: list[tuple[Column, Column]] = [
        (F.col(raw).isNull() | (F.trim(F.col(raw)) == ""), F.lit("blank_line")),
        (v.isNull(), F.lit("malformed_json")),
        (~F.schema_of_variant(v).startswith("OBJECT"), F.lit("not_a_json_object")),
    ]
    for f in fields:
        value = F.try_variant_get(v, _path(f.name), "variant")
        kind = F.schema_of_variant(value)
        absent = value.isNull() | (kind == "VOID")
        if f.required:
            checks.append((absent, F.lit(f"missing_field:{f.name}")))
        checks.append((~absent & ~kind.rlike(_KINDS[f.type]), F.lit(f"wrong_type:{f.name}")))
    error = reduce(lambda acc, c: acc.when(c[0], c[1]), checks[1:], F.when(*checks[0]))
    out = df.withColumn("_error", error)
    for f in fields:
        out = out.withColumn(f.name, F.when(F.col("_error").isNull(), F.try_variant_get(v, _path(f.name), f.type)))
    return out


def content_id(fields: list[Field]) -> Column:
    """A stable id of a record: sha256 of its typed fields as canonical JSON."""
    return F.sha2(F.to_json(F.struct(*[F.col(f.name) for f in fields])), 256)


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


def _lines_not_utf8(chunk: bytes, first_line: int) -> list[int]:
    try:
        chunk.decode("utf-8")
        return []
    except UnicodeDecodeError:
        bad = []
        for i, line in enumerate(chunk.splitlines()):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(first_line + i)
        return bad


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


def inspect_file(content: Optional[bytes], gzipped: bool) -> tuple[Optional[str], list[int]]:
    """(file problem, indices of lines that are not UTF-8) for a raw file's bytes.

    The problem is None, `empty_file`, `truncated_gzip` or `corrupt_gzip`. Lines
    are split like Spark's text reader does (LF, CRLF or CR).
    """
    if not content:
        return "empty_file", []
    problems: list[str] = []
    chunks = _gunzip_chunks(content, problems) if gzipped else iter([content])
    bad: list[int] = []
    pending, line_no = b"", 0
    for chunk in chunks:
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut:
            complete, pending = pending[:cut], pending[cut:]
            bad += _lines_not_utf8(complete, line_no)
            line_no += len(complete.splitlines())
    if pending:
        bad += _lines_not_utf8(pending, line_no)
    if gzipped and not problems and line_no == 0 and not pending:
        problems.append("empty_file")
    return (problems[0] if problems else None), bad


READ_SCHEMA = "source_file string, row_index long, raw string, _read_error string"
# (file text, file URI) -> (row_index, raw record, read error) for each record of the file
RecordSplitter = Callable[[Optional[str], str], Iterator[tuple[int, Optional[str], Optional[str]]]]


def read_whole_files(spark, files: list[str], split: RecordSplitter, checkpoint_name: Optional[str] = None) -> DataFrame:
    """`READ_SCHEMA` rows for the records of files that must be read whole (a JSON array, WikiText
    articles): each file is one Spark task, its text split into records by `split` in a Python worker.

    `checkpoint_name` names a fault checkpoint (`jobs.faults`) passed once per batch.
    """

    def explode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from jobs.faults import checkpoint

        for batch in batches:
            if checkpoint_name:
                checkpoint(checkpoint_name)
            rows = [
                (source_file, index, raw, error)
                for source_file, text in zip(batch["source_file"], batch["value"])
                for index, raw, error in split(text, source_file)
            ]
            yield pd.DataFrame(rows, columns=["source_file", "row_index", "raw", "_read_error"])

    whole = reduce(
        DataFrame.unionByName,
        [
            spark.read.option("ignoreCorruptFiles", "true").text(f, wholetext=True).select(F.lit(f).alias("source_file"), "value")
            for f in files
        ],
    )
    return whole.mapInPandas(explode, READ_SCHEMA)
