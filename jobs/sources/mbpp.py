"""MBPP (`mbpp.jsonl`): Python tasks with tests, one a line.

Fields: `task_id`, `text`, `code`, `test_list`, `test_setup_code`,
`challenge_test_list`. The split of a task follows from its `task_id`
(`mbpp_split`): only the prompt (1-10) and train (601-974) tasks become pairs
or few-shot examples, each run with its tests in the sandbox; test and
validation tasks are dropped as `held_out_split:<split>`, never executed and
never exported. The pair: the task text and its tests as the instruction,
the code as the response.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.udfs.records import Field
from instructlake.jobs.sources.base import SourceFormat, candidate_rows, read_json_lines
from instructlake.jobs.sources.code import (
    EXEC_COLUMNS, EXECUTION, exec_reason, executions_at, nl, pair_content_id, tests_instruction, with_executions,
)

FIELDS = [
    Field("task_id", "bigint", required=True),
    Field("text", "string", required=True),
    Field("code", "string", required=True),
    Field("test_list", "array<string>", required=True),
    Field("test_setup_code", "string"),
    Field("challenge_test_list", "array<string>"),
]

# MBPP's own split by task_id (Austin et al. 2021): 1-10 few-shot prompts, 11-510 test,
# 511-600 validation, 601-974 train.
MBPP_SPLITS = (("prompt", 1, 10), ("test", 11, 510), ("validation", 511, 600), ("train", 601, 974))
# Only these may become training pairs or few-shot examples; the others are held out.
MBPP_TRAINING_SPLITS = ("prompt", "train")
HELD_OUT = "held_out"  # the drop stage of a task of a held-out split


def mbpp_split(task_id: int) -> str:
    """The MBPP split of a task id (`unknown` outside 1-974)."""
    return next((name for name, lo, hi in MBPP_SPLITS if lo <= task_id <= hi), "unknown")


def mbpp_split_col(task_id: Column) -> Column:
    out = F.lit("unknown")
    for name, lo, hi in reversed(MBPP_SPLITS):
        out = F.when(task_id.between(lo, hi), F.lit(name)).otherwise(out)
    return out


def program(bronze: DataFrame) -> tuple[Column, Column]:
    """(code, tests) of a task: its setup code and code, its tests one a line."""
    code = F.concat_ws("\n", nl(F.coalesce("test_setup_code", F.lit(""))), nl(F.col("code")))
    return code, F.array_join("test_list", "\n")


def programs(bronze: DataFrame) -> DataFrame:
    """(code, tests) of the tasks of the training splits."""
    code, tests = program(bronze)
    return bronze.where(mbpp_split_col(F.col("task_id")).isin(*MBPP_TRAINING_SPLITS)).select(code.alias("code"), tests.alias("tests"))


def candidates(spark, conf, lake, source, bronze: DataFrame, derived) -> DataFrame:
    execs = executions_at(spark, lake, (derived.code_versions or {}).get("executions"))
    code, tests = program(bronze)
    split = mbpp_split_col(F.col("task_id"))
    held_out = F.when(~split.isin(*MBPP_TRAINING_SPLITS), F.concat(F.lit("held_out_split:"), split))
    df = with_executions(bronze, code, tests, conf, execs).withColumn("_reason", F.coalesce(held_out, exec_reason(F.col("exec_status"))))
    stage = F.when(F.col("_reason").startswith("held_out_split:"), F.lit(HELD_OUT)).otherwise(F.lit(EXECUTION))
    return candidate_rows(
        source, df, instruction=tests_instruction(F.col("text"), F.array_join("test_list", "\n")),
        response=F.rtrim(nl(F.col("code"))), reason=F.col("_reason"), stage=stage, is_code=True,
        content_id=pair_content_id(F.col("content_id"), F.col("exec_status"), F.col("_reason")),
        extra=tuple(F.col(c) for c in EXEC_COLUMNS),
    )


FORMAT = SourceFormat(
    name="mbpp", fields=FIELDS, read=read_json_lines, line_based=True, candidates=candidates,
    stages=(HELD_OUT, EXECUTION), is_code=True, generated="programs", programs=programs,
    describe="MBPP tasks of the prompt and train splits, verified by running their tests",
    extra_columns=tuple(EXEC_COLUMNS),
)
