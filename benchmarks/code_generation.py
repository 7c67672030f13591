"""Pass rate and task diversity of the Python functions the configured LLM writes, verified in the sandbox.

Runs the code step of the generate stage (`instructlake.jobs.stages.generate_code.run_code`) on
the MBPP file alone (its train split gives the few-shot examples; its prompt
and train tasks run too), with `--count` generations, in a lake under
`--work` (kept: the generations cache and the executions make a re-run
free). Prints the outcome of every generation (parse error or execution
status, or the near-duplicate reason of one that passed), the pass rate,
the seconds of model calls per generation, and the diversity of the tasks
among the generations that have one: distinct normalized tasks, distinct
after the near-duplicate rule (`code.generate.near_duplicate_threshold`;
each task that no earlier generated task matches, then also no MBPP task),
and the near-duplicate drops of the pairs stage (functions that passed).

    .venv/bin/python benchmarks/code_generation.py [--count 60] [--work /tmp/instructlake-codegen]
        [--set llm.temperature=0.7 ...] [--set code.generate.task_seeds=null]
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

    from instructlake.jobs.runner import load_config
    from instructlake.jobs.stages.generate_code import code_versions, executions_at, generated_candidates, generation_source, run_code
    from instructlake.udfs.codegen import near_duplicates, task_shingles
    from instructlake.udfs.text import normalize
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
    candidates = generated_candidates(spark, conf, lake, code_versions(spark, conf, lake))
    reasons = {r["row_index"]: r["drop_reason"] for r in candidates.select("row_index", "drop_reason").collect()}
    near = {i: reason for i, reason in reasons.items() if (reason or "").startswith("near_duplicate_of:")}
    outcomes = Counter(r["parse_error"] or r["exec_status"] for r in rows)
    for r in rows:
        print(f"{r['gen_index']:4d}  {r['parse_error'] or r['exec_status']:<16} {r['exec_reason'] or '':<22} "
              f"{(r['task'] or '')[:70]}{'  [' + near[r['gen_index']] + ']' if r['gen_index'] in near else ''}")
    passed = outcomes.get("passed", 0)
    print(f"\nmodel: {conf.llm.backend} {conf.llm.model_path or 'SmolLM2-135M-Instruct (default)'}, temperature {conf.llm.temperature}, "
          f"max_tokens {conf.code.generate.max_tokens}, {conf.code.generate.examples} examples per prompt")
    print(f"generations: {len(rows)}; outcomes: {dict(sorted(outcomes.items()))}")
    print(f"pass rate: {passed}/{len(rows)} = {passed / max(len(rows), 1):.1%} "
          f"(of the parsed ones: {passed}/{result.parsed})")
    print(f"model calls this run: {result.calls} ({result.cache_hits} from the cache); step time {seconds:.1f}s"
          + (f", {seconds / result.calls:.1f}s per call on local[2]" if result.calls else ""))
    gen = conf.code.generate
    tasks = [r["task"] for r in rows if r["task"]]
    distinct = len({normalize(t, conf.dedup.normalization) for t in tasks})
    print(f"task seeds: {gen.task_seeds or 'none'}; tasks: {len(tasks)} of {len(rows)} generations, {distinct} distinct normalized")
    if gen.near_duplicate_threshold is not None:
        mbpp = [r["text"] for r in spark.read.format("delta").load(lake.bronze(generation_source(conf).name)).select("text").collect()]
        shingles = [task_shingles(t, gen.near_duplicate_shingle_words, conf.dedup.normalization) for t in mbpp + tasks]
        among = sum(m is None for m in near_duplicates(shingles[len(mbpp):], gen.near_duplicate_threshold))
        overall = sum(m is None for m in near_duplicates(shingles, gen.near_duplicate_threshold, first=len(mbpp))[len(mbpp):])
        print(f"distinct after the near-duplicate rule (Jaccard >= {gen.near_duplicate_threshold} of "
              f"{gen.near_duplicate_shingle_words}-word shingles): {among} among the generated tasks, {overall} also unlike every MBPP task")
    print(f"near-duplicate drops (pairs stage, of the {passed} that passed): {len(near)}"
          + (f" {dict(Counter(v.split(':', 1)[1].split('/')[0] for v in near.values()))}" if near else ""))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
