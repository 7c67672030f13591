"""spark-submit of the whole pipeline to a real Spark standalone cluster: a master and a worker
process started here from the installed pyspark, bound to 127.0.0.1, and stopped afterwards."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from conftest import CHEAP, NO_CODE_ARGS, NO_WEB_TEXT, REPO, local_conf, release_dir
from daemons import Daemon, free_port
from instructlake.core import jars
from instructlake.core.lake import RunContext
from instructlake.jobs.runner import run_pipeline

SPARK_HOME = Path(pyspark.__file__).resolve().parent


def spark_daemon(cls: str, args: list[str], env: dict, log: Path, ready: str) -> Daemon:
    """A Spark master or worker in the foreground (what start-master.sh / start-worker.sh run in the background)."""
    return Daemon([str(SPARK_HOME / "bin" / "spark-class"), cls, *args], log, ready, env=env)


@pytest.fixture
def cluster(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    port = free_port()
    daemons = []
    try:
        master = spark_daemon(
            "org.apache.spark.deploy.master.Master",
            ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(free_port())],
            env, tmp_path / "master.log", ready="I have been elected leader",
        )
        daemons.append(master)
        master.wait_ready()
        worker = spark_daemon(
            "org.apache.spark.deploy.worker.Worker",
            [f"spark://127.0.0.1:{port}", "--host", "127.0.0.1", "--cores", "2", "--memory", "3g",
             "--webui-port", str(free_port()), "--work-dir", str(tmp_path / "work")],
            env, tmp_path / "worker.log", ready="Successfully registered with master",
        )
        daemons.append(worker)
        worker.wait_ready()
        yield f"spark://127.0.0.1:{port}", env
    finally:
        for d in reversed(daemons):
            d.stop()
        assert all(d.proc.poll() is not None for d in daemons)


def test_pipeline_on_standalone_cluster_matches_local_mode(spark, tmp_path, cluster, wheel):
    master, env = cluster
    # The wheel users ship to the cluster with --py-files.
    lake, out = (tmp_path / "cluster" / "lake").as_uri(), (tmp_path / "cluster" / "out").as_uri()
    submit = subprocess.run(
        [str(SPARK_HOME / "bin" / "spark-submit"), "--master", master,
         "--jars", ",".join(str(p) for p in jars.cached_jars()),
         "--py-files", str(wheel),
         "--conf", "spark.executor.memory=1g", "--conf", f"spark.pyspark.python={sys.executable}",
         "--conf", "spark.ui.enabled=false",
         str(REPO / "jobs" / "pipeline.py"), "--conf", str(CHEAP),
         "--set", f"paths.lake={lake}", "--set", f"paths.output={out}", "--set", NO_WEB_TEXT, *NO_CODE_ARGS],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=900,
    )
    assert submit.returncode == 0, (submit.stdout + submit.stderr)[-4000:]
    assert f"master {master}" in submit.stdout and "dropped by stage" in submit.stdout
    run_pipeline(spark, local_conf(tmp_path / "local"), RunContext())
    cluster_parts = {p.name: p.read_bytes() for p in release_dir(tmp_path / "cluster" / "out").glob("*_part*.json")}
    local_parts = {p.name: p.read_bytes() for p in release_dir(tmp_path / "local" / "out").glob("*_part*.json")}
    assert cluster_parts and cluster_parts == local_parts
