"""Scale data for the benchmarks: N HH-format dialogues made from the real samples.

The pool is every dialogue of the real HH-RLHF files (`--hh`, default
../shared/data/hh-rlhf and data/sample/hh-rlhf: `{"chosen", "rejected"}`
JSON lines) and the red-team sample (data/sample/red-team-attempts, one JSON
array). Each generated dialogue is a real one perturbed deterministically
from a seed:

- turns are shuffled between dialogues: each turn's text is, with
  probability `--swap`, replaced by the text of a turn of the same speaker
  from another dialogue of the pool;
- words vary: a few words of each turn are replaced by words of the pool's
  vocabulary or swapped with their neighbour.

The turn markers are kept as they are, so the real edge cases of the pool
(text before the first Human turn, a dialogue without an Assistant reply,
...) keep their share. `rejected` is `chosen` with another last reply.
Duplicates are counted (sha256 of `chosen`/`transcript`) and written to
`gen.json`: with the defaults, 0 at 10^4, 4 at 10^5 and 146 at 10^6 (0.015%,
short dialogues perturbed the same way).

Layout under `<out>/<N>/`, like the upstream files (several files per source,
so that gzip, which cannot be split, does not serialize the read):

    hh-rlhf/helpful-online/part-00000.jsonl.gz ...            (45% of N)
    hh-rlhf/helpful-rejection-sampled/part-00000.jsonl.gz ... (45% of N)
    red-team-attempts/red_team_attempts-00000.json ...         (10% of N, JSON arrays)
    gen.json                                                    (counts, seed, duplicates)

    .venv/bin/python benchmarks/gen_scale.py --n 10000 100000 [--out bench-data] [--seed 0]

Every file is written from its own seed (seed, source, file index), by a
pool of processes, so the bytes do not depend on the number of processes.

`generate_counts` writes given counts per source instead, one file per
source named and laid out like the upstream train file (`UPSTREAM_FILES`;
the red-team file a gzipped JSON array, as upstream), with the counts, seed
and duplicates in `gen.json`; `benchmarks/seed_scale.py` makes the seed's
input sizes with it.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HH = [REPO.parent / "shared" / "data" / "hh-rlhf", REPO / "data" / "sample" / "hh-rlhf"]
DEFAULT_RED_TEAM = REPO / "data" / "sample" / "red-team-attempts" / "red_team_attempts.json"

HH_SOURCES = ("helpful-online", "helpful-rejection-sampled")
HH_SHARE = 0.45          # of N, per HH source; the red-team array files hold the rest
ROWS_PER_FILE = 25_000   # dialogues per generated file
# Where `generate_counts` writes each source, as the upstream train files are named
# (anthropics/hh-rlhf), and the kind of `write_file`.
UPSTREAM_FILES = {
    "helpful-online": ("hh-rlhf/helpful-online/train.jsonl.gz", "hh"),
    "helpful-rejection-sampled": ("hh-rlhf/helpful-rejection-sampled/train.jsonl.gz", "hh"),
    "red-team-attempts": ("red-team-attempts/red_team_attempts.jsonl.gz", "red_team"),
}
TURN = re.compile(r"(\n\nHuman:|\n\nAssistant:)")
WORD = re.compile(r"[A-Za-z]{3,}")

_POOL: dict = {}


def turns(dialogue: str) -> list[str]:
    """[head, marker, text, marker, text, ...]: split at the turn markers, markers kept."""
    return TURN.split(dialogue)


def load_pool(hh_dirs: list[Path], red_team: Path) -> dict:
    """Dialogues, red-team records, turn texts by speaker and the vocabulary of the real samples."""
    dialogues, texts = [], {"\n\nHuman:": [], "\n\nAssistant:": []}
    for folder in hh_dirs:
        for path in sorted(folder.rglob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                dialogues.extend(json.loads(line)["chosen"] for line in f if line.strip())
    records = json.loads(red_team.read_text(encoding="utf-8"))
    for d in dialogues + [r["transcript"] for r in records]:
        parts = turns(d)
        for marker, text in zip(parts[1::2], parts[2::2]):
            texts[marker].append(text)
    vocab = sorted({w for t in texts["\n\nHuman:"][:20000] for w in WORD.findall(t)})
    if not dialogues or not records:
        raise SystemExit(f"no dialogues found under {hh_dirs} or no records in {red_team}")
    return {"dialogues": dialogues, "records": records, "texts": texts, "vocab": vocab}


def vary_words(text: str, rng: random.Random, vocab: list[str]) -> str:
    """1 to 3 words of `text` replaced by vocabulary words or swapped with the next one."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if WORD.fullmatch(w)]
    for _ in range(min(len(candidates), rng.randint(1, 3))):
        i = rng.choice(candidates)
        if rng.random() < 0.5 or i + 1 >= len(words) or not WORD.fullmatch(words[i + 1]):
            words[i] = rng.choice(vocab)
        else:
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def perturb(dialogue: str, rng: random.Random, swap: float) -> str:
    texts, vocab = _POOL["texts"], _POOL["vocab"]
    parts = turns(dialogue)
    for k in range(2, len(parts), 2):
        if rng.random() < swap:
            parts[k] = rng.choice(texts[parts[k - 1]])
        parts[k] = vary_words(parts[k], rng, vocab)
    return "".join(parts)


def other_reply(dialogue: str, rng: random.Random) -> str:
    """`dialogue` with its last Assistant text replaced (the `rejected` side)."""
    parts = turns(dialogue)
    last = max((k for k in range(2, len(parts), 2) if parts[k - 1] == "\n\nAssistant:"), default=None)
    if last is not None:
        parts[last] = rng.choice(_POOL["texts"]["\n\nAssistant:"])
    return "".join(parts)


def _init(pool: dict) -> None:
    _POOL.update(pool)


def write_file(job: tuple) -> tuple[str, list[bytes]]:
    """Write one generated file; returns its path and the digests of its dialogues."""
    path, kind, rows, seed, swap = job
    rng = random.Random(f"{seed}:{path.parent.name}:{path.name}")
    digests = []
    tmp = path.with_name(path.name + ".partial")
    if kind == "hh":
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            for _ in range(rows):
                chosen = perturb(rng.choice(_POOL["dialogues"]), rng, swap)
                digests.append(hashlib.sha256(chosen.encode()).digest()[:16])
                f.write(json.dumps({"chosen": chosen, "rejected": other_reply(chosen, rng)}) + "\n")
    else:
        out = []
        for _ in range(rows):
            record = dict(rng.choice(_POOL["records"]))
            base = rng.choice(_POOL["dialogues"]) if rng.random() < 0.5 else record["transcript"]
            record["transcript"] = perturb(base, rng, swap)
            record["rating"] = float(rng.randint(0, 4))
            digests.append(hashlib.sha256(record["transcript"].encode()).digest()[:16])
            out.append(record)
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(tmp, "wt", encoding="utf-8") as f:
            json.dump(out, f)
    os.replace(tmp, path)
    return str(path), digests


def jobs_for(root: Path, n: int, seed: int, swap: float) -> list[tuple]:
    hh_rows = int(n * HH_SHARE)
    plan = [(root / "hh-rlhf" / s, "hh", hh_rows, "part-{:05d}.jsonl.gz") for s in HH_SOURCES]
    plan.append((root / "red-team-attempts", "red_team", n - 2 * hh_rows, "red_team_attempts-{:05d}.json"))
    jobs = []
    for folder, kind, rows, pattern in plan:
        folder.mkdir(parents=True, exist_ok=True)
        files = max(2, math.ceil(rows / ROWS_PER_FILE))
        for i in range(files):
            share = rows // files + (1 if i < rows % files else 0)
            jobs.append((folder / pattern.format(i), kind, share, seed, swap))
    return jobs


def generate(n: int, out: Path, seed: int = 0, swap: float = 0.3, processes: int | None = None, pool_data: dict | None = None) -> Path:
    """Write N dialogues under `out/<n>/` (kept when already complete); returns that folder."""
    root = out / str(n)
    stamp = root / "gen.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("seed") == seed:
        return root
    shutil.rmtree(root, ignore_errors=True)
    started = time.monotonic()
    pool_data = pool_data or load_pool(DEFAULT_HH, DEFAULT_RED_TEAM)
    jobs = jobs_for(root, n, seed, swap)
    seen, files = set(), 0
    with Pool(processes or os.cpu_count(), initializer=_init, initargs=(pool_data,)) as pool:
        for path, digests in pool.imap_unordered(write_file, jobs):
            seen.update(digests)
            files += 1
            print(f"  {path} ({len(digests)} dialogues)", file=sys.stderr)
    info = {
        "n": n, "seed": seed, "swap": swap, "files": files, "duplicates": n - len(seen),
        "bytes": sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
        "seconds": round(time.monotonic() - started, 1),
    }
    stamp.write_text(json.dumps(info, indent=2) + "\n")
    return root


def generate_counts(counts: dict[str, int], root: Path, seed: int = 0, swap: float = 0.3, processes: int | None = None,
                    pool_data: dict | None = None) -> Path:
    """Write `counts[source]` dialogues for each source of `UPSTREAM_FILES` it names, one file per
    source at its upstream path under `root` (kept when already complete with these counts and
    seed); returns `root`."""
    stamp = root / "gen.json"
    if stamp.is_file() and {k: json.loads(stamp.read_text()).get(k) for k in ("counts", "seed", "swap")} == {
            "counts": counts, "seed": seed, "swap": swap}:
        return root
    unknown = sorted(set(counts) - set(UPSTREAM_FILES))
    if unknown:
        raise ValueError(f"no upstream file known for {unknown}; known: {sorted(UPSTREAM_FILES)}")
    shutil.rmtree(root, ignore_errors=True)
    started = time.monotonic()
    pool_data = pool_data or load_pool(DEFAULT_HH, DEFAULT_RED_TEAM)
    jobs = []
    for source, rows in counts.items():
        relative, kind = UPSTREAM_FILES[source]
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        jobs.append((root / relative, kind, rows, seed, swap))
    seen = set()
    with Pool(min(processes or os.cpu_count(), len(jobs)), initializer=_init, initargs=(pool_data,)) as pool:
        for path, digests in pool.imap_unordered(write_file, jobs):
            seen.update(digests)
            print(f"  {path} ({len(digests)} dialogues)", file=sys.stderr)
    info = {
        "counts": counts, "seed": seed, "swap": swap, "files": len(jobs), "duplicates": sum(counts.values()) - len(seen),
        "bytes": sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
        "seconds": round(time.monotonic() - started, 1),
    }
    stamp.write_text(json.dumps(info, indent=2) + "\n")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[10_000], help="dialogues per data set (default 10000)")
    p.add_argument("--out", type=Path, default=REPO / "bench-data", help="folder of the data sets (default ./bench-data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--swap", type=float, default=0.3, help="probability that a turn's text comes from another dialogue")
    p.add_argument("--processes", type=int, default=None, help="writer processes (default: all cores)")
    args = p.parse_args(argv)
    pool_data = load_pool(DEFAULT_HH, DEFAULT_RED_TEAM)
    for n in args.n:
        root = generate(n, args.out, args.seed, args.swap, args.processes, pool_data)
        print(json.dumps({"folder": str(root), **json.loads((root / "gen.json").read_text())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
