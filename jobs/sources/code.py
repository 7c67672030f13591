"""What the Python code formats share: programs, their execution keys and results, and the
columns of a code candidate.

A program with tests (an MBPP or HumanEval task, a generated function) is run
once in the sandbox by the generate stage and its result cached in
`silver/executions` by key = sha256(code, tests, sandbox settings)
(`exec_key_col`); a code candidate carries the result (`EXEC_COLUMNS`) and is
dropped unless it `passed` (`exec_<status>`, or `not_executed`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.core.cache import cached_results
from instructlake.core.config import Config
from instructlake.core.lake import Lake
from instructlake.udfs.filters import DROP_REASON
from instructlake.udfs.pair_format import normalize_instruction_col
from instructlake.udfs.sandbox import SandboxSettings

EXEC_COLUMNS = ["exec_status", "exec_reason", "exec_duration_s", "exec_stderr_tail"]
EXECUTION = "execution"  # the drop stage of a program that did not pass


def nl(c: Column) -> Column:
    return F.regexp_replace(c, "\r\n", "\n")


def sandbox_settings(conf: Config) -> SandboxSettings:
    return SandboxSettings(**dataclasses.asdict(conf.code.sandbox))


def exec_key_col(code: Column, tests: Column, conf: Config) -> Column:
    """sha256 of the code, the tests and the sandbox settings (NUL-joined): an execution's key."""
    return F.sha2(F.concat_ws("\u0000", code, tests, F.lit(sandbox_settings(conf).settings_json())), 256)


def executions_at(spark, lake: Lake, version: Optional[int]) -> DataFrame:
    """(key, exec_status, exec_reason, exec_duration_s, exec_stderr_tail) at `version` (none when
    no program has run)."""
    if version is None:
        return spark.createDataFrame([], "key string, exec_status string, exec_reason string, exec_duration_s double, exec_stderr_tail string")
    results = cached_results(spark, lake.executions, ["status", "reason", "duration_s", "stderr_tail"], version)
    return results.select("key", *[F.col(c).alias(f"exec_{c}") for c in ("status", "reason", "duration_s", "stderr_tail")])


def exec_reason(status: Column) -> Column:
    return F.when(status.isNull(), F.lit("not_executed")).when(status != "passed", F.concat(F.lit("exec_"), status))


def tests_instruction(text: Column, tests: Column) -> Column:
    """The task, then its tests; normalized as every instruction is (`instructlake.udfs.pair_format`)."""
    joined = F.concat(F.trim(text), F.lit("\nYour code should pass these tests:\n"), tests)
    return normalize_instruction_col(F.regexp_replace(joined, r"[ \t]+(\r?\n)", "$1"))


def pair_content_id(*cols: Column) -> Column:
    """A code candidate's content id: its bronze content and its outcome, so a changed result is new content."""
    return F.sha2(F.concat_ws("\u0000", *[F.coalesce(c.cast("string"), F.lit("")) for c in cols]), 256)


def with_executions(bronze: DataFrame, code: Column, tests: Column, conf: Config, execs: DataFrame) -> DataFrame:
    """`bronze` with the execution result of its program (`EXEC_COLUMNS`, null when not run)."""
    return bronze.withColumn("key", exec_key_col(code, tests, conf)).join(execs, "key", "left")


def no_execution(df: DataFrame) -> DataFrame:
    return df.withColumns({c: F.lit(None).cast(t) for c, t in zip(EXEC_COLUMNS, ["string", "string", "double", "string"])})


def code_content_id() -> Column:
    return pair_content_id(F.col("content_id"), F.col("exec_status"), F.col(DROP_REASON))
