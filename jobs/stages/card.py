"""The dataset card of a release: `README.md` in the Hugging Face layout.

YAML front matter (pretty_name, license, language, task_categories,
size_categories, and `configs` whose `data_files` name the files of each
format written), then: the sources with their licenses and links, the counts
per source and split, every filter with its thresholds, the scorer versions,
the Delta table versions read, the git commit, the known limitations and a
warning about the red-team content.

A source's license and link come from the embedded samples' table
(`data/sample/SOURCES.md`) when one of its files is listed there, else from
the fetch catalog (`conf/sources.yaml`), matched by the file's path or the
dataset's folder name; otherwise the card says it is unknown.
"""
from __future__ import annotations

import json
import re

import yaml

from instructlake.core.config import Config, Source
from instructlake.core.confload import to_dict
from instructlake.core.storage import PACKAGE_ROOT
from instructlake.jobs.sources import format_of, sources_made
from instructlake.jobs.stages.fetch import load_catalog
from instructlake.jobs.stages.formats import EXTENSIONS, PAIRS, SPLITS, config_name, file_stem, formats_of
from instructlake.jobs.stages.products import PRODUCTS
from instructlake.jobs.stages.report import product_rows, stage_rows
from instructlake.udfs.filters import filter_of

SAMPLES_TABLE = PACKAGE_ROOT / "data" / "sample" / "SOURCES.md"
LICENSE_IDS = {"mit": "mit", "cc by-sa 3.0": "cc-by-sa-3.0", "cc by-sa 4.0": "cc-by-sa-4.0", "cc by 4.0": "cc-by-4.0"}

LIMITATIONS = [
    "Each dialogue of the pairs is cut to its first exchange (first Human turn, first Assistant reply); the "
    "`conversations` product keeps every turn that can be trained on.",
    "The language and toxicity filters are models: some English pairs are dropped as uncertain, and some toxic text passes "
    "(the local conf's profanity_check scorer works at the keyword level).",
    "The synthetic question-answer pairs are written by a small language model and checked automatically "
    "(form, copy, grounding in the paragraph), not by people; answers can be wrong.",
    "The red-team pairs keep the rated attacks of `hh_harmless` up to the conf's rating: their prompts are harmful on purpose.",
    "The train/validation split is by content hash: identical content is in one split, near-duplicates may be in both.",
]

DISCLAIMER = (
    "**Content warning.** The `hh_harmless` source is red-team data: its instructions are attempts to make a model "
    "say offensive, harmful or dangerous things, kept on purpose so that a model learns to refuse them. "
    "Some responses may still contain offensive or upsetting text. Do not use this data to build a model without the "
    "refusal behaviour in mind, and review it before showing it to people."
)


def _sample_rows() -> list[tuple[str, str, str]]:
    """(file, origin, license) of each row of the embedded samples' table."""
    if not SAMPLES_TABLE.exists():
        return []
    out = []
    for line in SAMPLES_TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[0].startswith("`"):
            out.append((cells[0].strip("`"), cells[1], cells[-1]))
    return out


def _catalog():
    try:
        return load_catalog()
    except Exception:  # the card still lists the sources when no catalog can be read
        return None


def source_origin(source: Source) -> tuple[str, str]:
    """(license, link or origin) of a conf source."""
    for path in source.paths:
        for file, origin, license_ in _sample_rows():
            if path.endswith(file):
                return license_, origin
    catalog = _catalog()
    if catalog is not None:
        for path in source.paths:
            parts = re.split(r"[/\\]", path)
            for key, ds in catalog.sources.items():
                if any(path.endswith(f.path) for f in ds.files) or key in parts:
                    return ds.license, ds.homepage
    return "unknown", "unknown"


def _license_id(licenses: list[str]) -> str:
    ids = {LICENSE_IDS.get(l.split(",")[0].split(" (")[0].strip().lower(), "other") for l in licenses}
    return ids.pop() if len(ids) == 1 else "other"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def configs(conf: Config, manifest: dict) -> list[dict]:
    """The card's `configs`: one per product and format written but json_parts, its data files
    by split (`datasets.load_dataset(release, "preference")`; names from `formats.config_name`)."""
    out = []  # json_parts (lists of [source, text]) are no table that `datasets` can load
    for product in (PAIRS, *PRODUCTS):
        written = [f for f in manifest["files"] if f.get("product", PAIRS) == product]
        for i, fmt in enumerate(formats_of(conf, product) if product == PAIRS or product in manifest.get("products", {}) else []):
            splits = [s for s in SPLITS if any(f["format"] == fmt and f["split"] == s for f in written)]
            files = [{"split": s, "path": f"{file_stem(conf, product, fmt)}-{s}-*.{EXTENSIONS.get(fmt, 'jsonl')}"} for s in splits]
            if files:
                out.append({"config_name": config_name(product, fmt, i == 0), "data_files": files})
    if out:
        out[0]["default"] = True
    return out


def front_matter(conf: Config, manifest: dict, licenses: list[str]) -> str:
    meta = {
        "pretty_name": conf.export.name.replace("_", " ").title(),
        "license": _license_id(licenses),
        "language": ["en"],
        "task_categories": ["text-generation", "question-answering"],
        "tags": ["instruction-tuning", "red-teaming", "synthetic"],
        "size_categories": [_size_category(manifest["total_rows"])],
    }
    if configs(conf, manifest):
        meta["configs"] = configs(conf, manifest)
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _md_table(rows: list[list]) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(v) for v in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows[1:]])


def _settings_json(settings, leave_out: tuple = ()) -> str:
    """A conf section's set values as sorted JSON, without the keys `leave_out`."""
    values = {k: v for k, v in to_dict(settings).items() if k not in leave_out and v is not None}
    return json.dumps(values, sort_keys=True)


def _filters_text(conf: Config) -> str:
    lines = [
        f"{i}. `{spec.key}` (`{spec.rule}`{'' if spec.enabled else ', disabled'}): `{_settings_json(spec, ('rule', 'name'))}`; "
        f"drops as {', '.join(f'`{r}`' for r in filter_of(spec).reasons)}"
        for i, spec in enumerate(conf.filters, start=1)
    ]
    return "\n".join(lines) or "(none)"


def _settings_line(name: str, settings) -> str:
    return f"- {name}: `{_settings_json(settings)}`"


def _checks_text(conf: Config) -> str:
    """The thresholds applied besides the filters: duplicates, the generated QA pairs' checks and
    paragraph selection, and the sandbox that verified the code pairs (for the sources enabled)."""
    lines = [f"- `{s.label}` ({s.name}): {format_of(s).describe}" for s in conf.enabled_sources]
    lines.append(_settings_line("duplicates (`dedup`)", conf.dedup) if conf.dedup.enabled else "- duplicates: not removed (`dedup.enabled: false`)")
    if sources_made(conf, "paragraphs"):
        lines.append(_settings_line("question-answer checks (`qa.checks`)", conf.qa.checks))
        lines.append(f"- paragraph selection (`qa.paragraphs`): `{_settings_json(conf.qa.paragraphs, ('filters',))}`, then its "
                     f"filters: {', '.join(f'`{f.rule}`' for f in conf.qa.paragraphs.filters) or 'none'}")
        lines.append(f"- question types {', '.join(conf.qa.types)}; balance ratio {conf.qa.balance_ratio}; "
                     f"at most {conf.qa.max_paragraphs} paragraphs")
    if sources_made(conf, "programs") or conf.code.generate.count:
        lines.append(_settings_line("code execution sandbox (`code.sandbox`)", conf.code.sandbox)
                     + "; only programs whose tests pass (`exec_status` passed) are kept")
    return "\n".join(lines)


def _rewrites_text(rewritten: dict) -> str:
    """The kept pairs whose text a filter rewrote (e.g. redacted personal data), per filter and source."""
    rows = [["filter", "source", "rows rewritten", "what"]]
    for key, by_source in rewritten.items():
        rows += [[f"`{key}`", s, v["rows"], ", ".join(f"{t} {n}" for t, n in v["tags"].items())] for s, v in by_source.items()]
    return "The exported text of these pairs is the rewritten one; silver keeps the original.\n\n" + _md_table(rows)


def _selection_text(conf: Config) -> str:
    e = conf.export
    caps = json.dumps(e.max_rows_per_source) if e.max_rows_per_source else "none"
    weights = json.dumps(e.source_weights) if e.source_weights else "none"
    return (f"Validation fraction {e.validation_fraction} (by a hash of the content id); rows per source at most {caps}; "
            f"mixing weights {weights}; order `{e.order}`, seed {e.seed}.")


def _products_text(conf: Config, report: dict) -> str:
    """The preference and conversations products: what they hold, how to load them, their funnels."""
    out = []
    for name, rows in report.get("products", {}).items():
        names = [config_name(name, fmt, i == 0) for i, fmt in enumerate(formats_of(conf, name))]
        out += [f"### {name}", "", PRODUCT_TEXT[name], "",
                f"Configs: {', '.join(f'`{n}`' for n in names)} (e.g. `datasets.load_dataset(<release folder>, \"{names[0]}\")`).",
                "", _md_table(product_rows(rows)), ""]
    return "\n".join(out)


PRODUCT_TEXT = {
    "preference": "Preference pairs for DPO and its relatives (TRL's `DPOTrainer`): the conversation that an HH-RLHF "
                  "record's `chosen` and `rejected` share up to the final assistant turn (`prompt`), and the two final "
                  "replies. `preference` is TRL's conversational format (`prompt` messages, `chosen` and `rejected` one "
                  "assistant message each); `preference_standard` the same as plain strings.",
    "conversations": "Every turn of each kept dialogue as chat `messages` (user and assistant turns, merged as in the "
                     "first-exchange split); a dialogue whose later turns cannot be trained on is cut after its last "
                     "good assistant turn (`meta.cut`). `conversations` is TRL's conversational format, "
                     "`conversations_openai` OpenAI's fine-tuning JSONL, `conversations_sharegpt` ShareGPT.",
}


def render_card(conf: Config, manifest: dict, report: dict) -> str:
    """The text of README.md."""
    sources = []
    for s in conf.enabled_sources:
        license_, origin = source_origin(s)
        sources.append([s.label, s.name, s.format, license_, origin])
    counts = [["source", "candidates", "kept", "exported", "train", "validation", "dropped, by stage"]]
    for label, c in report["funnel"].items():
        dropped = stage_rows(report["drops"], label)
        by_stage = ", ".join(f"{stage} {dropped[stage]}" for stage in report["stages"] if dropped.get(stage))
        counts.append([label, c["candidates"], c["kept"], c["exported"], c["splits"]["train"], c["splits"]["validation"], by_stage or "-"])
    tables = manifest["tables"]
    versions = [["table", "version"], ["pairs", tables["pairs"]["version"]],
                *[[f"bronze/{n}", t["version"]] for n, t in tables["bronze"].items()],
                ["ingest_log", tables["ingest_log"]["version"]], ["qa", tables.get("qa", {}).get("version")],
                *[[name, p["table"]["version"]] for name, p in (manifest.get("products") or {}).items()]]
    scorers = manifest.get("scorers") or {}
    files = [["file", "format", "split", "rows", "sha256"],
             *[[p["file"], "json_parts", "all", p["rows"], p["sha256"]] for p in manifest["parts"]],
             *[[f["file"], f["format"], f["split"], f["rows"], f["sha256"]] for f in manifest["files"]]]
    title = conf.export.name.replace("_", " ").title()
    return "\n".join([
        front_matter(conf, manifest, [row[3] for row in sources]),
        f"# {title}",
        "",
        f"An instruction-tuning dataset of {manifest['total_rows']} (instruction, response) pairs, built by instructlake "
        f"(release `{manifest['release']}`, {manifest['created_at']}). The funnel from raw rows to exported pairs, with "
        "plots and examples, is in `report.html` beside this card.",
        "",
        "## Content warning", "", DISCLAIMER, "",
        "## Sources", "", _md_table([["label", "source", "format", "license", "origin"], *sources]), "",
        "## Counts", "", _md_table(counts), "",
        "## Files", "", _md_table(files), "",
        "Formats: `json_parts` lists `[source, text]` (text by the template "
        f"`{json.dumps(conf.export.template)[1:-1]}`); `jsonl` has `id`, `source`, `instruction`, `response`, `meta` a line; "
        "`chat` has `id`, `source`, `messages` (user, assistant), `meta` a line, the conversational format of TRL's SFT "
        "trainer; `openai` has `messages` alone (OpenAI's fine-tuning JSONL; the `chat` file of the same split and part has "
        "the ids line for line); `sharegpt` has `id`, `source`, `conversations` (`from` human/gpt, `value`); `alpaca` has "
        "`instruction`, `input`, `output`, `id`, `source`; `parquet` has the columns of `jsonl`. Every `id` is the "
        "content id of the bronze row the row comes from; `meta` names its source, file and row index.",
        "",
        *(["## Preference pairs and conversations", "", _products_text(conf, report)] if report.get("products") else []),
        "## Filters", "", "Applied in this order; a pair's drop reason is the first one it fails.", "", _filters_text(conf), "",
        *(["## Rewritten texts", "", _rewrites_text(manifest["rewrites"]), ""] if manifest.get("rewrites") else []),
        "## Other checks and thresholds", "", _checks_text(conf), "",
        "## Selection and split", "", _selection_text(conf), "",
        "## Scorers", "", _md_table([["filter", "scorer"], *[[k, v] for k, v in sorted(scorers.items())]]) if scorers else "(none)", "",
        "## Provenance", "", _md_table(versions), "",
        f"Git commit: `{manifest['git_commit']}`; conf digest: `{manifest['conf_digest']}`.", "",
        "## Known limitations", "", "\n".join(f"- {l}" for l in LIMITATIONS), "",
    ])
