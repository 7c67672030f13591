"""HumanEval (`HumanEval.jsonl.gz`): Python functions with tests, one a line.

Fields: `task_id`, `prompt`, `canonical_solution`, `test`, `entry_point`.
All of HumanEval is an evaluation set: supported (its tasks run with their
tests), but base.yaml leaves it disabled, and its texts are a decontamination
benchmark. The pair: the prompt as the instruction, the canonical solution as
the response; kept when the program passes.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.udfs.pair_format import normalize_instruction_col
from instructlake.udfs.records import Field
from instructlake.jobs.sources.base import SourceFormat, candidate_rows, read_json_lines
from instructlake.jobs.sources.code import EXEC_COLUMNS, EXECUTION, exec_reason, executions_at, pair_content_id, with_executions

FIELDS = [
    Field("task_id", "string", required=True),
    Field("prompt", "string", required=True),
    Field("canonical_solution", "string", required=True),
    Field("test", "string", required=True),
    Field("entry_point", "string", required=True),
]


def program(bronze: DataFrame) -> tuple[Column, Column]:
    """(code, tests): the prompt and solution; the test code, then `check(entry_point)`."""
    code = F.concat(F.col("prompt"), F.col("canonical_solution"))
    return code, F.concat(F.col("test"), F.lit("\n\ncheck("), F.col("entry_point"), F.lit(")\n"))


def programs(bronze: DataFrame) -> DataFrame:
    code, tests = program(bronze)
    return bronze.select(code.alias("code"), tests.alias("tests"))


def candidates(spark, conf, lake, source, bronze: DataFrame, derived) -> DataFrame:
    execs = executions_at(spark, lake, (derived.code_versions or {}).get("executions"))
    code, tests = program(bronze)
    df = with_executions(bronze, code, tests, conf, execs).withColumn("_reason", exec_reason(F.col("exec_status")))
    return candidate_rows(
        source, df, instruction=normalize_instruction_col(F.concat(F.lit("Complete the Python function.\n"), F.col("prompt"))),
        response=F.col("canonical_solution"), reason=F.col("_reason"), stage=EXECUTION, is_code=True,
        content_id=pair_content_id(F.col("content_id"), F.col("exec_status"), F.col("_reason")),
        extra=tuple(F.col(c) for c in EXEC_COLUMNS),
    )


FORMAT = SourceFormat(
    name="humaneval", fields=FIELDS, read=read_json_lines, line_based=True, candidates=candidates,
    stages=(EXECUTION,), is_code=True, generated="programs", programs=programs,
    describe="HumanEval tasks, verified by running their tests", extra_columns=tuple(EXEC_COLUMNS),
)
