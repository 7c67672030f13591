"""Model-based verification of generated question-answer pairs (`qa.verify`).

Two methods, each one model call per pair, made only for pairs the model-free
checks (`instructlake.udfs.qa_checks`) kept:

- `roundtrip`: the model answers the question from the paragraph in a call of
  its own (`qa.verify.roundtrip_prompt`); the pair is kept when that answer and
  the generated one agree: SQuAD's token F1 >= `qa.verify.min_f1`, else
  `answer_not_verified`.
- `judge`: the model is shown the paragraph, the question and the answer
  (`qa.verify.judge_prompt`) and gives a verdict, parsed strictly: the first word
  of its completion must be "yes" or "no" (any case, punctuation around it
  ignored). "no" drops the pair as `judge_rejected`, anything else as
  `judge_unclear`.

The functions here are pure (the prompts as text, the verdicts, the agreement);
the generate stage makes the calls through the cache of model calls, and the
calibration benchmark (`benchmarks/qa_calibration.py`) through `verify_pair`.
A small model gives verdicts at chance (SmolLM2-135M ranks a right answer over a
wrong one in half of the pairs): the methods are for capable endpoints, and off
in `conf/local.yaml`.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Optional

import pandas as pd
from pyspark.sql import functions as F

from instructlake.udfs.qa_checks import tokens

METHODS = ("roundtrip", "judge")
REASONS = {"roundtrip": ("answer_not_verified",), "judge": ("judge_rejected", "judge_unclear")}
PLACEHOLDER = re.compile(r"\{(\w+)\}")
FIELDS = {"title", "paragraph", "question", "answer"}
_FIRST_WORD = re.compile(r"^\W*([A-Za-z]+)")


def token_f1(prediction: Optional[str], truth: Optional[str]) -> float:
    """SQuAD's token F1 between two answers (normalized words, counted with repeats); 0.0 when either is empty."""
    p, t = tokens(prediction), tokens(truth)
    common = sum((Counter(p) & Counter(t)).values())
    if not p or not t or not common:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


def parse_verdict(completion: Optional[str]) -> Optional[bool]:
    """True for a completion whose first word is "yes", False for "no", None for anything else."""
    m = _FIRST_WORD.match(completion or "")
    word = m.group(1).lower() if m else ""
    return True if word == "yes" else False if word == "no" else None


def first_line(completion: Optional[str]) -> Optional[str]:
    return None if completion is None else completion.strip().split("\n", 1)[0].strip()


def roundtrip_reason(roundtrip_answer: Optional[str], answer: Optional[str], min_f1: float) -> Optional[str]:
    return None if token_f1(roundtrip_answer, answer) >= min_f1 else "answer_not_verified"


def judge_reason(verdict: Optional[bool]) -> Optional[str]:
    return None if verdict is True else "judge_rejected" if verdict is False else "judge_unclear"


def fill_text(template: str, values: dict[str, Optional[str]]) -> str:
    """The template with each {name} replaced by its value (as the Spark form, `generate_qa.fill`)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1)) or "", template)


def verify_row(methods, min_f1: float, answer: Optional[str], roundtrip: Optional[str], judge: Optional[str]) -> dict:
    """The verification columns of one pair from its completions (None where a method is off)."""
    out = {"verify_answer": None, "verify_f1": None, "judge_verdict": None, "verify_reason": None}
    reasons = []
    if "roundtrip" in methods:
        out["verify_answer"] = first_line(roundtrip)
        out["verify_f1"] = token_f1(out["verify_answer"], answer)
        reasons.append(roundtrip_reason(out["verify_answer"], answer, min_f1))
    if "judge" in methods:
        out["judge_verdict"] = parse_verdict(judge)
        reasons.append(judge_reason(out["judge_verdict"]))
    out["verify_reason"] = next((r for r in reasons if r is not None), None)
    return out


VERIFY_SCHEMA = "verify_answer string, verify_f1 double, judge_verdict boolean, verify_reason string"
VERIFY_COLUMNS = [c.split()[0] for c in VERIFY_SCHEMA.split(", ")]


def verify_udf(methods, min_f1: float):
    """A `pandas_udf(answer, roundtrip completion, judge completion) -> struct<VERIFY_SCHEMA>`."""
    methods = tuple(methods)

    @F.pandas_udf(VERIFY_SCHEMA)
    def verify(answer: pd.Series, roundtrip: pd.Series, judge: pd.Series) -> pd.DataFrame:
        rows = [verify_row(methods, min_f1, a, r, j) for a, r, j in zip(answer, roundtrip, judge)]
        return pd.DataFrame(rows, columns=VERIFY_COLUMNS).astype({"judge_verdict": "boolean"})

    return verify


def verify_pair(backend, verify, prompts: dict[str, str], question: str, answer: str, paragraph: str,
                params: dict) -> Optional[str]:
    """The verification reason of one pair (None: verified), calling `backend` directly (no cache):
    what the calibration benchmark measures. `prompts`: {method: template}."""
    values = {"paragraph": paragraph, "question": question, "answer": answer, "title": ""}
    done = {m: backend.complete(fill_text(prompts[m], values), params).text for m in verify.methods}
    return verify_row(verify.methods, verify.min_f1, answer, done.get("roundtrip"), done.get("judge"))["verify_reason"]
