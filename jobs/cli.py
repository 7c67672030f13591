"""`instructlake run|ingest|generate|pairs|export [--conf FILE] [--set key=value ...]`.

Heavy modules (pyspark, the jobs) are imported only after the arguments
parse, so `--help` and conf errors answer at once.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

STAGES = ("run", "ingest", "generate", "pairs", "export")


class _StageFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stage = record.name.rsplit(".", 1)[-1]
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{stamp} [{stage}] {record.getMessage()}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instructlake", description="Build an instruction-tuning dataset with Spark and Delta Lake.")
    sub = p.add_subparsers(dest="command", required=True)
    helps = {
        "run": "the whole pipeline: ingest, generate, pairs, export",
        "ingest": "raw files into bronze Delta tables (one per source)",
        "generate": "synthetic question-answer pairs and Python functions with an LLM; programs run with their tests",
        "pairs": "bronze dialogues into the silver pairs table, with scores and drop reasons",
        "export": "kept pairs into JSON parts and manifest.json",
    }
    f = sub.add_parser("fetch", help="download the upstream source files (conf/sources.yaml) into the raw zone")
    f.add_argument("sources", nargs="*", help="sources to fetch (default: all), e.g. hh-rlhf mbpp")
    f.add_argument("--raw", default="raw", help="the raw zone: a folder or URI (default: ./raw)")
    f.add_argument("--base-url", default=None, help="fetch from a mirror: BASE/<host>/<path> (or $INSTRUCTLAKE_FETCH_BASE_URL)")
    f.add_argument("--catalog", default=None, help="the file list (default: conf/sources.yaml)")
    f.add_argument("--retries", type=int, default=5, help="retries per file on network errors (default 5)")
    for name in STAGES:
        s = sub.add_parser(name, help=helps[name])
        s.add_argument("--conf", default=None, help="YAML conf file (default: conf/local.yaml)")
        s.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="override a conf value, e.g. --set export.rows_per_part=500 (repeatable)",
        )
        if name == "export":
            s.add_argument("--as-of-version", type=int, default=None, help="export the pairs table as of this Delta version")
        if name in ("run", "pairs"):
            s.add_argument("--full", action="store_true", help="recompute every pair instead of only the new bronze rows")
    return p


def format_summary(counts: list[tuple[str, str | None, int]], output: str | None = None) -> str:
    """A plain-text table of rows per source and drop reason kind (the part of a reason
    before its first `:`, so `duplicate_of:<pair_id>` counts as `duplicate_of`)."""
    rows = [("source", "drop_reason", "rows")]
    by_source: dict[str, dict[str | None, int]] = {}
    for source, reason, n in counts:
        kind = reason.split(":", 1)[0] if reason is not None else None
        kinds = by_source.setdefault(source, {})
        kinds[kind] = kinds.get(kind, 0) + n
    for source in sorted(by_source):
        entries = list(by_source[source].items())
        kept = sum(n for r, n in entries if r is None)
        rows.append((source, "(kept)", str(kept)))
        for reason, n in sorted((r, n) for r, n in entries if r is not None):
            rows.append((source, reason, str(n)))
        rows.append((source, "(total)", str(sum(n for _, n in entries))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, r in enumerate(rows):
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}")
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if output:
        lines.append(f"\noutput: {output}")
    return "\n".join(lines)


def release_summary(result) -> str:
    """The funnel of an export and the paths of its report, card and files."""
    from jobs import storage
    from jobs.report import format_funnel

    names = [*result.manifest["report"].values(), result.manifest["card"], *[p["file"] for p in result.parts],
             *[f["file"] for f in result.files]]
    return format_funnel(result.report) + "\n\n" + "\n".join(f"written: {storage.join(result.output, n)}" for n in names)


def manifest_counts(manifest: dict) -> list[tuple[str, str | None, int]]:
    """(source, drop_reason, rows) from a manifest's counts; drop_reason None for the kept rows."""
    return [
        (source, reason, n)
        for source, entry in manifest["counts"].items()
        for reason, n in [(None, entry["kept"]), *entry["dropped"].items()]
    ]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StageFormatter())
    root = logging.getLogger("instructlake")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False

    from jobs.confload import ConfigError
    from jobs.config import load_config

    if args.command == "fetch":
        return _fetch(args)
    try:
        conf = load_config(args.conf, args.overrides)
    except ConfigError as e:
        print(f"instructlake: configuration error: {e}", file=sys.stderr)
        return 2
    return _run(args, conf)


def _fetch(args) -> int:
    from jobs.confload import ConfigError
    from jobs.fetch import FetchError, fetch, load_catalog

    try:
        result = fetch(args.sources, args.raw, args.base_url, load_catalog(args.catalog), retries=args.retries)
    except (ConfigError, FetchError) as e:
        print(f"instructlake: fetch failed: {e}", file=sys.stderr)
        return 2
    print(
        f"{len(result.downloaded)} file(s) downloaded, {len(result.skipped)} already present and verified, "
        f"{len(result.extracted)} extracted, in {args.raw}"
    )
    return 0


def _run(args, conf) -> int:
    from jobs import storage
    from jobs.lake import RunContext
    from jobs.ingest import IngestCheckError
    from jobs.generate_qa import GenerationError
    from jobs.pairs import MissingTableError
    from jobs.session import DeltaUnavailableError, get_spark

    run = RunContext()
    log = logging.getLogger("instructlake.run")
    started = time.monotonic()
    try:
        log.info("run %s: starting Spark", run.run_id)
        spark = get_spark(conf.spark)
        log.info("Spark %s ready (master %s) in %.1fs", spark.version, spark.sparkContext.master, time.monotonic() - started)
        counts, output, exported = None, None, None
        if args.command in ("run", "ingest"):
            from jobs.ingest import run_ingest

            run_ingest(spark, conf, run)
        if args.command in ("run", "generate"):
            from jobs.generate_code import run_code
            from jobs.generate_qa import run_generate

            generated = run_generate(spark, conf, run)
            coded = run_code(spark, conf, run)
            counts = (generated.counts if generated is not None else []) + (coded.counts if coded is not None else [])
        if args.command in ("run", "pairs"):
            from jobs.pairs import run_pairs

            counts = run_pairs(spark, conf, run, full=args.full).counts
        if args.command in ("run", "export"):
            from jobs.export import run_export

            result = run_export(spark, conf, run, getattr(args, "as_of_version", None))
            output = result.output
            counts = manifest_counts(result.manifest)
            exported = result
    except (storage.InputNotFoundError, MissingTableError, DeltaUnavailableError, IngestCheckError, FileNotFoundError, GenerationError) as e:
        print(f"instructlake: error: {e}", file=sys.stderr)
        return 2
    if counts is not None:
        print(format_summary(counts, output))
    if exported is not None:
        print("\n" + release_summary(exported))
    log.info("done in %.1fs", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
