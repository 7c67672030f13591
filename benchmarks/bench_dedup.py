"""Throughput of the dedup step (instructlake.jobs.stages.dedup) and how it grows with the number of pairs.

Inputs are made from the real HH-RLHF dialogues by deterministic perturbation:
the first exchanges of `chosen` and `rejected` (one per normalized instruction,
at least 5 instruction words and 20 response words) are the first base pairs;
further base pairs are the same texts with their words shuffled by a seeded
generator (a new word order shares almost no 5-word shingle with the original).
All base pairs go to the first source. Then, in a second and third source:

- planted exact copies (`--exact-share` of the rows): a base pair lower-cased,
  with doubled spaces and a no-break space;
- planted near copies (`--near-share`): a base pair of at least 60 words with
  one word of its response replaced (similarity >= 0.83 with 5-word shingles).

Each size runs twice on a cached DataFrame, the decision written to Spark's
`noop` sink after a warm-up: exact dedup only (`dedup.near=false`), then exact
and near. Recall: the share of planted copies dropped with the right kind and
survivor. Precision: the share of drops that the rule confirms (same
normalized text, or exact Jaccard >= threshold with the named survivor,
checked in plain Python); drops of base pairs are counted apart (`unplanted`).

    .venv/bin/python benchmarks/bench_dedup.py [--data ../shared/data/hh-rlhf] [--sizes 1000 10000 100000]
        [--near-share 0.1] [--exact-share 0.05] [--master local[2]]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import dedup_reference as ref  # noqa: E402  the plain-Python rule, to check the drops
from hh_sample import hh_exchanges  # noqa: E402

SOURCES = ["helpful_online", "helpful_rejection_sampled", "red_team_attempts"]
SCHEMA = ("source_name string, source_file string, row_index long, item string, source string, "
          "instruction string, response string, pair_id string, drop_reason string")


def real_exchanges(data: Path) -> list[tuple[str, str]]:
    seen, out = set(), []
    for ex in hh_exchanges(data):
        if ex.error is not None or len(ex.instruction.split()) < 5 or len(ex.response.split()) < 20:
            continue
        key = ref.normalize(ex.instruction)
        if key not in seen:
            seen.add(key)
            out.append((ex.instruction, ex.response))
    return out


def shuffled(text: str, rng: random.Random) -> str:
    words = text.split()
    rng.shuffle(words)
    return " ".join(words)


def make_rows(real: list[tuple[str, str]], n: int, near_share: float, exact_share: float, seed: int = 0):
    """Rows for dedup_reasons, and the planted copies: {(source_name, row_index): (kind, base row_index)}."""
    rng = random.Random(seed)
    n_near, n_exact = int(n * near_share), int(n * exact_share)
    n_base = n - n_near - n_exact
    bases = [real[k] if k < len(real) else tuple(shuffled(t, random.Random(f"{seed}:{k}:{i}")) for i, t in enumerate(real[k % len(real)]))
             for k in range(n_base)]
    rows = [("helpful_online", k, *bases[k]) for k in range(n_base)]
    planted = {}
    long_bases = [k for k, (i, r) in enumerate(bases) if len(f"{i} {r}".split()) >= 60]
    for j in range(n_exact):
        k = rng.randrange(n_base)
        instruction, response = bases[k]
        variant = (instruction.lower(), response.replace(" ", "  ", 2).replace(" ", "\u00a0", 1))
        name = SOURCES[1 + j % 2]
        rows.append((name, j, *variant))
        planted[(name, j)] = ("duplicate_of", k)
    for j, k in enumerate(rng.sample(long_bases, n_near)):  # one near copy per base at most
        instruction, response = bases[k]
        words = response.split(" ")
        words[len(words) // 2] = "zzplanted"
        name = SOURCES[1 + j % 2]
        rows.append((name, n_exact + j, instruction, " ".join(words)))
        planted[(name, n_exact + j)] = ("near_duplicate_of", k)
    return [
        {"source_name": s, "source_file": f"file:/bench/{s}", "row_index": i, "item": "", "source": "hh_helpful",
         "instruction": ins, "response": resp, "pair_id": ref.pair_id(ins, resp), "drop_reason": None}
        for s, i, ins, resp in rows
    ], planted


def score(rows: list[dict], decided: dict, planted: dict, threshold: float, k: int) -> dict:
    by_key = {(r["source_name"], r["row_index"]): r for r in rows}
    base_pid = {r["row_index"]: r["pair_id"] for r in rows if r["source_name"] == SOURCES[0]}
    by_pid = {}
    for r in rows:
        if decided[(r["source_name"], r["row_index"])] is None:
            by_pid[r["pair_id"]] = r
    found = sum(decided[key] == f"{kind}:{base_pid[base]}" for key, (kind, base) in planted.items())
    confirmed = unplanted = dropped = 0
    for key, reason in decided.items():
        if reason is None:
            continue
        dropped += 1
        unplanted += key not in planted
        kind, pid = reason.split(":", 1)
        a, b = by_key[key], by_pid.get(pid)
        if b is None:  # a near duplicate may name a survivor of the exact steps that is itself a near duplicate
            b = next(r for r in rows if r["pair_id"] == pid)
        na, nb = (ref.normalize(a["instruction"]), ref.normalize(a["response"])), (ref.normalize(b["instruction"]), ref.normalize(b["response"]))
        if kind == "duplicate_of":
            confirmed += na == nb or (na[0] == nb[0] and a["source_name"] == b["source_name"])
        else:
            confirmed += ref.jaccard(ref.shingles(" ".join(na).strip(), k), ref.shingles(" ".join(nb).strip(), k)) >= threshold - 1e-9
    return {"recall": found / max(len(planted), 1), "precision": confirmed / max(dropped, 1), "dropped": dropped, "unplanted": unplanted}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "hh-rlhf")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--near-share", type=float, default=0.1)
    p.add_argument("--exact-share", type=float, default=0.05)
    p.add_argument("--master", default="local[2]")
    args = p.parse_args()

    from instructlake.core.config import SparkSettings
    from instructlake.jobs.runner import load_config
    from instructlake.jobs.stages.dedup import dedup_reasons
    from instructlake.core.session import get_spark

    spark = get_spark(SparkSettings(master=args.master, shuffle_partitions=8, app_name="bench-dedup"))
    real = real_exchanges(args.data)
    print(f"{len(real)} distinct real exchanges from {args.data}; master {args.master}")
    tmp = Path(tempfile.mkdtemp())
    conf = load_config(REPO / "conf" / "local.yaml", [f"paths.lake={tmp.as_uri()}", "dedup.near_sources=null"])
    exact_conf = load_config(REPO / "conf" / "local.yaml", [f"paths.lake={tmp.as_uri()}", "dedup.near=false"])
    spec = conf.dedup
    print(f"threshold {spec.threshold}, {spec.shingle_words}-word shingles, {spec.bands} bands x {spec.rows_per_band} rows")
    print(f"{'pairs':>8} {'step':>11} {'seconds':>8} {'pairs/s':>9} {'dropped':>8} {'recall':>7} {'precision':>9} {'unplanted':>9}")
    warm = spark.createDataFrame(make_rows(real, 300, args.near_share, args.exact_share)[0], SCHEMA)
    dedup_reasons(warm, conf).write.format("noop").mode("overwrite").save()
    for n in args.sizes:
        rows, planted = make_rows(real, n, args.near_share, args.exact_share)
        df = spark.createDataFrame(rows, SCHEMA).repartition(8).cache()
        df.count()
        for step, c in (("exact", exact_conf), ("exact+near", conf)):
            cached: list = []
            decided_df = dedup_reasons(df, c, cached)
            started = time.monotonic()
            decided_df.write.format("noop").mode("overwrite").save()
            seconds = time.monotonic() - started
            # The decision again, collected only here to score it (the job itself collects nothing).
            decided = {(r["source_name"], r["row_index"]): r["drop_reason"] for r in decided_df.collect()}
            for d in cached:
                d.unpersist()
            want = planted if step == "exact+near" else {k: v for k, v in planted.items() if v[0] == "duplicate_of"}
            s = score(rows, decided, want, spec.threshold, spec.shingle_words)
            print(f"{n:>8} {step:>11} {seconds:>8.1f} {n / seconds:>9.0f} {s['dropped']:>8} {s['recall']:>7.4f} {s['precision']:>9.4f} {s['unplanted']:>9}", flush=True)
        df.unpersist()
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
