"""The funnel report of an export: `report.json` and a self-contained `report.html`.

Per source label: rows ingested and quarantined (the ingest log, as in the
manifest), candidate pairs, the rows still kept after each stage (the
dialogue split or the question-answer checks, then each filter in conf
order, then any other drop reason kinds), kept, exported, and exported per
split. Drops per reason are grouped by kind: a reason `kind:detail` (e.g.
`duplicate_of:<id>`, `contaminated:humaneval`) counts under `kind`, with its
details listed when there are at most `MAX_DETAILS` of them. Histograms of
the instruction and response lengths and of every score column of the pairs
table (toxicity classes, `lang_prob`, `red_team_rating`) and, for the
synthetic question-answer pairs, the `grounding` score of the qa table; each
split into kept and dropped rows. A few kept and dropped examples per reason
kind, truncated. The manifest's `code_execution` and `decontamination`
entries, when present, are shown as they are.

Every number is a Spark aggregation; only the aggregates and the handful of
examples reach the driver. The HTML holds its plots as inline SVG (matplotlib,
Agg backend) and loads nothing from outside.
"""
from __future__ import annotations

import html
import io
import json
from functools import reduce
from typing import Optional

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs import storage
from jobs.config import Config
from jobs.lake import Lake, read_version
from jobs.pairs import KEYS  # a pair's key, also the qa table's
from udfs.filters import DROP_REASON, filter_key, reason_kind

MAX_DETAILS = 5        # details of a reason kind listed in full up to this many
EXAMPLES = 3           # kept examples; and dropped ones per reason kind (EXAMPLES - 1)
EXAMPLE_CHARS = 300    # instruction and response cut to this many characters
BINS = 20
SPLIT_REASONS = ("empty_dialogue", "no_human_turn", "text_before_first_human_turn", "no_assistant_reply",
                 "empty_instruction", "empty_response")
RULE_REASONS = {
    "instruction_length": ("instruction_too_short", "instruction_too_long"),
    "response_length": ("response_too_short", "response_too_long"),
    "red_team_rating": ("red_team_rating_too_high", "red_team_rating_too_low", "red_team_rating_missing"),
    "language": ("language_unknown", "language_uncertain", "language_not_allowed"),
    "toxicity": ("toxic_instruction", "toxic_response"),
}


def stage_of(kind: str, source_format: str, conf: Config) -> str:
    """The funnel stage that dropped a reason kind."""
    if kind in SPLIT_REASONS:
        return "dialogue_split"
    for spec in conf.filters:
        if kind in RULE_REASONS.get(spec.rule, ()):
            return filter_key(spec)
    if source_format == "web_text":
        return "qa_checks"
    return kind


def stage_order(conf: Config, seen: set[str]) -> list[str]:
    """Stages in pipeline order: the split and qa checks, the conf's filters, then other kinds."""
    fixed = ["dialogue_split", "qa_checks", *[filter_key(f) for f in conf.filters]]
    return [s for s in fixed if s in seen or s in fixed[2:]] + sorted(seen - set(fixed))


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
    """({source: {candidates, kept}}, {source: {kind: {rows, stage, distinct, details}}})."""
    kind = reason_kind(F.col(DROP_REASON))
    rows = (pairs.groupBy("source", "source_format", kind.alias("kind"))
            .agg(F.count(F.lit(1)).alias("rows"), F.countDistinct(DROP_REASON).alias("distinct")).collect())
    totals: dict = {}
    drops: dict = {}
    for r in rows:
        t = totals.setdefault(r["source"], {"candidates": 0, "kept": 0})
        t["candidates"] += r["rows"]
        if r["kind"] is None:
            t["kept"] += r["rows"]
            continue
        d = drops.setdefault(r["source"], {}).setdefault(r["kind"], {"rows": 0, "stage": stage_of(r["kind"], r["source_format"], conf), "distinct": 0})
        d["rows"] += r["rows"]
        d["distinct"] += r["distinct"]
    few = [(s, k) for s, kinds in drops.items() for k, d in kinds.items() if d["distinct"] <= MAX_DETAILS]
    if few:
        wanted = F.lit(False)
        for s, k in few:
            wanted = wanted | ((F.col("source") == s) & (kind == k))
        for r in pairs.where(wanted).groupBy("source", kind.alias("kind"), DROP_REASON).count().collect():
            drops[r["source"]][r["kind"]].setdefault("details", {})[r[DROP_REASON]] = r["count"]
    for kinds in drops.values():
        for d in kinds.values():
            d["details"] = dict(sorted(d.get("details", {}).items())) or None
    return totals, {s: dict(sorted(k.items())) for s, k in sorted(drops.items())}


def funnel(conf: Config, manifest: dict, totals: dict, drops: dict, exported: dict) -> tuple[list[str], dict]:
    """Stages in order, and {source: counts at each stage}."""
    stages = stage_order(conf, {d["stage"] for kinds in drops.values() for d in kinds.values()})
    ingest = ingest_counts(conf, manifest)
    out = {}
    for source in sorted(set(totals) | set(ingest)):
        t = totals.get(source, {"candidates": 0, "kept": 0})
        left, after = t["candidates"], {}
        for stage in stages:
            left -= sum(d["rows"] for d in drops.get(source, {}).values() if d["stage"] == stage)
            after[stage] = left
        splits = exported.get(source, {})
        out[source] = {
            **ingest.get(source, {"ingested": 0, "quarantined": 0}),
            "candidates": t["candidates"], "after": after, "kept": t["kept"],
            "exported": sum(splits.values()), "splits": {s: splits.get(s, 0) for s in ("train", "validation")},
        }
    return stages, out


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
    from jobs.generate_qa import qa_table

    version = manifest.get("tables", {}).get("qa", {}).get("version")
    uri = qa_table(lake)
    if version is None or not storage.exists(spark, uri):
        return pairs
    qa, _ = read_version(spark, uri, version)
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
    from jobs.formats import seeded_hash

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
    for key in ("code_execution", "decontamination"):
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

def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "path"  # text as outlines: no font needed to view it
    matplotlib.rcParams["svg.hashsalt"] = "instructlake"  # stable element ids
    import matplotlib.pyplot as plt

    return plt


def funnel_plot(report: dict) -> str:
    plt = _pyplot()
    labels = ["candidates", *[f"after {s}" for s in report["stages"]], "exported"]
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.45 * len(labels)))
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
    kinds = sorted({k for kinds in report["drops"].values() for k in kinds})
    if not kinds:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.4 * len(kinds)))
    left = [0] * len(kinds)
    for source, by_kind in report["drops"].items():
        values = [by_kind.get(k, {}).get("rows", 0) for k in kinds]
        ax.barh(kinds, values, left=left, label=source)
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("rows dropped")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Drops per reason and source")
    return _svg(fig)


def histogram_plot(column: str, h: dict) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
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
    rows = [["source", "reason kind", "stage", "rows", "details"]]
    for source, kinds in report["drops"].items():
        for kind, d in kinds.items():
            details = ", ".join(f"{k} ({n})" for k, n in d["details"].items()) if d["details"] else f"{d['distinct']} distinct"
            if d["details"] and list(d["details"]) == [kind]:
                details = ""
            rows.append([source, kind, d["stage"], d["rows"], details])
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
