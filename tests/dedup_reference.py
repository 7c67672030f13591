"""A plain-Python dedup written for the tests and the benchmark, independent of instructlake.jobs.stages.dedup:
exact groups by dictionaries, near duplicates by the exact Jaccard similarity of every two
pairs that share a shingle (an inverted index finds them; no MinHash)."""
from __future__ import annotations

import hashlib
import unicodedata
from collections import defaultdict


def normalize(text: str | None) -> str:
    """NFKC, lower case, punctuation and symbols (categories P*, S*) to a space, whitespace runs to one space."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(text.split())


def shingles(text: str, k: int) -> set[str]:
    words = text.split()
    if not words:
        return set()
    return {" ".join(words[i : i + k]) for i in range(max(len(words) - k, 0) + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def pair_id(instruction: str, response: str) -> str:
    return hashlib.sha256(f"{instruction}\u0000{response}".encode()).hexdigest()


def dedup(rows: list[dict], k: int = 5, threshold: float = 0.8, near_labels: set | None = None) -> dict:
    """Reasons by row key for rows with keys `key` (the priority tuple, unique), `source_name`,
    `source`, `pair_id`, `instruction`, `response`: None (kept), `duplicate_of:<pair_id>` or
    `near_duplicate_of:<pair_id>`."""
    rows = sorted(rows, key=lambda r: r["key"])
    reasons: dict = {}
    first_pair, first_instruction = {}, {}
    for r in rows:
        ni, nr = normalize(r["instruction"]), normalize(r["response"])
        survivor = first_pair.setdefault((ni, nr), r)
        if survivor is r:
            survivor = first_instruction.setdefault((r["source_name"], ni), r)
        reasons[r["key"]] = None if survivor is r else f"duplicate_of:{survivor['pair_id']}"
    docs = [
        (r, shingles(f"{normalize(r['instruction'])} {normalize(r['response'])}".strip(), k))
        for r in rows
        if reasons[r["key"]] is None and (near_labels is None or r["source"] in near_labels)
    ]
    index = defaultdict(list)  # shingle -> positions in docs (priority order)
    for pos, (r, s) in enumerate(docs):
        earlier = sorted({p for sh in s for p in index[sh]})
        match = next((docs[p][0] for p in earlier if jaccard(docs[p][1], s) >= threshold - 1e-9), None)
        if match is not None:
            reasons[r["key"]] = f"near_duplicate_of:{match['pair_id']}"
        for sh in s:
            index[sh].append(pos)
    return reasons
