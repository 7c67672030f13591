"""Model-based verification's pure parts: the answers' agreement (SQuAD's token F1), the judge's
verdict parsed strictly, the decision per method, and the prompt filling the benchmark uses."""
from __future__ import annotations

import pytest

from instructlake.udfs.qa_verify import fill_text, parse_verdict, token_f1, verify_row


def test_token_f1_is_squads():
    assert token_f1("Levi's Stadium", "at Levi's Stadium") == pytest.approx(0.8)  # "at" is extra
    assert token_f1("The Denver Broncos", "Denver Broncos") == 1.0  # articles and case do not count
    assert token_f1("1957", "in 1958") == 0.0 and token_f1("", "x") == 0.0 and token_f1(None, None) == 0.0


@pytest.mark.parametrize("completion, verdict", [
    ("Yes", True), (" yes.", True), ("YES, it is", True), ("No", False), ("no - the text says 1889", False),
    ("Yesterday", None), ("The answer is yes", None), ("", None), (None, None), ("N/A", None),
])
def test_parse_verdict_is_strict(completion, verdict):
    assert parse_verdict(completion) is verdict


def test_verify_row_per_method():
    both = ("roundtrip", "judge")
    assert verify_row(both, 0.5, "Levi's Stadium", "Levi's Stadium\nmore", "Yes")["verify_reason"] is None
    row = verify_row(both, 0.5, "Levi's Stadium", "Denver Broncos", "Yes")
    assert (row["verify_answer"], row["verify_f1"], row["judge_verdict"], row["verify_reason"]) == (
        "Denver Broncos", 0.0, True, "answer_not_verified")
    assert verify_row(both, 0.5, "1889", "1889", "No")["verify_reason"] == "judge_rejected"
    assert verify_row(("judge",), 0.5, "a", None, "maybe")["verify_reason"] == "judge_unclear"
    only = verify_row(("judge",), 0.5, "a", None, "Yes")
    assert only["verify_answer"] is None and only["verify_f1"] is None and only["verify_reason"] is None


def test_fill_text():
    assert fill_text("Text: {paragraph}\nQ: {question}\nA: {answer}", {"paragraph": "p", "question": "q", "answer": None}) == "Text: p\nQ: q\nA: "
