"""The funnel report of an export: `report.json` and a self-contained `report.html`.

Per source label: rows ingested and quarantined (the ingest log, as in the
manifest), candidate pairs, the rows still kept after each drop stage (the
candidates' own steps that the source formats declare, such as the dialogue
split or the question-answer checks, then each filter in conf order, then
the dedup step), kept, exported, and exported per split. The stage of a drop
is the pairs table's `drop_stage`: each filter's row shows its own drops.
Drops are grouped by stage, then by reason kind: a reason `kind:detail`
(e.g. `duplicate_of:<id>`, `contaminated:humaneval`) counts under `kind`,
with its details listed when there are at most `MAX_DETAILS` of them. Histograms of
the instruction and response lengths and of every score column of the pairs
table (toxicity classes, `lang_prob`, `red_team_rating`) and, for the
synthetic question-answer pairs, the `grounding` score of the qa table; each
split into kept and dropped rows. A few kept and dropped examples per reason
kind, truncated. The manifest's `code_execution` and `decontamination`
entries, when present, are shown as they are.

Every number is a Spark aggregation; only the aggregates and the handful of
examples reach the driver. The HTML holds its plots as inline SVG (matplotlib,
without pyplot) and loads nothing from outside.
"""
from __future__ import annotations

import dataclasses
import html
import io
import json
import os
from functools import reduce
from typing import Optional

import matplotlib
from matplotlib.figure import Figure
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from instructlake.core.config import CONF_DIR, Config
from instructlake.core.lake import Lake, is_delta, read_version
from instructlake.jobs.sources import FORMATS, format_of
from instructlake.jobs.sources.base import KEYS  # a pair's key, also the qa table's
from instructlake.jobs.stages.dedup import STAGE as DEDUP_STAGE
from instructlake.jobs.stages.formats import seeded_hash
from instructlake.jobs.stages.generate_code import GENERATED_STAGES, generation_source
from instructlake.udfs.filters import DROP_REASON, DROP_STAGE, reason_kind, rewrites
from instructlake.udfs.qa_checks import CHECKS, SCORE_COLUMNS, acceptance, failed_checks

MAX_DETAILS = 5        # details of a reason kind listed in full up to this many
EXAMPLES = 3           # examples per source and outcome (kept, or a drop reason kind)
EXAMPLE_CHARS = 300    # instruction and response cut to this many characters
KEPT = "kept"          # the outcome of the kept pairs among the examples' groups
BINS = 20
PERCENTILE_ACCURACY = 1000  # the 99th percentile of the lengths (the last bin's edge) within 0.1% of the rows
CALIBRATION_FILE = "qa_calibration.json"  # in conf/: the checks' calibration on SQuAD (benchmarks/qa_calibration.py)


def stage_order(conf: Config, seen: set[str]) -> list[str]:
    """Drop stages in pipeline order: the candidates' own (those that dropped rows), the conf's
    enabled filters and the dedup step (always), then any other stage seen."""
    own: list[str] = []
    for source in conf.enabled_sources:
        own += format_of(source).stages
    if generation_source(conf) is not None:
        own += GENERATED_STAGES
    always = [f.key for f in conf.filters if f.enabled] + ([DEDUP_STAGE] if conf.dedup.enabled else [])
    ordered = [s for s in dict.fromkeys(own) if s in seen] + always
    return ordered + sorted(seen - set(ordered))


def _label_of(conf: Config) -> dict[str, str]:
    return {s.name: s.label for s in conf.sources}


def ingest_counts(conf: Config, manifest: dict) -> dict[str, dict[str, int]]:
    """{label: {ingested, quarantined}} from the manifest's input files (the ingest log)."""
    out: dict[str, dict[str, int]] = {}
    for f in manifest.get("inputs", []):
        entry = out.setdefault(_label_of(conf).get(f["source_name"], f["source_name"]), {"ingested": 0, "quarantined": 0})
        entry["ingested"] += f["rows_ingested"]
        entry["quarantined"] += f["rows_quarantined"]
    return out


def drop_table(pairs: DataFrame, conf: Config) -> tuple[dict, dict]:
    """({source: {candidates, kept}}, {source: {stage: {kind: {rows, distinct, details}}}})."""
    kind = reason_kind(F.col(DROP_REASON))
    rows = (pairs.groupBy("source", DROP_STAGE, kind.alias("kind"))
            .agg(F.count(F.lit(1)).alias("rows"), F.countDistinct(DROP_REASON).alias("distinct")).collect())
    totals: dict = {}
    drops: dict = {}
    for r in rows:
        t = totals.setdefault(r["source"], {"candidates": 0, "kept": 0})
        t["candidates"] += r["rows"]
        if r["kind"] is None:
            t["kept"] += r["rows"]
            continue
        stage = r[DROP_STAGE] or "unknown"
        drops.setdefault(r["source"], {}).setdefault(stage, {})[r["kind"]] = {"rows": r["rows"], "distinct": r["distinct"], "details": None}
    few = [(s, st, k) for s, stages in drops.items() for st, kinds in stages.items() for k, d in kinds.items() if d["distinct"] <= MAX_DETAILS]
    if few:
        wanted = reduce(Column.__or__, [(F.col("source") == s) & F.col(DROP_STAGE).eqNullSafe(st) & (kind == k) for s, st, k in few])
        details: dict = {}
        for r in pairs.where(wanted).groupBy("source", DROP_STAGE, kind.alias("kind"), DROP_REASON).count().collect():
            details.setdefault((r["source"], r[DROP_STAGE], r["kind"]), {})[r[DROP_REASON]] = r["count"]
        for (s, st, k), found in details.items():
            drops[s][st][k]["details"] = dict(sorted(found.items()))
    return totals, {s: {st: dict(sorted(k.items())) for st, k in sorted(stages.items())} for s, stages in sorted(drops.items())}


def stage_rows(drops: dict, source: str) -> dict[str, int]:
    """{stage: rows dropped} of one source."""
    return {stage: sum(d["rows"] for d in kinds.values()) for stage, kinds in drops.get(source, {}).items()}


def funnel(conf: Config, manifest: dict, totals: dict, drops: dict, exported: dict) -> tuple[list[str], dict]:
    """Stages in order, and {source: counts at each stage}."""
    stages = stage_order(conf, {st for by_stage in drops.values() for st in by_stage})
    ingest = ingest_counts(conf, manifest)
    out = {}
    for source in sorted(set(totals) | set(ingest)):
        t = totals.get(source, {"candidates": 0, "kept": 0})
        left, after, dropped = t["candidates"], {}, stage_rows(drops, source)
        for stage in stages:
            left -= dropped.get(stage, 0)
            after[stage] = left
        splits = exported.get(source, {})
        out[source] = {
            **ingest.get(source, {"ingested": 0, "quarantined": 0}),
            "candidates": t["candidates"], "after": after, "kept": t["kept"],
            "exported": sum(splits.values()), "splits": {s: splits.get(s, 0) for s in ("train", "validation")},
        }
    return stages, out


def rewrite_counts(pairs: DataFrame, conf: Config) -> dict:
    """{filter key: {source: {rows, tags: {tag: rows}}}}: the kept pairs whose text a rewriting
    filter changed (PII redaction), and what it changed, per source."""
    out: dict = {}
    for key, columns in rewrites(conf.filters):
        if columns.tags not in pairs.columns:
            continue
        changed = pairs.where(F.col(DROP_REASON).isNull() & (F.col(columns.instruction).isNotNull() | F.col(columns.response).isNotNull()))
        rows = changed.select("source", F.explode_outer(columns.tags).alias("tag")).groupBy("source", "tag").agg(
            F.count(F.lit(1)).alias("n")).collect()
        totals = {r["source"]: r["count"] for r in changed.groupBy("source").count().collect()}
        by_source: dict = {s: {"rows": n, "tags": {}} for s, n in sorted(totals.items())}
        for r in rows:
            if r["tag"] is not None:
                by_source[r["source"]]["tags"][r["tag"]] = r["n"]
        out[key] = {s: {"rows": v["rows"], "tags": dict(sorted(v["tags"].items()))} for s, v in by_source.items()}
    return out


def score_columns(pairs: DataFrame) -> list[str]:
    """The numeric score columns of the pairs table."""
    numeric = {"double", "float", "int", "bigint", "smallint"}
    cols = []
    for name, dtype in pairs.dtypes:
        scored = name in ("lang_prob", "red_team_rating") or (name.startswith(("instruction_", "response_")) and not name.endswith("_chars"))
        if scored and dtype in numeric:
            cols.append(name)
    return cols


def with_grounding(spark, pairs: DataFrame, lake: Lake, manifest: dict) -> DataFrame:
    """`pairs` with the qa table's `grounding` for the synthetic pairs (when there is a qa table)."""
    version = manifest.get("tables", {}).get("qa", {}).get("version")
    if version is None or not is_delta(spark, lake.qa):
        return pairs
    qa, _ = read_version(spark, lake.qa, version)
    if "grounding" not in qa.columns:
        return pairs
    return pairs.join(qa.select(*KEYS, "grounding"), KEYS, "left")


def _range(col: str) -> Optional[tuple[float, float]]:
    """Fixed ranges of the probability-like scores and the rating; None: from the data."""
    if col == "red_team_rating":
        return (-0.5, 4.5)  # one bin centred on each rating 0-4
    if col.endswith("_chars"):
        return None
    return (0.0, 1.0)


def histograms(df: DataFrame, cols: list[str]) -> dict:
    """{column: {edges, kept, dropped}}: BINS bins (lengths: 0 to the 99th percentile, the
    last bin holding the rest; scores: 0 to 1; rating: one bin per value 0-4)."""
    lengths = [c for c in cols if _range(c) is None]
    tops = {}
    if lengths:
        # A plot's edge needs no finer rank than 1/PERCENTILE_ACCURACY; the sketches of every
        # partition are merged in one task, so a finer one costs that task more as N grows.
        row = df.agg(*[F.percentile_approx(c, 0.99, PERCENTILE_ACCURACY).alias(c) for c in lengths]).first()
        tops = {c: float(max(row[c] or 1, 1)) for c in lengths}
    bounds = {c: _range(c) or (0.0, tops[c]) for c in cols}
    bins = {c: 5 if c == "red_team_rating" else BINS for c in cols}
    entries = []
    for c in cols:
        lo, hi = bounds[c]
        width = (hi - lo) / bins[c]
        b = F.least(F.greatest(F.floor((F.col(c) - lo) / width), F.lit(0)), F.lit(bins[c] - 1)).cast("int")
        entries.append(F.struct(F.lit(c).alias("col"), F.when(F.col(c).isNotNull(), b).alias("bin")))
    kept = F.col(DROP_REASON).isNull()
    rows = (df.select(kept.alias("kept"), F.explode(F.array(*entries)).alias("e"))
            .where(F.col("e.bin").isNotNull()).groupBy("e.col", "e.bin", "kept").count().collect())
    out = {}
    for c in cols:
        lo, hi = bounds[c]
        step = (hi - lo) / bins[c]
        out[c] = {"edges": [round(lo + i * step, 6) for i in range(bins[c] + 1)], "kept": [0] * bins[c], "dropped": [0] * bins[c],
                  "open_ended": c in lengths}
    for r in rows:
        out[r["col"]]["kept" if r["kept"] else "dropped"][r["bin"]] += r["count"]
    return {c: h for c, h in out.items() if sum(h["kept"]) + sum(h["dropped"])}


def examples(pairs: DataFrame, conf: Config) -> dict:
    """{source: {"kept": [...], <reason kind>: [...]}}: the first `EXAMPLES` pairs of each source and
    outcome in the seeded hash order, their texts cut to `EXAMPLE_CHARS`.

    The rows are picked on narrow columns (the order, the source, the kind, the row keys), so the
    window's sort moves no texts; then only the picked rows' texts are read.
    """
    def cut(c: str) -> Column:
        return F.when(F.length(c) > EXAMPLE_CHARS, F.concat(F.substring(c, 1, EXAMPLE_CHARS), F.lit("…"))).otherwise(F.col(c))

    kind = F.coalesce(reason_kind(F.col(DROP_REASON)), F.lit(KEPT))
    rank = F.row_number().over(Window.partitionBy("source", "_kind").orderBy("_order", "source_file", "item"))
    picked = (pairs.select(seeded_hash(conf.export.seed).alias("_order"), kind.alias("_kind"), "source", *KEYS)
              # a constant bound lets Spark keep only the first rows of each group before its shuffle
              .withColumn("_n", rank).where(F.col("_n") <= EXAMPLES).collect())
    out: dict = {}
    if not picked:
        return out
    wanted = reduce(Column.__or__, [reduce(Column.__and__, [F.col(k).eqNullSafe(F.lit(r[k])) for k in KEYS]) for r in picked])
    texts = {
        tuple(r[k] for k in KEYS): r
        for r in pairs.where(wanted).select(*KEYS, DROP_REASON, DROP_STAGE, cut("instruction").alias("instruction"),
                                            cut("response").alias("response")).collect()
    }
    for r in sorted(picked, key=lambda r: (r["source"], r["_kind"] != KEPT, r["_kind"], r["_n"])):
        row = texts[tuple(r[k] for k in KEYS)]
        item = {k: row[k] for k in (DROP_REASON, DROP_STAGE, "instruction", "response")}
        out.setdefault(r["source"], {}).setdefault(r["_kind"], []).append(item)
    return out


QA_EXAMPLES = 3        # generated question-answer pairs shown per outcome (kept, or a qa drop reason)
QA_PARAGRAPH_CHARS = 400


def qa_section(spark, conf: Config, lake: Lake, manifest: dict) -> Optional[dict]:
    """The generated question-answer pairs of the release's qa table (None without one): their
    outcomes (kept, or the drop reason with its stage), the share of the generated pairs each check
    accepts, the calibration of the checks on SQuAD (`conf/qa_calibration.json`, written by
    `benchmarks/qa_calibration.py --write`) when the conf's thresholds are the calibrated ones, and
    the first `QA_EXAMPLES` pairs of each outcome in the seeded order. The rows are few (bounded by
    `qa.max_paragraphs` x the types): they are read whole."""
    version = manifest.get("tables", {}).get("qa", {}).get("version")
    if version is None or not is_delta(spark, lake.qa):
        return None
    qa, _ = read_version(spark, lake.qa, version)
    order = F.sha2(F.concat_ws(":", F.lit(str(conf.export.seed)), "content_id"), 256)
    rows = qa.withColumn("_order", order).orderBy("_order").collect()
    outcomes: dict = {}
    for r in rows:
        key = r["qa_drop_reason"] or KEPT
        o = outcomes.setdefault(key, {"stage": r["qa_drop_stage"], "rows": 0, "examples": []})
        o["rows"] += 1
        if len(o["examples"]) < QA_EXAMPLES:
            paragraph = r["paragraph"] or ""
            o["examples"].append({
                "type": r["qa_type"], "question": r["question"], "answer": r["answer"],
                "paragraph": paragraph[:QA_PARAGRAPH_CHARS] + ("…" if len(paragraph) > QA_PARAGRAPH_CHARS else ""),
                "answer_location": r["answer_location"] if "answer_location" in r else None,
            })
    checked = [r.asDict() for r in rows if r["question"] is not None and r["answer"] is not None and r["generation_error"] is None]
    accepted = {}
    if checked and all(c in checked[0] for c in SCORE_COLUMNS[:-1]):
        accepted = acceptance(failed_checks(r, r["qa_type"], conf.qa.checks) for r in checked)
    stages = FORMATS["web_text"].stages
    ordered = sorted(outcomes.items(), key=lambda kv: (kv[0] != KEPT, stages.index(kv[1]["stage"]) if kv[1]["stage"] in stages else 99, -kv[1]["rows"]))
    return {
        "rows": len(rows), "generated": len(checked), "kept": outcomes.get(KEPT, {}).get("rows", 0),
        "outcomes": dict(ordered), "accepted": accepted, "calibration": calibration_for(conf.qa.checks),
        "verify": list(conf.qa.verify.methods), "mode": conf.qa.mode,
    }


def calibration_for(checks) -> Optional[dict]:
    """The SQuAD calibration of `checks` from the packaged `conf/qa_calibration.json`, or None when
    the conf's thresholds differ from the calibrated ones (or the file is missing)."""
    path = os.path.join(CONF_DIR, CALIBRATION_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:  # a file of the installed package, not of the lake
        calibration = json.load(f)
    return calibration if calibration.get("checks") == dataclasses.asdict(checks) else None


def summary_rows(conf: Config, counts: dict) -> dict:
    """{source: {candidates, kept, exported, seed}}: what the report shows first; `seed` is the
    seed dataset's rows for the label (`export.seed_rows`), or None."""
    seed = conf.export.seed_rows or {}
    return {s: {"candidates": c["candidates"], "kept": c["kept"], "exported": c["exported"], "seed": seed.get(s)}
            for s, c in counts.items()}


PRODUCT_HEAD = ["source", "records", "kept", "train", "validation", "dropped (stage: reason rows)", "kept but cut"]


def products_section(manifest: dict) -> dict:
    """{product: {source: {records, kept, train, validation, dropped: {stage: {rows, reasons}}, cut: {reason: rows}}}}
    of the products besides the pairs (the manifest's `products`)."""
    out = {}
    for name, p in (manifest.get("products") or {}).items():
        out[name] = {
            source: {"records": c["read"], "kept": c["kept"], "train": p["exported"].get(source, {}).get("train", 0),
                     "validation": p["exported"].get(source, {}).get("validation", 0), "dropped": c["dropped"],
                     "cut": (p.get("cuts") or {}).get(source, {})}
            for source, c in p["counts"].items()
        }
    return out


def product_rows(rows: dict) -> list[list]:
    """One product's funnel as rows of text (`PRODUCT_HEAD`, then one row per source)."""
    def dropped(by_stage: dict) -> str:
        return "; ".join(f"{stage}: " + ", ".join(f"{k} {n}" for k, n in d["reasons"].items()) for stage, d in by_stage.items()) or "-"

    return [PRODUCT_HEAD, *[[source, r["records"], r["kept"], r["train"], r["validation"], dropped(r["dropped"]),
                             ", ".join(f"{k} {n}" for k, n in r["cut"].items()) or "-"] for source, r in rows.items()]]


def build_report(spark, conf: Config, lake: Lake, pairs: DataFrame, manifest: dict, exported: dict,
                 drop_summary: tuple[dict, dict]) -> dict:
    """Everything report.json holds (see the module docstring); `drop_summary`: `drop_table(pairs, conf)`,
    which the export also counts its manifest from."""
    totals, drops = drop_summary
    stages, counts = funnel(conf, manifest, totals, drops, exported)
    scored = with_grounding(spark, pairs, lake, manifest)
    cols = ["instruction_chars", "response_chars", *score_columns(pairs)] + (["grounding"] if "grounding" in scored.columns else [])
    report = {
        "name": conf.export.name,
        "run_id": manifest["run_id"],
        "created_at": manifest["created_at"],
        "pairs_version": manifest["tables"]["pairs"]["version"],
        "summary": summary_rows(conf, counts),
        "stages": stages,
        "funnel": counts,
        "drops": drops,
        "histograms": histograms(scored, cols),
        "examples": examples(pairs, conf),
        "validation_fraction": conf.export.validation_fraction,
        "selection": manifest.get("selection"),
        "files": [{k: f[k] for k in ("file", "rows")} for f in manifest["parts"] + manifest.get("files", [])],
    }
    for key in ("code_execution", "decontamination", "rewrites"):
        if key in manifest:
            report[key] = manifest[key]
    qa = qa_section(spark, conf, lake, manifest)
    if qa is not None:
        report["qa"] = qa
    if manifest.get("products"):
        report["products"] = products_section(manifest)
    return report


# --- text ------------------------------------------------------------------------

def funnel_rows(report: dict) -> list[list[str]]:
    """The funnel as rows of text: a header, then one row per source and a total."""
    stages = report["stages"]
    head = ["source", "ingested", "quarantined", "candidates", *[f"after {s}" for s in stages], "exported", "train", "validation"]
    rows = [head]
    totals = [0] * (len(head) - 1)
    for source, c in report["funnel"].items():
        values = [c["ingested"], c["quarantined"], c["candidates"], *[c["after"].get(s, 0) for s in stages],
                  c["exported"], c["splits"]["train"], c["splits"]["validation"]]
        totals = [a + b for a, b in zip(totals, values)]
        rows.append([source, *map(str, values)])
    rows.append(["(total)", *map(str, totals)])
    return rows


def transposed(rows: list[list[str]]) -> list[list[str]]:
    """The funnel with one row per stage and one column per source (narrow enough for a page)."""
    return [list(col) for col in zip(*rows)]


# --- HTML ------------------------------------------------------------------------

# Text as outlines (no font needed to view the page) and stable element ids (the same page twice).
SVG_STYLE = {"svg.fonttype": "path", "svg.hashsalt": "instructlake"}


def _figure(width: float, height: float):
    """A figure and its axes, without pyplot: no backend is chosen for the process (a notebook's
    own plots are left alone)."""
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _svg(fig) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(SVG_STYLE):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


# One colour per drop stage, the kept rows first: the stages in conf order read left to right.
KEPT_COLOUR = "#2a7ab0"
STAGE_COLOURS = ["#e0a030", "#c0504d", "#8064a2", "#4bacc6", "#f79646", "#9bbb59", "#7f7f7f", "#d16ba5", "#a0522d",
                 "#2f4f4f", "#b8860b", "#556b2f"]


def funnel_plot(report: dict) -> str:
    """One horizontal bar per source: its kept rows, then the rows each drop stage took, in
    pipeline order (the conf's filters in conf order), so a bar's length is the source's candidates."""
    sources = list(report["funnel"])
    stages = [s for s in report["stages"] if any(stage_rows(report["drops"], src).get(s) for src in sources)]
    fig, ax = _figure(9, 1.2 + 0.45 * len(sources))
    left = [0] * len(sources)
    kept = [report["funnel"][s]["kept"] for s in sources]
    ax.barh(sources, kept, color=KEPT_COLOUR, label="kept")
    left = kept
    for i, stage in enumerate(stages):
        values = [stage_rows(report["drops"], s).get(stage, 0) for s in sources]
        ax.barh(sources, values, left=left, color=STAGE_COLOURS[i % len(STAGE_COLOURS)], label=f"dropped: {stage}")
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("candidate pairs")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title("Candidates per source: kept, and dropped by stage")
    return _svg(fig)


def histogram_plot(column: str, h: dict) -> str:
    fig, ax = _figure(4.2, 2.6)
    edges = h["edges"]
    widths = [b - a for a, b in zip(edges, edges[1:])]
    ax.bar(edges[:-1], h["kept"], width=widths, align="edge", label="kept", color="#2a7ab0")
    ax.bar(edges[:-1], h["dropped"], width=widths, align="edge", bottom=h["kept"], label="dropped", color="#e0a030")
    ax.set_title(column + (" (last bin: ≥ p99)" if h.get("open_ended") else ""), fontsize=10)
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    return _svg(fig)


def _table(rows: list[list], head: bool = True, css: str = "") -> str:
    out = [f"<table class='{css}'>" if css else "<table>"]
    for i, r in enumerate(rows):
        tag = "th" if head and i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _drops_rows(report: dict) -> list[list]:
    rows = [["source", "stage", "reason kind", "rows", "details"]]
    for source, stages in report["drops"].items():
        for stage in sorted(stages, key=lambda st: report["stages"].index(st) if st in report["stages"] else len(report["stages"])):
            for kind, d in stages[stage].items():
                details = ", ".join(f"{k} ({n})" for k, n in d["details"].items()) if d["details"] else f"{d['distinct']} distinct"
                if d["details"] and list(d["details"]) == [kind]:
                    details = ""
                rows.append([source, stage, kind, d["rows"], details])
    return rows


def _summary_html(report: dict) -> str:
    rows = [["source", "candidates", "kept", "exported", "the seed's rows", "kept of candidates"]]
    for s, c in report["summary"].items():
        share = f"{c['kept'] / c['candidates']:.0%}" if c["candidates"] else "-"
        rows.append([s, c["candidates"], c["kept"], c["exported"], c["seed"] if c["seed"] is not None else "-", share])
    total = [sum(c[k] for c in report["summary"].values()) for k in ("candidates", "kept", "exported")]
    rows.append(["(total)", *total, "", f"{total[1] / total[0]:.0%}" if total[0] else "-"])
    return _table(rows, css="summary")


def _pager(group: str, title: str, cards: list[tuple[str, str]]) -> str:
    """One pager: a group's cards (meta line, body HTML), one shown at a time, with buttons to step."""
    shown = "".join(
        f"<div class='ex' data-i='{i}'{'' if i == 0 else ' hidden'}><div class='meta'>{meta} · {i + 1} of {len(cards)}</div>"
        f"<pre>{body}</pre></div>"
        for i, (meta, body) in enumerate(cards)
    )
    nav = "<button class='prev' type='button'>&larr; previous</button><button class='next' type='button'>next &rarr;</button>" \
        if len(cards) > 1 else ""
    return f"<div class='pager' data-group='{html.escape(group)}'><h4>{html.escape(title)}</h4>{nav}{shown}</div>"


def _examples_html(report: dict) -> str:
    """Per source, a pager per outcome (kept, then each drop reason kind): one pair at a time,
    with buttons to step through the group's examples."""
    blocks = []
    for source, groups in report["examples"].items():
        pagers = [
            _pager(f"{source}/{kind}", kind, [
                (f"{html.escape(e[DROP_REASON] or 'kept')}{' · stage ' + html.escape(e[DROP_STAGE]) if e[DROP_STAGE] else ''}",
                 f"<b>instruction:</b> {html.escape(e['instruction'] or '')}\n<b>response:</b> {html.escape(e['response'] or '')}")
                for e in items
            ])
            for kind, items in groups.items()
        ]
        blocks.append(f"<h3>{html.escape(source)}</h3><div class='pagers'>{''.join(pagers)}</div>")
    return "".join(blocks) or "<p>No pair.</p>"


def _qa_html(qa: dict) -> str:
    """The generated question-answer pairs: outcomes, each check's acceptance beside its SQuAD
    calibration, and examples per outcome."""
    verify = ", ".join(qa["verify"]) if qa["verify"] else "off (the model-free checks decide)"
    head = (f"<p>{qa['rows']} questions asked ({qa['mode'].replace('_', '-')}), {qa['generated']} generated in full, "
            f"{qa['kept']} kept. Model-based verification (qa.verify): {html.escape(verify)}.</p>")
    outcomes = _table([["outcome", "stage", "rows"], *[[k, o["stage"] or "", o["rows"]] for k, o in qa["outcomes"].items()]])
    cal = qa["calibration"]
    sets = list(cal["sets"]) if cal else []
    rows = [["check", "generated pairs accepted", *[f"SQuAD {s} accepted" for s in sets]]]
    for check in [*CHECKS, "all checks"]:
        mine = qa["accepted"].get(check)
        rows.append([check, f"{mine:.0%}" if mine is not None else "", *[f"{cal['sets'][s][check]:.0%}" for s in sets]])
    note = (f"<p class='muted'>SQuAD: {html.escape(cal['data'])}; right = the human answer, the others planted wrong answers "
            "(benchmarks/qa_calibration.py).</p>" if cal else
            "<p class='muted'>No calibration for these thresholds: run benchmarks/qa_calibration.py --write conf/qa_calibration.json.</p>")
    pagers = [
        _pager(f"qa/{outcome}", outcome, [
            (f"{html.escape(e['type'] or '')} · {html.escape(outcome)}",
             f"<b>question:</b> {html.escape(e['question'] or '')}\n<b>answer:</b> {html.escape(e['answer'] or '')}\n"
             f"<b>paragraph:</b> {html.escape(e['paragraph'])}")
            for e in o["examples"]
        ])
        for outcome, o in qa["outcomes"].items() if o["examples"]
    ]
    return (f"<section id='qa'><h2>Synthetic question-answer pairs</h2>{head}{outcomes}{_table(rows)}{note}"
            f"<div class='pagers'>{''.join(pagers)}</div></section>")


def _decontamination_html(dc: dict) -> str:
    rows = [["filter", "benchmark", "format", "items", "items shorter than n", "distinct n-grams", "files (sha256)"]]
    for key, summary in dc.items():
        for b in summary["benchmarks"]:
            files = "; ".join(f"{f['uri'].rsplit('/', 1)[-1]} ({f['sha256'][:12]})" for f in b["files"])
            rows.append([f"{key} ({summary['ngram']}-grams)", b["name"], b["format"], b["items"], b["items_short"], b["ngrams"], files])
    return f"<h2>Decontamination</h2>{_table(rows)}"


def _notes_html(report: dict) -> str:
    parts = []
    ce = report.get("code_execution")
    if ce:
        weaker = ce.get("weaker") or ce.get("sandbox") == "process"
        flag = ("<p class='warn'>The generated code ran in the <b>process</b> sandbox, WEAKER than bubblewrap "
                "(bwrap): no separate file system or network namespace.</p>" if weaker else "")
        parts.append(f"<h2>Code execution</h2>{flag}{_table([['key', 'value'], *[[k, v] for k, v in ce.items()]])}")
    for key, by_source in (report.get("rewrites") or {}).items():
        rows = [["source", "rows rewritten", "what"], *[[s, v["rows"], ", ".join(f"{t} ({n})" for t, n in v["tags"].items())]
                                                        for s, v in by_source.items()]]
        parts.append(f"<h2>Texts rewritten by {html.escape(key)}</h2>{_table(rows)}")
    if report.get("decontamination"):
        parts.append(_decontamination_html(report["decontamination"]))
    if report.get("qa"):
        parts.append(_qa_html(report["qa"]))
    return "".join(parts)


STYLE = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1150px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f0f0f0}
table.summary{font-size:15px}table.summary td,table.summary th{padding:5px 12px}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots svg{width:360px;height:auto}.wide svg{width:900px;height:auto}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:6px;font-size:12px;margin:2px 0}
.pagers{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:10px}
.pager{border:1px solid #ddd;padding:6px}.pager h4{margin:0 0 4px;display:inline-block;margin-right:8px}
.pager button{font-size:12px;margin-right:4px}.meta{font-size:12px;color:#555}
.warn{background:#fde8e8;border:1px solid #d33;padding:6px}.muted{color:#666;font-size:13px}
"""
# The pagers' buttons; and, after load, what was drawn: every plot's size and the places of the page's
# parts, as data attributes of <body> (what a test reads back from the rendered page).
SCRIPT = """
<script>
document.querySelectorAll('.pager').forEach(function (p) {
  var cards = p.querySelectorAll('.ex'), at = 0;
  function show(i) { at = (i + cards.length) % cards.length; cards.forEach(function (c, j) { c.hidden = j !== at; }); }
  var prev = p.querySelector('.prev'), next = p.querySelector('.next');
  if (prev) prev.addEventListener('click', function () { show(at - 1); });
  if (next) next.addEventListener('click', function () { show(at + 1); });
});
window.addEventListener('load', function () {
  var plots = document.querySelectorAll('svg'), drawn = 0;
  plots.forEach(function (s) { var r = s.getBoundingClientRect(); if (r.width > 0 && r.height > 0) drawn++; });
  var body = document.body;
  body.setAttribute('data-plots', String(plots.length));
  body.setAttribute('data-rendered', String(drawn));
  ['summary', 'funnel', 'drops', 'examples'].forEach(function (id) {
    var r = document.getElementById(id).getBoundingClientRect();
    body.setAttribute('data-box-' + id, [r.left, r.top, r.width, r.height].map(Math.round).join(','));
  });
  var pager = document.querySelector('.pager .next');
  if (pager) {
    var box = pager.closest('.pager'), before = box.querySelector('.ex:not([hidden])').dataset.i;
    pager.click();
    var after = box.querySelector('.ex:not([hidden])').dataset.i;
    pager.closest('.pager').querySelector('.prev').click();
    body.setAttribute('data-pager', [before, after, box.querySelector('.ex:not([hidden])').dataset.i].join(','));
  }
});
</script>
"""


def _products_html(report: dict) -> str:
    if not report.get("products"):
        return ""
    tables = "".join(f"<h3>{html.escape(name)}</h3>{_table(product_rows(rows))}" for name, rows in report["products"].items())
    return ('<section id="products"><h2>Preference pairs and conversations</h2>'
            "<p>The lake's other products, from the same bronze rows: records read, dropped by stage and reason, kept "
            f"and exported by split.</p>{tables}</section>")


def render_html(report: dict) -> str:
    """report.html: the summary first, then the funnel chart, tables, plots and examples; no external resource."""
    title = f"{report['name']}: export {report['run_id']}"
    hist = "".join(histogram_plot(c, h) for c, h in report["histograms"].items())
    files = _table([["file", "rows"], *[[f["file"], f["rows"]] for f in report["files"]]])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">Pairs table version {report['pairs_version']}, created {html.escape(report['created_at'])};
validation fraction {report['validation_fraction']}.</p>
<section id="summary"><h2>Summary</h2>{_summary_html(report)}
<p class="muted">For a web-text source the candidates are the questions generated from the selected paragraphs.</p></section>
<section id="funnel"><h2>Funnel</h2><div class="wide">{funnel_plot(report)}</div>
<details><summary>The funnel as a table: rows after each stage</summary>{_table(transposed(funnel_rows(report)))}</details></section>
<section id="drops"><h2>Drops by stage and reason</h2>{_table(_drops_rows(report))}</section>
{_notes_html(report)}
{_products_html(report)}
<h2>Distributions</h2>
<div class="plots">{hist}</div>
<h2>Files</h2>
{files}
<section id="examples"><h2>Examples</h2>
<p>Offensive or harmful text may appear below: the red-team source holds it on purpose.</p>
{_examples_html(report)}</section>
{SCRIPT}
</body></html>
"""
