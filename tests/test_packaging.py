"""The wheel users ship, the overlays for clusters and Databricks, and URIs that reach Spark unchanged."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from conftest import REPO
from jobs.config import CONF_DIR, load_config
from jobs.lake import Lake


def test_wheel_carries_jobs_udfs_and_conf(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(REPO)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("instructlake-*.whl"))).namelist())
    for module in ["jobs/pipeline.py", "jobs/ingest.py", "jobs/pairs.py", "jobs/export.py", "jobs/session.py",
                   "udfs/dialogue.py", "udfs/pair_format.py", "udfs/records.py", "udfs/filters.py",
                   "jobs/generate_qa.py", "jobs/ingest_webtext.py", "udfs/llm.py", "udfs/qa_checks.py", "udfs/webtext.py"]:
        assert module in names
    for conf in ["conf/base.yaml", "conf/local.yaml", "conf/cluster.yaml", "conf/databricks.yaml", "conf/log4j2.properties",
                 "conf/prompts/qa_questions.txt", "conf/prompts/qa_answers.txt"]:
        assert conf in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "instructlake = jobs.cli:main" in zipfile.ZipFile(next(tmp_path.glob("*.whl"))).read(entry_points).decode()


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
