"""spark-submit of the whole pipeline to a real Spark standalone cluster: a master and a worker
process started here from the installed pyspark, bound to 127.0.0.1, and stopped afterwards."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pyspark
import pytest

from conftest import NO_CODE_ARGS, NO_WEB_TEXT, REPO, local_conf, release_dir
from jobs import jars
from jobs.lake import RunContext
from jobs.pipeline import run_pipeline

SPARK_HOME = Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A Spark master or worker in the foreground (what start-master.sh / start-worker.sh run in the background).

    A thread copies its log to a file as it comes (so the pipe never fills) and
    raises an event when the line that says it is ready shows.
    """

    def __init__(self, cls: str, args: list[str], env: dict, log: Path, ready: str):
        self.log, self.ready_marker, self.ready = log, ready, threading.Event()
        self.proc = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), cls, *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        threading.Thread(target=self._copy_log, daemon=True).start()

    def _copy_log(self) -> None:
        with open(self.log, "w") as copy:
            for line in self.proc.stderr:
                copy.write(line)
                copy.flush()
                if self.ready_marker in line:
                    self.ready.set()
        self.ready.set()  # the process ended: wake the waiter, which then sees it

    def wait_ready(self, timeout: float = 120) -> None:
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError(f"not ready: {self.ready_marker!r} not seen; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


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
        master = Daemon(
            "org.apache.spark.deploy.master.Master",
            ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(free_port())],
            env, tmp_path / "master.log", ready="I have been elected leader",
        )
        daemons.append(master)
        master.wait_ready()
        worker = Daemon(
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


def test_pipeline_on_standalone_cluster_matches_local_mode(spark, tmp_path, cluster):
    master, env = cluster
    # The wheel users ship to the cluster with --py-files.
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(dist.glob("instructlake-*.whl"))
    lake, out = (tmp_path / "cluster" / "lake").as_uri(), (tmp_path / "cluster" / "out").as_uri()
    submit = subprocess.run(
        [str(SPARK_HOME / "bin" / "spark-submit"), "--master", master,
         "--jars", ",".join(str(p) for p in jars.cached_jars()),
         "--py-files", str(wheel),
         "--conf", "spark.executor.memory=1g", "--conf", f"spark.pyspark.python={sys.executable}",
         "--conf", "spark.ui.enabled=false",
         str(REPO / "jobs" / "pipeline.py"), "--conf", "conf/local.yaml",
         "--set", f"paths.lake={lake}", "--set", f"paths.output={out}", "--set", NO_WEB_TEXT, *NO_CODE_ARGS],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=900,
    )
    assert submit.returncode == 0, (submit.stdout + submit.stderr)[-4000:]
    assert f"master {master}" in submit.stdout and "(kept)" in submit.stdout
    run_pipeline(spark, local_conf(tmp_path / "local"), RunContext())
    cluster_parts = {p.name: p.read_bytes() for p in release_dir(tmp_path / "cluster" / "out").glob("*_part*.json")}
    local_parts = {p.name: p.read_bytes() for p in release_dir(tmp_path / "local" / "out").glob("*_part*.json")}
    assert cluster_parts and cluster_parts == local_parts
