"""CoNaLa (`conala-train.json`): curated one-line Python snippets, one JSON array.

Each element is a record `{intent, rewritten_intent, snippet, question_id}`;
its row index is its position in the array. `rewritten_intent` may be null.
The pair: `rewritten_intent` (or `intent` when that is null or empty) as the
instruction, the snippet as the response. Snippets have free variables and no
tests: they are never run, only compiled (`code.conala_compile_check`; a
snippet that does not compile is dropped as `snippet_does_not_compile`).
"""
from __future__ import annotations

from typing import Optional

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

from instructlake.udfs.pair_format import normalize_instruction_col
from instructlake.udfs.records import Field, split_json_array
from instructlake.jobs.sources.base import SourceFormat, candidate_rows, read_whole_files
from instructlake.jobs.sources.code import EXEC_COLUMNS, no_execution, pair_content_id

FIELDS = [
    Field("question_id", "bigint"),
    Field("intent", "string", required=True),
    Field("rewritten_intent", "string"),
    Field("snippet", "string", required=True),
]
COMPILE_CHECK = "compile_check"


def compiles(snippet) -> bool:
    """Whether a snippet compiles as Python (it is never run)."""
    try:
        compile(snippet, "<snippet>", "exec")
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError):
        return False


def _compiled(snippets: pd.Series) -> pd.Series:
    return pd.Series([compiles(s) for s in snippets], dtype=bool)


def _split(text, source_file):
    return split_json_array(text)


def read(spark, files: list[str], tolerant: bool = True, max_record_bytes: Optional[int] = None) -> DataFrame:
    """`READ_SCHEMA` rows for each element of the CoNaLa JSON arrays."""
    return read_whole_files(spark, files, _split, tolerant=tolerant, max_record_bytes=max_record_bytes)


def candidates(spark, conf, lake, source, bronze: DataFrame, derived) -> DataFrame:
    intent = normalize_instruction_col(F.coalesce(F.when(F.trim("rewritten_intent") != "", F.col("rewritten_intent")), F.col("intent")))
    bad = ~F.pandas_udf(_compiled, BooleanType())(F.col("snippet")) if conf.code.conala_compile_check else F.lit(False)
    df = no_execution(bronze.withColumn("_reason", F.when(bad, F.lit("snippet_does_not_compile"))))
    return candidate_rows(
        source, df, instruction=intent, response=F.col("snippet"), reason=F.col("_reason"), stage=COMPILE_CHECK,
        is_code=True, content_id=pair_content_id(F.col("content_id"), F.col("exec_status"), F.col("_reason")),
        extra=tuple(F.col(c) for c in EXEC_COLUMNS),
    )


FORMAT = SourceFormat(
    name="conala", fields=FIELDS, read=read, line_based=False, candidates=candidates, stages=(COMPILE_CHECK,),
    is_code=True, describe="CoNaLa one-line snippets, compiled, never run", extra_columns=tuple(EXEC_COLUMNS),
)
