"""Pass rate of the Python functions the configured LLM writes, verified in the sandbox.

Runs the code step of the generate stage (`instructlake.jobs.stages.generate_code.run_code`) on
the MBPP file alone (its train split gives the few-shot examples; its prompt
and train tasks run too), with `--count` generations, in a lake under
`--work` (kept: the generations cache and the executions make a re-run
free). Prints the outcome of every generation (parse error or execution
status), the pass rate, and the seconds of model calls per generation.

    .venv/bin/python benchmarks/code_generation.py [--count 60] [--work /tmp/instructlake-codegen]
        [--set llm.temperature=0.7 ...]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--work", default="/tmp/instructlake-codegen")
    p.add_argument("--mbpp", default=str(REPO / "data" / "sample" / "mbpp" / "mbpp.jsonl"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)

    from pyspark.sql import functions as F

    from instructlake.jobs.runner import load_config
    from instructlake.jobs.stages.generate_code import executions_at, run_code
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.core.lake import Lake, RunContext
    from instructlake.core.session import get_spark

    work = Path(args.work).resolve()
    only_mbpp = [f"sources.{s}.enabled=false" for s in ("helpful_online", "helpful_rejection_sampled", "red_team_attempts", "wikitext", "conala")]
    conf = load_config(REPO / "conf" / "local.yaml", [
        *only_mbpp, f"sources.mbpp.paths=[{args.mbpp}]", f"paths.lake={(work / 'lake').as_uri()}",
        f"paths.output={(work / 'out').as_uri()}", f"code.generate.count={args.count}", *args.overrides,
    ])
    spark = get_spark(conf.spark)
    run = RunContext()
    run_ingest(spark, conf, run)
    started = time.monotonic()
    result = run_code(spark, conf, run)
    seconds = time.monotonic() - started
    lake = Lake.of(conf)
    functions = spark.read.format("delta").option("versionAsOf", result.tables["code_functions"]).load(lake.code_functions)
    execs = executions_at(spark, lake, result.tables.get("executions")).withColumnRenamed("key", "exec_key")
    rows = functions.join(execs, "exec_key", "left").orderBy("gen_index").collect()
    outcomes = Counter(r["parse_error"] or r["exec_status"] for r in rows)
    for r in rows:
        print(f"{r['gen_index']:4d}  {r['parse_error'] or r['exec_status']:<16} {r['exec_reason'] or '':<22} {(r['task'] or '')[:70]}")
    passed = outcomes.get("passed", 0)
    print(f"\nmodel: {conf.llm.backend} {conf.llm.model_path or 'SmolLM2-135M-Instruct (default)'}, temperature {conf.llm.temperature}, "
          f"max_tokens {conf.code.generate.max_tokens}, {conf.code.generate.examples} examples per prompt")
    print(f"generations: {len(rows)}; outcomes: {dict(sorted(outcomes.items()))}")
    print(f"pass rate: {passed}/{len(rows)} = {passed / max(len(rows), 1):.1%} "
          f"(of the parsed ones: {passed}/{result.parsed})")
    print(f"model calls this run: {result.calls} ({result.cache_hits} from the cache); step time {seconds:.1f}s"
          + (f", {seconds / result.calls:.1f}s per call on local[2]" if result.calls else ""))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
