"""Decontamination counts and throughput: the `decontamination` filter of a conf on real inputs.

For each input the candidate pairs are built with Spark, checked by
`instructlake.udfs.filters.decontamination.filter_decontamination` (every pair still kept, as in
the pipeline) and counted by drop reason; the time of that check is taken
after the benchmark index is built (which is reported on its own), so
pairs/s is the check alone: normalization, n-grams, the join and the
drop-reason column, with one Spark job that counts the result.

    .venv/bin/python benchmarks/bench_decontamination.py --data ../shared/data

Inputs: `sample`, the HH dialogues of the conf's `hh_rlhf` sources (the
embedded sample with conf/local.yaml; its full pipeline counts come from
`make run`'s summary); `hh_helpful_test`, every dialogue of the two HH-RLHF
helpful test files; `conala_train` (intent, snippet); `gsm8k_train`
(question, answer); `squad_du2017_test` (paragraph and question, answer: the
synthetic QA template's shape); and two controls that must be contaminated
almost entirely, `gsm8k_test` and `mbpp_test` (task text, code).
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import reduce
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from instructlake.jobs.runner import load_config  # noqa: E402
from instructlake.core.session import get_spark  # noqa: E402
from instructlake.udfs.filters.decontamination import ITEM_COLUMN, benchmark_index, filter_decontamination  # noqa: E402
from instructlake.udfs.dialogue import with_first_exchange  # noqa: E402


def pairs_of(df: DataFrame, instruction, response) -> DataFrame:
    return df.select(
        F.lit("bench").alias("source"), instruction.alias("instruction"), response.alias("response"),
        F.lit(None).cast("string").alias("drop_reason"),
    )


def hh_pairs(spark, paths: list[str]) -> DataFrame:
    dialogues = reduce(DataFrame.unionByName, [spark.read.json(p).select("chosen") for p in paths])
    return with_first_exchange(dialogues, "chosen", ("instruction", "response", "drop_reason")).select(
        F.lit("bench").alias("source"), "instruction", "response", "drop_reason"
    )


def inputs(spark, conf, data: Path) -> dict[str, DataFrame]:
    sample = [p for s in conf.enabled_sources if s.format == "hh_rlhf" for p in s.paths]
    squad = (
        spark.read.option("multiLine", True).json(str(data / "squad/du2017-test/test-v1.1.json"))
        .select(F.explode("data").alias("a")).select(F.explode("a.paragraphs").alias("p"))
        .select("p.context", F.explode("p.qas").alias("q"))
    )
    conala = spark.read.option("multiLine", True).json(str(data / "conala/conala-train.json"))
    gsm8k = lambda split: spark.read.json(str(data / f"gsm8k/{split}.jsonl"))  # noqa: E731
    mbpp = spark.read.json(str(data / "mbpp/mbpp.jsonl")).where(F.col("task_id").between(11, 510))
    real = {
        "hh_helpful_test": hh_pairs(spark, [str(data / f"hh-rlhf/{d}/test.jsonl.gz") for d in ("helpful-online", "helpful-rejection-sampled")]),
        "conala_train": pairs_of(conala, F.coalesce("rewritten_intent", "intent"), F.col("snippet")),
        "gsm8k_train": pairs_of(gsm8k("train"), F.col("question"), F.col("answer")),
        "squad_du2017_test": pairs_of(
            squad, F.concat_ws("\n", F.lit("Read the text and answer the question."), "context", "q.question"), F.col("q.answers")[0]["text"]
        ),
    }
    return {
        "sample": hh_pairs(spark, sample),
        **real,
        "gsm8k_test": pairs_of(gsm8k("test"), F.col("question"), F.col("answer")),
        "mbpp_test": pairs_of(mbpp, F.col("text"), F.col("code")),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conf", default="conf/local.yaml")
    ap.add_argument("--data", default="../shared/data", type=Path)
    ap.add_argument("--only", nargs="*", help="input names to run (default: all)")
    args = ap.parse_args()
    conf = load_config(args.conf)
    spec = next(f for f in conf.filters if f.rule == "decontamination")
    spark = get_spark(conf.spark)
    started = time.monotonic()
    index = benchmark_index(spark, spec)
    print(f"benchmark index: {time.monotonic() - started:.1f}s")
    for b in index.summary["benchmarks"]:
        print(f"  {b['name']:10} items {b['items']:5}  items < {spec.ngram} tokens {b['items_short']:4}  n-grams {b['ngrams']:7}")
    print(f"\n{'input':18} {'pairs':>7} {'checked':>7} {'contaminated':>12}  {'by benchmark':40} {'s':>6} {'pairs/s':>8}")
    for name, df in inputs(spark, conf, args.data).items():
        if args.only and name not in args.only:
            continue
        df = df.persist()
        total, checked = df.count(), df.where(F.col("drop_reason").isNull()).count()
        t = time.monotonic()
        rows = filter_decontamination(df, spec).groupBy("drop_reason").agg(F.count("*").alias("n"), F.min(ITEM_COLUMN).alias("item")).collect()
        seconds = time.monotonic() - t
        hits = {r["drop_reason"].split(":", 1)[1]: r["n"] for r in rows if r["drop_reason"] and r["drop_reason"].startswith("contaminated:")}
        by = ", ".join(f"{k} {v}" for k, v in sorted(hits.items())) or "-"
        print(f"{name:18} {total:7} {checked:7} {sum(hits.values()):12}  {by:40} {seconds:6.1f} {checked / seconds:8.0f}")
        df.unpersist()
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
