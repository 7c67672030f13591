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

from typing import Iterator, Optional

import pandas as pd

LANGDETECT_VERSION = "1.0.9"
UNKNOWN = "unknown"
SEED = 0

_factory = None  # one langdetect DetectorFactory per Python worker, profiles loaded once


def scorer_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"lang/langdetect-{version('langdetect')}"
    except PackageNotFoundError:  # pragma: no cover - langdetect is a core dependency
        return f"lang/langdetect-{LANGDETECT_VERSION}"


def _detector_factory():
    """The worker's DetectorFactory, seeded, with every shipped profile loaded (once)."""
    global _factory
    if _factory is None:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

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
    from langdetect.lang_detect_exception import LangDetectException

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
    from pyspark.sql import functions as F

    @F.pandas_udf("lang string, lang_prob double")
    def detect(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        from jobs.faults import checkpoint

        _detector_factory()  # load the profiles before the first batch, once per worker
        for wanted, instruction, response in batches:
            out = score_language_frame(wanted, instruction, response, what, max_chars)
            if texts_seen is not None:
                texts_seen.add(int(wanted.fillna(False).astype(bool).sum()))
            checkpoint("worker.language_scored")  # a test may kill this worker here, mid-stage
            yield out

    return detect


LANGUAGE_COLUMNS = ["lang", "lang_prob"]


def with_language(df, spec, wanted=None, texts_seen=None):
    """Adds `lang`, `lang_prob`: detected on the rows where `wanted` (a boolean
    Column, default: rows with no drop reason yet) holds, null on the others."""
    from pyspark.sql import functions as F

    from udfs.filters import DROP_REASON, applies_to

    if wanted is None:
        wanted = F.col(DROP_REASON).isNull() & applies_to(spec.sources)
    scored = language_udf(spec.text, spec.max_chars, texts_seen)(
        F.coalesce(wanted, F.lit(False)), F.col("instruction"), F.col("response")
    )
    return df.withColumn("_lang", scored).withColumn("lang", F.col("_lang.lang")).withColumn(
        "lang_prob", F.col("_lang.lang_prob")
    ).drop("_lang")


def filter_language(df, spec, texts_seen=None):
    """Scores the kept rows' language, then drops those not in `spec.allowed` or below `spec.min_prob`."""
    from pyspark.sql import functions as F

    from udfs.filters import DROP_REASON, applies_to, set_reason

    wanted = F.col(DROP_REASON).isNull() & applies_to(spec.sources)
    if "source_format" in df.columns:  # pairs of code are not judged (see udfs.codegen.CODE_PAIR_FORMATS)
        from udfs.codegen import CODE_PAIR_FORMATS

        wanted = wanted & ~F.col("source_format").isin(*CODE_PAIR_FORMATS)
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
    )
