"""The Spark jobs of a run, from its event log: what ran, on how many tasks, for how long.

`spark.eventLog.enabled` writes one JSON event a line. This reads the jobs
(in order, with the call site that started them: the pipeline's own Python
line), each job's stages with their task counts, and per stage the input,
shuffle and output sizes and the time its tasks ran. `compare` lines two
runs of the same code at two input sizes up job by job and names the
stages that stay at one task while the data they handle grows: the work
that stays serial however many cores or machines run it.

    .venv/bin/python benchmarks/spark_jobs.py EVENT_LOG [EVENT_LOG_AT_LARGER_N]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    id: int
    name: str
    tasks: int
    seconds: float = 0.0            # from submission to completion
    task_seconds: float = 0.0       # summed over its tasks
    bytes_in: int = 0               # input + shuffle read
    bytes_out: int = 0              # output + shuffle write
    records_in: int = 0
    skipped: bool = True            # a stage of a job's plan that was not run (its shuffle output reused)


@dataclass
class Job:
    id: int
    site: str
    seconds: float = 0.0
    stages: list[Stage] = field(default_factory=list)

    @property
    def run_stages(self) -> list[Stage]:
        return [s for s in self.stages if not s.skipped]


def _site(props: dict) -> str:
    site = props.get("callSite.short") or props.get("spark.job.description") or "?"
    return site.split("\n")[0]


def _lines(files: list[Path]):
    for path in files:
        with open(path, encoding="utf-8") as f:
            yield from f


def read_jobs(files: list[Path]) -> list[Job]:
    """The jobs of one application's event log files, in order."""
    jobs: dict[int, Job] = {}
    stages: dict[int, Stage] = {}
    starts: dict[int, float] = {}
    for line in _lines(files):
        e = json.loads(line)
        kind = e["Event"]
        if kind == "SparkListenerJobStart":
            job = Job(e["Job ID"], _site(e.get("Properties") or {}))
            for info in e["Stage Infos"]:
                stage = stages.setdefault(info["Stage ID"], Stage(info["Stage ID"], info["Stage Name"], info["Number of Tasks"]))
                job.stages.append(stage)
            jobs[job.id] = job
            starts[job.id] = e["Submission Time"]
        elif kind == "SparkListenerJobEnd":
            jobs[e["Job ID"]].seconds = (e["Completion Time"] - starts[e["Job ID"]]) / 1000
        elif kind == "SparkListenerStageCompleted":
            info = e["Stage Info"]
            stage = stages.setdefault(info["Stage ID"], Stage(info["Stage ID"], info["Stage Name"], info["Number of Tasks"]))
            stage.skipped = False
            stage.tasks = info["Number of Tasks"]
            if info.get("Completion Time") and info.get("Submission Time"):
                stage.seconds = (info["Completion Time"] - info["Submission Time"]) / 1000
        elif kind == "SparkListenerTaskEnd" and e.get("Task Metrics"):
            stage = stages.get(e["Stage ID"])
            if stage is None:
                continue
            m = e["Task Metrics"]
            info = e["Task Info"]
            stage.task_seconds += (info["Finish Time"] - info["Launch Time"]) / 1000
            shuffle_in = m.get("Shuffle Read Metrics", {})
            stage.bytes_in += m.get("Input Metrics", {}).get("Bytes Read", 0) + shuffle_in.get("Remote Bytes Read", 0) \
                + shuffle_in.get("Local Bytes Read", 0)
            stage.records_in += m.get("Input Metrics", {}).get("Records Read", 0) + shuffle_in.get("Total Records Read", 0)
            stage.bytes_out += m.get("Output Metrics", {}).get("Bytes Written", 0) \
                + m.get("Shuffle Write Metrics", {}).get("Shuffle Bytes Written", 0)
    return [jobs[k] for k in sorted(jobs)]


def event_logs(path: Path) -> list[Path]:
    """The event log files of one application: `path` itself, or the files of the folder (Spark 4
    writes `eventlog_v2_<app>/events_<k>_<app>` and rolls it over to k+1), uncompressed
    (`spark.eventLog.compress=false`)."""
    if path.is_file():
        return [path]
    files = sorted(path.rglob("events_*"), key=lambda p: int(p.name.split("_")[1]))
    if not files:
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not files or any(p.suffix in (".zstd", ".lz4", ".snappy", ".lzf") for p in files):
        raise SystemExit(f"{path}: no uncompressed event log (spark.eventLog.compress=false)")
    return files


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f}"


def listing(jobs: list[Job]) -> str:
    """A line per job: id, seconds, the task count of each stage it ran, the call site."""
    lines = [f"{len(jobs)} jobs, {sum(j.seconds for j in jobs):,.1f} s in jobs"]
    for j in jobs:
        tasks = "+".join(str(s.tasks) for s in j.run_stages) or "-"
        lines.append(f"  job {j.id:>3}  {j.seconds:7.1f} s  tasks {tasks:<14} in {_mib(sum(s.bytes_in for s in j.run_stages)):>9} MiB  {j.site}")
    return "\n".join(lines)


def serial_stages(small: list[Job], large: list[Job], growth: float = 2.0) -> list[str]:
    """Stages run on one task at both sizes whose input grew by `growth` times or more, or whose
    time did (the jobs paired by call site, in order)."""
    by_site: dict[str, list[Job]] = {}
    for j in small:
        by_site.setdefault(j.site, []).append(j)
    seen: dict[str, int] = {}
    found = []
    for j in large:
        k = seen.get(j.site, 0)
        seen[j.site] = k + 1
        twins = by_site.get(j.site, [])
        if k >= len(twins):
            continue
        twin = twins[k]
        for a, b in zip(twin.run_stages, j.run_stages):
            if a.tasks == 1 and b.tasks == 1:
                grew = (b.bytes_in > growth * max(a.bytes_in, 1 << 20)) or (b.task_seconds > growth * max(a.task_seconds, 1.0))
                if grew:
                    found.append(f"job {j.id} ({j.site}): stage '{b.name}' one task, input {_mib(a.bytes_in)} -> "
                                 f"{_mib(b.bytes_in)} MiB, {a.task_seconds:.1f} -> {b.task_seconds:.1f} s")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("logs", type=Path, nargs="+", help="an event log file or a folder holding one; two to compare")
    args = p.parse_args(argv)
    runs = [read_jobs(event_logs(x)) for x in args.logs]
    for path, jobs in zip(args.logs, runs):
        print(f"{path}:\n{listing(jobs)}\n")
    if len(runs) == 2:
        found = serial_stages(*runs)
        print("serial stages whose input or time grows with N: " + ("none" if not found else ""))
        for line in found:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
