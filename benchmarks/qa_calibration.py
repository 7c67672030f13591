"""Calibrate the question-answer evaluations (udfs/qa_checks.py) on human data, and measure them on
the model's generations.

Prints, for each check, the share of SQuAD v1.1's human-written question-answer pairs it accepts
(each check on its own, the question's type being its first interrogative word), the share of the
generated pairs of a lake's `silver/qa` table it accepts, and how the generated pairs ended
(kept, or their drop reason after duplicates and the balance across types).

    # SQuAD only (the shared data's two dev halves by default):
    .venv/bin/python benchmarks/qa_calibration.py
    # and the generations of an existing lake:
    .venv/bin/python benchmarks/qa_calibration.py --lake lake
    # or generate first, into a fresh lake, from N paragraphs of a web-text file:
    .venv/bin/python benchmarks/qa_calibration.py --generate-from ../shared/data/wikitext/wikitext-2-raw/wiki.test.raw --paragraphs 20

Thresholds come from the conf (`qa.checks`, default conf/local.yaml); `--set` overrides as on the CLI.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("INSTRUCTLAKE_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_SQUAD = [SHARED / "squad" / "v1.1-dev-halves" / "dev-v1.1.json", SHARED / "squad" / "v1.1-dev-halves" / "test-v1.1.json"]


def accepted_shares(rows, checks) -> tuple[dict[str, float], float, int]:
    """({check: share accepted}, share accepted by all, rows) for (qa_type, question, answer, paragraph) rows."""
    from instructlake.udfs.qa_checks import CHECKS, check_results, score_qa

    passed, all_pass, n = Counter(), 0, 0
    for qa_type, question, answer, paragraph in rows:
        results = check_results(score_qa(qa_type, question, answer, paragraph), qa_type, checks)
        for check in CHECKS:
            passed[check] += results[check] is None
        all_pass += all(r is None for r in results.values())
        n += 1
    return {c: passed[c] / n if n else 0.0 for c in CHECKS}, (all_pass / n if n else 0.0), n


def squad_rows(paths):
    from instructlake.udfs.webtext import squad_qas

    for path in paths:
        for qa in squad_qas(Path(path).read_text(encoding="utf-8")):
            yield None, qa["question"], qa["answers"][0], qa["context"]


def lead_shares(paths) -> dict[str, float]:
    """Where SQuAD's questions put their interrogative word: the share with at most N words before it."""
    from instructlake.udfs.qa_checks import question_type

    leads = [question_type(q)[1] for _, q, _, _ in squad_rows(paths)]
    n = len(leads)
    out = {f"<= {k} words before": sum(1 for x in leads if x is not None and x <= k) / n for k in (0, 1, 3)}
    out["anywhere"] = sum(1 for x in leads if x is not None) / n
    return out


def generate(conf_path, overrides, source_file: Path, paragraphs: int, lake: str):
    """Ingest `source_file` as the only web_text source and run the generate stage on `paragraphs` paragraphs."""
    from instructlake.jobs.runner import load_config
    from instructlake.jobs.stages.generate_qa import run_generate
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.core.lake import RunContext
    from instructlake.core.session import get_spark

    conf = load_config(conf_path, [
        f"paths.lake={lake}",
        *[f"sources.{s}.enabled=false" for s in ("helpful_online", "helpful_rejection_sampled", "red_team_attempts")],
        "sources.wikitext.enabled=true", f"sources.wikitext.paths=[{source_file}]", f"qa.max_paragraphs={paragraphs}",
        *overrides,
    ])
    spark = get_spark(conf.spark)
    run_ingest(spark, conf, RunContext())
    started = time.monotonic()
    result = run_generate(spark, conf, RunContext())
    elapsed = time.monotonic() - started
    print(
        f"generated: {result.selected} paragraphs, {result.calls} model calls ({result.cache_hits} from the cache), "
        f"{result.llm_seconds:.0f}s in model calls = {result.llm_seconds / max(result.selected, 1):.1f}s per paragraph "
        f"({elapsed:.0f}s for the whole stage), model {result.model}\n"
    )
    return conf


def generated_rows(lake: str):
    from instructlake.core.config import SparkSettings

    from instructlake.core.lake import Lake
    from instructlake.core.session import get_spark

    spark = get_spark(SparkSettings())
    qa = spark.read.format("delta").load(Lake(lake).qa).collect()
    rows = [(r["qa_type"], r["question"], r["answer"], r["paragraph"]) for r in qa if r["generation_error"] is None]
    outcome = Counter(r["qa_drop_reason"] or "(kept)" for r in qa)
    return rows, outcome, len(qa)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--squad", nargs="*", default=[str(x) for x in DEFAULT_SQUAD], help="SQuAD v1.1 JSON files")
    p.add_argument("--lake", default=None, help="a lake whose silver/qa table holds generations to measure")
    p.add_argument("--generate-from", default=None, help="generate first, from this web-text file, into a fresh lake")
    p.add_argument("--paragraphs", type=int, default=20, help="paragraphs to generate from (with --generate-from)")
    p.add_argument("--conf", default=str(REPO / "conf" / "local.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)

    from instructlake.jobs.runner import load_config
    from instructlake.core.storage import resolve
    from instructlake.udfs.qa_checks import CHECKS

    checks = load_config(args.conf, args.overrides).qa.checks
    lake = args.lake
    if args.generate_from:
        lake = lake or (Path(tempfile.mkdtemp(prefix="qa-calibration-")) / "lake").as_uri()
        generate(args.conf, args.overrides, Path(args.generate_from).resolve(), args.paragraphs, resolve(lake))

    squad = [Path(x) for x in args.squad if Path(x).is_file()]
    human, human_all, n_human = accepted_shares(squad_rows(squad), checks) if squad else ({}, 0.0, 0)
    gen, gen_all, n_gen, outcome, n_qa = {}, 0.0, 0, Counter(), 0
    if lake:
        rows, outcome, n_qa = generated_rows(resolve(lake))
        gen, gen_all, n_gen = accepted_shares(rows, checks)

    print(f"checks: {json.dumps({k: v for k, v in vars(checks).items()})}\n")
    header = ("check", f"SQuAD human pairs (n={n_human})", f"generated pairs (n={n_gen})")
    table = [header] + [
        (c, f"{human[c]:.1%}" if squad else "-", f"{gen[c]:.1%}" if lake else "-") for c in CHECKS
    ] + [("all checks", f"{human_all:.1%}" if squad else "-", f"{gen_all:.1%}" if lake else "-")]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    for i, r in enumerate(table):
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}")
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if squad:
        print("\nSQuAD questions by where their interrogative word stands:")
        for k, v in lead_shares(squad).items():
            print(f"  {k:<22} {v:.1%}")
    if lake:
        print(f"\ngenerated pairs by outcome (n={n_qa}, after duplicates and the balance across types):")
        for reason, count in outcome.most_common():
            print(f"  {reason:<26} {count:>4}  {count / n_qa:.1%}")
    if not squad:
        print(f"\n(no SQuAD file found: {', '.join(args.squad)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
