"""Stage 2b, silver: Python code pairs: functions written by the LLM, and programs run with their tests.

Part of the generate stage (`instructlake generate`, and `run`), after the
question-answer step. It writes two Delta tables:

- `<lake>/silver/code_functions`: one row per generated function
  (`code.generate.count` of them, label `code.generate.label`, default
  `python_code`). Generation `i` gets a few-shot prompt
  (`code.generate.prompt`) of `code.generate.examples` tasks of the TRAIN
  split of the mbpp source `code.generate.examples_source`, picked by a seeded
  hash of (seed, i, task_id), and a task seed: a line of
  `code.generate.task_seeds` (the first words of a task, e.g. "Write a
  function to count the vowels in"), in a seeded hash order that uses every
  line once before any line again (`instructlake.udfs.codegen.task_seed`),
  filled into the prompt's `{task_seed}`. The same conf gives the same
  prompts. When the prompt ends with `{task_seed}` the model continues the
  seed's words, and the task is the seed followed by the completion. The
  model's completion goes through the cache of model calls (the QA step's,
  `instructlake.core.cache`: a call is never made twice) and is cut into
  task, code and tests by `instructlake.udfs.codegen.parse_function`; an
  unusable completion is kept with its `parse_error`. Columns: `gen_index`,
  `example_task_ids`, `task_seed` (null without one), `prompt_key`, `completion`,
  `generation_error`, `task`, `code`, `tests`, `parse_error`, `exec_key`.
- `<lake>/silver/executions`: one row per program run, keyed by `key` =
  sha256(code, tests, sandbox settings)
  (`instructlake.jobs.sources.code.exec_key_col`), with `status` (passed,
  failed, error, timeout, killed), `reason`, `duration_s`, `exit_code`, the
  tails of stdout and stderr, the sandbox kind and run id. The programs: those
  of every source format with tests (MBPP's prompt and train tasks, HumanEval)
  and the parsed generated functions. A program whose key is in the table is
  never run again (the same cache as the model calls'), so a re-run (or a
  Spark task retry before the commit) never makes the dataset depend on
  running a program twice. Programs run inside Spark tasks, each in the
  sandbox of `instructlake.udfs.sandbox`.

The pairs stage takes the generated functions as candidates of their own
label (`generated_candidates`): drop reasons `generation_failed`
(`generation`), the parse errors (`parse`), `not_executed` and
`exec_<status>` for every status but `passed` (`execution`), then
`near_duplicate_of:<label>/<id>` (`code_near_duplicates`) for a function
that passed but whose task is a near duplicate
(`code.generate.near_duplicate_threshold`, Jaccard similarity of word
shingles of the normalized tasks) of a task of the mbpp source (`mbpp/17`:
its `task_id`) or of an earlier generated function that passed
(`python_code/3`: its `gen_index`). Its own reason kind keeps it out of the
dedup step, which recomputes every row whose reason is `duplicate_of` or
`near_duplicate_of`.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import reduce
from typing import Optional

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from instructlake.core import storage
from instructlake.core.session import default_parallelism
from instructlake.core.cache import CacheStats, CachedStep, run_cached
from instructlake.core.config import Config, Source
from instructlake.core.errors import GenerationError
from instructlake.core.lake import Lake, RunContext, is_delta, latest_version, read_version, write_if_changed
from instructlake.jobs.sources import format_of, sources_made
from instructlake.jobs.sources.base import candidate_rows
from instructlake.jobs.sources.code import (
    EXEC_COLUMNS, EXECUTION, exec_key_col, exec_reason, executions_at, pair_content_id, sandbox_settings, tests_instruction,
)
from instructlake.jobs.sources.mbpp import mbpp_split_col
from instructlake.jobs.stages.generate_qa import ModelCalls, cached_generate, failed_calls, model_of, read_prompt
from instructlake.udfs.codegen import (
    STOP, TASK_SEED, example_text, function_prompt, near_duplicates, parse_function, pick_examples, seed_starts_task, task_seed,
    task_seed_lines, task_shingles,
)
from instructlake.udfs.llm import call_key, params_json, sampling_params
from instructlake.udfs.sandbox import EXEC_SCHEMA, SandboxUnavailableError, execute_udf, run_program

log = logging.getLogger("instructlake.generate")

GENERATED_FORMAT = "generated_code"
GENERATED_ITEM = "generated"
NEAR_DUPLICATE_TASK = "near_duplicate_of"  # the drop reason's kind: near_duplicate_of:<label>/<id>
NEAR_DUPLICATE_STAGE = "code_near_duplicates"


@dataclass
class CodeResult(ModelCalls):
    generations: int = 0                 # generated functions (rows of silver/code_functions)
    parsed: int = 0                      # ... that parsed into task, code and tests
    executions: CacheStats = field(default_factory=CacheStats)  # programs with tests wanted, run by this run
    sandbox: str = ""
    counts: list = field(default_factory=list)  # (label, status or parse error, rows), for the summary
    tables: dict = field(default_factory=dict)

    @property
    def programs(self) -> int:
        return self.executions.wanted

    @property
    def executed(self) -> int:
        return self.executions.computed


def generation_source(conf: Config) -> Optional[Source]:
    """The enabled mbpp source that seeds the generated functions, when generation is on."""
    gen = conf.code.generate
    if not gen.count:
        return None
    return next((s for s in conf.enabled_sources if s.name == gen.examples_source and s.format == "mbpp"), None)


# --- programs -----------------------------------------------------------------

def programs(spark, conf: Config, lake: Lake, functions: Optional[DataFrame]) -> DataFrame:
    """(key, code, tests) of every program to verify: those of the sources with tests, and the
    parsed generated functions."""
    parts = [format_of(s).programs(read_version(spark, lake.bronze(s.name))[0]) for s in sources_made(conf, "programs")]
    if functions is not None:
        parts.append(functions.where(F.col("parse_error").isNull()).select("code", "tests"))
    if not parts:
        return spark.createDataFrame([], "key string, code string, tests string")
    union = reduce(DataFrame.unionByName, parts)
    return union.select(exec_key_col(F.col("code"), F.col("tests"), conf).alias("key"), "code", "tests").dropDuplicates(["key"])


PROBE_TIMEOUT_S = 60.0


def check_sandbox(settings) -> None:
    """Runs one trivial program on the driver: a sandbox that cannot start stops the run here, with
    one clear line, instead of failing in every Spark task."""
    # The probe's own time limit is generous: on a loaded machine the sandbox's start alone can
    # outlast a short per-program limit, which would say nothing about whether it works.
    settings = dataclasses.replace(settings, timeout_s=max(settings.timeout_s, PROBE_TIMEOUT_S))
    try:
        probe = run_program("x = 1", "assert x == 1", settings, "probe")
    except SandboxUnavailableError as e:
        raise GenerationError(str(e)) from None
    if probe.status != "passed":
        hint = "; bubblewrap needs user namespaces (or set code.sandbox.kind: process, which is weaker)" if settings.kind == "bwrap" else ""
        raise GenerationError(f"code.sandbox: the {settings.kind} sandbox cannot run a program here ({probe.status}"
                              f"{', ' + probe.reason if probe.reason else ''}): {probe.stderr_tail.strip()[-300:]}{hint}")


def execution_step(spark, conf: Config, lake: Lake) -> CachedStep:
    settings = sandbox_settings(conf)
    return CachedStep(
        name="executions", uri=lake.executions, inputs=("key", "code", "tests"), input_schema="key string, code string, tests string",
        schema=EXEC_SCHEMA, compute=execute_udf(settings), chunk_size=conf.code.chunk_size,
        parallelism=conf.code.parallelism or default_parallelism(spark),
        stamp=(("sandbox", F.lit(settings.kind)),), prepare=lambda: check_sandbox(settings),
    )


def run_executions(spark, conf: Config, lake: Lake, run: RunContext, wanted: DataFrame, result: CodeResult) -> None:
    """Runs the programs of `wanted` whose key is not in silver/executions yet."""
    result.executions = run_cached(spark, execution_step(spark, conf, lake), wanted, run, "generate")
    if result.executions.computed:
        log.info("programs: %d run in %.1fs (%s sandbox)", result.executed, result.executions.seconds, conf.code.sandbox.kind)


# --- generated functions ------------------------------------------------------

def read_task_seeds(spark, conf: Config) -> list[str]:
    """The task seeds of `code.generate.task_seeds` ([] when it is null). A relative path is looked
    up in the working folder, then in the package (`conf/prompts/`)."""
    path = conf.code.generate.task_seeds
    if path is None:
        return []
    try:
        text = storage.read_text(spark, storage.resolve(storage.find_file(path)))
    except Exception as e:  # noqa: BLE001 - a missing file or an unreadable URI: one clear line
        raise GenerationError(f"code.generate.task_seeds: cannot read {path!r} ({type(e).__name__}: {e})") from None
    seeds = task_seed_lines(text)
    if not seeds:
        raise GenerationError(f"code.generate.task_seeds: {path} holds no seed (set it to null for none)")
    return seeds


def _prompts(spark, conf: Config, lake: Lake, source: Source, template: str, seeds: list[str]) -> list[tuple[int, list[int], str, str]]:
    """(generation index, example task ids, task seed, prompt) for each generation: the examples are
    TRAIN tasks of the mbpp source (`pick_examples`), the seed a line of `seeds` (`task_seed`)."""
    gen = conf.code.generate
    bronze, _ = read_version(spark, lake.bronze(source.name))
    train = {r["task_id"]: r for r in bronze.where(mbpp_split_col(F.col("task_id")) == "train").select("task_id", "text", "code", "test_list").collect()}
    if not train:
        raise GenerationError(f"code.generate.examples_source: the mbpp source {source.name!r} has no train-split task (task_id 601-974)")
    out = []
    for i in range(gen.count):
        task_ids = pick_examples(list(train), gen.seed, i, gen.examples)
        text = "".join(example_text(train[t]["text"], train[t]["code"], list(train[t]["test_list"])[: gen.example_tests]) for t in task_ids)
        seed = task_seed(seeds, gen.seed, i)
        out.append((i, task_ids, seed, function_prompt(template, text, seed)))
    return out


PARSED = StructType([StructField(name, StringType()) for name in ("task", "code", "tests", "parse_error")])


def _parsed(completions: pd.Series) -> pd.DataFrame:
    rows = [parse_function(None if c is None or (isinstance(c, float) and pd.isna(c)) else c) for c in completions]
    return pd.DataFrame(rows, columns=["task", "code", "tests", "parse_error"])


def build_functions(spark, conf: Config, lake: Lake, run: RunContext, source: Source, result: CodeResult) -> DataFrame:
    """The code_functions table (not yet written) for `code.generate.count` generations."""
    gen = conf.code.generate
    template = read_prompt(spark, gen.prompt, "code.generate.prompt", {"examples", TASK_SEED})
    seeds = read_task_seeds(spark, conf)
    if seeds and "{" + TASK_SEED + "}" not in template:
        log.warning("functions: code.generate.task_seeds is set but %s has no {%s}: no seed is used", gen.prompt, TASK_SEED)
        seeds = []
    model = model_of(conf)
    llm = dataclasses.replace(conf.llm, max_tokens=gen.max_tokens)
    rows = []
    for i, task_ids, seed, prompt in _prompts(spark, conf, lake, source, template, seeds):
        params = params_json(sampling_params(llm, conf.llm.seed + i, STOP))
        rows.append((i, task_ids, seed, prompt, params, call_key(prompt, model, params)))
    requests = spark.createDataFrame(
        rows, "gen_index long, example_task_ids array<bigint>, task_seed string, prompt string, params string, key string",
    )
    answers = cached_generate(
        spark, conf, lake, run,
        requests.select("key", "prompt", "params", F.lit(0).alias("_group"), F.col("gen_index").alias("_order")),
        "functions", model, result.llm,
    )
    # A prompt ending with the seed has the task's first words in the prompt, not in the completion.
    text = F.concat(F.col("task_seed"), F.col("completion")) if seed_starts_task(template) else F.col("completion")
    df = requests.join(answers, "key", "left").withColumn("_p", F.pandas_udf(_parsed, PARSED)(text))
    df = df.select(
        "gen_index", "example_task_ids", F.when(F.col("task_seed") != "", F.col("task_seed")).alias("task_seed"),
        F.col("key").alias("prompt_key"), "completion",
        F.col("error").alias("generation_error"), "_p.task", "_p.code", "_p.tests",
        F.when(F.col("error").isNotNull(), F.lit("generation_failed")).otherwise(F.col("_p.parse_error")).alias("parse_error"),
    )
    return df.withColumn("exec_key", F.when(F.col("parse_error").isNull(), exec_key_col(F.col("code"), F.col("tests"), conf)))


# --- the step -----------------------------------------------------------------

def run_code(spark, conf: Config, run: RunContext | None = None) -> Optional[CodeResult]:
    """Generate functions (when `code.generate.count` > 0) and run every program with tests that has
    no result yet. None when no source has programs and no function is generated."""
    run = run or RunContext()
    source = generation_source(conf)
    if conf.code.generate.count and source is None:
        log.warning("functions: none generated: the examples source %r is not an enabled mbpp source", conf.code.generate.examples_source)
    if not sources_made(conf, "programs") and source is None:
        return None
    lake = Lake.of(conf)
    started = time.monotonic()
    result = CodeResult(sandbox=conf.code.sandbox.kind)
    functions = None
    if source is not None:
        built = build_functions(spark, conf, lake, run, source, result).persist()
        try:
            version, _ = write_if_changed(spark, built, lake.code_functions, {"stage": "generate", "run_id": run.run_id})
        finally:
            built.unpersist()
        functions, _ = read_version(spark, lake.code_functions, version)
        result.tables["code_functions"] = version
        parse = Counter(r["parse_error"] for r in functions.select("parse_error").collect())
        result.generations, result.parsed = sum(parse.values()), parse.get(None, 0)
        result.failed = failed_calls(spark, lake.generations, run.run_id, steps=("functions",))
        log.info("functions: %d generated, %d parsed into task, code and tests; %d model call(s), %d from the cache%s",
                 result.generations, result.parsed, result.calls, result.cache_hits, result.failed_text)
    run_executions(spark, conf, lake, run, programs(spark, conf, lake, functions), result)
    if is_delta(spark, lake.executions):
        result.tables["executions"] = latest_version(spark, lake.executions)
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
    """The versions of the code tables the pairs read, when a code table can exist, and with
    generated functions the near-duplicate settings (`near_duplicates`): the pairs stage looks at
    the candidates again when any of them changes."""
    if not sources_made(conf, "programs") and generation_source(conf) is None:
        return None
    versions: dict = {
        name: latest_version(spark, uri) if is_delta(spark, uri) else None
        for name, uri in (("executions", lake.executions), ("code_functions", lake.code_functions))
    }
    if generation_source(conf) is not None:
        gen = conf.code.generate
        versions["near_duplicates"] = [gen.near_duplicate_threshold, gen.near_duplicate_shingle_words]
    return versions


# --- candidates ---------------------------------------------------------------

def near_duplicate_tasks(spark, conf: Config, lake: Lake, source: Source, functions: DataFrame) -> Optional[DataFrame]:
    """(gen_index, `_near`): the generated functions of `functions` (columns `gen_index`, `task`)
    whose task is a near duplicate of a task of the mbpp `source` or of an earlier one of
    `functions`, with the reason naming the first match: `near_duplicate_of:<label>/<task_id>`
    (an MBPP task; those come first, by task_id) or `near_duplicate_of:<label>/<gen_index>`.
    None when `code.generate.near_duplicate_threshold` is null. Tasks are compared normalized by
    `dedup.normalization` (`instructlake.udfs.codegen.near_duplicates`)."""
    gen = conf.code.generate
    if gen.near_duplicate_threshold is None:
        return None
    bronze, _ = read_version(spark, lake.bronze(source.name))
    references = [(f"{source.label}/{r['task_id']}", r["text"]) for r in bronze.select("task_id", "text").orderBy("task_id").collect()]
    generated = [(r["gen_index"], r["task"]) for r in functions.select("gen_index", "task").orderBy("gen_index").collect()]
    names = [name for name, _ in references] + [f"{gen.label}/{i}" for i, _ in generated]
    shingles = [task_shingles(text, gen.near_duplicate_shingle_words, conf.dedup.normalization) for _, text in references + generated]
    matches = near_duplicates(shingles, gen.near_duplicate_threshold, first=len(references))[len(references):]
    rows = [(i, f"{NEAR_DUPLICATE_TASK}:{names[m]}") for (i, _), m in zip(generated, matches) if m is not None]
    return spark.createDataFrame(rows, "gen_index long, _near string")


def generated_candidates(spark, conf: Config, lake: Lake, versions: Optional[dict]) -> Optional[DataFrame]:
    """The generated functions as candidate pairs of their label (None when there are none)."""
    source = generation_source(conf)
    versions = versions or {}
    if source is None or versions.get("code_functions") is None:
        return None
    functions, _ = read_version(spark, lake.code_functions, versions["code_functions"])
    execs = executions_at(spark, lake, versions.get("executions")).withColumnRenamed("key", "exec_key")
    df = functions.join(execs, "exec_key", "left").withColumn("_reason", F.coalesce(F.col("parse_error"), exec_reason(F.col("exec_status"))))
    # Only functions that passed their tests take part: a later passing one is kept when an
    # earlier one of its task failed.
    near = near_duplicate_tasks(spark, conf, lake, source, df.where(F.col("_reason").isNull()))
    df = df.join(near, "gen_index", "left") if near is not None else df.withColumn("_near", F.lit(None).cast("string"))
    df = df.withColumn("_reason", F.coalesce("_reason", "_near"))
    stage = (F.when(F.col("parse_error") == "generation_failed", F.lit("generation"))
             .when(F.col("parse_error").isNotNull(), F.lit("parse"))
             .when(F.col("_near").isNotNull(), F.lit(NEAR_DUPLICATE_STAGE)).otherwise(F.lit(EXECUTION)))
    return candidate_rows(
        source, df, label=conf.code.generate.label, source_format=GENERATED_FORMAT,
        source_file=F.lit(lake.code_functions), row_index=F.col("gen_index"), item=F.lit(GENERATED_ITEM),
        content_id=pair_content_id(F.col("prompt_key"), F.col("task"), F.col("code"), F.col("tests"), F.col("exec_status"), F.col("_reason")),
        ingest_run_id=F.lit(None).cast("string"),
        instruction=F.when(F.col("task").isNotNull(), tests_instruction(F.col("task"), F.coalesce("tests", F.lit("")))),
        response=F.col("code"), reason=F.col("_reason"), stage=stage, is_code=True,
        extra=tuple(F.col(c) for c in EXEC_COLUMNS),
    )


GENERATED_STAGES = ("generation", "parse", EXECUTION, NEAR_DUPLICATE_STAGE)  # the drop stages of a generated function
