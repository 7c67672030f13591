"""Hits of the PII filter's scorer per kind on real text, and a seeded sample of hits to read.

    .venv/bin/python benchmarks/pii_hits.py [--data ../shared/data] [--sample 100]

Scans the `chosen` and `rejected` dialogues of the HH-RLHF test files, the
WikiText paragraphs, and, for more hits of more kinds, the SQuAD contexts,
GSM8K problems, CoNaLa and MBPP tasks (`instructlake.udfs.filters.pii.find_pii`,
default kinds and region); prints the hits per kind and source, then
`--sample` hits drawn with a fixed seed, each with 60 characters of context
either side, for a person to judge one by one.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import random
from pathlib import Path

from instructlake.udfs.filters.pii import find_pii
from instructlake.udfs.webtext import parse_wikitext


def texts(data: Path):
    for name in ("helpful-online", "helpful-rejection-sampled"):
        with gzip.open(data / "hh-rlhf" / name / "test.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                yield "hh-rlhf", record["chosen"]
                yield "hh-rlhf", record["rejected"]
    raw = (data / "wikitext" / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    for _, record, _ in parse_wikitext(raw, "wiki.test.raw"):
        yield "wikitext", json.loads(record)["text"]
    for path in sorted((data / "squad").rglob("*.json")):
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                yield "squad", paragraph["context"]
    for path in sorted((data / "gsm8k").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            yield "gsm8k", record["question"] + "\n" + record["answer"]
    for record in json.loads((data / "conala" / "conala-train.json").read_text(encoding="utf-8")):
        yield "conala", (record["rewritten_intent"] or record["intent"]) + "\n" + record["snippet"]
    for line in (data / "mbpp" / "mbpp.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        yield "mbpp", record["text"] + "\n" + record["code"] + "\n" + "\n".join(record["test_list"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    p.add_argument("--sample", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    counts: collections.Counter = collections.Counter()
    scanned: collections.Counter = collections.Counter()
    hits = []
    for source, text in texts(args.data):
        scanned[source] += 1
        for f in find_pii(text):
            counts[(source, f.kind)] += 1
            hits.append((source, f.kind, f.text, text[max(0, f.start - 60):f.start].replace("\n", " "),
                         text[f.end:f.end + 60].replace("\n", " ")))
    print("texts scanned:", dict(scanned))
    for (source, kind), n in sorted(counts.items()):
        print(f"{source:10} {kind:12} {n:6}")
    print(f"\n{min(args.sample, len(hits))} of {len(hits)} hits (seed {args.seed}):")
    for i, (source, kind, found, before, after) in enumerate(sorted(random.Random(args.seed).sample(hits, min(args.sample, len(hits)))), 1):
        print(f"{i:3} {source:9} {kind:11} [{found}]  ...{before}[[{found}]]{after}...")


if __name__ == "__main__":
    main()
