"""The cheap path in DuckDB, for the peers benchmark (`benchmarks/peers.py`).

What a user who picks DuckDB instead writes for the same job: `read_json`
of the HH-RLHF `*.jsonl.gz` files and of the red-team JSON arrays, the
dialogue split as DuckDB string functions and RE2 regular expressions (the
rules of `instructlake.udfs.dialogue`, in the same order), the filters of
`benchmarks/bench.yaml` (template tokens and extra turns with the patterns
of `instructlake.udfs.template_tokens`, lengths in characters, the red-team
rating), an order by a seeded hash, and the parts written from Arrow batches
as JSON lists of `[source, text]`, `--rows-per-part` elements each. No
bronze table, quarantine, manifest or incremental re-run.

    .venv/bin/python benchmarks/duckdb_peer.py DATA_DIR OUT_DIR [--threads 2] [--rows-per-part 10000]

Prints one JSON line: seconds per step, rows read and kept.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instructlake.udfs.dialogue import BLANK_LINES, MERGE_ASSISTANT, MERGE_HUMAN, WS_CHARS  # noqa: E402
from instructlake.udfs.pair_format import DEFAULT_TEMPLATE, PairTemplate  # noqa: E402
from instructlake.udfs.template_tokens import EXTRA_TURN, TEMPLATE_TOKEN  # noqa: E402

NAME = "instruction_tuning_dataset"


def re2(pattern: str) -> str:
    """A pattern of Python's `re` in RE2's words: `\\uXXXX` is `\\x{XXXX}` there."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", r"\\x{\1}", pattern)


def lit(text: str) -> str:
    """A SQL string literal (E'' escapes are not needed: DuckDB strings hold any character)."""
    return "'" + text.replace("'", "''") + "'"


def split_sql(text: str) -> str:
    """A SELECT list computing `instruction`, `response`, `error` of the first exchange of `text`
    (`instructlake.udfs.dialogue.split_first_exchange`'s rules and reasons, in order)."""
    ws = lit(WS_CHARS)
    human, assistant = lit("\n\nHuman:"), lit("\n\nAssistant:")
    return f"""
      WITH t AS (SELECT *, CASE WHEN contains({text}, chr(13)) THEN regexp_replace({text}, '\\r\\n?', chr(10), 'g')
                                ELSE {text} END AS _text FROM records),
      b AS (SELECT *, ltrim(_text, {ws}) AS _body FROM t),
      u AS (SELECT *, split_part(_body, {assistant}, 1) AS _upto, strpos(_body, {assistant}) AS _at FROM b),
      h AS (SELECT *, substr(_upto, 7) AS _first,
                   CASE WHEN _at > 0 THEN split_part(substr(_body, _at + {len(chr(10) * 2 + 'Assistant:')}), {human}, 1) END AS _reply
            FROM u),
      m AS (SELECT *,
              trim(CASE WHEN contains(_first, {human}) THEN regexp_replace(_first, {lit(re2(MERGE_HUMAN))}, chr(10), 'g')
                        ELSE _first END, {ws}) AS _i0,
              trim(CASE WHEN contains(_reply, {assistant}) THEN regexp_replace(_reply, {lit(re2(MERGE_ASSISTANT))}, chr(10), 'g')
                        ELSE _reply END, {ws}) AS _response
            FROM h),
      c AS (SELECT *, CASE WHEN contains(_i0, chr(10)) THEN regexp_replace(_i0, {lit(re2(BLANK_LINES))}, chr(10), 'g')
                           ELSE _i0 END AS _instruction FROM m)
      SELECT source, rating,
        CASE WHEN _text IS NULL OR _body = '' THEN 'empty_dialogue'
             WHEN NOT starts_with(_body, 'Human:') AND NOT contains(_text, 'Human:') THEN 'no_human_turn'
             WHEN NOT starts_with(_body, 'Human:') THEN 'text_before_first_human_turn'
             WHEN _at = 0 THEN 'no_assistant_reply'
             WHEN _instruction = '' THEN 'empty_instruction'
             WHEN _response = '' THEN 'empty_response' END AS error,
        _instruction AS instruction, _response AS response
      FROM c"""


def kept_sql(template: PairTemplate, seed: int) -> str:
    token, turn = lit(re2(TEMPLATE_TOKEN)), lit(re2(EXTRA_TURN))

    def clean(c: str) -> str:
        return f"NOT regexp_matches({c}, {token}) AND NOT regexp_matches({c}, {turn})"

    text = f"concat({lit(template.prefix)}, instruction, {lit(template.middle)}, response, {lit(template.suffix)})"
    return f"""
      SELECT to_json([source, {text}]) AS element, hash({seed}, instruction, response, source) AS h
      FROM split
      WHERE error IS NULL AND {clean('instruction')} AND {clean('response')}
        AND length(instruction) >= 1
        AND (source <> 'hh_helpful' OR length(response) >= 100)
        AND (source <> 'hh_harmless' OR (rating IS NOT NULL AND rating BETWEEN 0 AND 2))
      ORDER BY h, element"""


def run(data: Path, out: Path, threads: int, rows_per_part: int, seed: int = 0) -> dict:
    import duckdb

    timings = {}
    started = time.monotonic()
    con = duckdb.connect(config={"threads": threads})
    hh = str(data / "hh-rlhf" / "*" / "*.jsonl.gz")
    red = str(data / "red-team-attempts" / "*.json")
    con.execute(f"""
      CREATE TEMP TABLE records AS
        SELECT 'hh_helpful' AS source, chosen AS dialogue, CAST(NULL AS DOUBLE) AS rating
          FROM read_json({lit(hh)}, format = 'newline_delimited', columns = {{chosen: 'VARCHAR', rejected: 'VARCHAR'}},
                         compression = 'gzip', maximum_object_size = 268435456)
        UNION ALL
        SELECT 'hh_harmless', transcript, TRY_CAST(rating AS DOUBLE)
          FROM read_json({lit(red)}, format = 'array', columns = {{transcript: 'VARCHAR', rating: 'VARCHAR'}},
                         maximum_object_size = 268435456)""")
    read = con.execute("SELECT count(*) FROM records").fetchone()[0]
    timings["ingest"] = time.monotonic() - started
    t = time.monotonic()
    con.execute(f"CREATE TEMP TABLE split AS {split_sql('dialogue')}")
    con.execute("DROP TABLE records")
    timings["pairs"] = time.monotonic() - t
    t = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    reader = con.sql(kept_sql(PairTemplate.parse(DEFAULT_TEMPLATE), seed)).to_arrow_reader(rows_per_part)
    kept, parts, pending = 0, 0, []

    def flush(elements: list[str]) -> None:
        nonlocal parts
        parts += 1
        with open(out / f"{NAME}_part{parts}.json", "w", encoding="utf-8") as f:
            f.write("[" + ",\n".join(elements) + "]")

    for batch in reader:
        pending += batch.column(0).to_pylist()
        while len(pending) >= rows_per_part:
            flush(pending[:rows_per_part])
            kept += rows_per_part
            pending = pending[rows_per_part:]
    if pending:
        flush(pending)
        kept += len(pending)
    timings["export"] = time.monotonic() - t
    timings["total"] = time.monotonic() - started
    return {"seconds": timings, "rows_read": read, "rows_kept": kept, "parts": parts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows-per-part", type=int, default=10000)
    args = p.parse_args(argv)
    print(json.dumps(run(args.data, args.out, args.threads, args.rows_per_part)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
