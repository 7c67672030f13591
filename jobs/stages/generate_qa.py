"""Stage 2a, silver: synthetic Who/What/Where/When/Why/How question-answer pairs from web text.

Runs between ingest and pairs, over the bronze paragraphs of every enabled
`web_text` source, and writes three Delta tables:

- `<lake>/silver/paragraphs`: every paragraph, the chat-template tokens of
  its text, title and section neutralized (`neutralized_tokens`: how many;
  `instructlake.udfs.template_tokens`), with its selection:
  `paragraph_chars`, the scores of the paragraph filters of the conf
  (`lang`, `lang_prob`, `paragraph_<class>` toxicity), `topics` (TF-IDF
  keyphrases, `instructlake.udfs.webtext.with_topics`), `drop_reason`
  (`paragraph_too_short`, `paragraph_too_long`, the filters' reasons with
  `toxic_paragraph`, `beyond_max_paragraphs`) with its `drop_stage`,
  `selected` and `selection_rank`. At most `qa.max_paragraphs` are selected, in a seeded
  hash order, so a larger bound keeps the paragraphs of a smaller one.
- `<lake>/silver/generations`: the cache of every model call
  (`instructlake.core.cache`), keyed by `key` = sha256(prompt, model,
  parameters) (`instructlake.udfs.llm.call_key`), with the prompt,
  parameters, completion, error, attempts, seconds and run id. A call whose
  key is there is never made again: a re-run, or a run resumed after a crash,
  calls the model only for prompts it has not answered yet. Calls run in
  chunks of `llm.chunk_size`, each chunk one Delta commit, so a crash loses at
  most the calls of the chunk in flight.
- `<lake>/silver/qa`: one row per (paragraph, type, k): the question (the
  question prompt continued by the model, `conf/prompts/qa_questions.txt`),
  the answer (the answer prompt continued, `conf/prompts/qa_answers.txt`; "NA"
  when the paragraph cannot answer), the scores of `instructlake.udfs.qa_checks` and
  `qa_drop_reason` with its `qa_drop_stage`: `generation_failed`
  (`generation`), a check's reason (`qa_checks`), `duplicate_question` (the
  same normalized question again, anywhere: `qa_duplicates`), then
  `over_type_quota` (the balanced sampling across the types: `qa_balance`),
  else null. The pair (`instruction` from `qa.instruction_template`,
  `response` = the answer) joins `silver/pairs` as source label of its source
  (`synthetic_qa`) keyed by `item` (`<type>/<k>`), where the pairs filters
  follow (`instructlake.jobs.sources.web_text`).

Each table is rewritten only when its content changes: running the stage
again after a success makes no new table version and no model call.
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from functools import reduce
from typing import Optional

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from instructlake.core import storage
from instructlake.core.session import default_parallelism
from instructlake.core.cache import CacheStats, CachedStep, cached_results, run_cached
from instructlake.core.config import Config, LlmSettings
from instructlake.core.errors import GenerationError, MissingTableError
from instructlake.core.lake import Lake, RunContext, is_delta, latest_version, read_table, read_version, write_if_changed
from instructlake.jobs.sources import sources_made
from instructlake.udfs.filters import DROP_REASON, DROP_STAGE, apply_filters, set_reason
from instructlake.udfs.llm import (
    OUTPUT_SCHEMA, LlmUnavailableError, call_key_col, cause_of, generate_udf, model_id, params_json, runtime, sampling_params,
)
from instructlake.udfs.answer_spans import answer_span_udf
from instructlake.udfs.qa_checks import SCORE_COLUMNS, with_qa_checks
from instructlake.udfs.qa_verify import METHODS, VERIFY_COLUMNS, VERIFY_SCHEMA, verify_udf
from instructlake.udfs.template_tokens import ROLE_HEADER, TEMPLATE_TOKEN, neutralize_col, one_line_col, template_tokens_count_col
from instructlake.udfs.webtext import with_topics

log = logging.getLogger("instructlake.generate")

KEY = ["source_name", "source_file", "row_index"]
STOP = ["\n"]  # the prompt scripts ask for one line: a question, or an answer
PLACEHOLDER = re.compile(r"\{(\w+)\}")
QUESTION_FIELDS = {"title", "section", "paragraph", "topics", "type", "Type"}
ANSWER_FIELDS = {"title", "section", "paragraph", "topics", "type", "Type", "question"}
VERIFY_FIELDS = ANSWER_FIELDS | {"answer"}
ANSWER_FIRST_FIELDS = QUESTION_FIELDS | {"answer"}
# The paragraph filters (language, toxicity) run on this many candidates per wanted paragraph;
# they drop few paragraphs, and scoring the whole corpus for a bounded run would be waste.
CANDIDATES_PER_PARAGRAPH = 4


@dataclass
class ModelCalls:
    """The model calls of a step: wanted, made by this run (`calls`), answered by the cache."""

    llm: CacheStats = field(default_factory=CacheStats)
    failed: dict = field(default_factory=dict)  # this run's failed model calls by cause (`udfs.llm.cause_of`)

    @property
    def failed_text(self) -> str:
        """"; failed calls: <cause> <n>, ..." for a summary line, or ""."""
        return "; failed calls: " + ", ".join(f"{c} {n}" for c, n in self.failed.items()) if self.failed else ""

    @property
    def calls(self) -> int:
        return self.llm.computed

    @property
    def cache_hits(self) -> int:
        return self.llm.hits


@dataclass
class GenerateResult(ModelCalls):
    paragraphs: int = 0                 # bronze paragraphs of the web_text sources
    selected: int = 0                   # paragraphs that got questions
    qa_rows: int = 0
    kept: int = 0
    counts: list = field(default_factory=list)  # (source label, qa_drop_reason, rows)
    model: str = ""
    tables: dict = field(default_factory=dict)  # table -> version


# --- prompts ------------------------------------------------------------------

def read_prompt(spark, path: str, key: str, allowed: set[str]) -> str:
    """A prompt template (its final line break removed), checked for known placeholders. A
    relative path is looked up in the working folder, then in the package (`conf/prompts/`)."""
    where = storage.find_file(path)
    try:
        text = storage.read_text(spark, storage.resolve(where))
    except Exception as e:  # noqa: BLE001 - a missing file or an unreadable URI: one clear line
        raise GenerationError(f"{key}: cannot read prompt file {path!r} ({type(e).__name__}: {e})") from None
    text = text.rstrip("\n")
    unknown = sorted(set(PLACEHOLDER.findall(text)) - allowed)
    if unknown:
        raise GenerationError(f"{key}: {path}: unknown placeholder {{{unknown[0]}}}; known: {', '.join(sorted(allowed))}")
    return text


def fill(template: str, values: dict[str, Column]) -> Column:
    """The template with each {name} replaced by its column, as one concat (a value that itself
    holds "{...}" is never expanded again)."""
    pieces: list[Column] = []
    last = 0
    for m in PLACEHOLDER.finditer(template):
        pieces += [F.lit(template[last : m.start()]), F.coalesce(values[m.group(1)], F.lit(""))]
        last = m.end()
    pieces.append(F.lit(template[last:]))
    return F.concat(*pieces)


# --- paragraphs ---------------------------------------------------------------

def _read_bronze(spark, conf: Config, lake: Lake) -> tuple[DataFrame, dict[str, int]]:
    parts, versions = [], {}
    for s in sources_made(conf, "paragraphs"):
        uri = lake.bronze(s.name)
        if not is_delta(spark, uri):
            raise MissingTableError(f"bronze table for source {s.name!r} not found at {uri}; run `instructlake ingest` first")
        bronze, versions[s.name] = read_version(spark, uri)
        parts.append(
            bronze.select(
                F.lit(s.label).alias("source"), F.lit(s.name).alias("source_name"), "source_file", "row_index",
                "content_id", "ingest_run_id", "doc_id", "title", "section", "paragraph_index", "text",
            )
        )
    return _neutralized(reduce(DataFrame.unionByName, parts)), versions


def _neutralized(df: DataFrame) -> DataFrame:
    """The paragraphs with the chat-template tokens of their text, title and section neutralized
    (`instructlake.udfs.template_tokens`), and how many there were (`neutralized_tokens`): every
    prompt, answer span, check and instruction sees the neutralized text, so no token of a source
    text reaches the model or the dataset. Bronze keeps the text as it was."""
    texts = ("text", "title", "section")
    count = reduce(lambda a, b: a + b, [template_tokens_count_col(F.col(c)) for c in texts])
    return df.withColumn("neutralized_tokens", count.cast("int")).withColumns({c: neutralize_col(F.col(c)) for c in texts})


def _kept_rank(df: DataFrame) -> Column:
    """1, 2, ... for the kept rows in `_order` (the dropped ones sort after them, so one window does)."""
    return F.row_number().over(Window.orderBy(F.col(DROP_REASON).isNotNull(), "_order", *KEY))


def _mark_beyond(df: DataFrame, limit: int) -> DataFrame:
    """Sets `beyond_max_paragraphs` on the kept rows after the first `limit` in `_order`."""
    return set_reason(df, [(_kept_rank(df) > limit, "beyond_max_paragraphs")], "paragraph_limit")


def build_paragraphs(spark, conf: Config, lake: Lake) -> tuple[DataFrame, dict[str, int]]:
    """The paragraphs table (not yet written) and the bronze versions it reads."""
    qa = conf.qa
    df, versions = _read_bronze(spark, conf, lake)
    chars = F.length("text")
    df = df.withColumns({"paragraph_chars": chars, DROP_REASON: F.lit(None).cast("string"), DROP_STAGE: F.lit(None).cast("string")})
    df = set_reason(df, [(chars < qa.paragraphs.min_chars, "paragraph_too_short"),
                         (chars > qa.paragraphs.max_chars, "paragraph_too_long")], "paragraph_length")
    t = qa.topics
    df = with_topics(df, KEY, t.top_k, t.min_term_chars, t.bigrams, t.max_doc_share)
    df = df.withColumn("_order", F.sha2(F.concat_ws(":", F.lit(str(qa.seed)), "content_id", *KEY), 256))
    if qa.max_paragraphs is not None:
        df = _mark_beyond(df, qa.max_paragraphs * CANDIDATES_PER_PARAGRAPH)
    # The pairs filters judge an `instruction` and a `response`: the paragraph is the instruction.
    df = df.withColumn("instruction", F.col("text")).withColumn("response", F.lit(""))
    df = apply_filters(df, qa.paragraphs.filters)
    df = df.withColumn(DROP_REASON, F.regexp_replace(DROP_REASON, "^toxic_instruction$", "toxic_paragraph"))
    df = df.drop("instruction", "response", *[c for c in df.columns if c.startswith("response_")])
    df = df.withColumnsRenamed({c: "paragraph_" + c[len("instruction_"):] for c in df.columns if c.startswith("instruction_")})
    if qa.max_paragraphs is not None:
        df = _mark_beyond(df, qa.max_paragraphs)
    df = df.withColumn("selection_rank", F.when(F.col(DROP_REASON).isNull(), _kept_rank(df)))
    df = df.withColumn("selected", F.col("selection_rank").isNotNull()).drop("_order")
    return df, versions


# --- model calls, through the cache -------------------------------------------

def model_of(conf: Config) -> str:
    """The conf's model id (the model part of every call's key), or one clear GenerationError."""
    try:
        return model_id(conf.llm)
    except LlmUnavailableError as e:
        raise GenerationError(str(e)) from None


def _unavailable(step: str):
    """The step's `on_error`: a worker's LlmUnavailableError as one clear line."""
    def explain(error: Exception, done: int, wanted: int) -> Optional[Exception]:
        m = re.search(r"(LlmUnavailableError|GenerationError): (.*)", str(error))
        if m is None:
            return None
        return GenerationError(f"{step}: {m.group(2).strip()} ({done} of {wanted} calls of this step done and kept; run again to resume)")
    return explain


def llm_step(spark, conf: Config, lake: Lake, step: str, model: str, llm: Optional[LlmSettings] = None) -> CachedStep:
    """The cached step that makes the model calls of `step` (questions, answers, functions)."""
    llm = llm or conf.llm
    try:
        rt = runtime(llm)
    except LlmUnavailableError as e:
        raise GenerationError(str(e)) from None
    return CachedStep(
        name=step, uri=lake.generations, inputs=("key", "prompt", "params"), input_schema="key string, prompt string, params string",
        schema=OUTPUT_SCHEMA, compute=generate_udf(rt), chunk_size=llm.chunk_size,
        parallelism=llm.parallelism or default_parallelism(spark),
        stamp=(("model", F.lit(model)), ("backend", F.lit(llm.backend)), ("step", F.lit(step))),
        checkpoint="generate.chunk_committed", on_error=_unavailable(step),
    )


def cached_generate(spark, conf: Config, lake: Lake, run: RunContext, requests: DataFrame, step: str,
                    model: str, result: CacheStats) -> DataFrame:
    """Completions for `requests` (columns `key`, `prompt`, `params`, `_group`, `_order`), from the
    cache where it has them, else from the model (`instructlake.core.cache`). Returns (key,
    completion, error) for every distinct requested key; adds the calls to `result`."""
    stats = run_cached(spark, llm_step(spark, conf, lake, step, model), requests, run, "generate")
    result.wanted += stats.wanted
    result.computed += stats.computed
    result.seconds += stats.seconds
    if not is_delta(spark, lake.generations):  # nothing was asked, nothing was ever cached
        return spark.createDataFrame([], "key string, completion string, error string")
    return cached_results(spark, lake.generations, ["completion", "error"], keys=requests)


# --- questions and answers ----------------------------------------------------

def _prompt_values() -> dict[str, Column]:
    """The texts that fill a prompt's slots, each on one line: a value cannot start a line of the
    script (a fake `Answer:` line), and its template tokens are neutralized."""
    return {
        "title": one_line_col(F.col("title")), "section": one_line_col(F.col("section")), "paragraph": one_line_col(F.col("text")),
        "topics": F.array_join("topics", ", "), "type": F.col("qa_type"), "Type": F.initcap("qa_type"),
    }


# A label that opens a line of a prompt script: up to four words or placeholders, then a colon
# ("Title:", "Answer:", "A {type} question:").
_LABEL_LINE = re.compile(r"^((?:[^\s:{}]+|\{\w+\})(?: (?:[^\s:{}]+|\{\w+\})){0,3}):", re.MULTILINE)


def script_labels(template: str) -> list[str]:
    """The labels that open lines of a prompt script, as regular expressions (a placeholder
    stands for one word): `Title`, `Text`, `Topics`, `Answer`, `A [A-Za-z]+ question` for the
    default question prompts."""
    out: list[str] = []
    for m in _LABEL_LINE.finditer(template):
        pieces = PLACEHOLDER.split(m.group(1))  # literal, name, literal, name, ...
        label = "".join(re.escape(p) if i % 2 == 0 else "[A-Za-z]+" for i, p in enumerate(pieces))
        if label not in out:
            out.append(label)
    return out


ALWAYS_LABELS = ("Question", "Answer")  # a completion's next turn of the script, whatever the script calls it


def completion_stops(template: str) -> str:
    """A regular expression of what ends the text of a completion of `template` before its line
    ends: a chat-template token (`<|endoftext|>`, `<|im_start|>`, ...), a role header (`Human:`,
    `User:`, ...), `Question:` or `Answer:`, or a label of the script itself (a fake `Answer:`
    after the question, a `Text:` line)."""
    labels = "|".join(dict.fromkeys([*ALWAYS_LABELS, *script_labels(template)]))
    marks = [TEMPLATE_TOKEN, rf"\b{ROLE_HEADER}", rf"\b(?:{labels})\s*:"]
    return r"\s*(?:" + "|".join(f"(?:{m})" for m in marks) + ")"


def _first_line(completion: Column, stops: Optional[str]) -> Column:
    """The completion's first line, up to the first match of `stops` (the whole line when there is none)."""
    line = F.element_at(F.split(F.coalesce(completion, F.lit("")), "\n"), 1)
    if stops is None:
        return line
    return F.regexp_extract(line, f"(?s)^(.*?)(?:{stops}|$)", 1)


def parse_question(completion: Column, qa_type: Column, forced: bool, stops: Optional[str] = None) -> Column:
    """The question in a completion: its first line, up to a stop of `stops` (`completion_stops`);
    when the prompt ends with the type word (`{Type}`), that word and the line, unless the line
    repeats it (a chat model's answer)."""
    line = _first_line(completion, stops)
    trimmed = F.trim(line)
    if forced:
        repeats = F.lower(trimmed).startswith(F.concat(F.lower(qa_type), F.lit(" ")))
        question = F.when(repeats, trimmed).otherwise(F.trim(F.concat(F.initcap(qa_type), line)))
    else:
        question = trimmed
    return F.when(completion.isNotNull(), question)


def parse_answer(completion: Column, stops: Optional[str] = None) -> Column:
    """The answer in a completion: its first line up to a stop of `stops` (`completion_stops`), trimmed."""
    return F.when(completion.isNotNull(), F.trim(_first_line(completion, stops)))


def _type_table(spark, conf: Config) -> DataFrame:
    rows = [
        (t, i, k, params_json(sampling_params(conf.llm, conf.llm.seed + k, STOP)))
        for i, t in enumerate(conf.qa.types)
        for k in range(conf.qa.questions_per_type)
    ]
    return spark.createDataFrame(rows, "qa_type string, type_order int, k int, q_params string")


def read_prompts(spark, conf: Config) -> tuple[str, Optional[str]]:
    """The question and answer prompt templates of the conf; in answer-first mode, the question
    template (`qa.answer_first_prompt`) and None (the answer is a span of the paragraph)."""
    if conf.qa.mode == "answer_first":
        return read_prompt(spark, conf.qa.answer_first_prompt, "qa.answer_first_prompt", ANSWER_FIRST_FIELDS), None
    return (
        read_prompt(spark, conf.qa.question_prompt, "qa.question_prompt", QUESTION_FIELDS),
        read_prompt(spark, conf.qa.answer_prompt, "qa.answer_prompt", ANSWER_FIELDS),
    )


def build_qa(spark, conf: Config, lake: Lake, run: RunContext, selected: DataFrame, model: str,
             prompts: tuple[str, str], result: GenerateResult) -> DataFrame:
    """The qa table (not yet written; persisted and computed, unpersist it when done) for the
    selected paragraphs, calling the model where the cache has no answer. `prompts`: the
    question and answer templates (`read_prompts`; no answer template in answer-first mode,
    where the answer is the span `instructlake.udfs.answer_spans` picks, and a paragraph with no
    span of a type asks no question of it)."""
    qa = conf.qa
    q_template, a_template = prompts
    forced = q_template.rstrip().endswith("{Type}")
    values = _prompt_values()
    items = selected.crossJoin(F.broadcast(_type_table(spark, conf)))
    if a_template is None:
        seed = F.concat_ws(":", F.lit(str(qa.seed)), "content_id", "qa_type")
        items = items.withColumn("_span", answer_span_udf()(F.col("text"), F.col("qa_type"), F.col("topics"), seed, F.col("k")))
        values = {**values, "answer": F.col("_span")}
        asked = F.col("_span").isNotNull()
    else:
        asked = F.lit(True)
    items = items.withColumn("q_prompt", F.when(asked, fill(q_template, values)))
    items = items.withColumn("question_key", F.when(asked, call_key_col(F.col("q_prompt"), model, F.col("q_params"))))
    items = items.withColumn("_group", F.col("selection_rank")).withColumn(
        "_order", F.col("type_order") * qa.questions_per_type + F.col("k")
    )
    items = items.persist(StorageLevel.MEMORY_AND_DISK)
    cached = [items]
    try:
        questions = cached_generate(
            spark, conf, lake, run,
            items.where(F.col("question_key").isNotNull()).select(
                F.col("question_key").alias("key"), F.col("q_prompt").alias("prompt"), F.col("q_params").alias("params"), "_group", "_order"
            ),
            "questions", model, result.llm,
        )
        items = items.join(questions.withColumnsRenamed({"key": "question_key", "completion": "q_completion", "error": "q_error"}), "question_key", "left")
        items = items.withColumn("question", parse_question(F.col("q_completion"), F.col("qa_type"), forced, completion_stops(q_template)))
        if a_template is None:
            items = items.withColumns({
                "answer": F.when(F.col("question").isNotNull(), F.col("_span")),
                "answer_key": F.lit(None).cast("string"), "a_error": F.lit(None).cast("string"),
            }).drop("_span")
        else:
            items = _answered(spark, conf, lake, run, items, a_template, values, model, result, cached)
        scored = _scored(items, conf, cached)
        verified = verify_pairs(spark, conf, lake, run, scored, model, result)
        out = _finished(verified, conf).select(
            *QA_COLUMNS, *SCORE_COLUMNS[:-1], *VERIFY_COLUMNS[:-1], "qa_drop_reason", "qa_drop_stage"
        )
        out = out.persist(StorageLevel.MEMORY_AND_DISK)
        out.count()  # computed now, before the frames it comes from are released
        return out
    finally:
        for df in cached:
            df.unpersist()


def _answered(spark, conf: Config, lake: Lake, run: RunContext, items: DataFrame, a_template: str, values: dict,
              model: str, result: GenerateResult, cached: list) -> DataFrame:
    """Question-first mode: the model answers each question (the answer prompt continued)."""
    a_params = params_json(sampling_params(conf.llm, conf.llm.seed, STOP))
    items = items.withColumn("a_prompt", fill(a_template, {**values, "question": F.col("question")}))
    items = items.withColumn(
        "answer_key", F.when(F.col("question").isNotNull(), call_key_col(F.col("a_prompt"), model, F.lit(a_params)))
    )
    items = items.persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(items)
    answers = cached_generate(
        spark, conf, lake, run,
        items.where(F.col("answer_key").isNotNull()).select(
            F.col("answer_key").alias("key"), F.col("a_prompt").alias("prompt"), F.lit(a_params).alias("params"), "_group", "_order"
        ),
        "answers", model, result.llm,
    )
    items = items.join(answers.withColumnsRenamed({"key": "answer_key", "completion": "a_completion", "error": "a_error"}), "answer_key", "left")
    return items.withColumn("answer", parse_answer(F.col("a_completion"), completion_stops(a_template)))


QA_COLUMNS = [
    "source", "source_name", "source_file", "row_index", "item", "content_id", "paragraph_content_id", "ingest_run_id",
    "doc_id", "title", "section", "paragraph", "selection_rank", "qa_type", "k", "topics", "question", "answer",
    "instruction", "response", "question_key", "answer_key", "generation_error",
]


def _scored(items: DataFrame, conf: Config, cached: list) -> DataFrame:
    """The checks' scores and drop reasons (a failed call first). Persisted: appended to `cached`."""
    df = with_qa_checks(items, conf.qa.checks)
    failed = F.col("q_error").isNotNull() | F.col("a_error").isNotNull()
    unasked = F.col("q_prompt").isNull()  # answer-first: the paragraph has no span of the type
    reason = F.when(unasked, F.lit("no_answer_candidate")).when(failed, F.lit("generation_failed"))
    df = df.withColumns({
        "generation_error": F.coalesce("q_error", "a_error"),
        "qa_drop_reason": F.coalesce(reason, F.col("qa_drop_reason")),
        "qa_drop_stage": F.when(reason.isNotNull(), F.lit("generation")).when(F.col("qa_drop_reason").isNotNull(), F.lit("qa_checks")),
    })
    df = df.persist(StorageLevel.MEMORY_AND_DISK)  # the scores are computed once for the steps below
    cached.append(df)
    return df


def verify_pairs(spark, conf: Config, lake: Lake, run: RunContext, df: DataFrame, model: str, result: ModelCalls) -> DataFrame:
    """`qa.verify`: one cached model call per method for each pair the checks kept, then the
    verification columns (`instructlake.udfs.qa_verify`) and its drop reasons (stage `qa_verify`).
    Without methods, the columns are null and nothing is called. `df` has the prompts' columns
    (`title`, `section`, `text`, `topics`, `qa_type`, `question`, `answer`), `qa_drop_reason`,
    `qa_drop_stage`, `generation_error`, and `_group` / `_order` (the cache's call order)."""
    verify = conf.qa.verify
    if not verify.methods:
        return df.withColumns({c: F.lit(None).cast(t) for c, t in (f.split() for f in VERIFY_SCHEMA.split(", "))})
    params = params_json(sampling_params(conf.llm, conf.llm.seed, STOP))
    values = {**_prompt_values(), "question": F.col("question"), "answer": F.col("answer")}
    kept = F.col("qa_drop_reason").isNull()
    completions, errors = {}, []
    for method in METHODS:
        if method not in verify.methods:
            completions[method] = F.lit(None).cast("string")
            continue
        template = read_prompt(spark, getattr(verify, f"{method}_prompt"), f"qa.verify.{method}_prompt", VERIFY_FIELDS)
        df = df.withColumn(f"_{method}_prompt", F.when(kept, fill(template, values)))
        df = df.withColumn(f"_{method}_key", F.when(kept, call_key_col(F.col(f"_{method}_prompt"), model, F.lit(params))))
        answers = cached_generate(
            spark, conf, lake, run,
            df.where(kept).select(F.col(f"_{method}_key").alias("key"), F.col(f"_{method}_prompt").alias("prompt"),
                                  F.lit(params).alias("params"), "_group", "_order"),
            f"verify_{method}", model, result.llm,
        )
        df = df.join(answers.withColumnsRenamed({"key": f"_{method}_key", "completion": f"_{method}", "error": f"_{method}_error"}),
                     f"_{method}_key", "left")
        completions[method] = F.col(f"_{method}")
        errors.append(F.col(f"_{method}_error"))
    checked = verify_udf(verify.methods, verify.min_f1)(F.col("answer"), completions["roundtrip"], completions["judge"])
    df = df.withColumn("_verify", F.when(kept, checked)).select("*", *[F.col(f"_verify.{c}").alias(c) for c in VERIFY_COLUMNS])
    failed = kept & F.coalesce(*errors).isNotNull()
    reason = F.when(failed, F.lit("verify_failed")).when(kept, F.col("verify_reason"))
    df = df.withColumns({
        "generation_error": F.coalesce("generation_error", *errors),
        "qa_drop_stage": F.when(reason.isNotNull(), F.lit("qa_verify")).otherwise(F.col("qa_drop_stage")),
        "qa_drop_reason": F.coalesce("qa_drop_reason", reason),
    })
    df = df.drop(*[c for c in df.columns if c.startswith("_") and c not in ("_group", "_order")], "_verify")
    # Each method's answers are read back by the keys of this frame, which doubles its plan: a
    # local checkpoint keeps the steps after this one (duplicates, balance) from doubling it again.
    return df.localCheckpoint()


def _finished(df: DataFrame, conf: Config) -> DataFrame:
    """Duplicates, then the balance across types, then the pair's instruction, response and content id."""
    qa = conf.qa
    # One normalized question once, across all paragraphs: the first in generation order stays.
    norm = F.trim(F.regexp_replace(F.lower("question"), r"[^\p{L}\p{N}]+", " "))
    first = F.row_number().over(Window.partitionBy("_norm").orderBy("selection_rank", "type_order", "k"))
    kept = df.where(F.col("qa_drop_reason").isNull()).withColumn("_norm", norm).select(*KEY, "qa_type", "k", F.when(first > 1, F.lit("duplicate_question")).alias("_dup"))
    df = df.join(kept, [*KEY, "qa_type", "k"], "left").withColumns({
        "qa_drop_stage": F.coalesce("qa_drop_stage", F.when(F.col("_dup").isNotNull(), F.lit("qa_duplicates"))),
        "qa_drop_reason": F.coalesce("qa_drop_reason", "_dup"),
    }).drop("_dup")
    df = df.withColumn("item", F.concat_ws("/", "qa_type", F.col("k").cast("string")))
    df = df.withColumn("_rank", F.sha2(F.concat_ws(":", F.lit(str(qa.seed)), "content_id", "item"), 256))
    if qa.balance_ratio is not None:
        df = _balanced(df, qa.balance_ratio)
    # The title on one line, as in the prompts: a title cannot put a turn of its own into the instruction.
    instruction = fill(qa.instruction_template, {"question": F.col("question"), "paragraph": F.col("text"), "title": one_line_col(F.col("title"))})
    df = df.withColumn("instruction", F.when(F.col("question").isNotNull(), F.trim(instruction)))
    df = df.withColumn("response", F.col("answer"))
    df = df.withColumnsRenamed({"content_id": "paragraph_content_id", "text": "paragraph"})
    return df.withColumn(
        "content_id",
        F.sha2(F.concat_ws("\u0000", "paragraph_content_id", "item", F.coalesce("instruction", F.lit("")),
                           F.coalesce("response", F.lit("")), F.coalesce("qa_drop_reason", F.lit(""))), 256),
    )


def _balanced(df: DataFrame, ratio: float) -> DataFrame:
    """Keeps per type at most ceil(ratio x the count of the rarest type that has a survivor), in `_rank` order."""
    counts = {r["qa_type"]: r["count"] for r in df.where(F.col("qa_drop_reason").isNull()).groupBy("qa_type").count().collect()}
    if not counts:
        return df
    quota = math.ceil(ratio * min(counts.values()))
    position = F.row_number().over(Window.partitionBy("qa_type").orderBy("_rank", *KEY))
    ranked = df.where(F.col("qa_drop_reason").isNull()).select(*KEY, "qa_type", "k", position.alias("_pos"))
    over = F.col("_pos") > quota
    return (
        df.join(ranked, [*KEY, "qa_type", "k"], "left")
        .withColumns({
            "qa_drop_reason": F.when(over, F.lit("over_type_quota")).otherwise(F.col("qa_drop_reason")),
            "qa_drop_stage": F.when(over, F.lit("qa_balance")).otherwise(F.col("qa_drop_stage")),
        })
        .drop("_pos")
    )


# --- the step -------------------------------------------------------------------

def run_generate(spark, conf: Config, run: RunContext | None = None) -> Optional[GenerateResult]:
    """Select paragraphs, generate (or take from the cache) questions and answers, check and
    balance them, and write the paragraphs and qa tables. None when no source has paragraphs."""
    run = run or RunContext()
    if not sources_made(conf, "paragraphs"):
        log.info("no web_text source enabled: nothing to generate")
        return None
    lake = Lake.of(conf)
    started = time.monotonic()
    result = GenerateResult(model=model_of(conf))
    prompts = read_prompts(spark, conf)
    paragraphs, versions = build_paragraphs(spark, conf, lake)
    paragraphs = paragraphs.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        meta = {"stage": "generate", "run_id": run.run_id, "bronze_versions": versions}
        p_version, _ = write_if_changed(spark, paragraphs, lake.paragraphs, meta)
        counts = paragraphs.groupBy("selected").count().collect()
        result.paragraphs = sum(r["count"] for r in counts)
        result.selected = sum(r["count"] for r in counts if r["selected"])
        log.info("%d paragraphs, %d selected (qa.max_paragraphs: %s); model %s",
                 result.paragraphs, result.selected, conf.qa.max_paragraphs, result.model)
        selected = paragraphs.where(F.col("selected"))
        qa = build_qa(spark, conf, lake, run, selected, result.model, prompts, result)
        try:
            qa_meta = meta | {"paragraphs_version": p_version, "model": result.model}
            q_version, _ = write_if_changed(spark, qa, lake.qa, qa_meta)
        finally:
            qa.unpersist()
    finally:
        paragraphs.unpersist()
    rows = read_version(spark, lake.qa, q_version)[0].groupBy("source", "qa_drop_reason").count().collect()
    result.counts = sorted(((r["source"], r["qa_drop_reason"], r["count"]) for r in rows), key=lambda c: (c[0], c[1] or ""))
    result.qa_rows = sum(c[2] for c in result.counts)
    result.kept = sum(c[2] for c in result.counts if c[1] is None)
    result.tables = {"paragraphs": p_version, "qa": q_version}
    if is_delta(spark, lake.generations):
        result.tables["generations"] = latest_version(spark, lake.generations)
        result.failed = failed_calls(spark, lake.generations, run.run_id, exclude_steps=("functions",))
    per = f", {result.llm.seconds / result.selected:.1f}s of model calls per paragraph" if result.calls and result.selected else ""
    log.info("%d question-answer pairs, %d kept; %d model call(s), %d from the cache%s%s; %.1fs",
             result.qa_rows, result.kept, result.calls, result.cache_hits, per, result.failed_text, time.monotonic() - started)
    return result


def failed_calls(spark, uri: str, run_id: str, steps: tuple[str, ...] = (), exclude_steps: tuple[str, ...] = ()) -> dict[str, int]:
    """The model calls of run `run_id` in the cache table `uri` that failed (of `steps`, all but
    `exclude_steps`), by cause (`cause_of`), most first: their outcome is cached like an answer
    (the call is not repeated by a re-run)."""
    table = read_table(spark, uri)
    if steps:
        table = table.where(F.col("step").isin(list(steps)))
    if exclude_steps:
        table = table.where(~F.col("step").isin(list(exclude_steps)))
    rows = (table.where((F.col("run_id") == run_id) & F.col("error").isNotNull())
            .groupBy(F.substring("error", 1, 60).alias("head")).count().collect())
    out: dict[str, int] = {}
    for r in rows:
        cause = cause_of(r["head"])
        out[cause] = out.get(cause, 0) + r["count"]
    return dict(sorted(out.items(), key=lambda e: (-e[1], e[0])))

