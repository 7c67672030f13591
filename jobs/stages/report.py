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

import html
import io
import json
from functools import reduce
from typing import Optional

import matplotlib
from matplotlib.figure import Figure
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from instructlake.core import storage
from instructlake.core.config import Config
from instructlake.core.lake import Lake, read_version
from instructlake.jobs.sources import format_of
from instructlake.jobs.sources.base import KEYS  # a pair's key, also the qa table's
from instructlake.jobs.stages.dedup import STAGE as DEDUP_STAGE
from instructlake.jobs.stages.formats import seeded_hash
from instructlake.jobs.stages.generate_code import GENERATED_STAGES, generation_source
from instructlake.udfs.filters import DROP_REASON, DROP_STAGE, reason_kind, rewrites

MAX_DETAILS = 5        # details of a reason kind listed in full up to this many
EXAMPLES = 3           # kept examples; and dropped ones per reason kind (EXAMPLES - 1)
EXAMPLE_CHARS = 300    # instruction and response cut to this many characters
BINS = 20


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
    if version is None or not storage.exists(spark, lake.qa):
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
        row = df.agg(*[F.percentile_approx(c, 0.99).alias(c) for c in lengths]).first()
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
    """A few kept pairs and a few dropped ones per reason kind, in seeded hash order, truncated.

    The rows are picked on narrow columns (the order, the kind, the row keys), so the window's
    sort moves no texts; then only the picked rows' texts are read, cut to `EXAMPLE_CHARS`.
    """
    def cut(c: str) -> Column:
        return F.when(F.length(c) > EXAMPLE_CHARS, F.concat(F.substring(c, 1, EXAMPLE_CHARS), F.lit("…"))).otherwise(F.col(c))

    kind = F.coalesce(reason_kind(F.col(DROP_REASON)), F.lit(""))
    rank = F.row_number().over(Window.partitionBy("_kind").orderBy("_order", "source_file", "item"))
    picked = (pairs.select(seeded_hash(conf.export.seed).alias("_order"), kind.alias("_kind"), *KEYS)
              # a constant bound lets Spark keep only the first rows of each kind before its shuffle
              .withColumn("_n", rank).where(F.col("_n") <= EXAMPLES).collect())
    picked = [r for r in picked if not (r["_kind"] and r["_n"] > EXAMPLES - 1)]
    out: dict = {"kept": [], "dropped": {}}
    if not picked:
        return out
    wanted = reduce(Column.__or__, [reduce(Column.__and__, [F.col(k).eqNullSafe(F.lit(r[k])) for k in KEYS]) for r in picked])
    texts = {
        tuple(r[k] for k in KEYS): r
        for r in pairs.where(wanted).select(*KEYS, "source", DROP_REASON, cut("instruction").alias("instruction"),
                                            cut("response").alias("response")).collect()
    }
    for r in sorted(picked, key=lambda r: (r["_kind"], r["_n"])):
        row = texts[tuple(r[k] for k in KEYS)]
        item = {k: row[k] for k in ("source", DROP_REASON, "instruction", "response")}
        (out["kept"] if r["_kind"] == "" else out["dropped"].setdefault(r["_kind"], [])).append(item)
    return out


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


def format_funnel(report: dict) -> str:
    """The funnel as a plain-text table (the CLI prints it)."""
    rows = funnel_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(f"{v:<{w}}" if i == 0 else f"{v:>{w}}" for i, (v, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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


def funnel_plot(report: dict) -> str:
    labels = ["candidates", *[f"after {s}" for s in report["stages"]], "exported"]
    fig, ax = _figure(9, 0.9 + 0.45 * len(labels))
    sources = list(report["funnel"])
    height = 0.8 / max(1, len(sources))
    for i, source in enumerate(sources):
        c = report["funnel"][source]
        values = [c["candidates"], *[c["after"].get(s, 0) for s in report["stages"]], c["exported"]]
        ax.barh([y + i * height for y in range(len(labels))], values, height=height, label=source)
    ax.set_yticks([y + 0.4 - height / 2 for y in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Rows per source at each stage")
    return _svg(fig)


def drops_plot(report: dict) -> Optional[str]:
    stages = [s for s in report["stages"] if any(s in by_stage for by_stage in report["drops"].values())]
    if not stages:
        return None
    fig, ax = _figure(9, 0.9 + 0.4 * len(stages))
    left = [0] * len(stages)
    for source in report["drops"]:
        dropped = stage_rows(report["drops"], source)
        values = [dropped.get(s, 0) for s in stages]
        ax.barh(stages, values, left=left, label=source)
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("rows dropped")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Drops per stage and source")
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


def _table(rows: list[list], head: bool = True) -> str:
    out = ["<table>"]
    for i, r in enumerate(rows):
        tag = "th" if head and i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _drops_rows(report: dict) -> list[list]:
    rows = [["source", "stage", "reason kind", "rows", "details"]]
    for source, stages in report["drops"].items():
        for stage, kinds in stages.items():
            for kind, d in kinds.items():
                details = ", ".join(f"{k} ({n})" for k, n in d["details"].items()) if d["details"] else f"{d['distinct']} distinct"
                if d["details"] and list(d["details"]) == [kind]:
                    details = ""
                rows.append([source, stage, kind, d["rows"], details])
    return rows


def _examples_html(report: dict) -> str:
    def block(title: str, items: list[dict]) -> str:
        body = "".join(
            f"<div class='ex'><div class='meta'>{html.escape(e['source'])}{' · ' + html.escape(e[DROP_REASON]) if e[DROP_REASON] else ''}</div>"
            f"<pre><b>instruction:</b> {html.escape(e['instruction'] or '')}\n<b>response:</b> {html.escape(e['response'] or '')}</pre></div>"
            for e in items
        )
        return f"<h3>{html.escape(title)}</h3>{body}"

    ex = report["examples"]
    return block("kept", ex["kept"]) + "".join(block(f"dropped: {k}", v) for k, v in ex["dropped"].items())


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
    dc = report.get("decontamination")
    if dc:
        parts.append(f"<h2>Decontamination</h2><pre>{html.escape(json.dumps(dc, indent=2))}</pre>")
    return "".join(parts)


STYLE = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1150px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f0f0f0}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots svg{width:360px;height:auto}.wide svg{width:900px;height:auto}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:6px;font-size:12px;margin:2px 0}
.ex{margin-bottom:10px}.meta{font-size:12px;color:#555}.warn{background:#fde8e8;border:1px solid #d33;padding:6px}
"""
# After load, the page writes how many plots it drew with a non-zero size (a rendering check).
CHECK = """
<script>
window.addEventListener('load', function () {
  var plots = document.querySelectorAll('svg'), drawn = 0;
  plots.forEach(function (s) { var r = s.getBoundingClientRect(); if (r.width > 0 && r.height > 0) drawn++; });
  var p = document.getElementById('render-check');
  p.textContent = drawn + ' of ' + plots.length + ' plots rendered';
  p.setAttribute('data-rendered', String(drawn));
  p.setAttribute('data-plots', String(plots.length));
});
</script>
"""


def render_html(report: dict) -> str:
    """report.html: tables, inline SVG plots and examples, with no external resource."""
    rows = funnel_rows(report)
    title = f"{report['name']}: export {report['run_id']}"
    hist = "".join(histogram_plot(c, h) for c, h in report["histograms"].items())
    drops = drops_plot(report) or "<p>No row was dropped.</p>"
    files = _table([["file", "rows"], *[[f["file"], f["rows"]] for f in report["files"]]])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Pairs table version {report['pairs_version']}, created {html.escape(report['created_at'])}.
Validation fraction {report['validation_fraction']}. <span id="render-check" data-rendered="0"></span></p>
{_notes_html(report)}
<h2>Funnel</h2>
{_table(transposed(rows))}
<p>For a web-text source, the rows ingested are paragraphs and the candidates are the questions generated from the selected ones.</p>
<div class="wide">{funnel_plot(report)}</div>
<h2>Drops per reason</h2>
{_table(_drops_rows(report))}
<div class="wide">{drops}</div>
<h2>Distributions</h2>
<div class="plots">{hist}</div>
<h2>Files</h2>
{files}
<h2>Examples</h2>
<p>Offensive or harmful text may appear below: the red-team source holds it on purpose.</p>
{_examples_html(report)}
{CHECK}
</body></html>
"""
