"""Language: the pure langdetect scorer, then the filter inside Spark (reasons, order, determinism)."""
from __future__ import annotations

import pandas as pd
import pytest

from instructlake.udfs.filters.language import LanguageFilter
from instructlake.udfs.filters.length import LengthFilter
from instructlake.core.confload import ConfigError, build
from instructlake.jobs.stages.pairs import with_text_lengths
from instructlake.udfs.filters import DROP_REASON, apply_filters
from instructlake.udfs.filters.language import detect_language, detection_text, score_language_frame

# First exchanges of HH-RLHF dialogues (the embedded sample, helpful-online test).
HH_INSTRUCTION = "How does our immune system fight viruses?"
HH_RESPONSE = (
    "Your immune system helps keep you healthy and safe from disease by recognizing and responding to foreign "
    "substances in the body called antigens. This allows the body to deactivate or get rid of antigens."
)
OTHERS = {
    "fr": "Le système immunitaire nous protège des maladies en reconnaissant les substances étrangères dans le corps.",
    "de": "Das Immunsystem schützt uns vor Krankheiten, indem es fremde Stoffe im Körper erkennt und bekämpft.",
    "es": "El sistema inmunológico nos protege de las enfermedades reconociendo las sustancias extrañas del cuerpo.",
    "ru": "Иммунная система защищает нас от болезней, распознавая чужеродные вещества в организме.",
    "zh-cn": "免疫系统通过识别体内的外来物质来保护我们免受疾病的侵害。",
}
SCHEMA = "id int, source string, source_format string, instruction string, response string, red_team_rating double, drop_reason string"


def spec(**kw):
    return build(LanguageFilter, {"rule": "language", **kw})


def collect(df):
    return sorted(df.collect(), key=lambda r: r["id"])


# --- pure ---------------------------------------------------------------------

def test_detects_english_and_other_languages():
    lang, prob = detect_language(HH_RESPONSE)
    assert lang == "en" and prob > 0.99
    for code, text in OTHERS.items():
        assert detect_language(text)[0] == code


@pytest.mark.parametrize("text", [None, "", "   \n\t", "12345 67890 !!! ??? ... 2024-01-01", "😀😀😀 :-) <3"])
def test_no_features_is_unknown_not_an_exception(text):
    assert detect_language(text) == ("unknown", 0.0)


def test_only_a_prefix_is_read():
    text = HH_RESPONSE + " " + OTHERS["fr"] * 20
    assert detect_language(text, max_chars=len(HH_RESPONSE))[0] == "en"
    assert detect_language(text, max_chars=5000)[0] == "fr"


def test_detection_text():
    assert detection_text("ab", "cdef", "instruction", 10) == "ab"
    assert detection_text("ab", "cdef", "response", 3) == "cde"
    assert detection_text("a" * 10, "b" * 10, "pair", 10) == "aaaaa\nbbbb"  # half for the instruction at most
    assert detection_text("ab", "b" * 10, "pair", 10) == "ab\nbbbbbbb"
    assert detection_text(None, None, "pair", 10) == ""


def test_same_text_same_answer_whatever_came_before():
    first = detect_language("Hello, how are you doing today my friend?")
    for text in OTHERS.values():
        detect_language(text)
    assert detect_language("Hello, how are you doing today my friend?") == first


def test_frame_scores_only_wanted_rows():
    out = score_language_frame(
        pd.Series([True, False, True]), pd.Series([HH_INSTRUCTION, "Bonjour", None]), pd.Series([HH_RESPONSE, OTHERS["fr"], ""]),
    )
    got = out.astype(object).where(out.notna(), None).values.tolist()
    assert got[0][0] == "en" and got[1] == [None, None] and got[2] == ["unknown", 0.0]


def test_conf_checks_language_codes():
    with pytest.raises(ConfigError, match=r"allowed\[1\]: unknown language code 'english'"):
        spec(allowed=["en", "english"])
    with pytest.raises(ConfigError, match="min_prob: must be <= 1"):
        spec(min_prob=2)


# --- Spark ----------------------------------------------------------------------

ROWS = [
    (1, "hh_helpful", "hh_rlhf", HH_INSTRUCTION, HH_RESPONSE, None, None),
    (2, "hh_helpful", "hh_rlhf", "Peux-tu m'expliquer ?", OTHERS["fr"] + " " + OTHERS["fr"], None, None),
    (3, "hh_helpful", "hh_rlhf", "123", "456 789 !!! 2024 ... 12:30 ### 99.5 % 1234567890", None, None),
    (4, "hh_helpful", "hh_rlhf", "Was ist das?", OTHERS["de"], None, None),
    (5, "hh_helpful", "hh_rlhf", HH_INSTRUCTION, "Short.", None, None),  # dropped by the length filter first
    (6, "hh_helpful", "hh_rlhf", None, None, None, "no_human_turn"),  # dropped by the dialogue split
    (7, "hh_harmless", "red_team", "Comment voler une voiture ?", "Je ne peux pas vous aider avec cela, désolé.", 0.0, None),
]


def run(spark, specs, rows=ROWS, partitions=2):
    seen: dict = {}
    df = spark.createDataFrame(rows, SCHEMA).repartition(partitions).transform(with_text_lengths)
    return collect(df.transform(apply_filters, specs, seen)), seen


def test_non_english_pairs_are_dropped_with_their_reason(spark):
    length = build(LengthFilter, {"rule": "response_length", "min_chars": 20, "sources": ["hh_helpful"]})
    out, seen = run(spark, [length, spec(sources=["hh_helpful"])])
    assert [r[DROP_REASON] for r in out] == [
        None, "language_not_allowed", "language_unknown", "language_not_allowed", "response_too_short", "no_human_turn", None,
    ]
    assert [r["lang"] for r in out] == ["en", "fr", "unknown", "de", None, None, None]
    assert out[0]["lang_prob"] > 0.99 and out[2]["lang_prob"] == 0.0
    # Only the four kept hh_helpful rows reached langdetect; the others have null columns.
    assert seen["language"].value == 4
    assert out[6]["lang_prob"] is None


def test_allowed_languages_and_minimum_probability(spark):
    out, _ = run(spark, [spec(allowed=["en", "fr"], text="response")])
    assert [r[DROP_REASON] for r in out][:4] == [None, None, "language_unknown", "language_not_allowed"]
    assert out[6][DROP_REASON] is None and out[6]["lang"] == "fr"
    strict, _ = run(spark, [spec(min_prob=1.0)])
    assert strict[0][DROP_REASON] == "language_uncertain"  # 0.99999... < 1.0


def test_two_runs_give_identical_language_columns(spark):
    columns = ["id", "lang", "lang_prob", DROP_REASON]
    first, _ = run(spark, [spec()], partitions=1)
    second, _ = run(spark, [spec()], partitions=3)
    assert [tuple(r[c] for c in columns) for r in first] == [tuple(r[c] for c in columns) for r in second]


def test_disabled_filter_adds_nothing(spark):
    out, seen = run(spark, [spec(enabled=False)])
    assert "lang" not in out[0].asDict() and seen == {}
