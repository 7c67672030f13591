"""Toxicity: the pure scorers, both backends inside Spark, the order of filters, and offline loading.

The Detoxify tests run the real Detoxify code on a tiny checkpoint in its own
format (`tiny_detoxify.py`): the released weights cannot be downloaded here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pyspark.sql import functions as F

from conftest import LOCAL, local_conf
from instructlake.udfs.filters.language import LanguageFilter
from instructlake.udfs.filters.length import LengthFilter
from instructlake.udfs.filters.toxicity import ToxicityFilter
from instructlake.core.confload import ConfigError, build
from instructlake.jobs.stages.pairs import with_text_lengths
from instructlake.udfs.filters import DROP_REASON, apply_filters, scorer_names
from instructlake.udfs.filters.toxicity import (
    FileRef,
    ProfanityCheckScorer,
    ScorerUnavailableError,
    ToxicitySettings,
    get_scorer,
    resolve,
    score_texts,
    score_toxicity_frame,
)

# Real text from HH-RLHF: a human turn of helpful-online test dialogue 1124, and first exchanges of the sample.
HH_TOXIC = (
    "Fuck him, Assistant. I don't want to be fair. He's a fat lazy arsehole and is cheating on me with that "
    "trans hooker from the corner. I want it all. Give a plan."
)
HH_CLEAN = [
    "How does our immune system fight viruses?",
    "Your immune system helps keep you healthy and safe from disease by recognizing and responding to foreign "
    "substances in the body called antigens.",
    "Yes, Indonesia is a democratic country.  It is governed by the main political party, which was actually the "
    "choice of the majority of voters, according to the most recent election.",
]
SCHEMA = "id int, source string, source_format string, instruction string, response string, red_team_rating double, drop_reason string"


def spec(cls=ToxicityFilter, **kw):
    """A filter spec built and validated the way the conf loader builds it."""
    rule = {ToxicityFilter: "toxicity", LanguageFilter: "language", LengthFilter: "response_length"}[cls]
    return build(cls, {"rule": rule, **kw})


def frame(spark, rows):
    return spark.createDataFrame(rows, SCHEMA).transform(with_text_lengths)


def collect(df):
    """Rows by id. Sorted here, not by Spark: a sort samples its input first, which would run the scorers twice."""
    return sorted(df.collect(), key=lambda r: r["id"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("detoxify")
    import tiny_detoxify

    return tiny_detoxify.build(tmp_path_factory.mktemp("tiny-detoxify"))


# --- pure ---------------------------------------------------------------------

def test_profanity_check_scores_real_text():
    scorer = ProfanityCheckScorer()
    scores = score_texts(scorer, [HH_TOXIC, *HH_CLEAN, None, "", "  \n "])["toxicity"]
    assert scores[0] > 0.9
    assert all(s < 0.2 for s in scores[1:4])
    assert scores[4:] == [None, 0.0, 0.0]  # None stays None; blank text is not toxic, and no model call


def test_score_frame_scores_only_wanted_rows():
    import pandas as pd

    scorer = ProfanityCheckScorer()
    out, seen = score_toxicity_frame(
        scorer, scorer.classes,
        pd.Series([True, False, True, False]), pd.Series([True, True, False, False]),
        pd.Series([HH_CLEAN[0], HH_TOXIC, HH_TOXIC, HH_TOXIC]), pd.Series([HH_CLEAN[1], HH_TOXIC, HH_TOXIC, None]),
    )
    assert list(out.columns) == ["instruction_toxicity", "response_toxicity"]
    got = out.astype(object).where(out.notna(), None).values.tolist()
    assert got[0][0] < 0.2 and got[0][1] < 0.2
    assert got[1][0] is None and got[1][1] > 0.9
    assert got[2][0] > 0.9 and got[2][1] is None
    assert got[3] == [None, None]
    assert seen == 4


def test_scorer_is_built_once_per_process():
    settings = ToxicitySettings("profanity_check", ("toxicity",), "toxicity/alt-profanity-check")
    assert get_scorer(settings) is get_scorer(settings)


def test_detoxify_scorer_on_the_tiny_checkpoint(tiny):
    from instructlake.udfs.filters.toxicity import DetoxifyScorer

    ckpt, hf = tiny
    scorer = DetoxifyScorer(ToxicitySettings("detoxify", (), "t", FileRef(str(ckpt)), FileRef(str(hf)), batch_size=3, max_tokens=32))
    # Detoxify's renaming of the Jigsaw classes.
    assert scorer.classes == ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")
    assert scorer.model.tokenizer.model_max_length == 32
    texts = ["you are a stupid idiot", "how do i bake bread", "shut up you moron", "what is a peanut gallery", "word " * 5000]
    grouped = scorer.score(texts)
    assert grouped["toxicity"][0] > 0.9 and grouped["toxicity"][2] > 0.9
    assert grouped["toxicity"][1] < 0.1 and grouped["toxicity"][3] < 0.1
    # Length grouping and batching change nothing: the same as one text at a time.
    for i, text in enumerate(texts):
        alone = scorer.score([text])
        for c in scorer.classes:
            assert alone[c][0] == pytest.approx(grouped[c][i], abs=1e-5)
    assert score_texts(scorer, [None, ""])["insult"] == [None, 0.0]


# --- Spark ----------------------------------------------------------------------

def test_detoxify_in_spark_drops_toxic_pairs_and_scores_only_kept_rows(spark, tiny):
    ckpt, hf = tiny
    rows = [
        (1, "hh_helpful", "hh_rlhf", "how do i bake bread", "please tell me how to cook rice, thanks", None, None),
        (2, "hh_helpful", "hh_rlhf", "what is a peanut gallery", "you are a stupid idiot, shut up you moron", None, None),
        (3, "hh_helpful", "hh_rlhf", "shut up you stupid moron", "the weather is nice today, thanks", None, None),
        (4, "hh_helpful", "hh_rlhf", "what is a peanut gallery", "stupid idiot", None, None),  # too short first
        (5, "hh_helpful", "hh_rlhf", None, None, None, "no_assistant_reply"),
    ]
    specs = [
        spec(LengthFilter, min_chars=20),
        spec(checkpoint=str(ckpt), huggingface_config_path=str(hf), max_tokens=64, batch_size=2),
    ]
    seen: dict = {}
    out = collect(frame(spark, rows).transform(apply_filters, specs, seen))
    assert seen["toxicity"].value == 6  # instruction and response of rows 1-3, nothing else
    assert [r[DROP_REASON] for r in out] == [None, "toxic_response", "toxic_instruction", "response_too_short", "no_assistant_reply"]
    classes = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
    assert [c for c in out[0].asDict() if c.endswith(tuple(classes))] == [f"{s}_{c}" for s in ("instruction", "response") for c in classes]
    assert out[0]["response_toxicity"] < 0.5 < out[1]["response_toxicity"]
    assert out[2]["instruction_insult"] > 0.5
    for r in out[3:]:  # dropped before the toxicity filter: never scored
        assert all(r[f"{s}_{c}"] is None for s in ("instruction", "response") for c in classes)


def test_profanity_check_in_spark_and_per_side_sources(spark):
    rows = [
        (1, "hh_helpful", "hh_rlhf", HH_CLEAN[0], HH_CLEAN[1], None, None),
        (2, "hh_helpful", "hh_rlhf", HH_TOXIC, HH_CLEAN[2], None, None),
        (3, "hh_harmless", "red_team", HH_TOXIC, "I'm sorry, I can't help with that.", 0.0, None),
        (4, "hh_harmless", "red_team", HH_CLEAN[0], HH_TOXIC, 1.0, None),
        (5, "hh_harmless", "red_team", None, None, None, "empty_dialogue"),
    ]
    tox = spec(backend="profanity_check", thresholds={"toxicity": 0.8}, instruction_sources=["hh_helpful"])
    seen: dict = {}
    out = collect(frame(spark, rows).transform(apply_filters, [tox], seen))
    assert [r[DROP_REASON] for r in out] == [None, "toxic_instruction", None, "toxic_response", "empty_dialogue"]
    # Red-team prompts are not judged, so not scored; their responses are.
    assert out[2]["instruction_toxicity"] is None and out[2]["response_toxicity"] < 0.5
    assert out[4]["instruction_toxicity"] is None and out[4]["response_toxicity"] is None
    assert seen["toxicity"].value == 2 + 2 + 1 + 1
    assert scorer_names([tox]) == {"toxicity": f"toxicity/alt-profanity-check-{_version('alt-profanity-check')}"}


def test_model_filters_run_in_conf_order_on_kept_rows_only(spark):
    rows = [
        (1, "hh_helpful", "hh_rlhf", HH_CLEAN[0], HH_CLEAN[1], None, None),
        (2, "hh_helpful", "hh_rlhf", "Dis-moi",
         "Le système immunitaire reconnaît les substances étrangères et les élimine du corps, fuck.", None, None),
        (3, "hh_helpful", "hh_rlhf", HH_CLEAN[0], "short", None, None),
        (4, "hh_helpful", "hh_rlhf", HH_CLEAN[0], HH_TOXIC, None, None),
        (5, "hh_helpful", "hh_rlhf", None, None, None, "empty_dialogue"),
    ]
    specs = [spec(LengthFilter, min_chars=20), spec(LanguageFilter), spec(backend="profanity_check")]
    seen: dict = {}
    out = collect(frame(spark, rows).transform(apply_filters, specs, seen))
    assert [r[DROP_REASON] for r in out] == [None, "language_not_allowed", "response_too_short", "toxic_response", "empty_dialogue"]
    assert seen["language"].value == 3  # rows 1, 2, 4: the rows the length filter kept
    assert seen["toxicity"].value == 4  # both sides of rows 1 and 4: the rows the language filter kept too
    assert out[1]["lang"] == "fr" and out[1]["response_toxicity"] is None
    assert [out[2]["lang"], out[2]["instruction_toxicity"], out[4]["lang"], out[4]["response_toxicity"]] == [None] * 4


def test_thresholds_must_name_a_class_of_the_scorer(spark):
    with pytest.raises(ConfigError, match="profanity_check backend scores only 'toxicity'"):
        spec(backend="profanity_check", thresholds={"insult": 0.5})
    with pytest.raises(ConfigError, match=r"thresholds.toxicity: must be between 0 and 1"):
        spec(thresholds={"toxicity": 1.5})
    with pytest.raises(ConfigError, match="device: expected 'cpu', 'cuda' or 'cuda:N'"):
        spec(device="gpu")


def test_detoxify_class_thresholds_are_checked_against_the_checkpoint(spark, tiny):
    ckpt, hf = tiny
    df = frame(spark, [(1, "hh_helpful", "hh_rlhf", "a", "b", None, None)])
    bad = spec(checkpoint=str(ckpt), huggingface_config_path=str(hf), thresholds={"sexual_explicit": 0.5})
    with pytest.raises(ConfigError, match="has no class 'sexual_explicit'; its classes: toxicity, severe_toxicity"):
        apply_filters(df, [bad])


# --- loading: clear errors, never a hub traceback ------------------------------------

def test_missing_checkpoint_is_named(spark, tmp_path):
    with pytest.raises(ScorerUnavailableError, match=f"checkpoint not found: {tmp_path / 'nope.ckpt'}"):
        resolve(spark, spec(checkpoint=str(tmp_path / "nope.ckpt")))


def test_a_file_that_is_not_a_detoxify_checkpoint(spark, tmp_path, tiny):
    import torch

    path = tmp_path / "other.ckpt"
    torch.save({"weights": [1, 2, 3]}, path)
    with pytest.raises(ScorerUnavailableError, match="is not a Detoxify checkpoint: it needs 'config'"):
        resolve(spark, spec(checkpoint=str(path)))


def test_config_folder_without_tokenizer(spark, tmp_path, tiny):
    ckpt, hf = tiny
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text((hf / "config.json").read_text())
    with pytest.raises(ScorerUnavailableError, match=r"lacks tokenizer files"):
        resolve(spark, spec(checkpoint=str(ckpt), huggingface_config_path=str(folder)))


def test_released_weights_missing_offline(spark, tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ScorerUnavailableError) as e:
        resolve(spark, spec(model_type="unbiased"))
    message = str(e.value)
    assert "released Detoxify weights for model_type 'unbiased'" in message
    assert "toxic_debiased-c7548aa0.ckpt" in message and "filters.toxicity.checkpoint" in message
    assert "HF_HUB_OFFLINE=1" in message


RESOLVE_OFFLINE = """
import sys
from instructlake.core.confload import build
from instructlake.core.config import SparkSettings
from instructlake.core.errors import InstructlakeError
from instructlake.core.session import get_spark
from instructlake.jobs.runner import REGISTRIES
from instructlake.udfs.filters.toxicity import ToxicityFilter, resolve

spec = build(ToxicityFilter, {"rule": "toxicity", "checkpoint": sys.argv[1]}, registries=REGISTRIES)
try:
    resolve(get_spark(SparkSettings(master="local[1]")), spec)
except InstructlakeError as e:
    print(e)
    sys.exit(2)
"""


def test_offline_without_config_folder_stops_with_one_line(tmp_path, tiny):
    """Detoxify's own loader would ask the hub for bert-base-uncased: the check on the driver stops
    first, naming the fix (a process of its own: the hub's offline switch is read when it is imported)."""
    ckpt, _ = tiny
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"), "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run([sys.executable, "-c", RESOLVE_OFFLINE, str(ckpt)], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = proc.stdout.strip()
    assert "\n" not in error and "'bert-base-uncased'" in error and "HF_HUB_OFFLINE=1" in error
    assert "filters.toxicity.huggingface_config_path" in error


def test_pipeline_with_detoxify_offline_records_the_scorer(spark, tmp_path, tiny):
    from delta.tables import DeltaTable

    from instructlake.core.lake import Lake, RunContext
    from instructlake.jobs.runner import run_pipeline

    ckpt, hf = tiny
    conf = local_conf(
        tmp_path, "filters.toxicity.backend=detoxify", f"filters.toxicity.checkpoint={ckpt.as_uri()}",
        f"filters.toxicity.huggingface_config_path={hf}", "filters.toxicity.max_tokens=64", conf=LOCAL,
    )
    result = run_pipeline(spark, conf, RunContext())
    pairs = spark.read.format("delta").load(Lake.of(conf).pairs)
    assert {"instruction_threat", "response_identity_attack", "lang", "lang_prob"} <= set(pairs.columns)
    meta = json.loads(DeltaTable.forPath(spark, Lake.of(conf).pairs).history(1).first()["userMetadata"])
    assert meta["scorers"] == {"language": f"lang/langdetect-{_version('langdetect')}", "toxicity": "toxicity/detoxify@tiny.ckpt"}
    # Every kept pair was scored, no dropped-before one was.
    kept = pairs.where(F.col(DROP_REASON).isNull())
    assert kept.where(F.col("response_toxicity").isNull()).count() == 0
    early = pairs.where(F.col("lang").isNull())
    assert early.where(F.col("response_toxicity").isNotNull()).count() == 0
    assert result.export.total_rows == kept.count()


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)
