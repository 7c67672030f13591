"""Cost against input size: instructlake's cheap path and the plain single-process script.

For each N (dialogues), on the data set of `benchmarks/gen_scale.py` (made
when missing), back to back:

- baseline: `benchmarks/baseline.py` in its own process;
- instructlake: the stages of the CLI (ingest, pairs, export) in a fresh
  process with a fresh lake, conf `benchmarks/bench.yaml` (local[2], no
  model filter). Starting the JVM and the Spark session is timed apart
  from the work;
- instructlake, warm JVM: the same three stages once more in the same
  process, on a fresh lake and output folder, as a long-lived session
  (a Databricks cluster, a notebook) runs them: the classes are loaded and
  the JIT compiler has compiled Spark's and Delta's code paths, the first
  run's cost that the session start does not show.

Each process's peak memory is sampled (psutil, every 0.1 s) as the RSS summed
over its process tree: the driver's Python, the JVM, the Python workers;
the warm run's peak is taken from the end of the first run on (its JVM has
grown already, and the RSS of a JVM rarely shrinks). Then the outputs are
read back and compared as sets of `[source, text]` elements. One table is
printed; the numbers also go to `<work>/results.json`. `--driver-memory`
sets the JVM's heap (local mode's executor memory; 2g by default, as in the
pipeline's local mode): run at two N with the same heap, it shows whether the
peak grows with N or stays within what was configured.

    .venv/bin/python benchmarks/run_bench.py [--n 10000 100000] [--data bench-data] [--work bench-work] [--driver-memory 2g]
    make bench                       # N = 10^4, 10^5
    make bench BENCH_N="1000000"     # 10^6 (about 3 GB of data; see README)
    make bench BENCH_HEAP=1g         # the same with a 1 GiB heap

The machine's load average is printed with the table: the timings are
wall-clock times, and other processes on the machine slow both runs alike.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instructlake.core.session import LOCAL_DEFAULTS, jvm_off_heap  # noqa: E402

STAGES = ("ingest", "pairs", "export")
DEFAULT_HEAP = LOCAL_DEFAULTS["spark.driver.memory"]


class PeakRss(threading.Thread):
    """Samples the RSS of a process tree; `peak` holds the largest sums seen (bytes)."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        import psutil

        self.root, self.every, self.done, self.lock = psutil.Process(pid), every, threading.Event(), threading.Lock()
        self.peak = {"total": 0, "jvm": 0, "python_workers": 0, "driver": 0}

    def _sample(self) -> dict:
        import psutil

        sums = {"jvm": 0, "python_workers": 0, "driver": 0}
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                rss, name, argv = p.memory_info().rss, p.name(), p.cmdline()
            except psutil.Error:
                continue
            if argv and os.path.basename(argv[0]) == "java" and name != "java":
                # A JVM thread starting a process (a Python worker, a shell command): until its exec
                # the child shares the JVM's memory and reports the JVM's RSS. Not counted twice.
                continue
            kind = "jvm" if name == "java" else "python_workers" if "pyspark" in " ".join(argv) and p != self.root else "driver"
            sums[kind] += rss
        return sums

    def run(self) -> None:
        import psutil

        while not self.done.is_set():
            try:
                sums = self._sample()
            except psutil.Error:
                break
            with self.lock:
                for k, v in [*sums.items(), ("total", sum(sums.values()))]:
                    self.peak[k] = max(self.peak[k], v)
            self.done.wait(self.every)

    def take(self) -> dict:
        """The peaks so far, which start again from zero."""
        with self.lock:
            peak, self.peak = self.peak, dict.fromkeys(self.peak, 0)
        return peak


def measured(cmd: list[str], **kw) -> list[tuple[dict, dict]]:
    """Run `cmd`; for each JSON line it prints (one per run of the work), that line and the peak
    RSS by kind since the previous one."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **kw)
    sampler = PeakRss(proc.pid)
    sampler.start()
    runs = [(json.loads(line), sampler.take()) for line in proc.stdout if line.startswith("{")]
    proc.wait()
    sampler.done.set()
    sampler.join()
    if proc.returncode != 0 or not runs:
        raise SystemExit(f"{cmd[1]} failed with status {proc.returncode}")
    return runs


def bench_conf(data: Path, work: Path, driver_memory: str) -> Path:
    """A conf extending bench.yaml with this data set, lake and output, and the JVM's heap
    (`spark.driver.memory`, local mode's executor memory)."""
    import yaml

    conf = {
        "extends": str(REPO / "benchmarks" / "bench.yaml"),
        "sources": [
            {"name": "helpful_online", "label": "hh_helpful", "format": "hh_rlhf", "paths": [str(data / "hh-rlhf" / "helpful-online")]},
            {"name": "helpful_rejection_sampled", "label": "hh_helpful", "format": "hh_rlhf", "paths": [str(data / "hh-rlhf" / "helpful-rejection-sampled")]},
            {"name": "red_team_attempts", "label": "hh_harmless", "format": "red_team", "paths": [str(data / "red-team-attempts")]},
        ],
        "paths": {"lake": str(work / "lake"), "output": str(work / "out")},
        "spark": {"options": {"spark.driver.memory": driver_memory}},
    }
    path = work / "bench.yaml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False))
    return path


def child(conf_path: str) -> int:
    """The instructlake side, in its own process: session start, then each stage timed, in a cold
    JVM and again in the warm one; a JSON line per run on stdout."""
    import logging

    from instructlake.jobs.runner import load_config
    from instructlake.core.session import get_spark

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s [%(name)s] %(message)s")
    conf = load_config(conf_path, [])
    t = time.monotonic()
    spark = get_spark(conf.spark)
    spark.range(1).count()  # the first job starts the executor side
    session = time.monotonic() - t
    _timed_stages(spark, conf, "cold", session)
    # The same work again on a fresh lake and output, in the now warm JVM.
    warm = load_config(conf_path, [f"paths.lake={conf.paths.lake}_warm", f"paths.output={conf.paths.output}_warm"])
    _timed_stages(spark, warm, "warm", None)
    return 0


def stage_runs() -> list[tuple]:
    """(name, function) of each of `STAGES`, as the CLI runs them: function(spark, conf, run)."""
    from instructlake.jobs.stages.export import run_export
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.jobs.stages.pairs import run_pairs

    return list(zip(STAGES, (run_ingest, run_pairs, run_export)))


def _timed_stages(spark, conf, name: str, session) -> None:
    """Ingest, pairs and export timed, on `conf`'s lake; one JSON line on stdout (the parent takes
    the run's peak memory when it reads it)."""
    from instructlake.core.lake import RunContext

    run = RunContext()
    seconds = {"session": session}
    for stage, fn in stage_runs():
        t = time.monotonic()
        result = fn(spark, conf, run)
        seconds[stage] = time.monotonic() - t
    seconds["work"] = sum(seconds[s] for s in STAGES)
    counts = result.manifest["counts"]
    print(json.dumps({
        "run": name, "seconds": seconds, "release": result.output,
        "rows_read": sum(c["read"] for c in counts.values()), "rows_kept": result.total_rows,
        "jvm_max_heap": spark._jvm.java.lang.Runtime.getRuntime().maxMemory(),  # what the JVM took of --driver-memory
        "jvm_off_heap": jvm_off_heap(spark),
    }), flush=True)


def element_digests(files: list[Path]) -> list[bytes]:
    """Sorted sha256 of every `[source, text]` element of the JSON parts."""
    out = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for source, text in json.load(f):
                out.append(hashlib.sha256(json.dumps([source, text]).encode()).digest())
    return sorted(out)


def bench_one(n: int, data_root: Path, work_root: Path, keep: bool, driver_memory: str) -> list[dict]:
    from benchmarks.gen_scale import generate

    data = generate(n, data_root)
    work = work_root / str(n)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    py = sys.executable
    [(base, base_mem)] = measured([py, str(REPO / "benchmarks" / "baseline.py"), str(data), str(work / "baseline")])
    cold, warm = measured([py, __file__, "--child", str(bench_conf(data, work, driver_memory))], cwd=REPO)
    base_pairs = element_digests(sorted((work / "baseline").glob("*.json")))
    runs = [
        (name, r, mem, base_pairs == element_digests(sorted(Path(r["release"].removeprefix("file:")).glob("*_part*.json"))))
        for name, (r, mem) in (("instructlake", cold), ("instructlake, warm JVM", warm))
    ]
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    # The baseline's row says whether every instructlake run made the same pairs as it.
    for name, r, mem, same_pairs in [("baseline", base, base_mem, all(same for *_, same in runs)), *runs]:
        s = r["seconds"]
        work_s = s.get("work", s.get("total"))
        rows.append({
            "n": n, "impl": name, "session_s": s.get("session"), **{f"{k}_s": s[k] for k in STAGES},
            "work_s": work_s, "rows_per_s": n / work_s, "rows_read": r["rows_read"], "rows_kept": r["rows_kept"],
            "peak_rss": mem, "same_pairs": same_pairs, "jvm_max_heap": r.get("jvm_max_heap"), "jvm_off_heap": r.get("jvm_off_heap"),
        })
    return rows


def rss_text(m: dict) -> str:
    """A peak of `PeakRss` in MiB: the total, then (JVM/Python workers) when a JVM ran."""
    mib = 1 << 20
    return f"{m['total'] / mib:,.0f}" + (f" ({m['jvm'] / mib:,.0f}/{m['python_workers'] / mib:,.0f})" if m["jvm"] else "")


def table(rows: list[dict]) -> str:
    head = ["N", "impl", "session s", "ingest s", "pairs s", "export s", "work s", "rows/s",
            "peak RSS MiB (JVM/workers)", "kept", "same pairs", "speed-up"]
    lines = [head]
    base = {r["n"]: r["work_s"] for r in rows if r["impl"] == "baseline"}
    for r in rows:
        memory = rss_text(r["peak_rss"])
        lines.append([
            f"{r['n']:,}", r["impl"], "-" if r["session_s"] is None else f"{r['session_s']:.1f}",
            *[f"{r[f'{k}_s']:.1f}" for k in STAGES], f"{r['work_s']:.1f}", f"{r['rows_per_s']:,.0f}",
            memory, f"{r['rows_kept']:,}", "yes" if r["same_pairs"] else "NO",
            f"{base[r['n']] / r['work_s']:.2f}x",
        ])
    return aligned(lines)


def aligned(lines: list[list[str]], left: tuple[int, ...] = (1,)) -> str:
    """Rows of cells as a text table: the first row a header, then a rule; the columns of `left`
    (default: the second) to the left, the others to the right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def off_heap_lines(rows: list[dict]) -> str:
    """A line per instructlake run: what its JVM held beyond the heap (`jvm_off_heap`)."""
    mib = 1 << 20
    return "\n".join(
        f"N={r['n']:,} {r['impl']}: beyond the heap, metaspace {m['metaspace'] / mib:,.0f} MiB and compiled code "
        f"{m['code'] / mib:,.0f} MiB at their peaks since the JVM started, direct buffers {m['direct'] / mib:,.0f} MiB at the end"
        for r in rows if (m := r["jvm_off_heap"])
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000], help="data set sizes (default 10000 100000)")
    p.add_argument("--data", type=Path, default=REPO / "bench-data", help="data sets of gen_scale.py (default ./bench-data)")
    p.add_argument("--work", type=Path, default=REPO / "bench-work", help="lakes, outputs, results.json (default ./bench-work)")
    p.add_argument("--keep", action="store_true", help="keep each N's lake and outputs")
    p.add_argument("--driver-memory", metavar="SIZE", default=DEFAULT_HEAP,
                   help=f"the JVM's heap, local mode's executor memory (default {DEFAULT_HEAP}, as the pipeline's)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    rows = []
    for n in args.n:
        load = os.getloadavg()
        rows += bench_one(n, args.data.resolve(), args.work.resolve(), args.keep, args.driver_memory)
        print(f"N={n:,} done (load average before: {load[0]:.2f})", file=sys.stderr)
    report = table(rows)
    load = os.getloadavg()
    heaps = sorted({r["jvm_max_heap"] for r in rows if r["jvm_max_heap"]})
    heap = f"--driver-memory {args.driver_memory} (the JVM's max heap: {', '.join(f'{h / (1 << 20):,.0f} MiB' for h in heaps)})"
    print(f"{report}\n\n{off_heap_lines(rows)}\n{heap}; {os.cpu_count()} cores; load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["same_pairs"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
