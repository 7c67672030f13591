"""The seed-scale build, measured instead of extrapolated: every stage of the default conf on the seed's input sizes.

Inputs, under `<data>/scale-<F>/` (F is `--scale`; made when missing):

| source | records | file |
|---|---:|---|
| helpful_online | 22,007 | `hh-rlhf/helpful-online/train.jsonl.gz`, made |
| helpful_rejection_sampled | 52,421 | `hh-rlhf/helpful-rejection-sampled/train.jsonl.gz`, made |
| red_team_attempts | 38,961 | `red-team-attempts/red_team_attempts.jsonl.gz`, made |
| conala | 2,379 | the real `../shared/data/conala/conala-train.json` |
| mbpp | 974 | the real `../shared/data/mbpp/mbpp.jsonl` |
| wikitext | 200 paragraphs | `wikitext/wiki.test.first-200.raw`, cut from the real WikiText-2 test file |

The made files are perturbed real dialogues (`gen_scale.generate_counts`:
the HH-RLHF test files and the red-team sample), the wikitext file the lines
of `../shared/data/wikitext/wikitext-2-raw/wiki.test.raw` up to its 200th
paragraph line, headings included. Below scale 1, CoNaLa and MBPP are cut
to evenly spaced records, counted from the last one back (MBPP's last
tasks are its train split, whose tasks the generated functions' prompts
need).

The HH counts are those of the upstream train splits (the Hugging Face card
of Anthropic/hh-rlhf: 22,007 and 52,421, 74,428 in all), the red-team count
the upstream README's. Each of those is one file, named and formatted like
the upstream one (JSON lines of `{chosen, rejected}`; the red-team file one
gzipped JSON array), so one task reads each, as in a build on the real
files. No setting limits the paragraphs a `web_text` source reads
(`qa.max_paragraphs` bounds those that get questions), hence the file of the
first 200.

The conf, `<work>/seed-scale.yaml`, extends `conf/local.yaml`, the CLI's
default conf and the one whose every stage runs offline here (base.yaml's
Detoxify scorer needs its released weights from the network). It differs
from local.yaml in `sources` (the six above; HumanEval stays off, as there)
and `paths.lake`, `paths.output` (`<work>/lake`, `<work>/out`, removed
first), nothing else. So, as in local.yaml: the template-token, length,
red-team rating and decontamination filters, langdetect, alt-profanity-check
for toxicity, PII redaction, exact and near dedup, MBPP's tests and the
generated functions run in the bubblewrap sandbox, the embedded
SmolLM2-135M-Instruct asking questions on `qa.max_paragraphs` (5) of the
paragraphs and writing `code.generate.count` (16) functions, the preference
and conversations products, the seven export formats. With `--scale` below 1
every input count is multiplied by it, and so are those two generation
counts (at least 1 each, written into the conf). `--set KEY=VALUE` overrides
are passed on as `instructlake run --set` would; they are printed and
recorded, and a run with any is no longer the default conf's.

One fresh process runs `instructlake run`'s stages: the Spark session, then
`runner.run_stage` for each of `runner.STAGES` in order under one run id,
each timed. It prints a JSON line after each, so the parent's sampler
(`run_bench.measured`, every 0.1 s) gives each its peak RSS of the process
tree: JVM, Python workers (the UDFs and the model), driver (the driver's
Python, and the sandbox's programs, which are not PySpark's). The JVM's RSS
rarely shrinks, so a stage's peak includes what the stages before it left.

Recorded: wall seconds and peak RSS per stage, the rows ingested per source,
the pairs kept per source label, the synthetic pairs kept (`synthetic_qa`
and `python_code`) and the generate stage's seconds per kept synthetic
pair. From that rate, a projection, not a measurement: the seed's ~15,000
synthetic pairs (15,000 x seconds per kept pair), and the build's total
with that in place of the measured generate stage. It assumes the stage's
time grows in proportion to the pairs it keeps, at this run's keep rate (the
stage also runs MBPP's own tests, counted in its seconds). The seconds of model calls and program runs among them are
printed beside it; the rest is the stage's Spark work (its tables, the
paragraphs' selection, the cache look-ups). One table is printed; the
numbers also go to `<work>/seed-scale.json`.

    .venv/bin/python benchmarks/seed_scale.py                   # the seed's sizes
    .venv/bin/python benchmarks/seed_scale.py --scale 0.005     # a check end to end, a few minutes
    .venv/bin/python benchmarks/seed_scale.py [--data bench-data/seed-scale] [--work bench-work/seed-scale] [--set KEY=VALUE ...]

The timings are wall-clock times: other processes on the machine slow the
run (the load average is printed with the table).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.run_bench import aligned, measured  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
CONALA = SHARED / "conala" / "conala-train.json"
MBPP = SHARED / "mbpp" / "mbpp.jsonl"
WIKITEXT = SHARED / "wikitext" / "wikitext-2-raw" / "wiki.test.raw"
LOCAL_CONF = REPO / "conf" / "local.yaml"

# Records per source at scale 1: the upstream train splits (HH-RLHF), the upstream red-team file,
# the real CoNaLa and MBPP files, and WikiText paragraphs for the question-answer pairs.
SEED_INPUTS = {
    "helpful_online": 22_007,
    "helpful_rejection_sampled": 52_421,
    "red_team_attempts": 38_961,
    "conala": 2_379,
    "mbpp": 974,
    "wikitext": 200,
}
# gen_scale.UPSTREAM_FILES' name of each generated source.
GENERATED = {"helpful_online": "helpful-online", "helpful_rejection_sampled": "helpful-rejection-sampled",
             "red_team_attempts": "red-team-attempts"}
SYNTHETIC_LABELS = ("synthetic_qa", "python_code")
SEED_SYNTHETIC_PAIRS = 15_000  # the seed's synthetic_qa rows (export.seed_rows in conf/base.yaml)


def scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


def spread(total: int, n: int) -> list[int]:
    """`n` of the indices 0..total-1, evenly spaced from the last one back (so MBPP's train split,
    its last 374 tasks, always gives the generated functions their examples), in file order."""
    return sorted({total - 1 - (i * total) // n for i in range(n)})


def first_paragraphs(src: Path, dest: Path, n: int) -> int:
    """Write the lines of WikiText raw file `src` up to its `n`-th paragraph line (headings and blank
    lines kept, line ends as they are); returns the paragraphs the web_text parser finds in it."""
    from instructlake.udfs.webtext import parse_wikitext, wikitext_heading

    with open(src, encoding="utf-8", newline="") as f:
        text = f.read()
    lines, seen = [], 0
    for line in text.splitlines(keepends=True):
        if seen == n:
            break
        lines.append(line)
        seen += bool(line.strip()) and wikitext_heading(line) is None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", encoding="utf-8", newline="") as f:
        f.write("".join(lines))
    with open(dest, encoding="utf-8", newline="") as f:
        return sum(1 for _ in parse_wikitext(f.read(), dest.name))


def make_inputs(data: Path, scale: float) -> tuple[Path, dict[str, int], dict[str, list[str]]]:
    """The inputs at `scale` under `data/scale-<scale>`: (folder, records per source, paths per source)."""
    from benchmarks.gen_scale import UPSTREAM_FILES, generate_counts

    counts = {name: scaled(n, scale) for name, n in SEED_INPUTS.items()}
    root = data / f"scale-{scale:g}"
    generate_counts({GENERATED[s]: counts[s] for s in GENERATED}, root)
    paths = {s: [str(root / UPSTREAM_FILES[g][0])] for s, g in GENERATED.items()}
    if scale == 1:
        paths["conala"], paths["mbpp"] = [str(CONALA)], [str(MBPP)]
    else:
        records = json.loads(CONALA.read_text(encoding="utf-8"))
        conala = root / "conala" / "conala-train.json"
        conala.parent.mkdir(parents=True, exist_ok=True)
        conala.write_text(json.dumps([records[i] for i in spread(len(records), counts["conala"])]), encoding="utf-8")
        lines = MBPP.read_text(encoding="utf-8").splitlines(keepends=True)
        mbpp = root / "mbpp" / "mbpp.jsonl"
        mbpp.parent.mkdir(parents=True, exist_ok=True)
        mbpp.write_text("".join(lines[i] for i in spread(len(lines), counts["mbpp"])), encoding="utf-8")
        paths["conala"], paths["mbpp"] = [str(conala)], [str(mbpp)]
    wiki = root / "wikitext" / f"wiki.test.first-{counts['wikitext']}.raw"
    found = first_paragraphs(WIKITEXT, wiki, counts["wikitext"])
    if found != counts["wikitext"]:
        raise SystemExit(f"{wiki}: {found} paragraphs, {counts['wikitext']} wanted")
    paths["wikitext"] = [str(wiki)]
    return root, counts, paths


def seed_conf(work: Path, paths: dict[str, list[str]], scale: float) -> tuple[Path, dict]:
    """`<work>/seed-scale.yaml`: local.yaml with the paths of its sources replaced by `paths` (names,
    labels, formats and order as there), a lake and an output under `work`, and below scale 1 the
    generation counts scaled; returns its path and the generation counts it sets (empty at scale 1)."""
    import yaml

    from instructlake.jobs.runner import load_config

    local = load_config(LOCAL_CONF)
    missing = sorted({s.name for s in local.sources} ^ set(paths))
    if missing:
        raise SystemExit(f"the sources of {LOCAL_CONF} and of this benchmark differ: {missing}")
    conf = {
        "extends": str(LOCAL_CONF),
        "paths": {"lake": str(work / "lake"), "output": str(work / "out")},
        "sources": [{"name": s.name, "label": s.label, "format": s.format, "paths": paths[s.name],
                     **({} if s.enabled else {"enabled": False})} for s in local.sources],
    }
    counts = {}
    if scale < 1:
        for key, value in [("qa.max_paragraphs", local.qa.max_paragraphs), ("code.generate.count", local.code.generate.count)]:
            if value:
                counts[key] = scaled(value, scale)
        if "qa.max_paragraphs" in counts:
            conf["qa"] = {"max_paragraphs": counts["qa.max_paragraphs"]}
        if "code.generate.count" in counts:
            conf["code"] = {"generate": {"count": counts["code.generate.count"]}}
    path = work / "seed-scale.yaml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False))
    return path, counts


# --- the build, in its own process ---------------------------------------------------------------

def child(conf_path: str, overrides: list[str]) -> int:
    """The stages of `instructlake run`, each timed; a JSON line on stdout after the session start
    and after each stage (the parent takes the peak memory since the last line when it reads one).
    Everything else the process and the JVM print goes to stderr."""
    import logging

    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s [%(name)s] %(message)s")

    from instructlake.core.lake import RunContext
    from instructlake.core.session import get_spark
    from instructlake.jobs.runner import STAGES, Options, load_config, run_stage

    def emit(line: dict) -> None:
        results.write(json.dumps(line) + "\n")
        results.flush()

    conf = load_config(conf_path, overrides)
    t = time.monotonic()
    spark = get_spark(conf.spark)
    spark.range(1).count()  # the first job starts the executor side
    emit({"stage": "session", "seconds": time.monotonic() - t,
          "jvm_max_heap": spark._jvm.java.lang.Runtime.getRuntime().maxMemory()})
    run, options = RunContext(), Options()
    for stage in STAGES:
        t = time.monotonic()
        result = run_stage(stage.name, spark, conf, run, options)
        emit({"stage": stage.name, "seconds": time.monotonic() - t, **DETAILS[stage.name](result)})
    return 0


def _ingest(results) -> dict:
    return {"sources": {r.source: {"files": len(r.files), "rows": r.rows, "quarantined": r.quarantined} for r in results}}


def _generate(generated) -> dict:
    out = {}
    if generated.qa is not None:
        q = generated.qa
        out["qa"] = {"paragraphs": q.paragraphs, "selected": q.selected, "qa_rows": q.qa_rows, "kept": q.kept,
                     "model_calls": q.calls, "model_seconds": q.llm.seconds}
    if generated.code is not None:
        c = generated.code
        out["code"] = {"generations": c.generations, "parsed": c.parsed, "model_calls": c.calls, "model_seconds": c.llm.seconds,
                       "programs": c.programs, "programs_run": c.executed, "program_seconds": c.executions.seconds,
                       "sandbox": c.sandbox}
    return out


def _pairs(result) -> dict:
    kept: dict[str, int] = {}
    for label, stage, rows in result.stages:
        kept.setdefault(label, 0)
        if stage is None:
            kept[label] += rows
    return {"kept": kept}


def _export(result) -> dict:
    m = result.manifest
    return {
        "release": result.output, "rows": result.total_rows,
        "counts": {label: {"candidates": c["read"], "kept": c["kept"]} for label, c in m["counts"].items()},
        "products": {name: {"records": sum(c["read"] for c in p["counts"].values()), "kept": sum(c["kept"] for c in p["counts"].values())}
                     for name, p in (m.get("products") or {}).items()},
    }


DETAILS = {"ingest": _ingest, "generate": _generate, "pairs": _pairs, "export": _export}


# --- the parent: inputs, conf, the run, the table ---------------------------------------------------

def summarize(runs: list[tuple[dict, dict]]) -> dict:
    """The stages' lines and peaks as one result, with the synthetic pairs and the projection."""
    stages = [{"stage": line["stage"], "seconds": line["seconds"], "peak_rss": mem} for line, mem in runs]
    lines = {line["stage"]: line for line, _ in runs}
    counts = lines["export"]["counts"]
    synthetic = {label: counts.get(label, {}).get("kept", 0) for label in SYNTHETIC_LABELS}
    kept = sum(synthetic.values())
    total = sum(s["seconds"] for s in stages)
    generate = lines["generate"]["seconds"]
    per_pair = generate / kept if kept else None
    details = lines["generate"]
    # The part of the stage that grows with the generations: model calls and program runs (the
    # cache's wall time of the chunks it computed, MBPP's own tests included); the rest is the
    # stage's Spark work (its tables, the paragraphs' selection, the cache look-ups).
    calls = sum(details.get(step, {}).get(k, 0.0) for step in ("qa", "code") for k in ("model_seconds", "program_seconds"))
    projected = SEED_SYNTHETIC_PAIRS * per_pair if per_pair is not None else None
    return {
        "stages": stages,
        "total_s": total,
        "peak_rss": {k: max(s["peak_rss"][k] for s in stages) for k in stages[0]["peak_rss"]},
        "jvm_max_heap": lines["session"]["jvm_max_heap"],
        "ingested": lines["ingest"]["sources"],
        "generate": {k: v for k, v in lines["generate"].items() if k not in ("stage", "seconds")},
        "kept_after_pairs": lines["pairs"]["kept"],
        "kept": {label: c["kept"] for label, c in counts.items()},
        "candidates": {label: c["candidates"] for label, c in counts.items()},
        "products": lines["export"]["products"],
        "release": lines["export"]["release"],
        "synthetic_kept": synthetic,
        "generate_s_per_synthetic_pair": per_pair,
        "generate_calls_and_programs_s": calls,
        "generate_calls_and_programs_s_per_synthetic_pair": calls / kept if kept else None,
        "projection": {
            "note": "not measured: the seed's synthetic pairs at the measured generate seconds per kept synthetic pair",
            "synthetic_pairs": SEED_SYNTHETIC_PAIRS,
            "generate_s": projected,
            "total_s": total - generate + projected if projected is not None else None,
        },
    }


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def table(result: dict) -> str:
    mib = 1 << 20

    def memory(m: dict) -> list[str]:
        return [f"{m[k] / mib:,.0f}" for k in ("total", "jvm", "python_workers", "driver")]

    head = ["stage", "seconds", "h:mm:ss", "peak RSS MiB", "JVM", "Python workers", "driver"]
    lines = [head]
    for s in result["stages"]:
        lines.append([s["stage"], f"{s['seconds']:,.1f}", clock(s["seconds"]), *memory(s["peak_rss"])])
    lines.append(["total, measured", f"{result['total_s']:,.1f}", clock(result["total_s"]), *memory(result["peak_rss"])])
    p = result["projection"]
    for name, value in ((f"generate, projected for {p['synthetic_pairs']:,} synthetic pairs", p["generate_s"]),
                        ("total, projected", p["total_s"])):
        lines.append([name, "-" if value is None else f"{value:,.0f}", clock(value), "", "", "", ""])
    return aligned(lines, left=(0,))


def report_lines(result: dict, inputs: dict, generation: dict, overrides: list[str]) -> str:
    syn = result["synthetic_kept"]
    per_pair = result["generate_s_per_synthetic_pair"]
    gen = result["generate"]
    qa, code = gen.get("qa", {}), gen.get("code", {})
    out = [
        "inputs: " + ", ".join(f"{s} {n:,}" for s, n in inputs.items()) + " (wikitext: paragraphs)",
        "generation: " + (", ".join(f"{k} {v}" for k, v in generation.items()) or "the conf's counts")
        + (f"; overrides: {' '.join(overrides)}" if overrides else ""),
        "ingested: " + ", ".join(f"{s} {v['rows']:,}" + (f" (+{v['quarantined']:,} quarantined)" if v["quarantined"] else "")
                                 for s, v in sorted(result["ingested"].items())),
        "kept (of candidates): " + ", ".join(f"{label} {k:,} of {result['candidates'][label]:,}" for label, k in sorted(result["kept"].items())),
        "products: " + ", ".join(f"{name} {p['kept']:,} of {p['records']:,}" for name, p in result["products"].items()),
        f"generate: {qa.get('selected', 0)} paragraphs selected, {qa.get('model_calls', 0)} question calls in {qa.get('model_seconds', 0):.0f} s; "
        f"{code.get('generations', 0)} functions in {code.get('model_seconds', 0):.0f} s of model calls, "
        f"{code.get('programs_run', 0)} programs run in {code.get('program_seconds', 0):.0f} s ({code.get('sandbox', '')})",
        f"synthetic pairs kept: {sum(syn.values()):,} ({', '.join(f'{k} {v:,}' for k, v in syn.items())}); "
        + (f"{per_pair:,.1f} generate seconds per kept synthetic pair, of which model calls and programs "
           f"{result['generate_calls_and_programs_s_per_synthetic_pair']:,.1f}" if per_pair is not None else "none kept: no projection"),
        "projection (not measured): the generate stage's seconds per kept synthetic pair x the seed's "
        f"{SEED_SYNTHETIC_PAIRS:,} synthetic pairs; the projected total is the measured one with that in place of the measured generate",
    ]
    return "\n".join(out)


def git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def scale_arg(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=scale_arg, default=1.0, help="multiplies every input count, in (0, 1] (default 1)")
    p.add_argument("--data", type=Path, default=REPO / "bench-data" / "seed-scale", help="inputs (default ./bench-data/seed-scale)")
    p.add_argument("--work", type=Path, default=REPO / "bench-work" / "seed-scale",
                   help="conf, lake, output and seed-scale.json (default ./bench-work/seed-scale)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a conf override, as `instructlake run --set` takes it (repeatable)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.overrides)
    started = time.monotonic()
    data, work = args.data.resolve(), args.work.resolve()
    root, inputs, paths = make_inputs(data, args.scale)
    work.mkdir(parents=True, exist_ok=True)
    for folder in ("lake", "out"):
        shutil.rmtree(work / folder, ignore_errors=True)
    conf, generation = seed_conf(work, paths, args.scale)
    load = os.getloadavg()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(conf), *[f"--set={o}" for o in args.overrides]]
    build_started = time.monotonic()
    runs = measured(cmd, cwd=REPO)
    wall = time.monotonic() - build_started
    result = summarize(runs)
    now = os.getloadavg()
    record = {
        "scale": args.scale, "inputs": inputs, "data": str(root), "conf": str(conf), "extends": str(LOCAL_CONF),
        "generation_counts": generation, "overrides": args.overrides, **result,
        "process_wall_s": wall, "cores": os.cpu_count(), "load_average_before": load, "load_average_after": now,
        "commit": git_commit(), "gen": json.loads((root / "gen.json").read_text()),
    }
    (work / "seed-scale.json").write_text(json.dumps(record, indent=2) + "\n")
    heap = result["jvm_max_heap"] / (1 << 20)
    print(f"{table(result)}\n\n{report_lines(result, inputs, generation, args.overrides)}\n"
          f"the build process: {wall:,.1f} s wall (with Python's start); the JVM's max heap {heap:,.0f} MiB; "
          f"{os.cpu_count()} cores; load average before {load[0]:.2f}, now {now[0]:.2f} {now[1]:.2f} {now[2]:.2f}\n"
          f"{work / 'seed-scale.json'}; {time.monotonic() - started:,.1f} s in all with the inputs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
