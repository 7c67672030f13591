"""The wheel users ship, the overlays for clusters and Databricks, and URIs that reach Spark unchanged."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from instructlake.core.config import CONF_DIR
from instructlake.jobs.runner import load_config
from instructlake.core.lake import Lake


def test_wheel_installs_one_import_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    # Nothing but the package and its metadata: no generic top-level name (jobs, udfs, conf).
    assert {n.split("/")[0] for n in names} == {"instructlake", "-".join(wheel.name.split("-")[:2]) + ".dist-info"}
    for module in ["__init__.py", "core/config.py", "core/session.py", "udfs/filters/__init__.py", "udfs/filters/language.py",
                   "udfs/dialogue.py", "jobs/runner.py", "jobs/cli.py", "jobs/pipeline.py", "jobs/stages/pairs.py",
                   "jobs/sources/hh_rlhf.py"]:
        assert f"instructlake/{module}" in names
    for conf in ["base.yaml", "local.yaml", "cluster.yaml", "databricks.yaml", "log4j2.properties", "prompts/qa_questions.txt",
                 "prompts/qa_answer_first.txt", "qa_calibration.json"]:
        assert f"instructlake/conf/{conf}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "instructlake = instructlake.jobs.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_wheel_in_a_fresh_environment(wheel, tmp_path):
    """The wheel installed alone into a new virtual environment (its dependencies seen from the test's
    one): `instructlake` imports from there, the generic names do not, and the CLI runs."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)], check=True)
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "deps.pth").write_text("\n".join(deps) + "\n")  # pyspark, yaml, ... without a second install
    probe = (
        "import importlib.util, instructlake, instructlake.jobs.runner as r; "
        "print(instructlake.__file__); print([m for m in ('jobs', 'udfs', 'conf', 'core') if importlib.util.find_spec(m)]); "
        "print(r.load_config().export.name)"
    )
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    where, generic, name = out.stdout.splitlines()
    assert where.startswith(site) and generic == "[]" and name == "instruction_tuning_dataset"
    cli = subprocess.run([str(env_dir / "bin" / "instructlake"), "run", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 0 and "--conf" in cli.stdout
    bad = subprocess.run([str(env_dir / "bin" / "instructlake"), "run", "--conf", "nowhere.yaml"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "instructlake: error: nowhere.yaml: configuration file not found"


@pytest.mark.parametrize("name", ["cluster.yaml", "databricks.yaml"])
def test_overlays_validate(name):
    conf = load_config(CONF_DIR / name)
    assert conf.spark.shuffle_partitions == 64
    assert [s.name for s in conf.sources] == ["helpful_online", "helpful_rejection_sampled", "red_team_attempts"]
    assert conf.filters == load_config(CONF_DIR / "base.yaml").filters


@pytest.mark.parametrize(
    "uri,answer",
    [
        # Hadoop maps s3a and abfss to their file system classes, which this machine does not have.
        ("s3a://bucket/instructlake/lake", "S3AFileSystem not found"),
        ("abfss://c@acct.dfs.core.windows.net/lake", "AzureBlobFileSystem"),
        ("dbfs:/instructlake/lake", 'No FileSystem for scheme "dbfs"'),
        ("/Volumes/main/instructlake/lake", "/Volumes/main/instructlake/lake/silver/pairs"),
    ],
)
def test_object_store_uris_reach_spark_unchanged(spark, uri, answer):
    conf = load_config(CONF_DIR / "local.yaml", [f"paths.lake={uri}", f"paths.output={uri}-out"])
    assert conf.paths.lake == uri
    lake = Lake.of(conf)
    assert lake.pairs == f"{uri}/silver/pairs" and lake.bronze("x") == f"{uri}/bronze/x"
    # Spark's Hadoop layer gets the URI as it is: here it answers for that scheme (no S3 or DBFS here).
    with pytest.raises(Exception) as info:
        spark.read.format("delta").load(lake.pairs).count()
    assert answer in str(info.value)
