"""Ingest Python code sources into bronze: CoNaLa, MBPP and HumanEval.

- `conala`: the CoNaLa JSON array (`conala-train.json`), one element a
  record `{intent, rewritten_intent, snippet, question_id}`; its row index is
  its position in the array. `rewritten_intent` may be null.
- `mbpp`: MBPP's JSON lines (`mbpp.jsonl`), one task a line: `task_id`,
  `text`, `code`, `test_list`, `test_setup_code`, `challenge_test_list`. The
  split of a task follows from its `task_id` (see `mbpp_split`).
- `humaneval`: HumanEval's JSON lines (`HumanEval.jsonl.gz`), one task a line:
  `task_id`, `prompt`, `canonical_solution`, `test`, `entry_point`.

A record that does not fit (malformed JSON, a missing or wrong-typed field)
is quarantined with its reason, like every other source's. Run the whole
ingest stage with `instructlake ingest` or `spark-submit jobs/ingest.py`.
"""
from __future__ import annotations

from pyspark.sql import DataFrame

from jobs import ingest_hh
from udfs.records import Field, read_whole_files, split_json_array

CONALA_FIELDS = [
    Field("question_id", "bigint"),
    Field("intent", "string", required=True),
    Field("rewritten_intent", "string"),
    Field("snippet", "string", required=True),
]
MBPP_FIELDS = [
    Field("task_id", "bigint", required=True),
    Field("text", "string", required=True),
    Field("code", "string", required=True),
    Field("test_list", "array<string>", required=True),
    Field("test_setup_code", "string"),
    Field("challenge_test_list", "array<string>"),
]
HUMANEVAL_FIELDS = [
    Field("task_id", "string", required=True),
    Field("prompt", "string", required=True),
    Field("canonical_solution", "string", required=True),
    Field("test", "string", required=True),
    Field("entry_point", "string", required=True),
]

# MBPP's own split by task_id (Austin et al. 2021): 1-10 few-shot prompts, 11-510 test,
# 511-600 validation, 601-974 train.
MBPP_SPLITS = (("prompt", 1, 10), ("test", 11, 510), ("validation", 511, 600), ("train", 601, 974))
# Only these may become training pairs or few-shot examples; the others are held out.
MBPP_TRAINING_SPLITS = ("prompt", "train")


def mbpp_split(task_id: int) -> str:
    """The MBPP split of a task id (`unknown` outside 1-974)."""
    return next((name for name, lo, hi in MBPP_SPLITS if lo <= task_id <= hi), "unknown")


def _split_array(text, source_file):
    return split_json_array(text)


def read_conala(spark, files: list[str], tolerant: bool = True) -> DataFrame:
    """`READ_SCHEMA` rows for each element of the CoNaLa JSON arrays."""
    return read_whole_files(spark, files, _split_array, tolerant=tolerant)


def read_lines(spark, files: list[str], tolerant: bool = True) -> DataFrame:
    """`READ_SCHEMA` rows for each line of JSON-lines files (gzipped or not)."""
    return ingest_hh.read_records(spark, files, tolerant)
