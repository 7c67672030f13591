"""Python code pairs end to end: CoNaLa and MBPP ingested, functions written by the embedded model
(SmolLM2-135M-Instruct), programs run with their tests in the real bubblewrap sandbox inside
Spark; only passing code reaches the JSON parts, MBPP's held-out splits never do, and a second
run generates and executes nothing."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from conftest import SAMPLE, local_conf, release_dir
from instructlake.jobs.stages.generate_code import run_code
from instructlake.core.lake import Lake, RunContext, latest_version
from instructlake.jobs.runner import run_pipeline
from instructlake.udfs.pair_format import parse_pair
from instructlake.udfs.sandbox import SandboxSettings, program_text, run_program

MBPP = SAMPLE / "mbpp" / "mbpp.jsonl"
CODE_ONLY = [
    "sources.helpful_online.enabled=false", "sources.helpful_rejection_sampled.enabled=false",
    "sources.red_team_attempts.enabled=false", "sources.conala.enabled=true", "sources.mbpp.enabled=true",
]


def mbpp_tasks() -> dict[int, dict]:
    return {r["task_id"]: r for r in map(json.loads, MBPP.read_text(encoding="utf-8").splitlines())}


# prompt 1-3, test 11-16, validation 511-514, and the 12 train tasks with the shortest code: the
# few-shot examples of short functions, which the 135M model most often gets right.
SHORTEST_TRAIN = sorted((t for t in mbpp_tasks() if t >= 601), key=lambda t, tasks=mbpp_tasks(): (len(tasks[t]["code"]), t))[:12]
SUBSET = [*range(1, 4), *range(11, 17), *range(511, 515), *sorted(SHORTEST_TRAIN)]


def parts(out: Path) -> list:
    return [e for p in sorted(release_dir(out).glob("*_part*.json")) for e in json.loads(p.read_text(encoding="utf-8"))]


def reason_kind(reason: str | None) -> str | None:
    """`duplicate_of:<pair_id>` -> `duplicate_of`; other reasons as they are."""
    return reason.split(":", 1)[0] if reason else None


def _mutated(code: str) -> str:
    """The solution with its one return statement returning None."""
    return re.sub(r"^(\s*)return\b(.*)$", r"\1return None  # \2", code, count=1, flags=re.MULTILINE)


def test_real_mbpp_train_tasks_pass_and_their_mutants_fail():
    tasks = mbpp_tasks()
    chosen = [
        t for t in sorted(tasks) if 601 <= t <= 974 and not tasks[t]["test_setup_code"]
        and len(re.findall(r"^\s*return\b", tasks[t]["code"], re.MULTILINE)) == 1
        and not re.search(r"return\b.*[(\[,\\]\s*$", tasks[t]["code"], re.MULTILINE)
        and all(re.match(r"assert \w+\(.*\) ?== ?[^N]", a) for a in tasks[t]["test_list"])
    ][:6]
    assert len(chosen) == 6
    settings = SandboxSettings(timeout_s=5)
    for t in chosen:
        task = tasks[t]
        tests = "\n".join(task["test_list"])
        own = run_program(task["code"], tests, settings)
        assert own.status == "passed", (t, own.stderr_tail)
        mutant = run_program(_mutated(task["code"]), tests, settings)
        assert (mutant.status, mutant.reason) == ("failed", "assertion"), (t, mutant.stderr_tail)
    assert program_text("a\r\nb", "assert 1") == "a\nb\n\n\nassert 1\n"


@pytest.fixture(scope="module")
def code_runs(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("code")
    tasks = mbpp_tasks()
    subset = tmp / "mbpp.jsonl"
    subset.write_text("".join(json.dumps(tasks[t]) + "\n" for t in SUBSET), encoding="utf-8")
    conf = local_conf(
        tmp, *CODE_ONLY, f"sources.mbpp.paths=[{subset}]", "code.generate.count=3", "code.generate.examples_source=mbpp",
        "code.sandbox.timeout_s=5",
    )
    lake = Lake.of(conf)
    first = run_pipeline(spark, conf, RunContext(run_id="code-1"))
    tables = [lake.executions, lake.code_functions, lake.pairs]
    versions = [latest_version(spark, t) for t in tables]
    first_parts = {p.name: p.read_bytes() for p in release_dir(tmp / "out").glob("*_part*.json")}
    second = run_pipeline(spark, conf, RunContext(run_id="code-2"))
    after = [latest_version(spark, t) for t in tables]
    second_parts = {p.name: p.read_bytes() for p in release_dir(tmp / "out").glob("*_part*.json")}
    return conf, tmp, first, second, (versions, after), (first_parts, second_parts)


def test_conala_and_generated_functions_reach_the_parts(spark, code_runs):
    conf, tmp, first, *_ = code_runs
    pairs = spark.read.format("delta").load(Lake.of(conf).pairs)
    exported = parts(tmp / "out")
    by_source = {s: [parse_pair(t) for src, t in exported if src == s] for s in ("conala", "python_code", "mbpp")}
    kept = {s: pairs.where((F.col("source") == s) & F.col("drop_reason").isNull()).collect() for s in by_source}
    for s in by_source:
        assert sorted(by_source[s]) == sorted((r["instruction"], r["response"]) for r in kept[s]), s
    # Of the 300 CoNaLa records a few share their normalized intent (dedup keeps one of each).
    assert len(by_source["conala"]) >= 280 and by_source["python_code"] and by_source["mbpp"]
    # CoNaLa: the rewritten intent, or the intent when it is null; snippets compiled, never run.
    conala = pairs.where(F.col("source") == "conala").collect()
    assert len(conala) == 300 and all(r["exec_status"] is None for r in conala)
    bronze = {r["row_index"]: r for r in spark.read.format("delta").load(Lake.of(conf).bronze("conala")).collect()}
    fallback = [r for r in conala if not bronze[r["row_index"]]["rewritten_intent"]]
    assert fallback and all(r["instruction"] == bronze[r["row_index"]]["intent"].strip() for r in fallback)
    assert {reason_kind(r["drop_reason"]) for r in conala} <= {None, "snippet_does_not_compile", "duplicate_of", "near_duplicate_of"}
    # Every kept code pair passed its tests in the bwrap sandbox.
    assert all(r["exec_status"] == "passed" for s in ("python_code", "mbpp") for r in kept[s])
    generated = pairs.where(F.col("source") == "python_code").collect()
    assert len(generated) == 3 and first.code.generations == 3 and first.code.calls == 3
    assert {reason_kind(r["drop_reason"]) for r in generated} <= {None, "duplicate_of", "near_duplicate_of", "no_task", "no_code", "no_function", "no_tests", "generation_failed",
                                                      "exec_failed", "exec_error", "exec_timeout", "exec_killed", "near_duplicate_of"}
    # Each generation's prompt ends with its own task seed, and its task starts with the seed's words.
    functions = spark.read.format("delta").load(Lake.of(conf).code_functions).collect()
    assert len({r["task_seed"] for r in functions}) == 3 and all(r["task"].startswith(r["task_seed"]) for r in functions if r["task"])
    assert first.export.manifest["code_execution"]["sandbox"] == "bwrap" and first.export.manifest["code_execution"]["weaker"] is False


def test_mbpp_held_out_splits_never_reach_the_parts(spark, code_runs):
    conf, tmp, *_ = code_runs
    lake = Lake.of(conf)
    tasks = mbpp_tasks()
    mbpp = {r["row_index"]: r for r in spark.read.format("delta").load(lake.pairs).where(F.col("source") == "mbpp").collect()}
    assert len(mbpp) == len(SUBSET)
    for i, t in enumerate(SUBSET):
        expected = "held_out_split:test" if 11 <= t <= 510 else "held_out_split:validation" if 511 <= t <= 600 else None
        if expected:
            assert mbpp[i]["drop_reason"] == expected and mbpp[i]["exec_status"] is None  # never run
        else:
            assert mbpp[i]["exec_status"] is not None
    held_out = [tasks[t]["text"].strip() for t in SUBSET if 11 <= t <= 600]
    texts = [text for _, text in parts(tmp / "out")]
    assert not [h for h in held_out if any(h in text for text in texts)]
    # Only prompt and train tasks (and generated functions) were executed.
    executed = spark.read.format("delta").load(lake.executions).count()
    assert executed == sum(1 for t in SUBSET if t <= 10 or t >= 601) + sum(1 for r in spark.read.format("delta").load(lake.code_functions).collect() if r["parse_error"] is None)


def test_second_run_generates_and_executes_nothing(code_runs):
    _, _, first, second, (before, after), (first_parts, second_parts) = code_runs
    assert (second.code.calls, second.code.executed) == (0, 0) and second.code.cache_hits == 3
    assert first.code.executed == first.code.programs > 0
    assert after == before
    assert second_parts == first_parts and second.pairs.counts == first.pairs.counts


def test_process_fallback_runs_and_is_named_weaker(spark, code_runs):
    from instructlake.jobs.stages.export import run_export
    from instructlake.jobs.stages.pairs import run_pairs

    conf, tmp, first, *_ = code_runs
    sets = [*CODE_ONLY, f"sources.mbpp.paths=[{tmp / 'mbpp.jsonl'}]", "code.generate.count=3", "code.generate.examples_source=mbpp",
            "code.sandbox.timeout_s=5", "code.sandbox.kind=process"]
    weaker = local_conf(tmp, *sets)
    result = run_code(spark, weaker, RunContext(run_id="code-3"))
    assert result.executed == result.programs == first.code.programs  # other settings, other keys: run again
    assert result.calls == 0
    run_pairs(spark, weaker, RunContext(run_id="code-3"))
    manifest = run_export(spark, weaker, RunContext(run_id="code-3")).manifest
    assert manifest["code_execution"]["sandbox"] == "process" and manifest["code_execution"]["weaker"] is True
    assert manifest["counts"]["mbpp"]["kept"] == first.export.manifest["counts"]["mbpp"]["kept"]


def test_bad_code_records_are_quarantined(spark, tmp_path):
    from instructlake.jobs.stages.ingest import run_ingest

    conala = tmp_path / "conala.json"
    conala.write_text(json.dumps([
        {"intent": "sort a list", "rewritten_intent": None, "snippet": "sorted(l)", "question_id": 1},
        {"intent": "no snippet", "rewritten_intent": "x", "question_id": 2},
        {"intent": 3, "rewritten_intent": "x", "snippet": "x", "question_id": 3},
    ]))
    mbpp = tmp_path / "mbpp.jsonl"
    good = MBPP.read_text(encoding="utf-8").splitlines()[0]
    mbpp.write_text(good + "\n{not json\n" + json.dumps({"task_id": 5, "text": "t", "code": "c", "test_list": "assert 1"}) + "\n")
    conf = local_conf(tmp_path, *CODE_ONLY, f"sources.conala.paths=[{conala}]", f"sources.mbpp.paths=[{mbpp}]")
    results = {r.source: r for r in run_ingest(spark, conf, RunContext())}
    assert (results["conala"].rows, results["conala"].quarantined) == (1, 2)
    assert (results["mbpp"].rows, results["mbpp"].quarantined) == (1, 2)
    reasons = {(r["source_name"], r["row_index"]): r["reason"] for r in spark.read.format("delta").load(Lake.of(conf).quarantine).collect()}
    assert reasons == {("conala", 1): "missing_field:snippet", ("conala", 2): "wrong_type:intent",
                       ("mbpp", 1): "malformed_json", ("mbpp", 2): "wrong_type:test_list"}
