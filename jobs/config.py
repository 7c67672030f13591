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
    format: Literal["hh_rlhf", "red_team"]
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


FilterSpec = Union[LengthFilter, RedTeamRatingFilter, LanguageFilter, ToxicityFilter]


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

    def validate(self) -> None:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", self.name):
            raise ConfigError("name", f"must be a plain file-name stem, got {self.name!r}")
        if (self.rows_per_part is None) == (self.num_parts is None):
            raise ConfigError("rows_per_part", "set exactly one of rows_per_part and num_parts")
        from udfs.pair_format import PairTemplate

        try:
            PairTemplate.parse(self.template)
        except ValueError as e:
            raise ConfigError("template", str(e)) from None


@dataclass
class Config:
    sources: list[Source]
    spark: SparkSettings = field(default_factory=SparkSettings)
    paths: Paths = field(default_factory=Paths)
    filters: list[FilterSpec] = field(default_factory=list)
    export: Export = field(default_factory=Export)

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("sources", "at least one source is required")
        seen: set[str] = set()
        for i, s in enumerate(self.sources):
            if s.name in seen:
                raise ConfigError(f"sources[{i}].name", f"duplicate source name {s.name!r}")
            seen.add(s.name)
        labels = {s.label for s in self.sources}
        for i, f in enumerate(self.filters):
            for key in ("sources", "instruction_sources", "response_sources"):
                for label in getattr(f, key, None) or []:
                    if label not in labels:
                        raise ConfigError(
                            f"filters[{i}].{key}",
                            f"unknown source label {label!r}; labels in this conf: {', '.join(sorted(labels))}",
                        )

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
