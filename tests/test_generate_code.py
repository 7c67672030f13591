"""The code step's choices per generation (examples, task seed), the prompt, and the near-duplicate
rule for generated tasks: pure functions first, then the candidates the pairs stage gets from a
planted code_functions table (no model call, no program run)."""
from __future__ import annotations

import hashlib
import itertools
import random
from datetime import datetime, timezone

import pytest

from conftest import local_conf
from instructlake.core.errors import ConfigError, GenerationError
from instructlake.core.lake import Lake, latest_version, overwrite
from instructlake.jobs.stages.generate_code import (
    NEAR_DUPLICATE_STAGE, _prompts, code_versions, generated_candidates, generation_source, read_task_seeds,
)
from instructlake.udfs.codegen import (
    function_prompt, jaccard, near_duplicates, parse_function, pick_examples, seed_starts_task, task_seed, task_seed_lines,
    task_shingles,
)

TEMPLATE = "Intro.\n\n{examples}### Task\n{task_seed}"
GENERATE = ["sources.mbpp.enabled=true", "code.generate.count=6", "code.generate.examples_source=mbpp"]


# --- choices per generation ---------------------------------------------------------------------


def test_examples_differ_per_generation_and_repeat_per_conf():
    train = list(range(601, 975))
    picks = [tuple(pick_examples(train, 0, i, 3)) for i in range(50)]
    assert len(set(picks)) == 50 and all(len(set(p)) == 3 for p in picks)
    assert picks == [tuple(pick_examples(list(reversed(train)), 0, i, 3)) for i in range(50)]  # input order is irrelevant
    assert picks != [tuple(pick_examples(train, 1, i, 3)) for i in range(50)]
    # The order of the prompts cached before the task seeds: sha256 of "seed:i:task_id".
    assert list(picks[7]) == sorted(train, key=lambda t: hashlib.sha256(f"0:7:{t}".encode()).hexdigest())[:3]


def test_task_seed_uses_every_line_once_per_cycle():
    seeds = [f"Write a function to do thing {k}" for k in range(7)]
    chosen = [task_seed(seeds, 0, i) for i in range(21)]
    for cycle in range(3):
        assert sorted(chosen[7 * cycle : 7 * cycle + 7]) == sorted(seeds)
    assert chosen[:7] != chosen[7:14]  # each cycle has an order of its own
    assert chosen == [task_seed(seeds, 0, i) for i in range(21)]
    assert chosen != [task_seed(seeds, 1, i) for i in range(21)]
    assert chosen[:7] == [task_seed(list(reversed(seeds)), 0, i) for i in range(7)]  # the lines' order is irrelevant
    assert task_seed([], 0, 3) == ""


def test_task_seed_lines_skip_blank_lines_and_comments():
    assert task_seed_lines("# header\n\n  Write a function to  \n\t\n # note\nWrite a python function to sort\n") == [
        "Write a function to", "Write a python function to sort",
    ]
    assert task_seed_lines("") == [] and task_seed_lines("# only\n") == []


def test_prompt_ends_with_the_seed_and_without_one_as_before():
    assert function_prompt(TEMPLATE, "EX\n", "Write a function to count") == "Intro.\n\nEX\n### Task\nWrite a function to count"
    assert function_prompt(TEMPLATE, "EX\n", "") == "Intro.\n\nEX\n### Task"
    # A value holding a placeholder is not expanded again.
    assert function_prompt(TEMPLATE, "{task_seed}\n", "S") == "Intro.\n\n{task_seed}\n### Task\nS"
    assert seed_starts_task(TEMPLATE) and seed_starts_task(TEMPLATE + "\n")
    assert not seed_starts_task("Topic: {task_seed}\n{examples}### Task")
    # The completion continues the seed's words: the task is both.
    completion = " in a string.\n### Code\ndef vowels(s):\n  return sum(c in 'aeiou' for c in s)\n### Tests\nassert vowels('abe') == 2\n"
    parsed = parse_function("Write a function to count the vowels" + completion)
    assert parsed.task == "Write a function to count the vowels in a string." and parsed.error is None


def test_packaged_task_seeds_are_distinct_and_read_from_the_package(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found under the package, not the working folder
    seeds = read_task_seeds(spark, local_conf(tmp_path, *GENERATE))
    assert len(seeds) >= 30 and len(set(seeds)) == len(seeds)
    assert read_task_seeds(spark, local_conf(tmp_path, *GENERATE, "code.generate.task_seeds=null")) == []
    (tmp_path / "empty.txt").write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(GenerationError, match="code.generate.task_seeds: .*empty.txt holds no seed"):
        read_task_seeds(spark, local_conf(tmp_path, *GENERATE, f"code.generate.task_seeds={tmp_path / 'empty.txt'}"))
    with pytest.raises(GenerationError, match="code.generate.task_seeds: cannot read"):
        read_task_seeds(spark, local_conf(tmp_path, *GENERATE, f"code.generate.task_seeds={tmp_path / 'missing.txt'}"))


@pytest.mark.parametrize("override, key", [
    ("code.generate.near_duplicate_threshold=0", "code.generate.near_duplicate_threshold"),
    ("code.generate.near_duplicate_threshold=1.5", "code.generate.near_duplicate_threshold"),
    ("code.generate.near_duplicate_shingle_words=0", "code.generate.near_duplicate_shingle_words"),
    ("code.generate.task_seeds=' '", "code.generate.task_seeds"),
])
def test_bad_generation_settings_name_their_key(tmp_path, override, key):
    with pytest.raises(ConfigError) as e:
        local_conf(tmp_path, *GENERATE, override)
    assert e.value.key.endswith(key)


# --- near duplicates ----------------------------------------------------------------------------


def test_task_shingles_are_word_runs_of_the_normalized_text():
    assert task_shingles("Write a function to find the MAXIMUM, value!", 3) == {
        "write a function", "a function to", "function to find", "to find the", "find the maximum", "the maximum value",
    }
    assert task_shingles("Sort  it.", 3) == {"sort it"}  # fewer words than a shingle: the whole text
    assert task_shingles("Größte Zahl finden", 2) == {"größte zahl", "zahl finden"}
    assert task_shingles(None, 3) == task_shingles("", 3) == task_shingles("  ?! ", 3) == frozenset()
    long = " ".join(f"w{k}" for k in range(5000))
    assert len(task_shingles(long, 3)) == 4998


def brute_force(sets: list[frozenset], threshold: float, first: int) -> list:
    return [None if j < first or not s else next((c for c in range(j) if sets[c] and jaccard(sets[c], s) >= threshold - 1e-9), None)
            for j, s in enumerate(sets)]


def test_near_duplicates_match_the_pairwise_rule():
    rng = random.Random(7)
    vocab = [f"w{k}" for k in range(12)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 9))) for _ in range(300)]
    for k, threshold, first in itertools.product((1, 2, 3), (0.3, 0.5, 0.6, 0.8, 1.0), (0, 40)):
        sets = [task_shingles(t, k) for t in texts]
        assert near_duplicates(sets, threshold, first) == brute_force(sets, threshold, first), (k, threshold, first)


def test_near_duplicates_name_the_first_earlier_match():
    tasks = [
        "Write a function to find the maximum value in a list.",       # 0 reference
        "Write a function to count the vowels in a string.",           # 1
        "Write a function to find the maximum value in a given list.", # 2 ~ 0
        "write a function to count the vowels in a string",            # 3 = 1
        "Write a function to count the VOWELS in a string!",           # 4 = 1 = 3: names 1
        "Write a function to transpose a matrix.",                     # 5
        "",                                                            # 6 no word
        None,                                                          # 7
        "Write a function to find the minimum value in a list.",       # 8: J(0) = 0.5
    ]
    sets = [task_shingles(t, 3) for t in tasks]
    assert near_duplicates(sets, 0.6, first=1) == [None, None, 0, 1, 1, None, None, None, None]
    assert near_duplicates(sets, 0.5, first=1)[8] == 0
    assert near_duplicates(sets, 0.6, first=3)[:3] == [None, None, None]  # references are never looked up
    assert near_duplicates([], 0.6) == []


# --- in Spark -----------------------------------------------------------------------------------


MBPP_TASKS = {
    17: "Write a function to find the perimeter of a square.",
    601: "Write a function to find the longest chain which can be formed from the given set of pairs.",
    602: "Write a python function to find the first repeated character in a given string.",
    603: "Write a function to get a lucid number smaller than or equal to n.",
    604: "Write a function to reverse words in a given string.",
}


def write_bronze(spark, lake: Lake) -> None:
    rows = [(t, text, "def f():\n  return 1", ["assert f() == 1"]) for t, text in MBPP_TASKS.items()]
    overwrite(spark.createDataFrame(rows, "task_id long, text string, code string, test_list array<string>"), lake.bronze("mbpp"), {})


def test_prompts_vary_their_examples_and_seeds(spark, tmp_path):
    conf = local_conf(tmp_path, *GENERATE, "code.generate.examples=2")
    lake = Lake.of(conf)
    write_bronze(spark, lake)
    seeds = ["Write a function to count", "Write a function to sort", "Write a function to merge"]
    prompts = _prompts(spark, conf, lake, generation_source(conf), TEMPLATE, seeds)
    assert [i for i, *_ in prompts] == list(range(6))
    assert all(set(ids) <= {601, 602, 603, 604} and len(ids) == 2 for _, ids, _, _ in prompts)  # train tasks only
    assert len({tuple(ids) for _, ids, _, _ in prompts}) > 1
    assert sorted(seed for _, _, seed, _ in prompts[:3]) == sorted(seeds)
    assert all(prompt.endswith("### Task\n" + seed) and MBPP_TASKS[ids[0]] in prompt for _, ids, seed, prompt in prompts)
    assert prompts == _prompts(spark, conf, lake, generation_source(conf), TEMPLATE, seeds)


def test_planted_near_duplicates_are_dropped_with_their_stage(spark, tmp_path):
    conf = local_conf(tmp_path, *GENERATE)
    lake = Lake.of(conf)
    write_bronze(spark, lake)
    functions = [  # (gen_index, task, parse_error, outcome)
        (0, "Write a function to count the vowels in a string.", None, "passed"),
        (1, "Write a function to count the vowels in a given string.", None, "passed"),     # ~ 0
        (2, "Write a function to find the perimeter of a square", None, "passed"),          # ~ mbpp 17
        (3, "Write a function to transpose a matrix.", None, "failed"),
        (4, "Write a function to transpose a matrix.", None, "passed"),                     # 3 failed: kept
        (5, "Write a function to count the vowels in a string.", "no_tests", None),
        (6, None, "generation_failed", None),
    ]
    rows = [(i, [601], "", f"prompt{i}", "completion", None, task, None if error else "def f(): pass", None if error else "assert f() is None",
             error, None if error else f"exec{i}") for i, task, error, _ in functions]
    overwrite(spark.createDataFrame(rows, (
        "gen_index long, example_task_ids array<bigint>, task_seed string, prompt_key string, completion string, "
        "generation_error string, task string, code string, tests string, parse_error string, exec_key string")), lake.code_functions, {})
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    execs = [(f"exec{i}", outcome, None, 0.1, "", now, "run") for i, _, _, outcome in functions if outcome]
    overwrite(spark.createDataFrame(execs, "key string, status string, reason string, duration_s double, stderr_tail string, "
                                           "created_at timestamp, run_id string"), lake.executions, {})
    versions = code_versions(spark, conf, lake)
    assert versions == {"executions": latest_version(spark, lake.executions), "code_functions": latest_version(spark, lake.code_functions),
                        "near_duplicates": [0.6, 3]}

    def outcome(c):
        got = generated_candidates(spark, c, lake, code_versions(spark, c, lake)).select("row_index", "drop_reason", "drop_stage").collect()
        return sorted((r["row_index"], r["drop_reason"], r["drop_stage"]) for r in got)

    assert outcome(conf) == [
        (0, None, None),
        (1, "near_duplicate_of:python_code/0", NEAR_DUPLICATE_STAGE),
        (2, "near_duplicate_of:mbpp/17", NEAR_DUPLICATE_STAGE),
        (3, "exec_failed", "execution"),
        (4, None, None),
        (5, "no_tests", "parse"),
        (6, "generation_failed", "generation"),
    ]
    off = local_conf(tmp_path, *GENERATE, "code.generate.near_duplicate_threshold=null")
    assert [r for r in outcome(off) if r[1] is None] == [(0, None, None), (1, None, None), (2, None, None), (4, None, None)]
    assert code_versions(spark, off, lake)["near_duplicates"] == [None, 3]
