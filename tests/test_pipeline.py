"""End to end in local mode on the real HH-RLHF test files (3,886 dialogues) and the red-team sample.

Counts and pairs are checked against an independent plain-Python computation
written here (a turn-list parser, not the project's regexes).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

import dedup_reference
from conftest import LOCAL, REPO, SAMPLE, SHARED_DATA, local_conf, release_dir
from instructlake.core.lake import Lake, RunContext
from instructlake.jobs.runner import run_pipeline
from instructlake.udfs.pair_format import parse_pair

ASCII_WS = " \t\n\x0b\f\r"


# --- the independent reference ---------------------------------------------

def ref_exchange(dialogue):
    """(instruction, response) or a reason, by cutting the dialogue into a list of turns."""
    if dialogue is None or not dialogue.strip(ASCII_WS):
        return "empty_dialogue"
    text = dialogue.replace("\r\n", "\n").replace("\r", "\n")
    markers = [(m.start(), m.end(), m.group(1)) for m in re.finditer(r"\n\n(Human|Assistant):", text)]
    lead = text.lstrip(ASCII_WS)
    if lead.startswith("Human:"):
        start = len(text) - len(lead)
        markers = [(start, start + len("Human:"), "Human")] + [m for m in markers if m[0] >= start + len("Human:")]
    elif "Human:" in text:
        return "text_before_first_human_turn"
    else:
        return "no_human_turn"
    turns = [
        (speaker, text[end : markers[i + 1][0] if i + 1 < len(markers) else len(text)])
        for i, (_, end, speaker) in enumerate(markers)
    ]
    humans = []
    while turns and turns[0][0] == "Human":
        humans.append(turns.pop(0)[1])
    assistants = []
    while turns and turns[0][0] == "Assistant":
        assistants.append(turns.pop(0)[1])
    if not assistants:
        return "no_assistant_reply"
    instruction = "\n".join(p.strip(ASCII_WS) for p in humans if p.strip(ASCII_WS))
    # Blank lines inside the instruction collapse (it is stripped, so only inner lines can be blank).
    instruction = "\n".join(line for line in instruction.split("\n") if line.strip(" \t\x0b\f\r"))
    response = "\n".join(p.strip(ASCII_WS) for p in assistants if p.strip(ASCII_WS))
    if not instruction:
        return "empty_instruction"
    if not response:
        return "empty_response"
    return instruction, response


def ref_template_filter(instruction, response):
    """The template_tokens filter of conf/local.yaml, by walking the lines of each text: a role header
    on its first non-blank line, or on the first non-blank line after a blank one, is an extra turn;
    a few literal tokens (the real files have none)."""
    roles = ("Human:", "Assistant:", "User:", "System:", "HUMAN:", "ASSISTANT:", "USER:", "SYSTEM:")
    for text in (instruction, response):
        if any(t in text for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "[INST]", "</s>", "<<SYS>>")):
            return "template_token"
    for text in (instruction, response):
        after_blank = True  # the start of the text counts as after a blank line
        for line in text.split("\n"):
            if not line.strip(ASCII_WS):
                after_blank = True
            elif after_blank and line.lstrip(ASCII_WS).startswith(roles):
                return "extra_turn"
            else:
                after_blank = False
    return None


def ref_model_filters(source, instruction, response):
    """The language and toxicity filters of conf/local.yaml, calling langdetect and alt-profanity-check directly."""
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException
    from profanity_check import predict_prob

    DetectorFactory.seed = 0
    head = instruction[:500]  # `text: pair`, `max_chars: 1000`: at most half for the instruction
    try:
        best = detect_langs(head + "\n" + response[: 1000 - len(head) - 1])[0]
    except LangDetectException:
        return "language_unknown"
    if best.prob < 0.7:
        return "language_uncertain"
    if best.lang != "en":
        return "language_not_allowed"
    if source == "hh_helpful" and predict_prob([instruction])[0] > 0.8:  # red-team prompts are not judged
        return "toxic_instruction"
    if predict_prob([response])[0] > 0.8:
        return "toxic_response"
    return None


def reference(hh_files, red_team_file):
    """Counter of (source, drop_reason kind) and Counter of kept (source, instruction, response).

    The pairs every filter keeps then go through the plain-Python dedup of conf/base.yaml's
    settings (tests/dedup_reference.py), the sources in conf order (hh files, then red team).
    """
    reasons, candidates = Counter(), []

    def account(source_index, row_index, source, result, extra_reason=None):
        if isinstance(result, str):
            reasons[(source, result)] += 1
        elif extra_reason or ref_model_filters(source, *result):
            reasons[(source, extra_reason or ref_model_filters(source, *result))] += 1
        else:
            pid = dedup_reference.pair_id(*result)
            candidates.append({"key": (source_index, pid, row_index), "source_name": source_index, "source": source,
                               "pair_id": pid, "instruction": result[0], "response": result[1]})

    for i, path in enumerate(hh_files):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for row, line in enumerate(f):
                result = ref_exchange(json.loads(line)["chosen"])
                template = None if isinstance(result, str) else ref_template_filter(*result)
                short = not isinstance(result, str) and len(result[1]) < 100
                account(i, row, "hh_helpful", result, template or ("response_too_short" if short else None))
    for row, rec in enumerate(json.loads(Path(red_team_file).read_text(encoding="utf-8"))):
        result = ref_exchange(rec["transcript"])
        template = None if isinstance(result, str) else ref_template_filter(*result)
        account(len(hh_files), row, "hh_harmless", result, template or ("red_team_rating_too_high" if rec["rating"] > 2 else None))
    decided = dedup_reference.dedup(candidates)
    kept = Counter((c["source"], c["instruction"], c["response"]) for c in candidates if decided[c["key"]] is None)
    for c in candidates:
        reason = decided[c["key"]]
        reasons[(c["source"], reason.split(":")[0] if reason else None)] += 1
    return reasons, kept


# --- the pipeline run --------------------------------------------------------

@pytest.fixture(scope="module")
def real_run(spark, tmp_path_factory):
    shared = SHARED_DATA
    if not (shared / "hh-rlhf").is_dir():
        pytest.skip(f"the shared real data is not at {shared}")
    tmp = tmp_path_factory.mktemp("real")
    hh = {
        "helpful_online": shared / "hh-rlhf/helpful-online/test.jsonl.gz",
        "helpful_rejection_sampled": shared / "hh-rlhf/helpful-rejection-sampled/test.jsonl.gz",
    }
    red_team = SAMPLE / "red-team-attempts/red_team_attempts.json"
    conf = local_conf(
        tmp,
        *[f"sources.{name}.paths=[{path}]" for name, path in hh.items()],
        f"sources.red_team_attempts.paths=[{red_team}]",
        "export.rows_per_part=1000",
        "filters.pii.enabled=false",  # the reference below has no PII redaction (tests/test_pii.py has)
        conf=LOCAL,  # every filter of conf/local.yaml: the reference calls langdetect and alt-profanity-check
    )
    result = run_pipeline(spark, conf, RunContext())
    return conf, result, tmp, list(hh.values()), red_team


def part_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in release_dir(out).glob("*_part*.json")}


def read_parts(out: Path) -> list[tuple[str, list]]:
    parts = sorted(release_dir(out).glob("*_part*.json"), key=lambda p: int(re.search(r"_part(\d+)\.json$", p.name).group(1)))
    return [(p.name, json.loads(p.read_text(encoding="utf-8"))) for p in parts]


@pytest.fixture(scope="module")
def real_reference(real_run):
    """The independent computation of `real_run`'s counts and kept pairs, once."""
    conf, result, tmp, hh_files, red_team = real_run
    return reference(hh_files, red_team)


def test_counts_match_independent_computation(spark, real_run, real_reference):
    conf, result, tmp, hh_files, red_team = real_run
    want_reasons, _ = real_reference
    got = Counter({(s, r): n for s, r, n in result.pairs.counts})
    assert got == want_reasons
    assert sum(n for (s, _), n in got.items() if s == "hh_helpful") == 3886
    # The manifest says the same.
    m = result.export.manifest
    assert m["counts"]["hh_helpful"]["read"] == 3886
    assert m["counts"]["hh_helpful"]["kept"] == want_reasons[("hh_helpful", None)]
    rating = m["counts"]["hh_harmless"]["dropped"]["red_team_rating"]
    assert rating["reasons"]["red_team_rating_too_high"] == want_reasons[("hh_harmless", "red_team_rating_too_high")]
    assert rating["rows"] == sum(n for (s, r), n in want_reasons.items() if s == "hh_harmless" and r and r.startswith("red_team_rating"))


def test_every_exported_pair_round_trips(real_run, real_reference):
    conf, result, tmp, hh_files, red_team = real_run
    _, want_kept = real_reference
    parts = read_parts(tmp / "out")
    got = Counter()
    for name, elements in parts:
        for source, text in elements:
            instruction, response = parse_pair(text)
            assert text.split("\n\n", 1)[0] == "User: " + instruction
            got[(source, instruction, response)] += 1
    assert got == want_kept
    # Parts of the configured size, named in order, and all sources mixed by the shuffle.
    sizes = [len(elements) for _, elements in parts]
    assert sizes[:-1] == [1000] * (len(sizes) - 1) and 0 < sizes[-1] <= 1000
    assert [n for n, _ in parts] == [f"instruction_tuning_dataset_part{k}.json" for k in range(1, len(parts) + 1)]
    assert sum(sizes) == result.export.total_rows == sum(want_kept.values())


def test_parts_follow_the_seeded_shuffle_order(spark, real_run):
    conf, result, tmp, *_ = real_run
    kept = (
        spark.read.format("delta").load(Lake.of(conf).pairs).where(F.col("drop_reason").isNull())
        .select("content_id", "source_name", "row_index", "source_file", "instruction", "response").collect()
    )

    def key(r):
        digest = hashlib.sha256(f"{conf.export.seed}:{r['content_id']}:{r['source_name']}:{r['row_index']}".encode()).hexdigest()
        return (digest, r["source_name"], r["row_index"], r["content_id"], r["source_file"])

    want = [(r["instruction"], r["response"]) for r in sorted(kept, key=key)]
    got = [parse_pair(text) for _, elements in read_parts(tmp / "out") for _, text in elements]
    assert got == want


def test_manifest(real_run):
    conf, result, tmp, hh_files, red_team = real_run
    m = json.loads((release_dir(tmp / "out") / "manifest.json").read_text())
    for part in m["parts"]:
        data = (release_dir(tmp / "out") / part["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part["sha256"]
        assert len(data) == part["bytes"]
        assert len(json.loads(data)) == part["rows"]
    lines = {}
    for path in hh_files:
        with gzip.open(path, "rt") as f:
            lines[path.resolve().as_uri().replace("file:///", "file:/")] = sum(1 for _ in f)
    by_uri = {i["uri"]: i for i in m["inputs"]}
    for uri, n in lines.items():
        assert by_uri[uri]["rows_read"] == n and by_uri[uri]["rows_ingested"] == n and by_uri[uri]["rows_quarantined"] == 0
    assert set(m["tables"]["bronze"]) == {"helpful_online", "helpful_rejection_sampled", "red_team_attempts"}
    assert m["tables"]["pairs"]["version"] == result.pairs.version
    assert m["conf"]["export"]["rows_per_part"] == 1000 and m["conf_digest"] == conf.digest()
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", m["git_commit"])


def test_delta_tables(spark, real_run):
    from delta.tables import DeltaTable

    conf, result, tmp, *_ = real_run
    lake = Lake.of(conf)
    bronze = DeltaTable.forPath(spark, lake.bronze("helpful_online"))
    ops = [r["operation"] for r in bronze.history().orderBy("version").collect()]
    assert ops[0] == "WRITE"
    assert bronze.toDF().columns == [
        "chosen", "rejected", "source", "source_name", "source_file", "row_index", "content_id", "ingest_run_id", "ingested_at",
    ]
    rows = bronze.toDF().select("row_index").orderBy("row_index").collect()
    assert [r[0] for r in rows] == list(range(1137))
    red = spark.read.format("delta").load(lake.bronze("red_team_attempts"))
    assert "task_descripton_harmlessness_score" in red.columns
    assert dict(red.dtypes)["rating"] == "double" and dict(red.dtypes)["tags"] == "array<string>"
    pairs = spark.read.format("delta").load(lake.pairs)
    assert pairs.columns == [
        "source", "source_name", "source_format", "source_file", "row_index", "item", "content_id", "ingest_run_id",
        "instruction", "response", "red_team_rating", "is_code", "drop_reason", "drop_stage", "instruction_chars", "response_chars",
        "pair_id", "pairs_run_id",
    ] + ["contaminated_item"] + ["lang", "lang_prob", "instruction_toxicity", "response_toxicity"]  # decontamination, then the model filters' scores
    # Nothing deleted in silver: one row per bronze row; dropped rows keep their text-less reason.
    assert pairs.count() == 3886 + 60
    short = pairs.where(F.col("drop_reason") == "response_too_short").select("response_chars").collect()
    assert short and all(r[0] < 100 for r in short)
    history = DeltaTable.forPath(spark, lake.pairs).history().collect()
    meta = json.loads(history[0]["userMetadata"])
    assert meta["stage"] == "pairs" and set(meta["bronze_versions"]) == {"helpful_online", "helpful_rejection_sampled", "red_team_attempts"}


def test_rerun_is_byte_identical_and_adds_nothing(spark, real_run):
    from delta.tables import DeltaTable

    from instructlake.jobs.stages.export import run_export
    from instructlake.jobs.stages.pairs import run_pairs

    conf, result, tmp, *_ = real_run
    lake = Lake.of(conf)
    tables = [lake.bronze("helpful_online"), lake.quarantine, lake.ingest_log, lake.pairs]

    def versions():
        return [DeltaTable.forPath(spark, t).history(1).first()["version"] for t in tables]

    before, table_versions = part_bytes(tmp / "out"), versions()
    again = run_pipeline(spark, conf, RunContext())
    assert part_bytes(tmp / "out") == before
    # Nothing to do: no table gets a new version, the counts are the same.
    assert versions() == table_versions
    assert again.pairs.counts == result.pairs.counts
    assert [p["sha256"] for p in again.export.parts] == [p["sha256"] for p in result.export.parts]
    # A conf change recomputes the pairs (a new version); exporting the first version by
    # time travel still gives the first bytes.
    # (on a copy of the lake, which the other tests of the module share)
    shutil.copytree(tmp / "lake", tmp / "copy" / "lake")
    changed = run_pairs(spark, local_conf(tmp / "copy", "filters.response_length.min_chars=50"))
    assert changed.version > result.pairs.version and changed.counts != result.pairs.counts
    old = run_export(spark, local_conf(tmp / "copy", "export.rows_per_part=1000", conf=LOCAL), RunContext(),
                     as_of_version=result.pairs.version)
    assert old.pairs_version == result.pairs.version and old.manifest["tables"]["pairs"]["version"] == result.pairs.version
    assert part_bytes(tmp / "copy" / "out") == before


def test_export_num_parts_and_source_order(spark, real_run):
    from instructlake.jobs.stages.export import run_export

    conf, result, tmp, *_ = real_run
    conf2 = local_conf(
        tmp / "v2", f"paths.lake={conf.paths.lake}", "export.rows_per_part=null", "export.num_parts=3", "export.order=source"
    )
    res = run_export(spark, conf2, RunContext())
    parts = read_parts(tmp / "v2" / "out")
    assert len(parts) == 3
    sources = [s for _, elements in parts for s, _ in elements]
    # Grouped by source in conf order: every hh_helpful pair before every hh_harmless one.
    assert sources == sorted(sources, key=["hh_helpful", "hh_harmless"].index)
    assert sum(len(e) for _, e in parts) == result.export.total_rows == res.total_rows


def test_bad_records_are_quarantined_not_lost(spark, tmp_path):
    from instructlake.jobs.stages.ingest import run_ingest

    hh = tmp_path / "hh.jsonl"
    good = json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: no"})
    hh.write_text("\n".join([good, "{broken", json.dumps({"chosen": 1, "rejected": "x"}), json.dumps({"rejected": "x"}), good]) + "\n")
    conf = local_conf(tmp_path, f"sources.helpful_online.paths=[{hh}]", "sources.helpful_rejection_sampled.enabled=false",
                      "sources.red_team_attempts.enabled=false")
    res = run_ingest(spark, conf, RunContext())
    assert (res[0].rows, res[0].quarantined) == (2, 3)
    q = spark.read.format("delta").load(Lake.of(conf).quarantine).orderBy("row_index").collect()
    assert [(r["row_index"], r["reason"]) for r in q] == [(1, "malformed_json"), (2, "wrong_type:chosen"), (3, "missing_field:chosen")]
    assert q[0]["raw"] == "{broken" and q[0]["source_file"].endswith("hh.jsonl")


def test_missing_input_stops_with_a_clear_error(spark, tmp_path):
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.core.storage import InputNotFoundError

    conf = local_conf(tmp_path, f"sources.helpful_online.paths=[{tmp_path / 'nope' / '*.jsonl.gz'}]")
    with pytest.raises(InputNotFoundError, match=r"source 'helpful_online': input path .*nope.* matches no file"):
        run_ingest(spark, conf, RunContext())
    assert not (tmp_path / "lake").exists()


def test_cli_reports_conf_errors_without_spark(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: " + str(REPO / "conf" / "base.yaml") + "\nexport:\n  rows_per_part: many\n")
    proc = subprocess.run([sys.executable, "-m", "instructlake.jobs.cli", "run", "--conf", str(bad)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert f"{bad}: export.rows_per_part: expected an integer" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("script,stage", [("ingest", "ingest"), ("generate", "generate"), ("pairs", "pairs"),
                                          ("export", "export"), ("pipeline", "run"), ("qa_check", "qa-check")])
def test_each_job_script_is_its_stage_of_the_cli(script, stage):
    """`spark-submit jobs/<script>.py ARGS` runs `instructlake <stage> ARGS` (the scripts under a real
    spark-submit: jobs/pipeline.py in tests/test_cluster.py)."""
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / f"{script}.py"), "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[:3] == ["usage:", "instructlake", stage] and "--conf CONF" in proc.stdout
