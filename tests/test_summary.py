"""The CLI's closing summary: rows per source and the stages (or reasons) that dropped them, in a
table that fits 100 columns however many stages drop rows."""
from __future__ import annotations

from instructlake.jobs.summary import WIDTH, format_tally, tally


def test_tally_groups_a_reason_kind_once():
    counts = [("hh_helpful", None, 3), ("hh_helpful", "duplicate_of:ab12", 2), ("hh_helpful", "duplicate_of:cd34", 1),
              ("hh_helpful", "near_duplicate_of:ef56", 4), ("hh_helpful", "response_too_short", 5), ("conala", None, 7)]
    assert tally(counts) == {
        "hh_helpful": {"candidates": 15, "kept": 3, "dropped": {"duplicate_of": 3, "near_duplicate_of": 4, "response_too_short": 5}},
        "conala": {"candidates": 7, "kept": 7, "dropped": {}},
    }


def test_summary_fits_the_width_and_lists_drops_largest_first():
    stages = {f"filter_number_{i}": i for i in range(1, 30)}
    rows = {"hh_helpful": {"candidates": 600, "kept": 100, "exported": 90, "dropped": stages},
            "conala": {"candidates": 300, "kept": 300, "exported": 300, "dropped": {}}}
    text = format_tally(rows)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert lines[0].split() == ["source", "candidates", "kept", "exported", "dropped", "by", "stage"]
    assert lines[2].split()[:5] == ["conala", "300", "300", "300", "-"]
    helpful = [line for line in lines if line.startswith("hh_helpful")][0]
    assert helpful.split()[:6] == ["hh_helpful", "600", "100", "90", "filter_number_29", "29,"]
    # every stage is listed once, in the wrapped last column, largest first
    listed = " ".join(lines[3:-1]).replace(",", " ").split()
    named = [w for w in listed if w.startswith("filter_number_")]
    assert named == [f"filter_number_{i}" for i in range(29, 0, -1)]
    assert lines[-1].split() == ["(total)", "900", "400", "390"]
