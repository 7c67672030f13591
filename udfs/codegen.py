"""Generated Python functions: the prompt's examples and task seed, the parse of a completion, and
the near-duplicate rule for their tasks.

The prompt (`conf/prompts/python_functions.txt`) holds MBPP train tasks in
this shape, and ends with `### Task` and the generation's task seed for the
model to write a new one:

    ### Task
    Write a function to find the shared elements from the given two lists.
    ### Code
    def similar_elements(test_tup1, test_tup2):
      ...
    ### Tests
    assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)
    ### End

`parse_function(completion)` cuts a completion into (task, code, tests) or
gives the reason it cannot: `generation_failed` (no completion),
`no_task`, `no_code`, `no_function` (the code defines none), `no_tests` (no
line of the tests section starts with `assert`). Code fences are removed; the
tests are the `assert` lines only (anything else the model wrote there is
dropped). A chat-template token (`<|endoftext|>`, `<|im_start|>`, ...; see
`instructlake.udfs.template_tokens`) ends the completion: what follows it
belongs to another document or turn and is not parsed. The examples of the
prompt have their template tokens neutralized, as every source text that goes
into a prompt.

Choices per generation `i`, each by a sha256 of the conf's `seed`, so the
same conf gives the same prompts (and the cached model calls are reused):

- `pick_examples`: the example tasks, the first `n` in the order of
  sha256(`seed:i:task_id`).
- `task_seed`: the first words of the task (a line of
  `conf/prompts/python_task_seeds.txt`, read by `task_seed_lines`). Cycle
  `i // len(seeds)` orders the seeds by sha256(`task_seed:seed:cycle:line`)
  and generation `i` takes place `i % len(seeds)`: every seed is used once
  before any is used again. When the prompt ends with the placeholder, the
  completion continues the seed's words, so the task is the seed followed by
  the completion's first section (`parse_function(seed + completion)`).

Near duplicates (`near_duplicates`): a task's shingles are the distinct runs
of `k` consecutive words of its normalized text (`instructlake.udfs.text`;
the whole text when it has fewer words, none when it has no word), as the
dedup step makes them; two tasks are near duplicates when the Jaccard
similarity of their shingle sets reaches the threshold. Candidates are found
by prefix filtering (each set's rarest `|s| - ceil(t * |s|) + 1` shingles;
two sets at similarity >= t share one of them), then compared exactly.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from typing import NamedTuple, Optional, Sequence

from instructlake.core.config import Normalization
from instructlake.udfs.template_tokens import TEMPLATE_TOKEN, neutralize
from instructlake.udfs.text import DEFAULT, normalize

# The source formats whose pairs are code: the language filter does not judge them (langdetect
# reads natural language; an instruction full of asserts and a response of code are not).
CODE_PAIR_FORMATS = ("conala", "mbpp", "humaneval", "generated_code")
END = "### End"
STOP = [END, "\n### Task"]
TASK_SEED = "task_seed"  # the prompt's placeholder for the first words of the task
_SECTION = re.compile(r"^###\s*(Task|Code|Tests|End)\s*:?\s*$", re.MULTILINE | re.IGNORECASE)
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_+-]*\s*$", re.MULTILINE)
_TEMPLATE_TOKEN = re.compile(TEMPLATE_TOKEN)


class ParsedFunction(NamedTuple):
    task: Optional[str]
    code: Optional[str]
    tests: Optional[str]
    error: Optional[str]


def example_text(text: str, code: str, tests: list[str]) -> str:
    """One few-shot example in the prompt's shape (line ends normalized, template tokens neutralized)."""
    code = neutralize(code.replace("\r\n", "\n").rstrip())
    tests = "\n".join(neutralize(t.strip()) for t in tests)
    return f"### Task\n{neutralize(text.strip())}\n### Code\n{code}\n### Tests\n{tests}\n{END}\n\n"


def _sections(completion: str) -> dict[str, str]:
    """The text under each header; the completion starts inside the Task section."""
    parts: dict[str, str] = {}
    name, start = "task", 0
    for m in _SECTION.finditer(completion):
        parts.setdefault(name, completion[start : m.start()])
        name, start = m.group(1).lower(), m.end()
        if name == "end":
            break
    if name != "end":
        parts.setdefault(name, completion[start:])
    return parts


def parse_function(completion: Optional[str]) -> ParsedFunction:
    if completion is None:
        return ParsedFunction(None, None, None, "generation_failed")
    parts = _sections(_TEMPLATE_TOKEN.split(completion.replace("\r\n", "\n"), 1)[0])
    task = " ".join(parts.get("task", "").split())
    code = _FENCE.sub("", parts.get("code", "")).strip("\n").rstrip()
    tests = "\n".join(line.strip() for line in _FENCE.sub("", parts.get("tests", "")).splitlines() if line.strip().startswith("assert"))
    if not task:
        return ParsedFunction(None, code or None, tests or None, "no_task")
    if not code.strip():
        return ParsedFunction(task, None, tests or None, "no_code")
    if not re.search(r"^\s*def\s+\w+\s*\(", code, re.MULTILINE):
        return ParsedFunction(task, code, tests or None, "no_function")
    if not tests:
        return ParsedFunction(task, code, None, "no_tests")
    return ParsedFunction(task, code, tests, None)


# --- the prompt -------------------------------------------------------------------------------


def function_prompt(template: str, examples: str, seed: str) -> str:
    """The template with `{examples}` and `{task_seed}` filled in one pass (a value holding a
    placeholder is not expanded again), without trailing whitespace: with an empty seed, a
    template ending in `### Task\n{task_seed}` gives a prompt ending in `### Task`."""
    values = {"examples": examples, TASK_SEED: seed}
    return re.sub(r"\{(examples|task_seed)\}", lambda m: values[m.group(1)], template).rstrip()


def seed_starts_task(template: str) -> bool:
    """True when the template ends with `{task_seed}`: the completion continues the seed's words."""
    return template.rstrip().endswith("{" + TASK_SEED + "}")


# --- choices per generation -------------------------------------------------------------------


def pick_examples(task_ids: Sequence[int], seed: int, i: int, n: int) -> list[int]:
    """The `n` example task ids of generation `i`: the first in the order of sha256(`seed:i:task_id`)."""
    return sorted(task_ids, key=lambda t: hashlib.sha256(f"{seed}:{i}:{t}".encode()).hexdigest())[:n]


def task_seed_lines(text: str) -> list[str]:
    """The seeds of a task-seed file: its lines, stripped, without blank ones and `#` comments."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def task_seed(seeds: Sequence[str], seed: int, i: int) -> str:
    """The task seed of generation `i` ("" when there is none): place `i % len(seeds)` of cycle
    `i // len(seeds)`, whose order is sha256(`task_seed:seed:cycle:line`)."""
    if not seeds:
        return ""
    cycle, place = divmod(i, len(seeds))
    order = sorted(seeds, key=lambda s: hashlib.sha256(f"task_seed:{seed}:{cycle}:{s}".encode()).hexdigest())
    return order[place]


# --- near-duplicate tasks ----------------------------------------------------------------------


def task_shingles(text: Optional[str], k: int, spec: Normalization = DEFAULT) -> frozenset[str]:
    """The distinct runs of `k` consecutive words of the normalized text (the whole text when it has
    fewer words; empty for None or a text without words)."""
    words = normalize(text, spec).split()
    if len(words) < k:
        return frozenset([" ".join(words)] if words else [])
    return frozenset(" ".join(words[j : j + k]) for j in range(len(words) - k + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a & b| / |a | b|; 0.0 when both are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def near_duplicates(shingles: Sequence[frozenset], threshold: float, first: int = 0) -> list[Optional[int]]:
    """For each set at index >= `first`: the smallest earlier index whose set has a Jaccard
    similarity >= `threshold` with it, else None. The sets before `first` are references: they
    are matched, never looked up (their entries are None). An empty set matches nothing.

    Exact: candidates share one shingle of their prefixes (the rarest `|s| - ceil(t * |s|) + 1`
    shingles, rarity over all the sets, ties by the shingle), then their similarity is computed."""
    frequency = Counter(x for s in shingles for x in s)
    index: dict[str, list[int]] = {}
    out: list[Optional[int]] = [None] * len(shingles)
    for j, s in enumerate(shingles):
        if not s:
            continue
        prefix = sorted(s, key=lambda x: (frequency[x], x))[: len(s) - math.ceil(threshold * len(s) - 1e-9) + 1]
        if j >= first:
            candidates = sorted({c for x in prefix for c in index.get(x, ())})
            out[j] = next((c for c in candidates if jaccard(shingles[c], s) >= threshold - 1e-9), None)
        for x in prefix:
            index.setdefault(x, []).append(j)
    return out
