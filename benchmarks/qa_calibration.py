"""Calibrate the question-answer checks (udfs/qa_checks.py) on human data with planted wrong answers.

Every question of SQuAD v1.1's dev halves whose type the checks recognize is
asked four times: with its human answer (right), and with three planted
wrong answers, each made of the paragraph's own words, the way a small
model's wrong answers look:

- `other_answer`: the answer of another question on the same paragraph (one
  sharing no word with the right answer);
- `same_kind`: a span of the paragraph of the kind the question asks for (a
  date for a when-question, a number for how-many, a capitalized name for a
  who-question, a place after "in"/"at"/"from" for a where-question), where the
  paragraph has one other than the right answer;
- `same_sentence`: a run of the right answer's own sentence, as long as the
  right answer, sharing no word with it.

It prints, for each check on its own and for all checks together, the share
of each set it accepts; the trade-off of the location and question-grounding
thresholds (all checks together); whether the target holds on the
`other_answer` set (all checks accept at most 25% of the wrong answers and at
least 80% of the right ones); and, with `--verify N`, the model-based
verification of the conf (`qa.verify`) on N right and N `other_answer` pairs,
run with the conf's model.

    .venv/bin/python benchmarks/qa_calibration.py [--write conf/qa_calibration.json]
    .venv/bin/python benchmarks/qa_calibration.py --verify 60 --set 'qa.verify.methods=[roundtrip, judge]'
    # and the generations of an existing lake, or of a fresh one from N paragraphs of a web-text file:
    .venv/bin/python benchmarks/qa_calibration.py --lake lake
    .venv/bin/python benchmarks/qa_calibration.py --generate-from ../shared/data/wikitext/wikitext-103-raw/wiki.valid.raw --paragraphs 50

Thresholds come from the conf (`qa.checks`, default conf/local.yaml); `--set` overrides as on the CLI.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.run_bench import aligned  # noqa: E402

SHARED = Path(os.environ.get("INSTRUCTLAKE_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_SQUAD = [SHARED / "squad" / "v1.1-dev-halves" / "dev-v1.1.json", SHARED / "squad" / "v1.1-dev-halves" / "test-v1.1.json"]
SETS = ("right", "other_answer", "same_kind", "same_sentence")
TARGET_WRONG, TARGET_RIGHT = 0.25, 0.80
LOCATION_STEPS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
QUESTION_STEPS = (0.0, 0.25, 0.5, 0.75)

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
KIND_SPANS = {
    "time": re.compile(
        rf"\b(?:(?:{_MONTHS})(?: \d{{1,2}})?,? \d{{3,4}}|\d{{1,2}} (?:{_MONTHS}) \d{{3,4}}|(?:{_MONTHS}) \d{{1,2}}"
        r"|the \d{1,2}(?:st|nd|rd|th) century|\d{3,4}s?)\b"
    ),
    "quantity": re.compile(
        r"\b\d[\d,.]*(?: (?:million|billion|thousand|hundred|percent))?\b"
        r"|\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred)\b"
    ),
    "who": re.compile(r"\b[A-Z][\w'\-]+(?: (?:of |de |van |von )?[A-Z][\w'\-]+)+\b"),
    "where": re.compile(r"\b(?:in|at|from|near) ((?:the )?[A-Z][\w'\-]+(?: (?:of )?[A-Z][\w'\-]+)*)\b"),
}


@dataclasses.dataclass(frozen=True)
class Pair:
    question: str
    answer: str
    paragraph: str


def squad_questions(paths) -> list[dict]:
    from instructlake.udfs.qa_checks import question_type
    from instructlake.udfs.webtext import squad_qas

    return [qa for path in paths for qa in squad_qas(Path(path).read_text(encoding="utf-8"))
            if question_type(qa["question"])[0] is not None]


def _shares_words(a: str, b: str) -> bool:
    from instructlake.udfs.qa_checks import tokens

    return bool(set(tokens(a)) & set(tokens(b)))


def same_kind_answer(question: str, right: str, paragraph: str, rng: random.Random):
    from instructlake.udfs.qa_checks import asked_kind

    pattern = KIND_SPANS.get(asked_kind(None, question) or "")
    if pattern is None:
        return None
    found = sorted({m.group(m.lastindex or 0) for m in pattern.finditer(paragraph)} - {right})
    found = [f for f in found if not _shares_words(f, right) and not _shares_words(f, question)]
    return rng.choice(found) if found else None


def same_sentence_answer(right: str, paragraph: str, rng: random.Random):
    from instructlake.udfs.qa_checks import STOP_WORDS, normalize, sentences

    words = normalize(right).split()
    holding = [s for s in sentences(paragraph) if f" {normalize(right)} " in f" {normalize(s)} "]
    if not holding or not words:
        return None
    sentence = holding[0].split()
    size = len(right.split())
    spans = [
        " ".join(sentence[i : i + size]) for i in range(len(sentence) - size + 1)
        if not _shares_words(" ".join(sentence[i : i + size]), right)
        and normalize(sentence[i]) not in STOP_WORDS and normalize(sentence[i + size - 1]) not in STOP_WORDS
        and normalize(" ".join(sentence[i : i + size]))
    ]
    return rng.choice(spans).strip(".,;:") if spans else None


def planted(questions: list[dict], seed: int = 0) -> dict[str, list[Pair]]:
    """{set: pairs}: every question with its right answer and each kind of planted wrong answer it has."""
    rng = random.Random(seed)
    by_paragraph: dict[str, list[dict]] = {}
    for qa in questions:
        by_paragraph.setdefault(qa["context"], []).append(qa)
    out: dict[str, list[Pair]] = {s: [] for s in SETS}
    for paragraph, group in by_paragraph.items():
        for qa in group:
            q, right = qa["question"], qa["answers"][0]
            out["right"].append(Pair(q, right, paragraph))
            others = sorted({o["answers"][0] for o in group if not _shares_words(o["answers"][0], right)})
            wrong = {
                "other_answer": rng.choice(others) if others else None,
                "same_kind": same_kind_answer(q, right, paragraph, rng),
                "same_sentence": same_sentence_answer(right, paragraph, rng),
            }
            for name, answer in wrong.items():
                if answer:
                    out[name].append(Pair(q, answer, paragraph))
    return out


def scored(sets: dict[str, list[Pair]]) -> dict[str, list[dict]]:
    """{set: the scores of each pair}: computed once, whatever the thresholds."""
    from instructlake.udfs.qa_checks import score_qa

    return {name: [score_qa(None, p.question, p.answer, p.paragraph) for p in pairs] for name, pairs in sets.items()}


def check_table(scores: dict[str, list[dict]], checks) -> dict[str, dict[str, float]]:
    """{set: {check or "all checks": share accepted}} of the sets' `scored` under `checks`."""
    from instructlake.udfs.qa_checks import acceptance, failed_checks

    return {name: acceptance(failed_checks(s, None, checks) for s in rows) for name, rows in scores.items()}


def tradeoff(scores: dict[str, list[dict]], checks, key: str, steps) -> list[tuple[float, dict[str, float]]]:
    """All checks' acceptance per set with `checks.<key>` set to each step."""
    return [(step, check_table(scores, dataclasses.replace(checks, **{key: step}))) for step in steps]


def verify_shares(conf, sets: dict[str, list[Pair]], n: int, seed: int = 0) -> dict[str, float]:
    """The share of n right and n `other_answer` pairs that `qa.verify` accepts, run with the conf's model."""
    from instructlake.core.storage import find_file
    from instructlake.udfs.llm import get_backend, runtime, sampling_params
    from instructlake.udfs.qa_verify import verify_pair

    verify = conf.qa.verify
    backend = get_backend(runtime(conf.llm))
    prompts = {m: Path(find_file(getattr(verify, f"{m}_prompt"))).read_text(encoding="utf-8").rstrip("\n") for m in verify.methods}
    params = sampling_params(conf.llm, conf.llm.seed, ["\n"])
    rng = random.Random(seed)
    out = {}
    for name in ("right", "other_answer"):
        sample = rng.sample(sets[name], min(n, len(sets[name])))
        kept = [verify_pair(backend, verify, prompts, p.question, p.answer, p.paragraph, params) is None for p in sample]
        out[name] = sum(kept) / max(len(kept), 1)
    return out


def generate(conf_path, overrides, source_file: Path, paragraphs: int, lake: str):
    """Ingest `source_file` as the only web_text source and run the generate stage on `paragraphs` paragraphs."""
    from instructlake.core.lake import RunContext
    from instructlake.core.session import get_spark
    from instructlake.jobs.runner import load_config
    from instructlake.jobs.stages.generate_qa import run_generate
    from instructlake.jobs.stages.ingest import run_ingest

    conf = load_config(conf_path, [
        f"paths.lake={lake}",
        *[f"sources.{s}.enabled=false" for s in ("helpful_online", "helpful_rejection_sampled", "red_team_attempts")],
        "sources.wikitext.enabled=true", f"sources.wikitext.paths=[{source_file}]", f"qa.max_paragraphs={paragraphs}",
        "code.generate.count=0", *overrides,
    ])
    spark = get_spark(conf.spark)
    run_ingest(spark, conf, RunContext())
    started = time.monotonic()
    result = run_generate(spark, conf, RunContext())
    print(
        f"generated: {result.selected} paragraphs, {result.calls} model calls ({result.cache_hits} from the cache), "
        f"{result.llm.seconds:.0f}s in model calls ({time.monotonic() - started:.0f}s for the stage), model {result.model}\n"
    )


def generated_outcomes(lake: str) -> tuple[Counter, list]:
    """(outcome counts, kept rows) of a lake's silver/qa table."""
    from instructlake.core.config import SparkSettings
    from instructlake.core.lake import Lake
    from instructlake.core.session import get_spark

    qa = get_spark(SparkSettings()).read.format("delta").load(Lake(lake).qa).collect()
    kept = [r for r in qa if r["qa_drop_reason"] is None]
    return Counter(r["qa_drop_reason"] or "(kept)" for r in qa), kept


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--squad", nargs="*", default=[str(x) for x in DEFAULT_SQUAD], help="SQuAD v1.1 JSON files")
    p.add_argument("--write", default=None, metavar="FILE", help="write the shares as JSON (conf/qa_calibration.json: the report's)")
    p.add_argument("--verify", type=int, default=0, metavar="N", help="run qa.verify on N right and N wrong pairs")
    p.add_argument("--lake", default=None, help="a lake whose silver/qa table holds generations to show")
    p.add_argument("--generate-from", default=None, help="generate first, from this web-text file, into a fresh lake")
    p.add_argument("--paragraphs", type=int, default=20, help="paragraphs to generate from (with --generate-from)")
    p.add_argument("--conf", default=str(REPO / "conf" / "local.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)

    from instructlake.core.storage import resolve
    from instructlake.jobs.runner import load_config
    from instructlake.udfs.qa_checks import CHECKS

    conf = load_config(args.conf, args.overrides)
    checks = conf.qa.checks
    print(f"checks: {json.dumps(dataclasses.asdict(checks))}")
    squad = [Path(x) for x in args.squad if Path(x).is_file()]
    if squad:
        started = time.monotonic()
        sets = planted(squad_questions(squad))
        scores = scored(sets)
        shares = check_table(scores, checks)
        header = ("check", *(f"{s} (n={len(sets[s])})" for s in SETS))
        print("\nShare accepted, each check on its own and all together (SQuAD v1.1 dev, planted wrong answers):")
        print(aligned([header] + [(c, *(f"{shares[s][c]:.1%}" for s in SETS)) for c in (*CHECKS, "all checks")], left=(0,)))
        for key, steps in (("min_answer_location", LOCATION_STEPS), ("min_question_grounding", QUESTION_STEPS)):
            print(f"\nAll checks with qa.checks.{key} at:")
            rows = tradeoff(scores, checks, key, steps)
            print(aligned([(key, *SETS)] + [(f"{step:g}", *(f"{t[s]['all checks']:.1%}" for s in SETS)) for step, t in rows], left=(0,)))
        if args.write:
            data = f"SQuAD v1.1 dev ({', '.join(p.name for p in squad)}), {len(sets['right'])} questions of a recognized type"
            calibration = {"data": data, "checks": dataclasses.asdict(checks), "n": {s: len(sets[s]) for s in SETS},
                           "sets": {s: {c: round(v, 4) for c, v in shares[s].items()} for s in SETS}}
            Path(args.write).write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
        right, wrong = shares["right"]["all checks"], shares["other_answer"]["all checks"]
        met = wrong <= TARGET_WRONG and right >= TARGET_RIGHT
        print(f"\ntarget (other_answer): wrong accepted {wrong:.1%} <= {TARGET_WRONG:.0%} and right accepted "
              f"{right:.1%} >= {TARGET_RIGHT:.0%}: {'met' if met else 'MISSED'} ({time.monotonic() - started:.0f}s)")
        if args.verify:
            started = time.monotonic()
            v = verify_shares(conf, sets, args.verify)
            print(f"\nqa.verify {conf.qa.verify.methods} with {conf.llm.backend} model "
                  f"{conf.llm.model or conf.llm.model_path or 'SmolLM2-135M (embedded)'} on {args.verify} pairs each: "
                  f"right accepted {v['right']:.1%}, other_answer accepted {v['other_answer']:.1%} "
                  f"({time.monotonic() - started:.0f}s)")
    else:
        print(f"(no SQuAD file found: {', '.join(args.squad)})", file=sys.stderr)

    lake = args.lake
    if args.generate_from:
        lake = lake or (Path(tempfile.mkdtemp(prefix="qa-calibration-")) / "lake").as_uri()
        generate(args.conf, args.overrides, Path(args.generate_from).resolve(), args.paragraphs, resolve(lake))
    if lake:
        outcome, kept = generated_outcomes(resolve(lake))
        total = sum(outcome.values())
        print(f"generated pairs by outcome (n={total}):")
        for reason, count in outcome.most_common():
            print(f"  {reason:<26} {count:>4}  {count / total:.1%}")
        print("\nkept pairs:")
        for r in kept:
            print(f"  [{r['qa_type']}] {r['question']} -> {r['answer']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
