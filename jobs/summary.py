"""The closing summary of a run, at most 100 columns wide: rows per source and the stages that
dropped them (the full funnel is in the release's report.json and report.html)."""
from __future__ import annotations

import textwrap

from instructlake.jobs.runner import PipelineResult

WIDTH = 100


def tally(counts: list[tuple[str, str | None, int]]) -> dict[str, dict]:
    """{source: {candidates, kept, dropped: {group: rows}}} from (source, group, rows), group None
    for the kept rows; a group `kind:detail` counts as `kind`."""
    out: dict[str, dict] = {}
    for source, group, n in counts:
        t = out.setdefault(source, {"candidates": 0, "kept": 0, "dropped": {}})
        t["candidates"] += n
        if group is None:
            t["kept"] += n
        else:
            kind = group.split(":", 1)[0]
            t["dropped"][kind] = t["dropped"].get(kind, 0) + n
    return out


def format_tally(rows: dict[str, dict], what: str = "dropped by stage", output: str | None = None) -> str:
    """A table of at most `WIDTH` columns: per source its candidates, kept (and exported) rows, and
    the drops per group, largest first, wrapped within the last column."""
    exported = any("exported" in t for t in rows.values())
    head = ["source", "candidates", "kept", *(["exported"] if exported else []), what]
    body = [[s, str(t["candidates"]), str(t["kept"]), *([str(t.get("exported", ""))] if exported else []),
             ", ".join(f"{g} {n}" for g, n in sorted(t["dropped"].items(), key=lambda e: (-e[1], e[0]))) or "-"]
            for s, t in sorted(rows.items())]
    total = {"candidates": sum(t["candidates"] for t in rows.values()), "kept": sum(t["kept"] for t in rows.values())}
    body.append(["(total)", str(total["candidates"]), str(total["kept"]),
                 *([str(sum(t.get("exported", 0) for t in rows.values()))] if exported else []), ""])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head) - 1)]
    indent = sum(widths) + 2 * len(widths)
    room = max(20, WIDTH - indent)

    def line(cells: list[str]) -> list[str]:
        fixed = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        wrapped = textwrap.wrap(cells[-1], room) or [""]
        return [f"{fixed}  {wrapped[0]}".rstrip()] + [" " * indent + w for w in wrapped[1:]]

    lines = line(head) + ["  ".join("-" * w for w in widths) + "  " + "-" * min(room, 40)]
    for r in body:
        lines += line(r)
    if output:
        lines.append(f"\noutput: {output}")
    return "\n".join(lines)


def products_lines(manifest: dict) -> list[str]:
    """One line per product besides the pairs: records, kept, exported by split."""
    lines = []
    for name, p in (manifest.get("products") or {}).items():
        read = sum(c["read"] for c in p["counts"].values())
        kept = sum(c["kept"] for c in p["counts"].values())
        splits = {k: sum(v.get(k, 0) for v in p["exported"].values()) for k in ("train", "validation")}
        lines.append(f"{name}: {kept} of {read} records kept (train {splits['train']}, validation {splits['validation']})")
    return ["\n".join(lines)] if lines else []


def summary(result: PipelineResult) -> str:
    """The closing summary of the last stage that ran."""
    if result.export is not None:
        manifest, funnel = result.export.manifest, result.export.report["funnel"]
        rows = {s: {"candidates": c["read"], "kept": c["kept"], "exported": funnel[s]["exported"],
                    "dropped": {st: d["rows"] for st, d in c["dropped"].items()}} for s, c in manifest["counts"].items()}
        files = [*manifest["report"].values(), manifest["card"], *[p["file"] for p in result.export.parts],
                 *[f["file"] for f in manifest["files"]]]
        written = f"{len(files)} files in {result.export.output}: report.html (the funnel, plots, examples), README.md (the card)"
        return "\n\n".join([format_tally(rows), *products_lines(manifest), written])
    if result.pairs is not None:
        return format_tally(tally(result.pairs.stages), output=result.pairs.table)
    if "generate" in result.results:
        return format_tally(tally(result.results["generate"].counts), "dropped by reason")
    ingested = [f"{r.source}: {len(r.files)} file(s), {r.rows} rows in bronze, {r.quarantined} quarantined" for r in result.ingest or []]
    return "\n".join(ingested)
