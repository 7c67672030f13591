"""The funnel report (report.json, report.html in a real headless Chromium) and the dataset card."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from instructlake.core.lake import Lake
from instructlake.jobs.stages.report import drop_table, funnel, render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pairs_of(spark, conf):
    return spark.read.format("delta").load(Lake.of(conf).pairs)


def test_funnel_equals_direct_counts(spark, all_formats_export):
    conf, result, release = all_formats_export
    report = json.loads((release / "report.json").read_text())
    assert report == json.loads(json.dumps(result.report))
    pairs = pairs_of(spark, conf)
    candidates = {r["source"]: r["count"] for r in pairs.groupBy("source").count().collect()}
    kept = {r["source"]: r["count"] for r in pairs.where(F.col("drop_reason").isNull()).groupBy("source").count().collect()}
    kind = F.substring_index("drop_reason", ":", 1).alias("kind")  # duplicate_of:<pair_id> counts as duplicate_of
    reasons = {(r["source"], r["kind"]): r["count"] for r in pairs.where(F.col("drop_reason").isNotNull()).groupBy("source", kind).count().collect()}
    by_stage = {(r["source"], r["drop_stage"], r["kind"]): r["count"]
                for r in pairs.where(F.col("drop_reason").isNotNull()).groupBy("source", "drop_stage", kind).count().collect()}
    bronze = {name: spark.read.format("delta").load(Lake.of(conf).bronze(name)).count() for name in ("helpful_online", "red_team_attempts")}
    assert report["funnel"]["hh_helpful"]["ingested"] == bronze["helpful_online"]
    assert report["funnel"]["hh_harmless"]["ingested"] == bronze["red_team_attempts"]
    for source, n in candidates.items():
        f = report["funnel"][source]
        assert f["candidates"] == n and f["kept"] == kept[source] == f["exported"]  # no selection set
        assert f["after"][report["stages"][-1]] == kept[source]
        assert f["splits"]["train"] + f["splits"]["validation"] == f["exported"]
        assert {(st, k): d["rows"] for st, kinds in report["drops"][source].items() for k, d in kinds.items()} == {
            (st, k): c for (s, st, k), c in by_stage.items() if s == source}
    # each stage's drops are the rows it dropped (`drop_stage`): rows after a filter, step by step, in conf order
    assert report["stages"] == ["dialogue_split", "template_tokens", "instruction_length", "response_length", "red_team_rating", "decontamination",
                                "language", "toxicity", "pii", "dedup"]
    helpful = report["funnel"]["hh_helpful"]["after"]
    too_short = reasons[("hh_helpful", "response_too_short")]
    assert helpful["instruction_length"] - helpful["response_length"] == too_short
    harmless = report["funnel"]["hh_harmless"]["after"]
    assert harmless["response_length"] - harmless["red_team_rating"] == reasons[("hh_harmless", "red_team_rating_too_high")]
    # histograms: every non-null value once, kept and dropped apart
    for column in ("response_chars", "red_team_rating", "lang_prob", "response_toxicity"):
        h = report["histograms"][column]
        values = pairs.where(F.col(column).isNotNull())
        assert sum(h["kept"]) == values.where(F.col("drop_reason").isNull()).count()
        assert sum(h["dropped"]) == values.where(F.col("drop_reason").isNotNull()).count()
    ratings = {int(r["red_team_rating"]): r["count"] for r in pairs.where(F.col("red_team_rating").isNotNull()).groupBy("red_team_rating").count().collect()}
    h = report["histograms"]["red_team_rating"]
    assert {i: k + d for i, (k, d) in enumerate(zip(h["kept"], h["dropped"])) if k + d} == ratings
    # examples: per source and outcome, the first rows in the seeded order, computed here in Python
    order = {}
    for r in pairs.select("content_id", "source_name", "row_index", "source_file", "item", "source", "drop_reason", "drop_stage",
                          "instruction", "response").collect():
        text = ":".join(str(v) for v in (conf.export.seed, r["content_id"], r["source_name"], r["row_index"]) if v is not None)
        digest = hashlib.sha256(text.encode()).hexdigest()
        order.setdefault((r["source"], (r["drop_reason"] or "kept").split(":")[0]), []).append(((digest, r["source_file"], r["item"]), r))
    cut = lambda t: t if t is None or len(t) <= 300 else t[:300] + "…"
    want = {}
    for (source, kind), rows in sorted(order.items(), key=lambda e: (e[0][0], e[0][1] != "kept", e[0][1])):
        want.setdefault(source, {})[kind] = [
            {"drop_reason": r["drop_reason"], "drop_stage": r["drop_stage"], "instruction": cut(r["instruction"]), "response": cut(r["response"])}
            for _, r in sorted(rows, key=lambda e: e[0])[:3]]
    assert report["examples"] == want
    assert all(len(e["response"] or "") <= 301 for groups in want.values() for items in groups.values() for e in items)
    # the summary: candidates, kept and exported per source, the seed's rows where the conf names them
    assert report["summary"]["hh_helpful"] == {"candidates": candidates["hh_helpful"], "kept": kept["hh_helpful"],
                                               "exported": kept["hh_helpful"], "seed": 39000}


def test_reason_kinds_group_details_and_notes_are_shown(spark, all_formats_export):
    conf, result, release = all_formats_export
    rows = [("code", None, None)] * 2 + [("code", "dedup", f"duplicate_of:{i:04x}") for i in range(8)]
    rows += [("code", "decontamination", "contaminated:humaneval")] * 3 + [("hh_helpful", "response_length", "response_too_short")]
    rows += [("code", "a_stage_of_its_own", "odd")]
    pairs = spark.createDataFrame(rows, "source string, drop_stage string, drop_reason string")
    totals, drops = drop_table(pairs, conf)
    assert totals == {"code": {"candidates": 14, "kept": 2}, "hh_helpful": {"candidates": 1, "kept": 0}}
    assert drops["code"] == {
        "a_stage_of_its_own": {"odd": {"rows": 1, "distinct": 1, "details": {"odd": 1}}},
        "decontamination": {"contaminated": {"rows": 3, "distinct": 1, "details": {"contaminated:humaneval": 3}}},
        "dedup": {"duplicate_of": {"rows": 8, "distinct": 8, "details": None}},  # more than MAX_DETAILS
    }
    assert drops["hh_helpful"] == {"response_length": {"response_too_short": {"rows": 1, "distinct": 1, "details": {"response_too_short": 1}}}}
    stages, counts = funnel(conf, {"inputs": []}, totals, drops, {"code": {"train": 2}})
    # the conf's filters in order, dedup, then a stage the conf does not name
    assert stages == ["template_tokens", "instruction_length", "response_length", "red_team_rating", "decontamination", "language", "toxicity",
                      "pii", "dedup", "a_stage_of_its_own"]
    assert [counts["code"]["after"][s] for s in ("decontamination", "dedup", "a_stage_of_its_own")] == [11, 3, 2]
    report = dict(result.report, drops=drops, stages=stages, funnel=counts)
    report["code_execution"] = {"sandbox": "process", "weaker": True, "note": "bubblewrap was not available"}
    report["decontamination"] = {"decontamination": {"ngram": 13, "benchmarks": [
        {"name": "humaneval", "format": "humaneval", "items": 164, "items_short": 0, "ngrams": 14137,
         "files": [{"uri": "file:/x/HumanEval.jsonl.gz", "bytes": 1, "sha256": "b796127e635a67f9" + "0" * 48}]}]}}
    page = render_html(report)
    assert "WEAKER than bubblewrap" in page and "bubblewrap was not available" in page
    assert "contaminated:humaneval (3)" in page and "8 distinct" in page
    # the decontamination summary is a table, not JSON
    assert "<td>humaneval</td><td>humaneval</td><td>164</td><td>0</td><td>14137</td><td>HumanEval.jsonl.gz (b796127e635a)</td>" in page
    assert "&quot;" not in page.split("<section id=\"examples\">")[0]
    assert "<script src" not in page and "<link" not in page and "<img src=\"http" not in page


def _png_size_and_ink(path: Path) -> tuple[int, int, float]:
    """(width, height, share of pixels that are not white) of an 8-bit RGB(A) PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, kind = 8, b"", 0, 0, 0
    while pos < len(data):
        length, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            width, height, depth, kind = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and kind in (2, 6)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw, bpp = zlib.decompress(idat), 3 if kind == 2 else 4
    stride, prev, ink, total = width * bpp, bytearray(width * bpp), 0, 0
    for y in range(height):
        filt, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + a) & 255
            elif filt == 2:
                line[i] = (line[i] + b) & 255
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 8 == 0:  # every 8th row is plenty to tell a page from a blank one
            for x in range(0, width, 4):
                total += 1
                ink += sum(line[x * bpp:x * bpp + 3]) < 720
        prev = line
    return width, height, ink / max(total, 1)


def _region_colours(path: Path, box: tuple[int, int, int, int]) -> set[tuple[int, int, int]]:
    """The distinct colours (RGB, rounded to 32 levels) of a region of an 8-bit RGB(A) PNG."""
    data = path.read_bytes()
    pos, idat, width, kind = 8, b"", 0, 0
    while pos < len(data):
        length, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            width, _, _, kind = struct.unpack(">IIBB", body[:10])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw, bpp = zlib.decompress(idat), 3 if kind == 2 else 4
    stride, prev, colours = width * bpp, bytearray(width * bpp), set()
    left, top, w, h = box
    for y in range(top + h):
        filt, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pred = {0: 0, 1: a, 2: b, 3: (a + b) // 2,
                    4: a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c}[filt]
            line[i] = (line[i] + pred) & 255
        if y >= top and y % 4 == 0:
            colours |= {tuple(v // 32 for v in line[x * bpp:x * bpp + 3]) for x in range(left, min(left + w, width), 4)}
        prev = line
    return colours


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make setup installs it)")
def test_report_renders_in_chromium(all_formats_export, tmp_path):
    """The page as Chromium draws it: the summary first, then the funnel chart, the drops table and
    the examples, in that order down the page; every plot drawn; a pager steps through examples;
    and the screenshot shows the chart's colours where the chart is."""
    conf, result, release = all_formats_export
    page = (release / "report.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))
    assert int(attrs["plots"]) == 1 + len(result.report["histograms"]) == int(attrs["rendered"])
    boxes = {k: tuple(int(v) for v in attrs[f"box-{k}"].split(",")) for k in ("summary", "funnel", "drops", "examples")}
    tops = [boxes[k][1] for k in ("summary", "funnel", "drops", "examples")]
    assert tops == sorted(tops) and all(boxes[k][2] > 0 and boxes[k][3] > 0 for k in boxes)
    assert boxes["summary"][1] < 200  # the summary is what a reader sees first
    assert attrs["pager"] == "0,1,0"  # next shows the second example, previous the first again
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True)
    width, height, ink = _png_size_and_ink(shot)
    assert (width, height) == (1200, 2400) and ink > 0.03, ink  # a page with tables and plots, not a blank one
    # the funnel chart's bars: the kept rows' blue and the first drop stage's orange are drawn in its box
    colours = _region_colours(shot, boxes["funnel"])
    assert (0x2a // 32, 0x7a // 32, 0xb0 // 32) in colours and (0xe0 // 32, 0xa0 // 32, 0x30 // 32) in colours
    summary = _region_colours(shot, boxes["summary"])
    assert len(summary) > 2  # text and the header's grey on white


def test_dataset_card(all_formats_export):
    conf, result, release = all_formats_export
    card = (release / "README.md").read_text(encoding="utf-8")
    front, body = re.match(r"^---\n(.*?)\n---\n(.*)$", card, re.S).groups()
    meta = yaml.safe_load(front)
    assert meta["license"] == "other" and meta["language"] == ["en"] and meta["size_categories"] == ["n<1K"]
    from instructlake.jobs.stages.formats import config_name, formats_of

    assert {c["config_name"] for c in meta["configs"]} == {
        "jsonl", "chat", "parquet", "openai", "sharegpt", "alpaca", "preference", "preference_standard",
        "conversations", "conversations_openai", "conversations_sharegpt"}
    config_of = {(f["product"], f["format"]): config_name(f["product"], f["format"], formats_of(conf, f["product"])[0] == f["format"])
                 for f in result.manifest["files"]}
    for c in meta["configs"]:
        for entry in c["data_files"]:
            matched = sorted(p.name for p in release.glob(entry["path"]))
            listed = sorted(f["file"] for f in result.manifest["files"]
                            if config_of[(f["product"], f["format"])] == c["config_name"] and f["split"] == entry["split"])
            assert matched == listed and matched
    assert "https://github.com/anthropics/hh-rlhf" in body and "MIT" in body
    assert "Content warning" in body and "offensive" in body and "Known limitations" in body
    assert result.manifest["git_commit"] in body and "red_team_rating" in body and '"max_rating": 2.0' in body
    assert "## Other checks and thresholds" in body and f"\"threshold\": {conf.dedup.threshold}" in body
    for name, t in result.manifest["tables"]["bronze"].items():
        assert f"| bronze/{name} | {t['version']} |" in body
    for filter_name, scorer in result.manifest["scorers"].items():
        assert f"| {filter_name} | {scorer} |" in body


def test_datasets_reads_the_card_configs(all_formats_export):
    datasets = pytest.importorskip("datasets")
    conf, result, release = all_formats_export
    chat = datasets.load_dataset(str(release), "chat")
    assert {s: chat[s].num_rows for s in chat} == result.manifest["split"]["rows"]


def test_card_lists_the_thresholds_besides_the_filters():
    from instructlake.jobs.stages.card import _checks_text
    from instructlake.jobs.runner import load_config

    conf = load_config("conf/local.yaml")
    text = _checks_text(conf)
    # duplicates, the generated QA pairs' checks and paragraph selection, the code sandbox: each with its values
    assert f'"threshold": {conf.dedup.threshold}' in text and f'"shingle_words": {conf.dedup.shingle_words}' in text
    assert f'"min_grounding": {conf.qa.checks.min_grounding}' in text and f'"max_copy_overlap": {conf.qa.checks.max_copy_overlap}' in text
    assert f'"min_chars": {conf.qa.paragraphs.min_chars}' in text and "`language`" in text
    assert f'"timeout_s": {conf.code.sandbox.timeout_s}' in text and f'"memory_mb": {conf.code.sandbox.memory_mb}' in text
    hh_only = load_config("conf/local.yaml", ["dedup.enabled=false", "sources.wikitext.enabled=false",
                                              "sources.conala.enabled=false", "sources.mbpp.enabled=false",
                                              "code.generate.count=0"])
    assert _checks_text(hh_only).splitlines() == [
        "- `hh_helpful` (helpful_online): HH-RLHF JSON lines: the first exchange of `chosen`",
        "- `hh_helpful` (helpful_rejection_sampled): HH-RLHF JSON lines: the first exchange of `chosen`",
        "- `hh_harmless` (red_team_attempts): red-team JSON arrays: the first exchange of `transcript`, with its rating",
        "- duplicates: not removed (`dedup.enabled: false`)",
    ]
