"""`instructlake run|ingest|generate|pairs|export|fetch|qa-check [--conf FILE] [--set key=value ...]`.

`--conf` is a path, or the name of a conf shipped in the package (`databricks.yaml`);
`--catalog`, `--lake`, `--output` and `--compute` set one conf key each (for jobs that
pass named parameters); `instructlake-<stage>` runs `instructlake <stage>`.

The subcommands are the stage list's (`instructlake.jobs.runner.STAGES`),
`run` runs them all in order, `fetch` downloads the raw sources, and
`qa-check --input FILE --output DIR` runs the conf's question-answer checks
over a QA data set of one's own (`instructlake.jobs.stages.qa_check`). Any
`InstructlakeError` (a conf error, a missing input or table, an unusable
model or sandbox) is printed as one line with exit status 2. The closing
summary fits 100 columns: rows per source and the stages that dropped them;
the full funnel is in the release's report.json and report.html.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from instructlake.core.errors import InstructlakeError
from instructlake.core.lake import RunContext
from instructlake.core.session import get_spark, master_of
from instructlake.jobs.notebook import resolve_conf_path
from instructlake.jobs.runner import STAGES, Options, exclusive, load_config, run_pipeline
from instructlake.jobs.stages.fetch import fetch, load_catalog
from instructlake.jobs.stages.qa_check import run_qa_check, summary_table
from instructlake.jobs.summary import summary


# Options that set one conf key each, so that a job can pass them as named parameters
# (a Databricks python_wheel_task's `named_parameters` become `--name=value`).
SHORTHANDS = [
    ("catalog", "paths.catalog", "tables by name in this <catalog>.<schema>"),
    ("lake", "paths.lake", "the folder or URI of the tables"),
    ("output", "paths.output", "the folder or URI of the releases"),
    ("compute", "spark.compute", "classic or serverless"),
]


def overrides_of(args) -> list[str]:
    """The `--set` overrides and those of the shorthand options given (these last)."""
    return [*args.overrides, *[f"{key}={getattr(args, option)}" for option, key, _ in SHORTHANDS
                               if getattr(args, option, None) is not None]]


class _StageFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stage = record.name.rsplit(".", 1)[-1]
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{stamp} [{stage}] {record.getMessage()}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instructlake", description="Build an instruction-tuning dataset with Spark and Delta Lake.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download the upstream source files (conf/sources.yaml) into the raw zone")
    f.add_argument("sources", nargs="*", help="sources to fetch (default: all), e.g. hh-rlhf mbpp")
    f.add_argument("--raw", default="raw", help="the raw zone: a folder or URI (default: ./raw)")
    f.add_argument("--base-url", default=None, help="fetch from a mirror: BASE/<host>/<path> (or $INSTRUCTLAKE_FETCH_BASE_URL)")
    f.add_argument("--catalog", default=None, help="the file list (default: conf/sources.yaml)")
    f.add_argument("--retries", type=int, default=5, help="retries per file on network errors (default 5)")
    commands = [("run", "the whole pipeline: " + ", ".join(s.name for s in STAGES))] + [(s.name, s.help) for s in STAGES]
    commands.append(("qa-check", "run the conf's question-answer checks over JSON lines of {context, question, answer}"))
    for name, help_text in commands:
        s = sub.add_parser(name, help=help_text)
        s.add_argument("--conf", default=None, help="YAML conf file (default: conf/local.yaml)")
        s.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="override a conf value, e.g. --set export.rows_per_part=500 (repeatable)",
        )
        for option, key, text in SHORTHANDS if name != "qa-check" else []:
            s.add_argument(f"--{option}", default=None, metavar=key.split(".")[-1].upper(), help=f"{text} (sets {key})")
        if name == "qa-check":
            s.add_argument("--input", required=True, action="append", help="JSON lines: a file, folder or glob (repeatable)")
            s.add_argument("--output", required=True, help="the folder for verdicts.jsonl and summary.json")
        if name in ("run", "export"):
            s.add_argument("--as-of-version", type=int, default=None, help="export the pairs table as of this Delta version")
        if name in ("run", "pairs"):
            s.add_argument("--full", action="store_true", help="recompute every pair instead of only the new candidates")
    return p


# --- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StageFormatter())
    root = logging.getLogger("instructlake")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    try:
        if args.command == "fetch":
            return _fetch(args)
        if args.command == "qa-check":
            return _qa_check(args)
        return _run(args)
    except InstructlakeError as e:
        print(f"instructlake: error: {e}", file=sys.stderr)
        return 2


def submit(command: str) -> None:
    """The entry of `spark-submit jobs/<stage>.py ARGS` and of the `instructlake-<stage>` console
    scripts: `instructlake <command> ARGS`."""
    raise SystemExit(main([command, *sys.argv[1:]]))


# The console scripts instructlake-<stage> (a Databricks python_wheel_task's entry points).
def ingest() -> None:
    submit("ingest")


def generate() -> None:
    submit("generate")


def pairs() -> None:
    submit("pairs")


def export() -> None:
    submit("export")


def _fetch(args) -> int:
    result = fetch(args.sources, args.raw, args.base_url, load_catalog(args.catalog), retries=args.retries)
    print(
        f"{len(result.downloaded)} file(s) downloaded, {len(result.skipped)} already present and verified, "
        f"{len(result.extracted)} extracted, in {args.raw}"
    )
    return 0


def _with_spark(args, name: str, work, stages: tuple[str, ...] = ()) -> int:
    """Load the conf, take the locks of `stages` (before Spark starts: a run that cannot have
    them stops at once), start Spark, print what `work(spark, conf, run)` returns, and log the
    time."""
    conf = load_config(resolve_conf_path(args.conf) if args.conf else None, overrides_of(args))
    if stages:
        with exclusive(conf, stages):
            return _started(conf, name, work)
    return _started(conf, name, work)


def _started(conf, name: str, work) -> int:
    run = RunContext()
    log = logging.getLogger(f"instructlake.{name}")
    started = time.monotonic()
    log.info("run %s: starting Spark", run.run_id)
    spark = get_spark(conf.spark)
    log.info("Spark %s ready (master %s) in %.1fs", spark.version, master_of(spark), time.monotonic() - started)
    print(work(spark, conf, run))
    log.info("done in %.1fs", time.monotonic() - started)
    return 0


def _qa_check(args) -> int:
    return _with_spark(args, "qa_check", lambda spark, conf, run: summary_table(
        run_qa_check(spark, conf, args.input, args.output, run)))


def _run(args) -> int:
    stages = tuple(s.name for s in STAGES) if args.command == "run" else (args.command,)
    options = Options(full=getattr(args, "full", False), as_of_version=getattr(args, "as_of_version", None))
    return _with_spark(args, "run", lambda spark, conf, run: summary(run_pipeline(spark, conf, run, options, stages)),
                       stages)


if __name__ == "__main__":
    raise SystemExit(main())
