"""Throughput of the model scorers inside Spark against the same scorer called directly.

For each scorer, on the same (instruction, response) pairs from the HH-RLHF
dialogues (first exchange of `chosen` and of `rejected`, repeated up to
`--pairs`):

- direct: the pure scorer in this Python process, model already loaded;
- Spark local[N]: the conf's filter (`apply_filters`) on a cached DataFrame,
  written to Spark's `noop` sink, after a warm-up run that starts the Python
  workers and loads the model in each.

Rows are pairs; a toxicity row is two texts (instruction and response).
`overhead` is direct rows/s divided by Spark rows/s on the same number of
cores (local[1] against one process); Spark's target is at most 1.3.

    .venv/bin/python benchmarks/bench_scorers.py [--data ../shared/data/hh-rlhf] [--pairs 20000]
        [--tiny-pairs 4000] [--detoxify-pairs 40] [--skip-bert]

Detoxify runs two models built here, in Detoxify's checkpoint format (the
released weights cannot be downloaded): the tests' tiny 2-layer BERT, for
Spark's overhead, and a bert-base-sized random-init BERT (12 layers, 768
wide, 30,522-entry vocabulary) for texts/s at 128 and 256 tokens.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from hh_sample import hh_exchanges  # noqa: E402


def load_pairs(data: Path, n: int) -> list[tuple[str, str]]:
    pairs = [(ex.instruction, ex.response) for ex in hh_exchanges(data) if ex.error is None]
    return [pairs[i % len(pairs)] for i in range(n)]


def bert_base_checkpoint(folder: Path, pairs: list[tuple[str, str]]) -> tuple[Path, Path]:
    """A bert-base-sized Detoxify checkpoint (random weights) and its config folder; vocabulary from the texts."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    hf = folder / "hf-base"
    hf.mkdir(parents=True, exist_ok=True)
    words = Counter(w.lower() for i, r in pairs for w in (i + " " + r).split())
    chars = sorted({c for w in words for c in w})
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    base = special + chars + [f"##{c}" for c in chars]
    vocab = base + [w for w, _ in words.most_common() if w not in set(base)][: 30522 - len(base)]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=len(vocab), num_labels=6)  # bert-base: 12 layers, 768 wide
    config.save_pretrained(hf)
    BertTokenizer(str(hf / "vocab.txt"), do_lower_case=True).save_pretrained(hf)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    path = folder / "bert-base-random.ckpt"
    torch.save(
        {
            "config": {
                "arch": {"args": {"model_type": "bert-base-uncased", "model_name": "BertForSequenceClassification",
                                  "tokenizer_name": "BertTokenizer", "num_classes": 6}},
                "dataset": {"args": {"classes": ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]}},
            },
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path, hf


def spark_session(cores: int):
    from instructlake.core.config import SparkSettings
    from instructlake.core.session import get_spark

    return get_spark(SparkSettings(master=f"local[{cores}]", shuffle_partitions=cores, app_name="instructlake-bench"))


def spark_rate(spark, pairs, spec, cores: int, warmup: int = 200) -> float:
    """Pairs per second of the filter in Spark (steady state: workers started and models loaded first)."""
    import pandas as pd
    from pyspark.sql import functions as F

    from instructlake.jobs.stages.pairs import with_text_lengths
    from instructlake.udfs.filters import apply_filters

    def frame(rows):
        pdf = pd.DataFrame(rows, columns=["instruction", "response"])
        pdf.insert(0, "source", "hh_helpful")
        df = spark.createDataFrame(pdf, "source string, instruction string, response string")
        df = df.withColumn("drop_reason", F.lit(None).cast("string")).withColumn("source_format", F.lit("hh_rlhf"))
        return df.repartition(cores).transform(with_text_lengths).cache()

    warm = frame(pairs[:warmup] * 1)
    warm.count()
    warm.transform(apply_filters, [spec]).write.format("noop").mode("overwrite").save()
    df = frame(pairs)
    df.count()
    started = time.perf_counter()
    df.transform(apply_filters, [spec]).write.format("noop").mode("overwrite").save()
    elapsed = time.perf_counter() - started
    df.unpersist()
    warm.unpersist()
    return len(pairs) / elapsed


def direct_language(pairs, spec) -> float:
    from instructlake.udfs.filters.language import detect_language, detection_text

    detect_language("warm up: load the profiles")
    started = time.perf_counter()
    for instruction, response in pairs:
        detect_language(detection_text(instruction, response, spec.text, spec.max_chars), spec.max_chars)
    return len(pairs) / (time.perf_counter() - started)


def direct_toxicity(pairs, scorer) -> float:
    from instructlake.udfs.filters.toxicity import score_texts

    started = time.perf_counter()
    score_texts(scorer, [i for i, _ in pairs] + [r for _, r in pairs])
    return len(pairs) / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("INSTRUCTLAKE_SHARED_DATA", REPO.parent / "shared" / "data")) / "hh-rlhf")
    p.add_argument("--pairs", type=int, default=20000, help="pairs for langdetect and alt-profanity-check")
    p.add_argument("--detoxify-pairs", type=int, default=40, help="pairs for the bert-base-sized Detoxify model")
    p.add_argument("--tiny-pairs", type=int, default=4000, help="pairs for the tiny Detoxify model")
    p.add_argument("--skip-bert", action="store_true", help="leave out the bert-base-sized model (minutes)")
    args = p.parse_args()

    os.environ["HF_HUB_OFFLINE"] = "1"
    from instructlake.udfs.filters.language import LanguageFilter
    from instructlake.udfs.filters.toxicity import ToxicityFilter
    from instructlake.core.confload import build

    pairs = load_pairs(args.data, max(args.pairs, args.tiny_pairs, args.detoxify_pairs))
    language = build(LanguageFilter, {"rule": "language"})
    profanity = build(ToxicityFilter, {"rule": "toxicity", "backend": "profanity_check"})
    work = Path(tempfile.mkdtemp(prefix="instructlake-bench-"))
    try:
        run(args, pairs, language, profanity, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the bert-base checkpoint is 400+ MB


def run(args, pairs, language, profanity, work: Path) -> None:
    from instructlake.udfs.filters.toxicity import ToxicityFilter
    from instructlake.core.confload import build


    cases = [("lang/langdetect", language, pairs[: args.pairs], lambda ps: direct_language(ps, language)),
             ("toxicity/alt-profanity-check", profanity, pairs[: args.pairs], None)]
    detox_cases = []
    try:
        import tiny_detoxify  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        print("torch/detoxify not installed: Detoxify left out", file=sys.stderr)
    else:
        import tiny_detoxify

        ckpt, hf = tiny_detoxify.build(work / "tiny")
        detox_cases.append(("toxicity/detoxify tiny, 128 tok", ckpt, hf, 128, pairs[: args.tiny_pairs]))
        if not args.skip_bert:
            ckpt, hf = bert_base_checkpoint(work / "base", pairs)
            long_pairs = [pr for pr in pairs if len(pr[1]) > 1500][: args.detoxify_pairs]  # responses past 256 tokens
            for tokens in (128, 256):
                detox_cases.append((f"toxicity/detoxify bert-base, {tokens} tok", ckpt, hf, tokens, long_pairs))
    for name, ckpt, hf, tokens, ps in detox_cases:
        spec = build(ToxicityFilter, {"rule": "toxicity", "checkpoint": str(ckpt), "huggingface_config_path": str(hf),
                                      "max_tokens": tokens, "batch_size": 16})
        cases.append((name, spec, ps, None))

    results = []
    for cores in (1, 2):
        spark = spark_session(cores)
        for name, spec, ps, direct in cases:
            if cores == 1 and "bert-base" in name:
                continue  # minutes each: measured on 2 cores only
            rate = spark_rate(spark, ps, spec, cores)
            results.append((name, cores, len(ps), rate))
            print(f"spark local[{cores}] {name}: {rate:.1f} pairs/s", file=sys.stderr, flush=True)
        spark.stop()

    spark_rates = {(name, cores): rate for name, cores, _, rate in results}
    rows = []
    for name, spec, ps, direct in cases:
        for cores in (1, 2):
            if (name, cores) not in spark_rates:
                continue
            rate = direct_rate(name, spec, ps, direct, cores)
            rows.append((name, len(ps), cores, rate, spark_rates[(name, cores)]))
    bert = [c for c in cases if "bert-base" in c[0]]
    print_table(rows)
    if bert:
        print("\nDetoxify bert-base-sized model, direct, responses cut to max_tokens (all longer), batch 16:")
        for name, spec, ps, _ in bert:
            for threads in (1, 2):
                texts = [r for _, r in ps]
                rate = texts_rate(spec, texts, threads)
                print(f"  {spec.max_tokens} tokens, {threads} thread(s): {rate:.2f} texts/s")


def detoxify_scorer(spec):
    from instructlake.udfs.filters.toxicity import DetoxifyScorer, FileRef, ToxicitySettings

    return DetoxifyScorer(ToxicitySettings(
        "detoxify", (), "bench", FileRef(spec.checkpoint), FileRef(spec.huggingface_config_path),
        batch_size=spec.batch_size, max_tokens=spec.max_tokens,
    ))


def direct_rate(name, spec, pairs, direct, threads: int) -> float:
    """Pairs per second of the pure scorer in this process (torch limited to `threads` threads)."""
    if direct is not None:
        return direct(pairs)
    if spec.backend == "profanity_check":
        from instructlake.udfs.filters.toxicity import ProfanityCheckScorer

        return direct_toxicity(pairs, ProfanityCheckScorer())
    import torch

    torch.set_num_threads(threads)
    scorer = detoxify_scorer(spec)
    scorer.score(["warm up"])
    return direct_toxicity(pairs, scorer)


def texts_rate(spec, texts, threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    scorer = detoxify_scorer(spec)
    scorer.score(texts[:16])
    started = time.perf_counter()
    scorer.score(texts)
    return len(texts) / (time.perf_counter() - started)


def print_table(rows) -> None:
    header = ("scorer", "pairs", "cores", "direct pairs/s", "Spark pairs/s", "direct/Spark")
    lines = [header] + [
        (name, str(n), str(cores), f"{d:.1f}", f"{s:.1f}", f"{d / s:.2f}") for name, n, cores, d, s in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print()
    for k, line in enumerate(lines):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print("\ncores: Spark local[N]; direct is one Python process (torch with N threads; langdetect and")
    print("alt-profanity-check use one core whatever N is). direct/Spark above 1 is Spark's overhead.")


if __name__ == "__main__":
    main()
