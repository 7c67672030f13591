"""How many HH-RLHF records make preference pairs, why the rest do not, and what the whole
conversations look like: the rules of `instructlake.udfs.conversation`, the same functions the
pairs stage runs in Spark, over real files.

For each file: records, pairs made, records dropped by reason; dialogues (`chosen`) with their
exchanges and cuts. Before any filter of the conf (those are counted in each release's
manifest and report).

    .venv/bin/python benchmarks/preference_pairs.py [FILE ...]   (default: the HH-RLHF test files in ../shared/data)
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT = sorted((REPO.parent / "shared" / "data" / "hh-rlhf").glob("*/test.jsonl.gz"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, default=DEFAULT)
    args = p.parse_args()
    from instructlake.udfs.conversation import conversation, preference

    if not args.files:
        print("no HH-RLHF files given or found in ../shared/data/hh-rlhf", file=sys.stderr)
        return 2
    total: Counter = Counter()
    for path in args.files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        reasons = Counter(preference(r["chosen"], r["rejected"]).error or "pair" for r in records)
        whole = [conversation(r["chosen"]) for r in records]
        exchanges = Counter(len(c.messages) // 2 for c in whole if c.messages)
        cuts = Counter(c.cut for c in whole if c.messages and c.cut)
        made = reasons.pop("pair", 0)
        print(f"{path.parent.name}/{path.name}: {len(records)} records, {made} preference pairs ({made / len(records):.1%})")
        for reason, n in reasons.most_common():
            print(f"  {reason:<20} {n:>6} ({n / len(records):.1%})")
        print(f"  conversations: {sum(exchanges.values())} with a first exchange; exchanges "
              + ", ".join(f"{k}: {n}" for k, n in sorted(exchanges.items())) + f"; cut: {dict(cuts) or 'none'}")
        total.update({"records": len(records), "pairs": made, **{f"drop:{k}": n for k, n in reasons.items()}})
    if len(args.files) > 1:
        print(f"all: {total['records']} records, {total['pairs']} pairs ({total['pairs'] / total['records']:.1%}); "
              + ", ".join(f"{k[5:]} {n}" for k, n in sorted(total.items()) if k.startswith("drop:")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
