"""instructlake against what a user would pick instead, on the same data: plain Python and DuckDB.

At each N, on the data set of `benchmarks/gen_scale.py` (made when missing),
`--rounds` times, the three run one after another in fresh processes, the
order turning each round (so that a slow minute of a noisy machine does not
fall on one of them alone):

- plain: `benchmarks/baseline.py` (json, re, json.dump; the dialogue split's
  pure-Python rules; every kept pair in memory);
- duckdb: `benchmarks/duckdb_peer.py` (`read_json`, string functions and RE2,
  `--threads` threads);
- instructlake: a fresh Python process that starts Spark (`--master`,
  default the conf's local[2]) and runs the ingest, pairs and export stages
  as `instructlake run` does, holding the lake's lock, on a fresh lake, with
  `benchmarks/bench.yaml` (the cheap filters, no dedup, no model). Its
  Spark event log is kept (`<work>/<N>/events/`) for `spark_jobs.py`.

Each run's time is its process's wall time, start to exit, the JVM's start
included; its peak RSS is sampled over its process tree. All three must
keep the same multiset of `[source, text]` elements. The table gives each
run's seconds by step and the ratio to DuckDB and to plain of the same
round; `<work>/peers.json` keeps the numbers.

    .venv/bin/python benchmarks/peers.py --n 1000000 [--rounds 2] [--only instructlake duckdb] [--master 'local[1]']
    .venv/bin/python benchmarks/peers.py --n 1000000 --only instructlake --workers 2 --executor-cores 1

`--workers K` starts a standalone master and K workers of `--executor-cores`
cores (default 1) on this machine and runs instructlake on them: the
driver in its own JVM, one executor per worker, shuffles between them.
The instructlake row also gives the driver JVM's heap from its GC log: the
most in use before a collection and the most still in use after one (the
live data).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.run_bench import aligned, bench_conf, element_digests, measured, rss_text  # noqa: E402

IMPLS = ("plain", "duckdb", "instructlake")
STAGES = ("ingest", "pairs", "export")


def child(conf_path: str) -> int:
    """instructlake's side, in a process of its own: Spark started, then the stages of
    `instructlake run` timed; one JSON line."""
    import logging

    from instructlake.core.lake import RunContext
    from instructlake.core.session import get_spark
    from instructlake.jobs.runner import exclusive, load_config, run_stage

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s [%(name)s] %(message)s")
    conf = load_config(conf_path, [])
    seconds = {}
    t = time.monotonic()
    with exclusive(conf, STAGES):
        spark = get_spark(conf.spark)
        seconds["session"] = time.monotonic() - t
        run = RunContext()
        for stage in STAGES:
            t = time.monotonic()
            result = run_stage(stage, spark, conf, run)
            seconds[stage] = time.monotonic() - t
    counts = result.manifest["counts"]
    print(json.dumps({"seconds": seconds, "release": result.output, "rows_read": sum(c["read"] for c in counts.values()),
                      "rows_kept": result.total_rows}), flush=True)
    spark.stop()
    return 0


def instructlake_conf(data: Path, work: Path, args) -> Path:
    """bench.yaml with this data set, a fresh lake and output, the master and an event log."""
    import yaml

    path = bench_conf(data, work, args.driver_memory)
    conf = yaml.safe_load(path.read_text())
    events = work / "events"
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    conf["spark"]["options"].update({"spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(),
                                     "spark.eventLog.compress": "false"})
    gc = work / "gc.log"
    gc.unlink(missing_ok=True)
    conf["spark"]["options"]["spark.driver.extraJavaOptions"] = f"-Xlog:gc:file={gc}"
    if args.master:
        conf["spark"]["master"] = args.master
    if args.executor_cores:
        conf["spark"]["options"]["spark.executor.cores"] = str(args.executor_cores)
    if args.workers:  # every worker's memory for its executor, the wheel's code from this checkout
        conf["spark"]["options"]["spark.executor.memory"] = args.worker_memory
    path.write_text(yaml.safe_dump(conf, sort_keys=False))
    return path


def gc_heap(log: Path) -> Optional[dict]:
    """The driver JVM's heap from its GC log (`-Xlog:gc`): the most in use before a collection
    (`peak`) and the most still in use after one (`live`, what the data kept alive), MiB."""
    if not log.is_file():
        return None
    pauses = [tuple(int(x) for x in m.groups()) for m in re.finditer(r"(\d+)M->(\d+)M\((\d+)M\)", log.read_text())]
    if not pauses:
        return None
    return {"peak": max(p[0] for p in pauses), "live": max(p[1] for p in pauses), "committed": max(p[2] for p in pauses),
            "collections": len(pauses)}


def run_one(impl: str, data: Path, work: Path, args) -> dict:
    py = sys.executable
    out = work / impl
    shutil.rmtree(out, ignore_errors=True)
    for old in ("lake", "out"):
        shutil.rmtree(work / old, ignore_errors=True)
    if impl == "plain":
        cmd = [py, str(REPO / "benchmarks" / "baseline.py"), str(data), str(out)]
    elif impl == "duckdb":
        cmd = [py, str(REPO / "benchmarks" / "duckdb_peer.py"), str(data), str(out), "--threads", str(args.threads)]
    else:
        cmd = [py, __file__, "--child", str(instructlake_conf(data, work, args))]
    t = time.monotonic()
    [(r, mem)] = measured(cmd, cwd=REPO)
    wall = time.monotonic() - t
    parts = out if impl != "instructlake" else Path(r["release"].removeprefix("file:"))
    digests = element_digests(sorted(parts.glob("*_part*.json")))
    if impl == "instructlake":
        shutil.rmtree(work / "lake", ignore_errors=True)
    else:
        shutil.rmtree(out, ignore_errors=True)
    s = r["seconds"]
    heap = gc_heap(work / "gc.log") if impl == "instructlake" else None
    return {"impl": impl, "heap_mib": heap, "wall_s": wall, **{f"{k}_s": s.get(k) for k in ("session", *STAGES)}, "rows_read": r["rows_read"],
            "rows_kept": r["rows_kept"], "peak_rss": mem, "digest": hashlib.sha256(b"".join(digests)).hexdigest()}


class Standalone:
    """A Spark standalone master and `workers` workers of `cores` cores each, on this machine, as
    `start-master.sh` and `start-worker.sh` run them (in the foreground here, stopped on exit)."""

    def __init__(self, workers: int, cores: int, memory: str, work: Path):
        import pyspark

        self.home = Path(pyspark.__file__).resolve().parent
        self.work, self.procs = work, []
        self.env = {**os.environ, "SPARK_HOME": str(self.home), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
        self.port = _free_port()
        self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(self.port),
                               "--webui-port", str(_free_port())], "I have been elected leader")
        for k in range(workers):
            self._start(f"worker{k}", ["org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                                       "--cores", str(cores), "--memory", memory, "--webui-port", str(_free_port()),
                                       "--work-dir", str(work / f"worker{k}")], "Successfully registered with master")

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str], ready: str, timeout: float = 120) -> None:
        log = self.work / f"{name}.log"
        proc = subprocess.Popen([str(self.home / "bin" / "spark-class"), *args], stdout=open(log, "w"),
                                stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while ready not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the standalone {name} did not start; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(30)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peers(n: int, args) -> list[dict]:
    from benchmarks.gen_scale import generate

    data = generate(n, args.data.resolve())
    work = args.work.resolve() / str(n)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    impls = list(args.only)
    for round_ in range(args.rounds):
        order = impls[round_ % len(impls):] + impls[:round_ % len(impls)]
        for impl in order:
            load = os.getloadavg()[0]
            row = run_one(impl, data, work, args) | {"n": n, "round": round_ + 1, "load": load}
            print(f"N={n:,} round {round_ + 1} {impl}: {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = ["N", "impl", "round", "wall s", "session s", "ingest s", "pairs s", "export s", "peak RSS MiB (JVM/workers)",
            "heap MiB peak/live", "kept",
            "same pairs", "/ duckdb", "/ plain"]
    lines = [head]
    for r in rows:
        twins = {x["impl"]: x for x in rows if x["n"] == r["n"] and x["round"] == r["round"]}
        digests = {x["digest"] for x in twins.values()}

        def ratio(other: str) -> str:
            return f"{r['wall_s'] / twins[other]['wall_s']:.2f}x" if other in twins else "-"

        lines.append([
            f"{r['n']:,}", r["impl"], str(r["round"]), f"{r['wall_s']:.1f}",
            *["-" if r[f"{k}_s"] is None else f"{r[f'{k}_s']:.1f}" for k in ("session", *STAGES)],
            rss_text(r["peak_rss"]), f"{r['heap_mib']['peak']:,}/{r['heap_mib']['live']:,}" if r.get("heap_mib") else "-",
            f"{r['rows_kept']:,}", "yes" if len(digests) == 1 else "NO",
            ratio("duckdb"), ratio("plain"),
        ])
    return aligned(lines)


def summary(rows: list[dict]) -> str:
    """The median ratio of instructlake's wall time to each peer's, per N."""
    out = []
    for n in sorted({r["n"] for r in rows}):
        for other in ("duckdb", "plain"):
            ratios = []
            for round_ in sorted({r["round"] for r in rows if r["n"] == n}):
                twins = {x["impl"]: x for x in rows if x["n"] == n and x["round"] == round_}
                if "instructlake" in twins and other in twins:
                    ratios.append(twins["instructlake"]["wall_s"] / twins[other]["wall_s"])
            if ratios:
                out.append(f"N={n:,}: instructlake / {other} = {statistics.median(ratios):.2f}x "
                           f"(median of {len(ratios)}: {', '.join(f'{x:.2f}' for x in ratios)})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[100_000])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", nargs="+", choices=IMPLS, default=list(IMPLS), help="the implementations to run")
    p.add_argument("--data", type=Path, default=REPO / "bench-data")
    p.add_argument("--work", type=Path, default=REPO / "bench-work" / "peers")
    p.add_argument("--threads", type=int, default=2, help="DuckDB's threads (default 2)")
    p.add_argument("--master", help="instructlake's Spark master (default the conf's, local[2])")
    p.add_argument("--executor-cores", type=int, help="spark.executor.cores (a standalone master); the workers' cores")
    p.add_argument("--workers", type=int, help="start a standalone master and this many workers here, and run on them")
    p.add_argument("--worker-memory", default="2g", help="each worker's memory (default 2g)")
    p.add_argument("--driver-memory", default="2g")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    rows = []
    cluster = None
    if args.workers:
        args.work.mkdir(parents=True, exist_ok=True)
        cluster = Standalone(args.workers, args.executor_cores or 1, args.worker_memory, args.work.resolve())
        args.master = cluster.url
    try:
        for n in args.n:
            rows += peers(n, args)
    finally:
        if cluster:
            cluster.stop()
    load = os.getloadavg()
    print(f"{table(rows)}\n\n{summary(rows)}\n{os.cpu_count()} cores; load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "peers.json").write_text(json.dumps(rows, indent=2) + "\n")
    same = all(len({x["digest"] for x in rows if x["n"] == r["n"]}) == 1 for r in rows)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
