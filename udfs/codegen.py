"""Generated Python functions: the few-shot examples of the prompt, and the parse of a completion.

The prompt (`conf/prompts/python_functions.txt`) holds MBPP train tasks in
this shape, and ends with `### Task` for the model to write a new one:

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
dropped).
"""
from __future__ import annotations

import re
from typing import NamedTuple, Optional

# The source formats whose pairs are code: the language filter does not judge them (langdetect
# reads natural language; an instruction full of asserts and a response of code are not).
CODE_PAIR_FORMATS = ("conala", "mbpp", "humaneval", "generated_code")
END = "### End"
STOP = [END, "\n### Task"]
_SECTION = re.compile(r"^###\s*(Task|Code|Tests|End)\s*:?\s*$", re.MULTILINE | re.IGNORECASE)
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_+-]*\s*$", re.MULTILINE)


class ParsedFunction(NamedTuple):
    task: Optional[str]
    code: Optional[str]
    tests: Optional[str]
    error: Optional[str]


def example_text(text: str, code: str, tests: list[str]) -> str:
    """One few-shot example in the prompt's shape (line ends normalized)."""
    code = code.replace("\r\n", "\n").rstrip()
    return f"### Task\n{text.strip()}\n### Code\n{code}\n### Tests\n" + "\n".join(t.strip() for t in tests) + f"\n{END}\n\n"


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
    parts = _sections(completion.replace("\r\n", "\n"))
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
