"""The first exchanges of real HH-RLHF dialogues, for the benchmarks that need real text."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator


def hh_exchanges(data: Path) -> Iterator:
    """The split (`instructlake.udfs.dialogue.split_first_exchange`) of every `chosen` and `rejected` dialogue of
    the `*.jsonl.gz` files under `data`, in file order; exits when there are none."""
    from instructlake.udfs.dialogue import split_first_exchange

    found = False
    for path in sorted(data.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                for field in ("chosen", "rejected"):
                    found = True
                    yield split_first_exchange(record[field])
    if not found:
        raise SystemExit(f"no HH-RLHF dialogues under {data}")
