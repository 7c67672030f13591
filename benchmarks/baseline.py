"""The plain way: the cheap path of the pipeline in one Python process, for the benchmarks.

What a notebook without Spark does with the same files: `json.loads` each
line of the HH-RLHF `*.jsonl.gz` files and `json.load` each red-team JSON
array, split every dialogue with the pure-Python reference of the dialogue
split (`instructlake.udfs.dialogue.split_first_exchange`, the semantics the Spark
expressions implement), apply the filters of `benchmarks/bench.yaml`
(template tokens and extra turns, lengths, red-team rating) in Python loops,
shuffle the kept pairs with a seeded `random.Random`, and `json.dump` them in parts of `--rows-per-part`
`[source, text]` elements, the text rendered by the export template. All
kept pairs are held in memory, as such a script does. No Delta tables, no
quarantine, no manifest, no incremental re-run.

    .venv/bin/python benchmarks/baseline.py DATA_DIR OUT_DIR [--rows-per-part 10000]

DATA_DIR is a folder of `benchmarks/gen_scale.py` (hh-rlhf/<source>/*.jsonl.gz,
red-team-attempts/*.json). Prints one JSON line: seconds per stage, rows read
and kept.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from instructlake.udfs.dialogue import split_first_exchange  # noqa: E402
from instructlake.udfs.pair_format import DEFAULT_TEMPLATE, PairTemplate  # noqa: E402
from instructlake.udfs.template_tokens import find_extra_turn, find_template_token  # noqa: E402

# source folder -> label, as in benchmarks/bench.yaml
HH_LABELS = {"helpful-online": "hh_helpful", "helpful-rejection-sampled": "hh_helpful"}
RED_TEAM_LABEL = "hh_harmless"
MIN_RESPONSE_CHARS = {"hh_helpful": 100}   # response_length, hh_helpful only
MIN_INSTRUCTION_CHARS = 1                  # instruction_length, all sources
MAX_RATING, MIN_RATING = 2.0, 0.0          # red_team_rating, hh_harmless only


def read_dialogues(data: Path) -> list[tuple[str, str, float | None]]:
    """(label, dialogue, rating) for every record of the data folder."""
    rows = []
    for folder, label in HH_LABELS.items():
        for path in sorted((data / "hh-rlhf" / folder).glob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for line in f:
                    rows.append((label, json.loads(line)["chosen"], None))
    for path in sorted((data / "red-team-attempts").glob("*.json")):
        with open(path, encoding="utf-8") as f:
            for record in json.load(f):
                rows.append((RED_TEAM_LABEL, record["transcript"], record.get("rating")))
    return rows


def keep(label: str, instruction: str, response: str, rating: float | None) -> bool:
    if any(find_template_token(t) or find_extra_turn(t) for t in (instruction, response)):  # template_tokens
        return False
    if len(instruction) < MIN_INSTRUCTION_CHARS:
        return False
    if len(response) < MIN_RESPONSE_CHARS.get(label, 0):
        return False
    if label == RED_TEAM_LABEL:
        return rating is not None and MIN_RATING <= rating <= MAX_RATING
    return True


def make_pairs(rows, template: PairTemplate) -> list[list[str]]:
    pairs = []
    for label, dialogue, rating in rows:
        ex = split_first_exchange(dialogue)
        if ex.error is None and keep(label, ex.instruction, ex.response, rating):
            pairs.append([label, template.render(ex.instruction, ex.response)])
    return pairs


def export(pairs: list[list[str]], out: Path, rows_per_part: int, seed: int = 0) -> int:
    random.Random(seed).shuffle(pairs)
    out.mkdir(parents=True, exist_ok=True)
    parts = 0
    for start in range(0, len(pairs), rows_per_part):
        parts += 1
        with open(out / f"instruction_tuning_dataset_part{parts}.json", "w", encoding="utf-8") as f:
            json.dump(pairs[start : start + rows_per_part], f)
    return parts


def run(data: Path, out: Path, rows_per_part: int) -> dict:
    timings = {}
    started = time.monotonic()
    rows = read_dialogues(data)
    timings["ingest"] = time.monotonic() - started
    t = time.monotonic()
    pairs = make_pairs(rows, PairTemplate.parse(DEFAULT_TEMPLATE))
    read = len(rows)
    del rows
    timings["pairs"] = time.monotonic() - t
    t = time.monotonic()
    parts = export(pairs, out, rows_per_part)
    timings["export"] = time.monotonic() - t
    timings["total"] = time.monotonic() - started
    return {"seconds": timings, "rows_read": read, "rows_kept": len(pairs), "parts": parts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--rows-per-part", type=int, default=10000)
    args = p.parse_args(argv)
    print(json.dumps(run(args.data, args.out, args.rows_per_part)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
