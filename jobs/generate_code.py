"""Stage 2b, silver: Python code pairs: functions written by the LLM, and programs run with their tests.

Part of the generate stage (`instructlake generate`, and `run`), after the
question-answer step. It writes two Delta tables:

- `<lake>/silver/code_functions`: one row per generated function
  (`code.generate.count` of them, label `code.generate.label`, default
  `python_code`). Generation `i` gets a few-shot prompt
  (`code.generate.prompt`) of `code.generate.examples` tasks of the TRAIN
  split of the mbpp source `code.generate.examples_source`, picked by a seeded
  hash of (seed, i, task_id), so the prompts differ and are reproducible.
  The model's completion goes through the generations cache of the QA step
  (`jobs.generate_qa.cached_generate`: a call is never made twice) and is cut
  into task, code and tests by `udfs.codegen.parse_function`; an unusable
  completion is kept with its `parse_error`.
- `<lake>/silver/executions`: one row per program run, keyed by `key` =
  sha256(code, tests, sandbox settings) (`exec_key_col`), with `status`
  (passed, failed, error, timeout, killed), `reason`, `duration_s`,
  `exit_code`, the tails of stdout and stderr, the sandbox kind and run id.
  The programs: the MBPP tasks of the prompt and train splits (setup code,
  code, `test_list`), HumanEval tasks (prompt + canonical solution, `test`,
  `check(entry_point)`) and the parsed generated functions. A program whose
  key is in the table is never run again, so a re-run (or a Spark task
  retry before the commit) never makes the dataset depend on running a
  program twice. Programs run inside Spark tasks (`mapInPandas`), each in the
  sandbox of `udfs.sandbox`; one commit per run of the step.

CoNaLa snippets are one-liners with free variables and no tests: they are
never executed, only compiled (`code.conala_compile_check`).

The pairs stage takes its code candidates from here (`code_pair_rows`):
`conala` (instruction: `rewritten_intent`, or `intent` when that is null or
empty; response: `snippet`), `mbpp` (the task text and its tests; response:
the code), `humaneval` (the prompt; response: the canonical solution), and
the generated functions. Drop reasons: `held_out_split:test` and
`held_out_split:validation` for MBPP tasks outside the prompt and train
splits (never executed, never exported), `snippet_does_not_compile`, the
parse errors of a generated function, `not_executed`, and `exec_<status>`
for every status but `passed`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Optional

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import storage
from jobs.config import Config, Source
from jobs.ingest_code import MBPP_SPLITS, MBPP_TRAINING_SPLITS
from jobs.lake import Lake, RunContext, is_delta, latest_version, read_version
from udfs.filters import DROP_REASON

log = logging.getLogger("instructlake.generate")

CODE_FORMATS = ("conala", "mbpp", "humaneval")
GENERATED_FORMAT = "generated_code"  # in udfs.codegen.CODE_PAIR_FORMATS
GENERATED_ITEM = "generated"
EXEC_SCHEMA = (
    "key string, status string, reason string, duration_s double, exit_code int, stdout_tail string, stderr_tail string"
)
EXEC_COLUMNS = ["exec_status", "exec_reason", "exec_duration_s", "exec_stderr_tail"]


@dataclass
class CodeResult:
    generations: int = 0                 # generated functions (rows of silver/code_functions)
    parsed: int = 0                      # ... that parsed into task, code and tests
    calls: int = 0                       # model calls made by this run
    cache_hits: int = 0
    programs: int = 0                    # programs with tests wanted
    executed: int = 0                    # ... run by this run (the others were in silver/executions)
    exec_seconds: float = 0.0
    sandbox: str = ""
    counts: list = field(default_factory=list)  # (label, status or parse error, rows), for the summary
    tables: dict = field(default_factory=dict)


def code_sources(conf: Config) -> list[Source]:
    return [s for s in conf.enabled_sources if s.format in CODE_FORMATS]


def functions_table(lake: Lake) -> str:
    return storage.join(lake.root, "silver", "code_functions")


def executions_table(lake: Lake) -> str:
    return storage.join(lake.root, "silver", "executions")


def sandbox_settings(conf: Config):
    from udfs.sandbox import SandboxSettings

    return SandboxSettings(**dataclasses.asdict(conf.code.sandbox))


def generation_source(conf: Config) -> Optional[Source]:
    """The enabled mbpp source that seeds the generated functions, when generation is on."""
    gen = conf.code.generate
    if not gen.count:
        return None
    return next((s for s in code_sources(conf) if s.name == gen.examples_source), None)


# --- programs -----------------------------------------------------------------

def _nl(c: Column) -> Column:
    return F.regexp_replace(c, "\r\n", "\n")


def mbpp_split_col(task_id: Column) -> Column:
    out = F.lit("unknown")
    for name, lo, hi in reversed(MBPP_SPLITS):
        out = F.when(task_id.between(lo, hi), F.lit(name)).otherwise(out)
    return out


def exec_key_col(code: Column, tests: Column, settings_json: str) -> Column:
    """sha256 of the code, the tests and the sandbox settings (NUL-joined): an execution's key."""
    return F.sha2(F.concat_ws("\u0000", code, tests, F.lit(settings_json)), 256)


def _program(bronze: DataFrame, fmt: str) -> tuple[Column, Column]:
    """(code, tests) of a bronze row of an mbpp or humaneval source."""
    if fmt == "mbpp":
        code = F.concat_ws("\n", _nl(F.coalesce("test_setup_code", F.lit(""))), _nl(F.col("code")))
        return code, F.array_join("test_list", "\n")
    code = F.concat(F.col("prompt"), F.col("canonical_solution"))
    return code, F.concat(F.col("test"), F.lit("\n\ncheck("), F.col("entry_point"), F.lit(")\n"))


def _training_rows(bronze: DataFrame, fmt: str) -> DataFrame:
    return bronze.where(mbpp_split_col(F.col("task_id")).isin(*MBPP_TRAINING_SPLITS)) if fmt == "mbpp" else bronze


def programs(spark, conf: Config, lake: Lake, functions: Optional[DataFrame]) -> DataFrame:
    """(key, code, tests) of every program to verify: MBPP prompt and train tasks, HumanEval tasks,
    the parsed generated functions."""
    settings = sandbox_settings(conf).settings_json()
    parts = []
    for s in code_sources(conf):
        if s.format == "conala":
            continue
        bronze, _ = read_version(spark, lake.bronze(s.name))
        code, tests = _program(bronze, s.format)
        parts.append(_training_rows(bronze, s.format).select(code.alias("code"), tests.alias("tests")))
    if functions is not None:
        parts.append(functions.where(F.col("parse_error").isNull()).select("code", "tests"))
    if not parts:
        return spark.createDataFrame([], "key string, code string, tests string")
    union = parts[0]
    for p in parts[1:]:
        union = union.unionByName(p)
    return union.select(exec_key_col(F.col("code"), F.col("tests"), settings).alias("key"), "code", "tests").dropDuplicates(["key"])


# --- executions ---------------------------------------------------------------

def execute_udf(settings):
    """A `mapInPandas` function: (key, code, tests) rows in, `EXEC_SCHEMA` rows out, each program run
    in the sandbox."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from udfs.sandbox import run_program

        for batch in batches:
            results = [run_program(c, t, settings, k[:16]) for k, c, t in zip(batch["key"], batch["code"], batch["tests"])]
            yield pd.DataFrame(
                {
                    "key": batch["key"].tolist(),
                    "status": [r.status for r in results],
                    "reason": [r.reason for r in results],
                    "duration_s": [float(r.duration_s) for r in results],
                    "exit_code": pd.array([r.exit_code for r in results], dtype="Int32"),
                    "stdout_tail": [r.stdout_tail for r in results],
                    "stderr_tail": [r.stderr_tail for r in results],
                }
            )

    return run


def check_sandbox(settings) -> None:
    """Runs one trivial program on the driver: a sandbox that cannot start stops the run here, with
    one clear line, instead of failing in every Spark task."""
    from jobs.generate_qa import GenerationError
    from udfs.sandbox import SandboxUnavailableError, run_program

    try:
        probe = run_program("x = 1", "assert x == 1", settings, "probe")
    except SandboxUnavailableError as e:
        raise GenerationError(str(e)) from None
    if probe.status != "passed":
        hint = "; bubblewrap needs user namespaces (or set code.sandbox.kind: process, which is weaker)" if settings.kind == "bwrap" else ""
        raise GenerationError(f"code.sandbox: the {settings.kind} sandbox cannot run a program here: {probe.stderr_tail.strip()[-300:]}{hint}")


def run_executions(spark, conf: Config, lake: Lake, run: RunContext, wanted: DataFrame, result: CodeResult) -> None:
    """Runs the programs of `wanted` whose key is not in silver/executions yet; one append commit."""
    import json

    uri = executions_table(lake)
    todo_df = wanted.join(spark.read.format("delta").load(uri).select("key"), "key", "left_anti") if is_delta(spark, uri) else wanted
    todo = todo_df.orderBy("key").collect()
    result.programs = wanted.count()
    log.info("programs: %d with tests, %d already executed, %d to run (%s sandbox)",
             result.programs, result.programs - len(todo), len(todo), conf.code.sandbox.kind)
    if not todo:
        return
    settings = sandbox_settings(conf)
    check_sandbox(settings)
    parallelism = conf.code.parallelism or spark.sparkContext.defaultParallelism
    started = time.monotonic()
    rdd = spark.sparkContext.parallelize([(r["key"], r["code"], r["tests"]) for r in todo], min(parallelism, len(todo)))
    out = spark.createDataFrame(rdd, "key string, code string, tests string").mapInPandas(execute_udf(settings), EXEC_SCHEMA)
    out = out.withColumns(
        {"sandbox": F.lit(settings.kind), "run_id": F.lit(run.run_id), "created_at": F.lit(run.started_at).cast("timestamp")}
    )
    meta = json.dumps({"stage": "generate", "run_id": run.run_id, "step": "executions", "programs": len(todo)}, sort_keys=True)
    out.write.format("delta").mode("append").option("userMetadata", meta).save(uri)
    result.executed = len(todo)
    result.exec_seconds = time.monotonic() - started
    log.info("programs: %d run in %.1fs (%.1f per second)", len(todo), result.exec_seconds, len(todo) / max(result.exec_seconds, 1e-9))


def executions_at(spark, lake: Lake, version: Optional[int]) -> DataFrame:
    """(key, exec_status, exec_reason, exec_duration_s, exec_stderr_tail) at `version`; the first
    result of a key wins (should two runs have raced)."""
    if version is None:
        return spark.createDataFrame([], "key string, exec_status string, exec_reason string, exec_duration_s double, exec_stderr_tail string")
    df, _ = read_version(spark, executions_table(lake), version)
    first = F.min_by(F.struct("status", "reason", "duration_s", "stderr_tail"), F.struct("created_at", "run_id"))
    return df.groupBy("key").agg(first.alias("_r")).select(
        "key", F.col("_r.status").alias("exec_status"), F.col("_r.reason").alias("exec_reason"),
        F.col("_r.duration_s").alias("exec_duration_s"), F.col("_r.stderr_tail").alias("exec_stderr_tail"),
    )


# --- generated functions ------------------------------------------------------

def _prompts(spark, conf: Config, lake: Lake, source: Source, template: str) -> list[tuple[int, list[int], str]]:
    """(generation index, example task ids, prompt) for each generation; the examples are TRAIN tasks
    of the mbpp source, in the order of sha256(seed:index:task_id)."""
    from udfs.codegen import example_text

    gen = conf.code.generate
    bronze, _ = read_version(spark, lake.bronze(source.name))
    train = bronze.where(mbpp_split_col(F.col("task_id")) == "train").select("task_id", "text", "code", "test_list").collect()
    if not train:
        from jobs.generate_qa import GenerationError

        raise GenerationError(f"code.generate.examples_source: the mbpp source {source.name!r} has no train-split task (task_id 601-974)")
    out = []
    for i in range(gen.count):
        rank = lambda r: hashlib.sha256(f"{gen.seed}:{i}:{r['task_id']}".encode()).hexdigest()  # noqa: E731
        examples = sorted(train, key=rank)[: gen.examples]
        text = "".join(example_text(r["text"], r["code"], list(r["test_list"])[: gen.example_tests]) for r in examples)
        out.append((i, [r["task_id"] for r in examples], template.replace("{examples}", text, 1)))
    return out


def _parse_udf():
    @F.pandas_udf("task string, code string, tests string, parse_error string")
    def parse(completions: pd.Series) -> pd.DataFrame:
        from udfs.codegen import parse_function

        rows = [parse_function(None if c is None or (isinstance(c, float) and pd.isna(c)) else c) for c in completions]
        return pd.DataFrame(rows, columns=["task", "code", "tests", "parse_error"])

    return parse


def build_functions(spark, conf: Config, lake: Lake, run: RunContext, source: Source, result: CodeResult) -> DataFrame:
    """The code_functions table (not yet written) for `code.generate.count` generations."""
    from jobs.generate_qa import GenerateResult, cached_generate, read_prompt
    from udfs.codegen import STOP
    from udfs.llm import call_key, model_id, params_json, sampling_params

    gen = conf.code.generate
    template = read_prompt(spark, gen.prompt, "code.generate.prompt", {"examples"})
    model = model_id(conf.llm)
    llm = dataclasses.replace(conf.llm, max_tokens=gen.max_tokens)
    rows = []
    for i, task_ids, prompt in _prompts(spark, conf, lake, source, template):
        params = params_json(sampling_params(llm, conf.llm.seed + i, STOP))
        rows.append((i, task_ids, prompt, params, call_key(prompt, model, params)))
    requests = spark.createDataFrame(rows, "gen_index long, example_task_ids array<bigint>, prompt string, params string, key string")
    counters = GenerateResult()
    answers = cached_generate(
        spark, conf, lake, run,
        requests.select("key", "prompt", "params", F.lit(0).alias("_group"), F.col("gen_index").alias("_order")),
        "functions", model, counters,
    )
    result.calls, result.cache_hits = counters.calls, counters.cache_hits
    df = requests.join(answers, "key", "left").withColumn("_p", _parse_udf()(F.col("completion")))
    df = df.select(
        "gen_index", "example_task_ids", F.col("key").alias("prompt_key"), "completion",
        F.col("error").alias("generation_error"), "_p.task", "_p.code", "_p.tests",
        F.when(F.col("error").isNotNull(), F.lit("generation_failed")).otherwise(F.col("_p.parse_error")).alias("parse_error"),
    )
    settings = sandbox_settings(conf).settings_json()
    return df.withColumn("exec_key", F.when(F.col("parse_error").isNull(), exec_key_col(F.col("code"), F.col("tests"), settings)))


# --- the step -----------------------------------------------------------------

def run_code(spark, conf: Config, run: RunContext | None = None) -> Optional[CodeResult]:
    """Generate functions (when `code.generate.count` > 0) and run every program with tests that has
    no result yet. None when no code source is enabled."""
    from jobs.generate_qa import write_if_changed

    run = run or RunContext()
    if not code_sources(conf):
        return None
    lake = Lake.of(conf)
    started = time.monotonic()
    result = CodeResult(sandbox=conf.code.sandbox.kind)
    functions = None
    source = generation_source(conf)
    if source is None and conf.code.generate.count:
        log.warning("functions: none generated: the examples source %r is not an enabled mbpp source", conf.code.generate.examples_source)
    if source is not None:
        built = build_functions(spark, conf, lake, run, source, result).persist()
        try:
            version, _ = write_if_changed(spark, built, functions_table(lake), {"stage": "generate", "run_id": run.run_id})
        finally:
            built.unpersist()
        functions, _ = read_version(spark, functions_table(lake), version)
        result.tables["code_functions"] = version
        parse = Counter(r["parse_error"] for r in functions.select("parse_error").collect())
        result.generations, result.parsed = sum(parse.values()), parse.get(None, 0)
        log.info("functions: %d generated, %d parsed into task, code and tests; %d model call(s), %d from the cache",
                 result.generations, result.parsed, result.calls, result.cache_hits)
    run_executions(spark, conf, lake, run, programs(spark, conf, lake, functions), result)
    if is_delta(spark, executions_table(lake)):
        result.tables["executions"] = latest_version(spark, executions_table(lake))
    if functions is not None:
        result.counts = _function_counts(spark, conf, lake, functions, result.tables.get("executions"))
    log.info("code: %d program(s) with tests, %d run now; %.1fs", result.programs, result.executed, time.monotonic() - started)
    return result


def _function_counts(spark, conf: Config, lake: Lake, functions: DataFrame, exec_version: Optional[int]) -> list:
    """(label, outcome, rows) of the generated functions: a parse error or an execution status."""
    execs = executions_at(spark, lake, exec_version).withColumnRenamed("key", "exec_key")
    rows = functions.join(execs, "exec_key", "left").select(F.coalesce("parse_error", "exec_status").alias("o")).groupBy("o").count().collect()
    label = conf.code.generate.label
    return sorted(((label, None if r["o"] == "passed" else r["o"], r["count"]) for r in rows), key=lambda c: c[1] or "")


def code_versions(spark, conf: Config, lake: Lake) -> Optional[dict]:
    """The versions of the code tables the pairs read, when a code source is enabled."""
    if not code_sources(conf):
        return None
    return {
        name: latest_version(spark, uri) if is_delta(spark, uri) else None
        for name, uri in (("executions", executions_table(lake)), ("code_functions", functions_table(lake)))
    }


# --- pairs --------------------------------------------------------------------

def _compiles_udf():
    @F.pandas_udf("boolean")
    def compiles(snippets: pd.Series) -> pd.Series:
        def ok(s) -> bool:
            try:
                compile(s, "<snippet>", "exec")
                return True
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return False

        return pd.Series([ok(s) for s in snippets], dtype=bool)

    return compiles


def _exec_reason(status: Column) -> Column:
    return F.when(status.isNull(), F.lit("not_executed")).when(status != "passed", F.concat(F.lit("exec_"), status))


def _tests_instruction(text: Column, tests: Column) -> Column:
    """The task, then its tests; normalized as every instruction is (`udfs.pair_format`)."""
    from udfs.pair_format import normalize_instruction_col

    joined = F.concat(F.trim(text), F.lit("\nYour code should pass these tests:\n"), tests)
    return normalize_instruction_col(F.regexp_replace(joined, r"[ \t]+(\r?\n)", "$1"))


def _candidates(bronze: DataFrame, source: Source, conf: Config, execs: DataFrame) -> DataFrame:
    """(instruction, response, drop_reason, exec columns) of the bronze rows of a code source."""
    from udfs.pair_format import normalize_instruction_col

    if source.format == "conala":
        intent = normalize_instruction_col(F.coalesce(F.when(F.trim("rewritten_intent") != "", F.col("rewritten_intent")), F.col("intent")))
        bad = ~_compiles_udf()(F.col("snippet")) if conf.code.conala_compile_check else F.lit(False)
        df = bronze.withColumns({"instruction": intent, "response": F.col("snippet"),
                                 DROP_REASON: F.when(bad, F.lit("snippet_does_not_compile"))})
        return df.withColumns({c: F.lit(None).cast(t) for c, t in zip(EXEC_COLUMNS, ["string", "string", "double", "string"])})
    settings = sandbox_settings(conf).settings_json()
    code, tests = _program(bronze, source.format)
    df = bronze.withColumn("key", exec_key_col(code, tests, settings)).join(execs, "key", "left")
    if source.format == "mbpp":
        split = mbpp_split_col(F.col("task_id"))
        held_out = F.when(~split.isin(*MBPP_TRAINING_SPLITS), F.concat(F.lit("held_out_split:"), split))
        return df.withColumns({
            "instruction": _tests_instruction(F.col("text"), F.array_join("test_list", "\n")),
            "response": F.rtrim(_nl(F.col("code"))),
            DROP_REASON: F.coalesce(held_out, _exec_reason(F.col("exec_status"))),
        })
    return df.withColumns({
        "instruction": normalize_instruction_col(F.concat(F.lit("Complete the Python function.\n"), F.col("prompt"))),
        "response": F.col("canonical_solution"),
        DROP_REASON: _exec_reason(F.col("exec_status")),
    })


def _pair_content_id(*cols: Column) -> Column:
    return F.sha2(F.concat_ws("\u0000", *[F.coalesce(c.cast("string"), F.lit("")) for c in cols]), 256)


def _generated_rows(spark, conf: Config, lake: Lake, source: Source, versions: dict, execs: DataFrame) -> DataFrame:
    functions, _ = read_version(spark, functions_table(lake), versions["code_functions"])
    df = functions.join(execs.withColumnRenamed("key", "exec_key"), "exec_key", "left")
    reason = F.coalesce(F.col("parse_error"), _exec_reason(F.col("exec_status")))
    return df.select(
        F.lit(conf.code.generate.label).alias("source"), F.lit(source.name).alias("source_name"),
        F.lit(GENERATED_FORMAT).alias("source_format"), F.lit(functions_table(lake)).alias("source_file"),
        F.col("gen_index").alias("row_index"), F.lit(GENERATED_ITEM).alias("item"),
        _pair_content_id(F.col("prompt_key"), F.col("task"), F.col("code"), F.col("tests"), F.col("exec_status"), reason).alias("content_id"),
        F.lit(None).cast("string").alias("ingest_run_id"),
        F.when(F.col("task").isNotNull(), _tests_instruction(F.col("task"), F.coalesce("tests", F.lit("")))).alias("instruction"),
        F.col("code").alias("response"), F.lit(None).cast("double").alias("red_team_rating"), reason.alias(DROP_REASON),
        *EXEC_COLUMNS,
    )


def code_pair_rows(spark, conf: Config, lake: Lake, source: Source, bronze: DataFrame, versions: Optional[dict]) -> DataFrame:
    """The candidate pairs of a code source (and, for the examples source, of the generated
    functions), in the columns of `jobs.pairs.with_first_exchange` plus `EXEC_COLUMNS`."""
    versions = versions or {}
    execs = executions_at(spark, lake, versions.get("executions"))
    df = _candidates(bronze, source, conf, execs)
    rows = df.select(
        F.lit(source.label).alias("source"), F.lit(source.name).alias("source_name"), F.lit(source.format).alias("source_format"),
        "source_file", "row_index", F.lit("").alias("item"),
        _pair_content_id(F.col("content_id"), F.col("exec_status"), F.col(DROP_REASON)).alias("content_id"),
        "ingest_run_id", "instruction", "response", F.lit(None).cast("double").alias("red_team_rating"), DROP_REASON,
        *EXEC_COLUMNS,
    )
    gen_source = generation_source(conf)
    if gen_source is not None and gen_source.name == source.name and versions.get("code_functions") is not None:
        rows = rows.unionByName(_generated_rows(spark, conf, lake, source, versions, execs))
    return rows
