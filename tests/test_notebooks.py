"""The Databricks notebooks run cell by cell against the test session, with widget values supplied
the way a Databricks job supplies them (its `base_parameters` override the widgets' defaults)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from delta.tables import DeltaTable

from conftest import CHEAP, NO_CODE, NO_WEB_TEXT, REPO, SAMPLE, release_dir

NOTEBOOKS = ["ingest", "generate", "pairs", "export", "pipeline"]


class Widgets:
    """What Databricks' dbutils.widgets offers a notebook: text widgets whose values a job may set."""

    def __init__(self, parameters: dict[str, str]):
        self.parameters = dict(parameters)
        self.defaults: dict[str, str] = {}

    def text(self, name: str, default: str, label: str = "") -> None:
        self.defaults[name] = default

    def get(self, name: str) -> str:
        if name not in self.defaults:
            raise ValueError(f"widget {name!r} was never defined")
        return self.parameters.get(name, self.defaults[name])


class DbUtils:
    def __init__(self, parameters):
        self.widgets = Widgets(parameters)


def cells(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Databricks notebook source\n")
    return text.split("\n# COMMAND ----------\n")


def is_markdown(cell: str) -> bool:
    lines = [line for line in cell.splitlines() if line.strip() and line != "# Databricks notebook source"]
    return bool(lines) and all(line.startswith("# MAGIC") for line in lines)


def run_notebook(name: str, spark, parameters: dict[str, str]) -> dict:
    path = REPO / "notebooks" / f"{name}.py"
    namespace = {"spark": spark, "dbutils": DbUtils(parameters), "display": print}
    cwd = os.getcwd()
    # Databricks runs a Git-folder notebook from its own folder, which is on sys.path.
    os.chdir(path.parent)
    sys.path.insert(0, str(path.parent))
    try:
        for cell in cells(path):
            if not is_markdown(cell):
                exec(compile(cell, str(path), "exec"), namespace)
    finally:
        os.chdir(cwd)
        sys.path.remove(str(path.parent))
    return namespace


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_shape(name):
    cs = cells(REPO / "notebooks" / f"{name}.py")
    assert is_markdown(cs[0]) and "**`<" in cs[0]  # says what it writes, and where
    assert 'dbutils.widgets.text("conf"' in cs[1] and 'dbutils.widgets.text("overrides"' in cs[1]
    assert 'dbutils.widgets.text("catalog"' in cs[1] and 'dbutils.widgets.text("schema"' in cs[1]
    assert all(not is_markdown(c) for c in cs[1:])


def sample_overrides(tmp_path: Path) -> str:
    return "\n".join(
        [
            f"paths.lake={(tmp_path / 'lake').as_uri()}",
            f"paths.output={(tmp_path / 'out').as_uri()}",
            f"sources.helpful_online.paths=[{SAMPLE / 'hh-rlhf/helpful-online/test.jsonl.gz'}]",
            f"sources.helpful_rejection_sampled.paths=[{SAMPLE / 'hh-rlhf/helpful-rejection-sampled/test.jsonl.gz'}]",
            f"sources.red_team_attempts.paths=[{SAMPLE / 'red-team-attempts/red_team_attempts.json'}]",
            NO_WEB_TEXT,
            *NO_CODE,
        ]
    )


def test_stage_notebooks_in_order(spark, tmp_path, capsys):
    params = {"conf": str(CHEAP), "overrides": sample_overrides(tmp_path)}
    lake = tmp_path / "lake"
    run_notebook("ingest", spark, params)
    for name, rows in [("helpful_online", 300), ("helpful_rejection_sampled", 300), ("red_team_attempts", 60)]:
        assert DeltaTable.forPath(spark, (lake / "bronze" / name).as_uri()).toDF().count() == rows
    assert "helpful_online: 1 file(s), 300 rows in bronze, 0 quarantined" in capsys.readouterr().out
    ns = run_notebook("pairs", spark, params)
    table = DeltaTable.forPath(spark, (lake / "silver" / "pairs").as_uri())
    # The pairs commit, then the dedup commit when it marked duplicates (jobs/stages/dedup.py).
    assert table.toDF().count() == 660 and ns["result"].pairs.version == table.history(1).collect()[0]["version"] <= 1
    assert "dropped by stage" in capsys.readouterr().out
    ns = run_notebook("export", spark, params)
    manifest = json.loads((release_dir(tmp_path / "out") / "manifest.json").read_text())
    assert manifest["counts"]["hh_helpful"]["read"] == 600 and manifest["total_rows"] == ns["result"].export.total_rows
    parts = sorted(release_dir(tmp_path / "out").glob("instruction_tuning_dataset_part*.json"))
    assert sum(len(json.loads(p.read_text())) for p in parts) == manifest["total_rows"]
    # The whole-pipeline notebook on the same lake: nothing new to ingest or score, the same bytes.
    before = {p.name: p.read_bytes() for p in parts}
    run_notebook("pipeline", spark, params)
    assert {p.name: p.read_bytes() for p in release_dir(tmp_path / "out").glob("*_part*.json")} == before


def test_default_widget_conf_is_the_databricks_overlay(spark):
    ns = {"dbutils": DbUtils({})}
    cell = cells(REPO / "notebooks" / "pipeline.py")[1]
    exec(cell, ns)
    from instructlake.jobs.notebook import notebook_conf

    conf = notebook_conf(ns["dbutils"].widgets.get("conf"), "")
    assert conf.paths.lake == "/Volumes/main/instructlake/lake"


def test_a_git_folder_without_the_wheel_imports_the_repository_as_the_package(tmp_path):
    """Where `instructlake` is not installed, the notebooks' first import makes the checkout it."""
    probe = (
        "import importlib.util, sys; sys.path.insert(0, 'notebooks'); "
        "assert importlib.util.find_spec('instructlake') is None; "
        "import checkout, instructlake, instructlake.core.errors; print(instructlake.__file__)"
    )
    # -S: no site-packages, so no installed (or editable) instructlake, as on a cluster without the wheel
    proc = subprocess.run([sys.executable, "-S", "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(REPO / "__init__.py")
