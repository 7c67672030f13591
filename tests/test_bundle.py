"""The Databricks Asset Bundle (databricks.yml, resources/*.yml), exercised here: the Databricks CLI
cannot reach a workspace from this machine, so its YAML is loaded with the variables of a target
substituted, every task is checked against the built wheel's metadata, the notebooks and the CLI,
and the job's tasks run locally in the job's order with the job's own parameters (local Spark,
real Delta, tables by name in a local Hive metastore); the dataset equals `instructlake run`'s."""
from __future__ import annotations

import glob
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import CHEAP, REPO, SAMPLE, hive_options, release_dir
from instructlake.jobs.cli import _parser
from instructlake.jobs.runner import STAGE_NAMES

JOBS = {"instructlake": "serverless", "instructlake_classic": "classic", "instructlake_notebooks": "notebooks"}
VARIABLE = re.compile(r"\$\{(var\.\w+|workspace\.current_user\.short_name|workspace\.current_user\.userName|bundle\.\w+)\}")


def bundle(target: str, values: dict[str, str] | None = None) -> dict:
    """databricks.yml with its includes merged and every `${...}` of `target` substituted, as
    `databricks bundle validate -t <target> [--var ...]` resolves them."""
    root = yaml.safe_load((REPO / "databricks.yml").read_text())
    for pattern in root.get("include", []):
        files = sorted(glob.glob(str(REPO / pattern)))
        assert files, f"include {pattern} matches nothing"
        for f in files:
            for kind, items in yaml.safe_load(Path(f).read_text())["resources"].items():
                root.setdefault("resources", {}).setdefault(kind, {}).update(items)
    variables = {k: v.get("default") for k, v in root["variables"].items()}
    variables |= root["targets"][target].get("variables", {}) | (values or {})
    context = {"workspace.current_user.short_name": "tester", "workspace.current_user.userName": "tester@example.com",
               "bundle.name": root["bundle"]["name"], "bundle.target": target}

    def resolve(text: str) -> str:
        for _ in range(5):  # a variable's value may name another
            text = VARIABLE.sub(lambda m: str(variables[m[1][4:]] if m[1].startswith("var.") else context[m[1]]), text)
        assert "${" not in text, text
        return text

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return resolve(node) if isinstance(node, str) else node

    return walk(root)


def in_order(tasks: list[dict]) -> list[dict]:
    """The tasks in the order their `depends_on` allows (each after the ones it depends on)."""
    done, ordered = set(), []
    while len(ordered) < len(tasks):
        ready = [t for t in tasks if t["task_key"] not in done and all(d["task_key"] in done for d in t.get("depends_on", []))]
        assert ready, "a dependency cycle"
        ordered.append(ready[0])
        done.add(ready[0]["task_key"])
    return ordered


def wheel_metadata(wheel: Path) -> tuple[str, dict[str, str]]:
    """(the distribution's name, its console scripts {name: module:function}) from the wheel itself."""
    with zipfile.ZipFile(wheel) as z:
        info = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        name = re.search(r"^Name: (.+)$", z.read(info).decode(), re.M).group(1).strip()
        entry_text = z.read(info.replace("METADATA", "entry_points.txt")).decode()
    scripts, group = {}, None
    for line in entry_text.splitlines():
        if line.startswith("["):
            group = line.strip("[]")
        elif "=" in line and group == "console_scripts":
            key, value = (p.strip() for p in line.split("=", 1))
            scripts[key] = value
    return name, scripts


def task_argv(task: dict) -> list[str]:
    """The command line a python_wheel_task gives its entry point (named parameters as --key=value)."""
    wheel_task = task["python_wheel_task"]
    return [*wheel_task.get("parameters", []), *[f"--{k}={v}" for k, v in wheel_task.get("named_parameters", {}).items()]]


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_the_bundle_resolves_and_its_tasks_exist_in_the_wheel(wheel, target):
    b = bundle(target)
    assert b["bundle"]["name"] == "instructlake" and b["artifacts"]["python_artifact"]["type"] == "whl"
    assert b["targets"][target]["mode"] == {"dev": "development", "prod": "production"}[target]
    assert b["targets"]["dev"].get("default") is True
    name, scripts = wheel_metadata(wheel)
    jobs = b["resources"]["jobs"]
    assert set(jobs) == set(JOBS)
    for job_name, kind in JOBS.items():
        tasks = in_order(jobs[job_name]["tasks"])
        assert jobs[job_name]["max_concurrent_runs"] == 1  # runs on one lake take turns
        assert [t["task_key"] for t in tasks] == list(STAGE_NAMES)  # the stage list's order
        for stage, task in zip(STAGE_NAMES, tasks):
            if kind == "notebooks":
                notebook = (REPO / "resources" / task["notebook_task"]["notebook_path"]).resolve()
                text = notebook.read_text()
                assert notebook.parent == REPO / "notebooks" and notebook.stem == stage
                for widget in task["notebook_task"]["base_parameters"]:
                    assert f'dbutils.widgets.text("{widget}"' in text
                continue
            wheel_task = task["python_wheel_task"]
            assert wheel_task["package_name"] == name
            assert scripts[wheel_task["entry_point"]] == f"instructlake.jobs.cli:{stage}"
            args = _parser().parse_args([stage, *task_argv(task)])  # every parameter is an option of the stage
            assert args.catalog == {"dev": "main.instructlake_tester", "prod": "main.instructlake"}[target]
            assert args.conf == "databricks.yaml"  # the conf shipped in the wheel
            assert args.compute == ("serverless" if kind == "serverless" else "classic")
            if kind == "classic":
                assert task["job_cluster_key"] in {c["job_cluster_key"] for c in jobs[job_name]["job_clusters"]}
                assert task["libraries"] == [{"whl": "../dist/*.whl"}]
            else:
                assert task["environment_key"] in {e["environment_key"] for e in jobs[job_name]["environments"]}
        if kind != "classic":
            assert "../dist/*.whl" in jobs[job_name]["environments"][0]["spec"]["dependencies"]
    assert "schema" in b["variables"] and b["variables"]["catalog"]["default"] == "main"


RUN_TASKS = """
import json, sys
from importlib.metadata import EntryPoint
tasks, run_args = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for entry, argv in tasks:  # as Databricks calls a wheel's entry point: sys.argv then the function
    sys.argv = [entry, *argv]
    try:
        EntryPoint(name=entry, value=run_args["scripts"][entry], group="console_scripts").load()()
    except SystemExit as e:
        if e.code:
            raise
from instructlake.jobs.cli import main
sys.exit(main(["run", *run_args["argv"]]))
"""


def test_the_jobs_tasks_run_locally_and_build_what_instructlake_run_builds(wheel, tmp_path):
    conf = tmp_path / "bundle.yaml"
    options = hive_options(tmp_path)
    conf.write_text(yaml.safe_dump({
        "extends": str(CHEAP),
        "spark": {"options": options},
        "paths": {"lake": str(tmp_path / "lake"), "output": str(tmp_path / "job-out")},
        "sources": [
            {"name": "helpful_online", "label": "hh_helpful", "format": "hh_rlhf", "paths": [str(SAMPLE / "hh-rlhf/helpful-online/test.jsonl.gz")]},
            {"name": "red_team_attempts", "label": "hh_harmless", "format": "red_team", "paths": [str(SAMPLE / "red-team-attempts/red_team_attempts.json")]},
        ],
        "code": {"generate": {"count": 0}},
    }))
    b = bundle("dev", {"conf": str(conf), "catalog": "spark_catalog", "schema": "bundle_dev"})
    _, scripts = wheel_metadata(wheel)
    tasks = [[t["python_wheel_task"]["entry_point"], task_argv(t)] for t in in_order(b["resources"]["jobs"]["instructlake"]["tasks"])]
    assert [e for e, _ in tasks] == [f"instructlake-{s}" for s in STAGE_NAMES]
    script = tmp_path / "run_tasks.py"
    script.write_text(RUN_TASKS)
    run_args = {"scripts": scripts, "argv": ["--conf", str(conf), "--lake", str(tmp_path / "path-lake"), "--output", str(tmp_path / "run-out")]}
    proc = subprocess.run([sys.executable, str(script), json.dumps(tasks), json.dumps(run_args)],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "lake").exists()  # the job's tables are in the metastore, by name
    assert (tmp_path / "warehouse" / "bundle_dev.db" / "silver_pairs").is_dir()
    job = {p.name: p.read_bytes() for p in release_dir(tmp_path / "job-out").glob("*_part*.json")}
    run = {p.name: p.read_bytes() for p in release_dir(tmp_path / "run-out").glob("*_part*.json")}
    assert job == run != {}
    manifest = json.loads((release_dir(tmp_path / "job-out") / "manifest.json").read_text())
    assert manifest["tables"]["pairs"]["uri"] == "spark_catalog.bundle_dev.silver_pairs"


def test_serverless_rejects_an_endpoint_called_from_tasks(tmp_path):
    from instructlake.core.errors import ConfigError
    from instructlake.jobs.runner import load_config

    with pytest.raises(ConfigError, match="serverless compute cannot"):
        load_config(CHEAP, ["spark.compute=serverless", "llm.backend=openai", "llm.base_url=http://x/v1", "llm.model=m"])
    load_config(CHEAP, ["spark.compute=serverless"])  # the in-process model runs anywhere
    load_config(CHEAP, ["spark.compute=serverless", "llm.backend=openai", "llm.base_url=http://x/v1", "llm.model=m",
                        "sources.wikitext.enabled=false", "code.generate.count=0"])  # nothing to generate
