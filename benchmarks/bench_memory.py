"""What the JVM's memory is made of while the cheap path runs, at each N.

`run_bench.py` gives each run's peak RSS; this says what that peak holds. For
each N, in a fresh process with the benchmarks' conf (`bench.yaml`, see
`run_bench.py`), the JVM runs with Native Memory Tracking
(`-XX:NativeMemoryTracking=summary`) and the ingest, pairs and export stages
run once. The JVM's RSS is sampled every 0.5 s; at each new peak (1% above
the last) and after each stage, `jcmd <pid> VM.native_memory summary` gives
the JVM's own account, split into:

- `heap`: the Java heap committed (at most `--driver-memory`);
- `jvm native`: everything else the JVM allocates and tracks (metaspace,
  compiled code, GC structures, thread stacks, direct buffers, ...);
- `untracked`: the JVM's anonymous RSS less all that it committed: memory that
  native libraries allocate outside the JVM's allocator, and what glibc's
  arenas keep after a free. A net figure: memory committed but not yet
  touched (most of it heap) is not resident, and makes it smaller, below
  zero in a short run.

NMT and the `jcmd` calls cost time: the stage timings here are not the
benchmark's. Needs `jcmd` (the JDK's, not in a JRE-only install).

    .venv/bin/python benchmarks/bench_memory.py [--n 100000 1000000] [--driver-memory 1g]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.run_bench import STAGES, aligned, bench_conf, measured, stage_runs  # noqa: E402

MIB = 1 << 20
COLUMNS = ("rss", "heap", "jvm_native", "untracked")
_TOTAL = re.compile(r"^Total: reserved=\d+KB, committed=(\d+)KB", re.M)
_HEAP = re.compile(r"^-\s+Java Heap \(reserved=\d+KB, committed=(\d+)KB\)", re.M)


def jcmd() -> str:
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "jcmd") if java_home and (Path(java_home) / "bin" / "jcmd").is_file() else shutil.which("jcmd")
    if not found:
        raise SystemExit("jcmd not found: it comes with a JDK (e.g. Debian's openjdk-17-jdk-headless); set JAVA_HOME or PATH")
    return found


def parse_summary(text: str) -> tuple[int, int]:
    """(committed bytes in total, of the Java heap) from `VM.native_memory summary`."""
    total, heap = _TOTAL.search(text), _HEAP.search(text)
    if not total or not heap:
        raise RuntimeError(f"no Native Memory Tracking summary in jcmd's answer: {text[:300]!r}")
    return int(total.group(1)) << 10, int(heap.group(1)) << 10


def resident(pid: int) -> dict[str, int]:
    """The process's resident memory from /proc (bytes): `VmRSS` (all) and `RssAnon` (anonymous)."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {key: int(fields[key].split()[0]) << 10 for key in ("VmRSS", "RssAnon")}


def breakdown(pid: int, tool: str) -> dict:
    """The JVM's RSS, its anonymous part split as in the module docstring (bytes)."""
    text = subprocess.run([tool, str(pid), "VM.native_memory", "summary"], capture_output=True, text=True, timeout=60).stdout
    total, heap = parse_summary(text)
    now = resident(pid)
    return {"rss": now["VmRSS"], "heap": heap, "jvm_native": total - heap, "untracked": now["RssAnon"] - total}


class Watch(threading.Thread):
    """Samples the JVM's RSS; keeps the breakdown taken at the highest one."""

    def __init__(self, pid: int, tool: str):
        super().__init__(daemon=True)
        self.pid, self.tool, self.done = pid, tool, threading.Event()
        self.stage, self.peak, self.lock = "start", None, threading.Lock()

    def highest(self) -> int:
        return self.peak["rss"] if self.peak else 0

    def run(self) -> None:
        while not self.done.wait(0.5):
            if resident(self.pid)["VmRSS"] > self.highest() * 1.01:
                self.offer(breakdown(self.pid, self.tool))

    def offer(self, taken: dict) -> None:
        """Keeps `taken` (a breakdown) as the peak when its RSS is the highest so far."""
        with self.lock:
            if taken["rss"] > self.highest():
                self.peak = {**taken, "stage": self.stage}


def child(conf_path: str) -> int:
    """One fresh JVM: the three stages, a JSON line with the breakdowns on stdout."""
    import logging

    import psutil

    from instructlake.jobs.runner import load_config
    from instructlake.core.lake import RunContext
    from instructlake.core.session import JAVA_OPTIONS_KEY, get_spark

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s [%(name)s] %(message)s")
    tool = jcmd()
    conf = load_config(conf_path, [])
    conf.spark.options[JAVA_OPTIONS_KEY] = "-XX:NativeMemoryTracking=summary"  # beside the local mode's own
    spark = get_spark(conf.spark)
    spark.range(1).count()
    [pid] = [p.pid for p in psutil.Process().children(recursive=True) if p.name() == "java"]
    watch = Watch(pid, tool)
    watch.start()
    run, after = RunContext(), {}
    for stage, fn in stage_runs():
        watch.stage = stage
        t = time.monotonic()
        fn(spark, conf, run)
        after[stage] = {**breakdown(pid, tool), "seconds": time.monotonic() - t}
        watch.offer(after[stage])
    watch.done.set()
    watch.join()
    heap_max = spark._jvm.java.lang.Runtime.getRuntime().maxMemory()
    print(json.dumps({"after": after, "peak": watch.peak, "heap_max": heap_max}), flush=True)
    return 0


def measure(n: int, data_root: Path, work_root: Path, driver_memory: str) -> dict:
    from benchmarks.gen_scale import generate

    data = generate(n, data_root)
    work = work_root / f"memory-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        [(result, _)] = measured([sys.executable, __file__, "--child", str(bench_conf(data, work, driver_memory))], cwd=REPO)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"n": n, **result}


def table(results: list[dict]) -> str:
    rows = [["N", "when", "RSS MiB", "heap MiB", "JVM native MiB", "untracked MiB"]]
    for r in results:
        moments = [(f"after {s} ({r['after'][s]['seconds']:.0f} s)", r["after"][s]) for s in STAGES]
        if r["peak"]:
            moments.insert(0, (f"peak (in {r['peak']['stage']})", r["peak"]))
        rows += [[f"{r['n']:,}", when, *[f"{m[c] / MIB:,.0f}" for c in COLUMNS]] for when, m in moments]
    return aligned(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="data set sizes (default 100000 1000000)")
    p.add_argument("--data", type=Path, default=REPO / "bench-data", help="data sets of gen_scale.py (default ./bench-data)")
    p.add_argument("--work", type=Path, default=REPO / "bench-work", help="lakes and outputs while it runs, memory.json (default ./bench-work)")
    p.add_argument("--driver-memory", metavar="SIZE", default="1g", help="the JVM's heap (default 1g)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    jcmd()  # before any work: say now if it is missing
    results = [measure(n, args.data.resolve(), args.work.resolve(), args.driver_memory) for n in args.n]
    heaps = sorted({r["heap_max"] for r in results})
    print(f"{table(results)}\n\n--driver-memory {args.driver_memory} (the JVM's max heap: "
          f"{', '.join(f'{h / MIB:,.0f} MiB' for h in heaps)}); {os.cpu_count()} cores")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "memory.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
