"""Language of a pair with langdetect: `lang` and `lang_prob`, then a drop reason.

Three layers, as everywhere in `udfs/`:

- `detect_language(text)`: the pure scorer, `str -> (lang, prob)`;
- `language_udf(spec)`: a vectorized `pandas_udf` (iterator form) that scores
  only the rows it is told to (the rows still kept), leaving null elsewhere;
- `with_language(df, spec)` adds `lang`, `lang_prob`; `filter_language(df, spec)`
  sets `drop_reason` on kept rows: `language_unknown` (nothing to detect),
  `language_uncertain` (the top language's probability is below `min_prob`),
  `language_not_allowed` (a confident language that is not allowed).

langdetect draws random n-gram samples, so its answer depends on a seed;
the seed is a class attribute and lives per process, so it is set inside
each Python worker (`DetectorFactory.seed = 0`) when the profiles are
loaded, once per worker. Each text is then detected with the same seed,
whatever came before it: the same text always gets the same language.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import ClassVar, Iterator, Literal, Optional

import pandas as pd
from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
from langdetect.lang_detect_exception import LangDetectException
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.core.config import FilterSpec
from instructlake.core.errors import ConfigError
from instructlake.core.faults import checkpoint
from instructlake.udfs.filters.base import DROP_REASON, Filter, applies_to, set_reason

LANGDETECT_VERSION = "1.0.9"
UNKNOWN = "unknown"
SEED = 0

_factory = None  # one langdetect DetectorFactory per Python worker, profiles loaded once

LANGDETECT_LANGUAGES = (
    "af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne nl no pa "
    "pl pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh-cn zh-tw"
).split()


@dataclass(kw_only=True)
class LanguageFilter(FilterSpec):
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
    on_paragraphs: ClassVar[bool] = True

    def validate(self) -> None:
        if not self.allowed:
            raise ConfigError("allowed", "list at least one language code, e.g. [en]")
        for i, code in enumerate(self.allowed):
            if code not in LANGDETECT_LANGUAGES:
                raise ConfigError(f"allowed[{i}]", f"unknown language code {code!r}; langdetect knows: {', '.join(LANGDETECT_LANGUAGES)}")


def scorer_name() -> str:
    try:
        return f"lang/langdetect-{version('langdetect')}"
    except PackageNotFoundError:  # pragma: no cover - langdetect is a core dependency
        return f"lang/langdetect-{LANGDETECT_VERSION}"


def _detector_factory():
    """The worker's DetectorFactory, seeded, with every shipped profile loaded (once)."""
    global _factory
    if _factory is None:
        DetectorFactory.seed = SEED
        factory = DetectorFactory()
        factory.load_profile(PROFILES_DIRECTORY)
        factory.set_seed(SEED)
        _factory = factory
    return _factory


def detection_text(instruction: Optional[str], response: Optional[str], what: str = "pair", max_chars: int = 1000) -> str:
    """The text to detect: one side cut to `max_chars`, or for `pair` the
    instruction's first `max_chars // 2` characters then the response up to
    `max_chars` in all (short instructions alone are too short to detect)."""
    instruction, response = instruction or "", response or ""
    if what == "instruction":
        return instruction[:max_chars]
    if what == "response":
        return response[:max_chars]
    head = instruction[: max_chars // 2]
    if not head:
        return response[:max_chars]
    return head + "\n" + response[: max(0, max_chars - len(head) - 1)]


def detect_language(text: Optional[str], max_chars: int = 1000) -> tuple[str, float]:
    """`(language code, probability)` of the most likely language of `text`'s
    first `max_chars` characters; `("unknown", 0.0)` for None, empty text or
    text without any letter n-gram langdetect knows (digits, symbols)."""
    if text is None:
        return UNKNOWN, 0.0
    text = text[:max_chars]
    if not text.strip():
        return UNKNOWN, 0.0
    detector = _detector_factory().create()
    detector.append(text)
    try:
        best = detector.get_probabilities()
    except LangDetectException:  # "No features in text."
        return UNKNOWN, 0.0
    if not best:
        return UNKNOWN, 0.0
    return best[0].lang, float(best[0].prob)


def score_language_frame(
    wanted: pd.Series, instruction: pd.Series, response: pd.Series, what: str = "pair", max_chars: int = 1000
) -> pd.DataFrame:
    """`lang`, `lang_prob` for the rows where `wanted` is true; None elsewhere (no detection runs)."""
    langs: list = [None] * len(wanted)
    probs: list = [None] * len(wanted)
    for i, (want, ins, res) in enumerate(zip(wanted.tolist(), instruction.tolist(), response.tolist())):
        if want is True:
            langs[i], probs[i] = detect_language(detection_text(ins, res, what, max_chars), max_chars)
    return pd.DataFrame({"lang": pd.Series(langs, dtype=object), "lang_prob": pd.Series(probs, dtype="float64")})


def language_udf(what: str = "pair", max_chars: int = 1000, texts_seen=None):
    """A `pandas_udf(wanted, instruction, response) -> struct<lang, lang_prob>`.

    `texts_seen`, when given, is a Spark accumulator that counts the texts
    handed to langdetect.
    """
    @F.pandas_udf("lang string, lang_prob double")
    def detect(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        _detector_factory()  # load the profiles before the first batch, once per worker
        for wanted, instruction, response in batches:
            out = score_language_frame(wanted, instruction, response, what, max_chars)
            if texts_seen is not None:
                texts_seen.add(int(wanted.fillna(False).astype(bool).sum()))
            checkpoint("worker.language_scored")  # a test may kill this worker here, mid-stage
            yield out

    return detect


LANGUAGE_COLUMNS = ["lang", "lang_prob"]


def with_language(df: DataFrame, spec: LanguageFilter, wanted: Optional[Column] = None, texts_seen=None) -> DataFrame:
    """Adds `lang`, `lang_prob`: detected on the rows where `wanted` (a boolean
    Column, default: rows with no drop reason yet) holds, null on the others."""
    if wanted is None:
        wanted = F.col(DROP_REASON).isNull() & applies_to(spec.sources)
    scored = language_udf(spec.text, spec.max_chars, texts_seen)(
        F.coalesce(wanted, F.lit(False)), F.col("instruction"), F.col("response")
    )
    return df.withColumn("_lang", scored).withColumn("lang", F.col("_lang.lang")).withColumn(
        "lang_prob", F.col("_lang.lang_prob")
    ).drop("_lang")


def filter_language(df: DataFrame, spec: LanguageFilter, texts_seen=None) -> DataFrame:
    """Scores the kept rows' language, then drops those not in `spec.allowed` or below `spec.min_prob`.
    Pairs of code (`is_code`) are not judged: langdetect reads natural language."""
    wanted = F.col(DROP_REASON).isNull() & applies_to(spec.sources)
    if "is_code" in df.columns:
        wanted = wanted & ~F.coalesce(F.col("is_code"), F.lit(False))
    df = with_language(df, spec, wanted, texts_seen)
    lang, prob = F.col("lang"), F.col("lang_prob")
    scored = lang.isNotNull()
    return set_reason(
        df,
        [
            (scored & (lang == UNKNOWN), "language_unknown"),
            (scored & (prob < spec.min_prob), "language_uncertain"),
            (scored & ~lang.isin(spec.allowed), "language_not_allowed"),
        ],
        spec.key,
    )


FILTER = Filter(
    spec=LanguageFilter,
    apply=filter_language,
    reasons=("language_unknown", "language_uncertain", "language_not_allowed"),
    scorer=lambda spec: scorer_name(),
)
