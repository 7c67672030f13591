"""The Databricks notebooks run cell by cell against the test session, with widget values supplied."""
from __future__ import annotations

import json
import os

from conftest import REPO, release_dir


class Widgets:
    """What Databricks' dbutils.widgets offers a notebook: text widgets with values set by the job."""

    def __init__(self, values: dict[str, str]):
        self.values = dict(values)
        self.defined: dict[str, str] = {}

    def text(self, name: str, default: str, label: str = "") -> None:
        self.defined[name] = default

    def get(self, name: str) -> str:
        if name not in self.defined:
            raise ValueError(f"widget {name!r} was never defined")
        return self.values.get(name, self.defined[name])


class DbUtils:
    def __init__(self, values):
        self.widgets = Widgets(values)


def cells(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Databricks notebook source\n")
    return [c for c in text.split("# COMMAND ----------") if c.strip()]


def run_notebook(path, spark, widgets: dict[str, str]):
    namespace = {"spark": spark, "dbutils": DbUtils(widgets), "display": print}
    cwd = os.getcwd()
    os.chdir(path.parent)  # Databricks runs a repository notebook from its own folder
    try:
        for cell in cells(path):
            if all(line.startswith("# MAGIC") or not line.strip() for line in cell.splitlines()
                   if not line.startswith("# Databricks notebook source")):
                continue
            exec(compile(cell, str(path), "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def test_pipeline_notebook(spark, tmp_path, capsys):
    sample = REPO / "data" / "sample"
    overrides = "\n".join(
        [
            f"paths.lake={(tmp_path / 'lake').as_uri()}",
            f"paths.output={(tmp_path / 'out').as_uri()}",
            f"sources.helpful_online.paths=[{sample / 'hh-rlhf/helpful-online/test.jsonl.gz'}]",
            f"sources.helpful_rejection_sampled.paths=[{sample / 'hh-rlhf/helpful-rejection-sampled/test.jsonl.gz'}]",
            f"sources.red_team_attempts.paths=[{sample / 'red-team-attempts/red_team_attempts.json'}]",
        ]
    )
    ns = run_notebook(REPO / "notebooks" / "pipeline.py", spark, {"conf": "conf/base.yaml", "overrides": overrides})
    manifest = json.loads((release_dir(tmp_path / "out") / "manifest.json").read_text())
    assert manifest["counts"]["hh_helpful"] == {"read": 600, "kept": 552, "dropped": {"response_too_short": 48}}
    assert manifest["counts"]["hh_harmless"]["read"] == 60
    parts = sorted(release_dir(tmp_path / "out").glob("instruction_tuning_dataset_part*.json"))
    assert len(parts) == 1 and len(json.loads(parts[0].read_text())) == manifest["total_rows"] == 552 + manifest["counts"]["hh_harmless"]["kept"]
    assert ns["result"].export.total_rows == manifest["total_rows"]
    assert "hh_helpful" in capsys.readouterr().out
