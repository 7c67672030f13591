"""What each table and column of the lake means: the comments a metastore shows (tables by name,
`paths.catalog`) and the documentation's table reference (docs/concepts.md, written from here by
docs/hooks.py), from one place."""
from __future__ import annotations

from typing import Optional

# By the table's name without its catalog and schema; `bronze_<source>` by its `bronze` prefix.
TABLES = {
    "bronze": "Bronze: one row per raw record of one source, its typed fields and its provenance; instructlake ingest.",
    "quarantine": "Records and files that could not be ingested, each with its reason and a preview of the raw bytes.",
    "ingest_log": "One row per ingested input file: size, modification time, rows read, ingested and quarantined.",
    "silver_pairs": "One row per candidate (instruction, response) pair of every source, kept or dropped with its reason and stage.",
    "silver_preference": "One row per preference record (chosen, rejected): the shared prompt and both final replies, kept or dropped.",
    "silver_conversations": "One row per dialogue: every turn that can be trained on, kept or dropped with its reason and stage.",
    "silver_paragraphs": "The web-text paragraphs selected for question generation, with the selection's scores.",
    "silver_generations": "The cache of every language-model call, by a key of prompt, model and sampling parameters.",
    "silver_qa": "Generated question-answer pairs with their checks and drop reasons.",
    "silver_code_functions": "Python functions written by the language model, with their tasks and tests.",
    "silver_executions": "The cache of every program run in the sandbox, by a key of code and tests.",
}

COLUMNS = {
    "source": "The source label in the dataset (e.g. hh_helpful).",
    "source_name": "The conf source (bronze table) the row comes from.",
    "source_format": "The source format that read it (hh_rlhf, red_team, ...).",
    "source_file": "The URI of the input file the record was read from.",
    "row_index": "The record's position in its file, from 0 (line number, or array index).",
    "content_id": "sha256 of the record's typed fields; the id of every exported row made from it.",
    "ingest_run_id": "The run that ingested the record.",
    "ingested_at": "When the record was ingested (UTC).",
    "item": "Which pair of the record: empty for a dialogue, <type>/<k> for a generated question.",
    "instruction": "The instruction (user turn); for a preference record, the prompt's turns as one text.",
    "response": "The response (assistant reply); for a preference record, the chosen final reply.",
    "rejected": "The rejected final reply of a preference record.",
    "prompt": "The turns a preference record's two sides share up to the final assistant turn.",
    "messages": "Every turn of the conversation that can be trained on, as chat messages.",
    "turns": "The number of messages kept.",
    "cut": "Why later turns were left out of the conversation (empty_turn, unanswered_final_turn), or null.",
    "failed_exchange": "The first later exchange that failed an every-turn filter (1 is the first), or null.",
    "red_team_rating": "The red-teamer's rating of the attack's success, 0 to 4.",
    "is_code": "Whether the pair is code (the language filter skips it).",
    "instruction_chars": "Characters in the instruction.",
    "response_chars": "Characters in the response.",
    "rejected_chars": "Characters in the rejected reply.",
    "pair_id": "sha256 of instruction and response.",
    "lang": "The language langdetect found.",
    "lang_prob": "langdetect's probability of that language.",
    "drop_reason": "Why the row is not exported (the first failing filter or step), or null when it is kept.",
    "drop_stage": "The filter or step that dropped the row, or null when it is kept.",
    "pairs_run_id": "The run that scored the pair.",
    "products_run_id": "The run that built the product table.",
    "reason": "Why the record or file was quarantined.",
}


def table_comment(name: str) -> Optional[str]:
    """The comment of a table by its name (`catalog.schema.table` or the last part alone)."""
    table = name.rsplit(".", 1)[-1]
    return TABLES.get(table) or (TABLES["bronze"] if table.startswith("bronze_") else None)


def column_comment(column: str) -> Optional[str]:
    return COLUMNS.get(column)


def reference_markdown() -> str:
    """The tables and columns as Markdown tables (for the documentation)."""
    rows = ["| table (by name: `<catalog>.<schema>.<table>`) | what it holds |", "|---|---|"]
    rows += [f"| `{'bronze_<source>' if t == 'bronze' else t}` | {text} |" for t, text in TABLES.items()]
    rows += ["", "| column | meaning |", "|---|---|"]
    rows += [f"| `{c}` | {text} |" for c, text in COLUMNS.items()]
    return "\n".join(rows)
