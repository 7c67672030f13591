"""Stage 3, gold: the kept pairs as JSON parts, plus `manifest.json`.

Each part `<name>_part<K>.json` is a JSON list of `[source, text]`, where
`text` is the pair rendered by the conf's template (default
``User: {instruction}\\n\\nAssistant: {response}<|endoftext|>``;
`instructlake.udfs.pair_format.parse_pair` inverts it exactly). The rows are put in a
deterministic order (a seeded hash shuffle, or grouped by source), numbered
without collecting them to the driver, cut into parts of `rows_per_part`
(or into `num_parts`), and written by Spark's text writer into a staging
folder; the finished files are then moved into the output folder. The same
pairs table and conf give byte-identical parts.

`manifest.json` beside the parts records the input files with their row
counts, the Delta table versions read, counts per source (read, kept,
dropped by reason), each part's rows and sha256, the benchmarks the pairs were
decontaminated against (`decontamination`, from the pairs commit), the conf,
the git commit, and `code_execution`: the sandbox that verified the code pairs
and whether it is the weaker `process` fallback (`instructlake.udfs.sandbox.code_execution`).

Beside them, in the same release folder (so the switch of `CURRENT` covers
them): the files of the other formats of `export.formats` (jsonl, chat,
parquet; see instructlake.jobs.stages.formats, with the per-source selection and the
train/validation split), the funnel report `report.json` and `report.html`
(instructlake.jobs.stages.report) and the dataset card `README.md` (instructlake.jobs.stages.card). The manifest
lists every file with its rows and sha256, and is written last.

A filter that rewrites texts (PII redaction) has its new texts exported
(`instructlake.jobs.stages.formats.with_exported_texts`); silver keeps both.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Optional

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType

from instructlake.core import storage
from instructlake.core.config import Config
from instructlake.core.errors import MissingTableError
from instructlake.core.faults import checkpoint
from instructlake.core.lake import Lake, RunContext, commit_metadata, git_commit, is_delta, read_version, with_position_and_total
from instructlake.jobs.sources.base import label_rank
from instructlake.jobs.stages.card import render_card
from instructlake.jobs.stages.formats import (
    SPLIT, TextCheck, check_exported_texts, seeded_hash, select_rows, split_col, with_exported_texts, write_formats,
)
from instructlake.jobs.stages.products import cut_counts, enabled_products
from instructlake.jobs.stages.report import build_report, drop_table, render_html, rewrite_counts
from instructlake.udfs.filters import DROP_REASON
from instructlake.udfs.pair_format import PairTemplate
from instructlake.udfs.sandbox import code_execution

log = logging.getLogger("instructlake.export")

CURRENT = "CURRENT"      # the pointer file readers follow: "releases/<run id>"
RELEASES = "releases"    # one complete folder of parts + manifest.json per export
STAGING = "_staging"     # Spark's working files of an export in progress

@dataclass
class ExportResult:
    output: str
    parts: list[dict]
    total_rows: int
    pairs_version: int
    manifest: dict
    files: list[dict] = field(default_factory=list)  # the jsonl, chat and parquet files
    report: Optional[dict] = None                   # report.json's content


def order_key(conf: Config, lead: tuple = ()) -> list:
    """A total, deterministic order of the kept pairs (independent of file locations),
    after the columns `lead`."""
    tie = [F.col("source_name"), F.col("row_index"), F.col("content_id"), F.col("source_file"), F.col("item")]
    if conf.export.order == "source":
        return [*lead, label_rank(conf.label_order), *tie]
    return [*lead, seeded_hash(conf.export.seed), *tie]


def _number_rows(spark, kept: DataFrame, conf: Config, staging: str, lead: tuple = (), name: str = "sorted") -> tuple[DataFrame, int]:
    """Sort `kept` and give each row its 0-based global position `idx`.

    The sorted rows are materialized once in staging, so that the numbering
    and the later write see exactly the same partitions (a sort's range
    boundaries come from sampling and could differ between two computations).
    """
    sorted_uri = storage.join(staging, name)
    ordered = kept.orderBy(*order_key(conf, lead)).withColumn("_order", F.monotonically_increasing_id())
    ordered.write.mode("overwrite").parquet(sorted_uri)
    return with_position_and_total(spark.read.parquet(sorted_uri), "idx", "_order")


def _rows_per_part(conf: Config, total: int) -> int:
    if conf.export.rows_per_part is not None:
        return conf.export.rows_per_part
    return max(1, math.ceil(total / conf.export.num_parts))


KEY = "_key"  # the order of the rows (`order_key`) as one struct column


def part_starts(spark, keys: DataFrame, conf: Config, staging: str) -> tuple[list, int, int]:
    """(the key of the first row of each part, in order; the rows; rows per part) for the rows
    whose `KEY` column is `keys`.

    Only the keys are sorted, materialized in staging and numbered (`instructlake.core.lake.with_position_and_total`):
    the rows themselves are shuffled once, straight into their parts (`write_parts`).
    """
    uri = storage.join(staging, "keys")
    keys.orderBy(KEY).withColumn("_order", F.monotonically_increasing_id()).write.mode("overwrite").parquet(uri)
    positions, total = with_position_and_total(spark.read.parquet(uri), "idx", "_order")
    if total == 0:
        return [], 0, 0
    rpp = _rows_per_part(conf, total)
    starts = positions.where(F.col("idx") % rpp == 0).orderBy("idx").select(KEY).collect()
    return [r[0] for r in starts], total, rpp


BUCKET_CHARS = 3  # the hex digits of the seeded hash that name a row's bucket (16^3 buckets)


def with_part(spark, keyed: DataFrame, conf: Config, starts: list) -> DataFrame:
    """`keyed` with `part`, the 1-based part of each row: the number of parts' first keys
    (`starts`, in order) at or before its `KEY`.

    In the shuffled order the key leads with a hex hash, so the rows fall in 16^BUCKET_CHARS
    buckets by its first digits, every key of a bucket after those of the buckets before it: a
    small table, broadcast, gives each bucket the parts started before it and the first keys
    inside it, and a row counts only those. The work per row and on the driver does not grow with
    the number of parts. Grouped by source (`export.order: source`), a binary search of the first
    keys, written as one expression (`_part_of`).
    """
    key_type = keyed.schema[KEY].dataType
    if conf.export.order == "source":
        return keyed.withColumn("part", _part_of(F.col(KEY), starts, key_type) + 1)
    lead = key_type.fields[0].name
    inside: dict[str, list] = {}
    for start in starts:
        inside.setdefault(start[0][:BUCKET_CHARS], []).append(start)
    rows, before = [], 0
    for n in range(16 ** BUCKET_CHARS):
        bucket = format(n, f"0{BUCKET_CHARS}x")
        firsts = inside.get(bucket, [])
        rows.append((bucket, before, firsts))
        before += len(firsts)
    schema = StructType([StructField("_bucket", StringType()), StructField("_before", IntegerType()),
                         StructField("_inside", ArrayType(key_type))])
    table = F.broadcast(spark.createDataFrame(rows, schema))
    placed = keyed.withColumn("_bucket", F.substring(F.col(KEY)[lead], 1, BUCKET_CHARS)).join(table, "_bucket", "left")
    counted = F.col("_before") + F.size(F.filter("_inside", lambda s: s <= F.col(KEY)))
    return placed.withColumn("part", counted).drop("_bucket", "_before", "_inside")


def _part_of(key: Column, starts: list, key_type) -> Column:
    """The 0-based part of a row with this key: a binary search of the parts' first keys."""

    def literal(row) -> Column:
        return F.struct(*[F.lit(v).cast(f.dataType).alias(f.name) for v, f in zip(row, key_type.fields)])

    def search(lo: int, hi: int) -> Column:  # the part is in [lo, hi)
        if hi - lo == 1:
            return F.lit(lo)
        mid = (lo + hi) // 2
        return F.when(key < literal(starts[mid]), search(lo, mid)).otherwise(search(mid, hi))

    return search(0, len(starts))


def write_parts(spark, kept: DataFrame, conf: Config, release: str, staging: str,
                check: Optional[TextCheck] = None) -> list[dict]:
    """Write the JSON parts into the (new, unpublished) `release` folder; returns [{file, rows, bytes, sha256}].

    The keys alone are sorted to find where each part starts; then every row goes to
    its part in one shuffle, is numbered within it (a window over the part, in key
    order) and written by the part's task. `check` watches the rows as they are read for
    that write (the caller verifies it).
    """
    keyed = kept.withColumn(KEY, F.struct(*order_key(conf)))
    starts, total, rpp = part_starts(spark, keyed.select(KEY), conf, staging)
    name = conf.export.name
    if total == 0:
        return []
    n_parts = len(starts)
    template = PairTemplate.parse(conf.export.template)
    text = template.render_col(F.col("instruction"), F.col("response"))
    element = F.to_json(F.array(F.col("source"), text))
    size = F.when(F.col("part") == n_parts, F.lit(total - (n_parts - 1) * rpp)).otherwise(F.lit(rpp))
    first, last = F.col("_n") == 1, F.col("_n") == size
    line = F.concat(F.when(first, F.lit("[\n")).otherwise(F.lit("")), element, F.when(last, F.lit("\n]")).otherwise(F.lit(",")))
    text_uri = storage.join(staging, "text")
    (
        with_part(spark, check.watch(keyed) if check else keyed, conf, starts).select("part", KEY, "source", "instruction", "response")
        .repartition(n_parts, "part")
        .withColumn("_n", F.row_number().over(Window.partitionBy("part").orderBy(KEY)))
        .select("part", line.alias("line"))
        .write.mode("overwrite")
        .partitionBy("part")
        .text(text_uri)
    )
    targets = []
    for k in range(1, n_parts + 1):
        files = [f for f in storage.list_files(spark, storage.join(text_uri, f"part={k}")) if f.endswith(".txt")]
        if len(files) != 1:
            raise RuntimeError(f"expected one file for part {k}, found {len(files)}")
        target = storage.join(release, f"{name}_part{k}.json")
        storage.rename(spark, files[0], target)
        targets.append(target)
        checkpoint("export.part_published")
    digests = file_digests(spark, targets)
    parts = []
    for k, target in enumerate(targets, start=1):
        sha, length = digests[target.rsplit("/", 1)[-1]]
        rows = min(rpp, total - (k - 1) * rpp)
        parts.append({"file": target.rsplit("/", 1)[-1], "rows": rows, "bytes": length, "sha256": sha})
    return parts


def file_digests(spark, uris: list[str]) -> dict[str, tuple[str, int]]:
    """{file name: (sha256, bytes)} of the files `uris`, read by Spark."""
    if not uris:
        return {}
    rows = spark.read.format("binaryFile").load(uris).select("path", F.sha2("content", 256).alias("sha256"), "length").collect()
    return {r["path"].rsplit("/", 1)[-1]: (r["sha256"], r["length"]) for r in rows}


def write_release_files(spark, selected: DataFrame, conf: Config, release: str, staging: str) -> tuple[list[dict], list[dict]]:
    """The JSON parts and the files of the other formats of `export.formats` (with sha256 and bytes).

    Every row's texts are checked (`check_exported_texts`) before any file but the unpublished
    parts is written: by the parts' write itself when there are parts, else in a pass of their own."""
    storage.mkdirs(spark, release)
    check = TextCheck()
    if "json_parts" in conf.export.formats:
        parts = write_parts(spark, selected, conf, release, staging, check)
        check.verify()
    else:
        check_exported_texts(selected)
        parts = []
    if set(conf.export.formats) == {"json_parts"}:
        return parts, []
    by_split, _ = _number_rows(spark, selected, conf, staging, lead=(F.col(SPLIT),), name="by_split")
    files = write_formats(spark, by_split, conf, release, staging)
    digests = file_digests(spark, [storage.join(release, f["file"]) for f in files])
    return parts, [f | {"bytes": digests[f["file"]][1], "sha256": digests[f["file"]][0]} for f in files]


def write_products(spark, conf: Config, lake: Lake, release: str, staging: str) -> dict[str, dict]:
    """The files of every enabled product but the pairs (`instructlake.jobs.stages.products`), from
    the latest version of its silver table: {product: {table, counts, cuts, exported, files}}."""
    out = {}
    for name in enabled_products(conf):
        uri = getattr(lake, name)
        if not is_delta(spark, uri):
            raise MissingTableError(f"{name} table not found at {uri}; run `instructlake pairs` first")
        table, version = read_version(spark, uri)
        kept = (table.where(F.col(DROP_REASON).isNull()).withColumn("item", F.lit(""))
                .withColumn(SPLIT, split_col(conf.export.validation_fraction)))
        numbered, _ = _number_rows(spark, kept, conf, staging, lead=(F.col(SPLIT),), name=f"{name}_by_split")
        files = write_formats(spark, numbered, conf, release, staging, product=name)
        digests = file_digests(spark, [storage.join(release, f["file"]) for f in files])
        out[name] = {
            "table": {"uri": uri, "version": version},
            "counts": _counts_per_source(*drop_table(table, conf)),
            "cuts": cut_counts(table) if name == "conversations" else None,
            "exported": exported_counts(kept),
            "files": [f | {"bytes": digests[f["file"]][1], "sha256": digests[f["file"]][0]} for f in files],
        }
    return out


def _counts_per_source(totals: dict, drops: dict) -> dict:
    """{source: {read, kept, dropped: {stage: {rows, reasons: {kind: rows}}}}} from the report's drop
    table (`instructlake.jobs.stages.report.drop_table`: one pass over the pairs serves both)."""
    return {
        source: {"read": t["candidates"], "kept": t["kept"], "dropped": {
            stage: {"rows": sum(d["rows"] for d in kinds.values()), "reasons": {k: d["rows"] for k, d in kinds.items()}}
            for stage, kinds in drops.get(source, {}).items()}}
        for source, t in sorted(totals.items())
    }


def _input_files(spark, conf: Config, lake: Lake, log_version: Optional[int]) -> list[dict]:
    """Each input file with rows read, ingested and quarantined, from the ingest log."""
    if not is_delta(spark, lake.ingest_log):
        return []
    entries, _ = read_version(spark, lake.ingest_log, log_version)
    names = [s.name for s in conf.enabled_sources]
    rows = entries.where(F.col("source_name").isin(names)).orderBy("source_name", "source_file").collect()
    return [
        {
            "source_name": r["source_name"],
            "uri": r["source_file"],
            "bytes": r["file_size"],
            "rows_read": r["rows_read"],
            "rows_ingested": r["rows_ingested"],
            "rows_quarantined": r["rows_quarantined"],
            "file_errors": list(r["file_errors"]),
        }
        for r in rows
    ]


def current_release(spark, out: str) -> Optional[str]:
    """URI of the published release in the output folder `out`, or None before the first export."""
    pointer = storage.join(out, CURRENT)
    if not storage.exists(spark, pointer):
        return None
    return storage.join(out, storage.read_text(spark, pointer).strip())


def publish(spark, out: str, release_name: str, run_id: str) -> None:
    """Point `out/CURRENT` at `releases/<release_name>` with one atomic rename."""
    tmp = storage.join(out, f".{CURRENT}.{run_id}")
    storage.write_text(spark, tmp, f"{RELEASES}/{release_name}\n")
    storage.replace(spark, tmp, storage.join(out, CURRENT))


def prune_releases(spark, out: str, keep: int) -> list[str]:
    """Delete all but the `keep` newest complete releases (never the published one) and
    every unpublished incomplete one (left by a crash); returns what was deleted."""
    current = current_release(spark, out)
    releases = storage.list_dirs(spark, storage.join(out, RELEASES))
    complete = [r for r in releases if storage.exists(spark, storage.join(r, "manifest.json"))]
    keep_set = set(complete[-keep:]) | ({current} if current else set())
    doomed = [r for r in releases if r not in keep_set and r != current]
    for r in doomed:
        storage.delete(spark, r)
    storage.delete(spark, storage.join(out, STAGING))
    return doomed


def discard(spark, release: str) -> None:
    """Delete an unpublished release after a failure: nothing of it is worth its space (a full
    disk above all); a release killed mid-write is cleared by the next export instead."""
    storage.delete(spark, release)


def run_export(spark, conf: Config, run: RunContext | None = None, as_of_version: Optional[int] = None) -> ExportResult:
    run = run or RunContext()
    lake = Lake.of(conf)
    out = storage.resolve(conf.paths.output)
    started = time.monotonic()
    if not is_delta(spark, lake.pairs):
        raise MissingTableError(f"pairs table not found at {lake.pairs}; run `instructlake pairs` first")
    pairs, version = read_version(spark, lake.pairs, as_of_version)
    pairs_meta = commit_metadata(spark, lake.pairs, version)
    # A crash of an earlier export leaves staging files and an unpublished release: clear them.
    storage.delete(spark, storage.join(out, STAGING))
    staging = storage.join(out, STAGING, run.run_id)
    release = storage.join(out, RELEASES, run.run_id)
    kept = with_exported_texts(pairs.where(F.col(DROP_REASON).isNull()), conf)
    selected, selection = select_rows(kept, conf)
    selected = selected.withColumn(SPLIT, split_col(conf.export.validation_fraction))
    try:
        parts, files = write_release_files(spark, selected, conf, release, staging)
        products = write_products(spark, conf, lake, release, staging)
    except Exception:
        discard(spark, release)
        raise
    finally:
        storage.delete(spark, storage.join(out, STAGING))
    exported = exported_counts(selected)
    drop_summary = drop_table(pairs, conf)
    total = sum(n for splits in exported.values() for n in splits.values())
    bronze_versions = pairs_meta.get("bronze_versions", {})
    manifest = {
        "name": conf.export.name,
        "format": "json_parts",
        "element": ["source", "instruction_response_pair"],
        "template": conf.export.template,
        "run_id": run.run_id,
        "release": f"{RELEASES}/{run.run_id}",
        "created_at": run.started_at.isoformat(),
        "git_commit": git_commit(),
        "conf_digest": conf.digest(),
        "tables": {
            "pairs": {"uri": lake.pairs, "version": version},
            "bronze": {
                name: {"uri": lake.bronze(name), "version": v} for name, v in sorted(bronze_versions.items())
            },
            "ingest_log": {"uri": lake.ingest_log, "version": pairs_meta.get("ingest_log_version")},
            "qa": {"uri": lake.qa, "version": pairs_meta.get("qa_version")},
        },
        "inputs": _input_files(spark, conf, lake, pairs_meta.get("ingest_log_version")),
        "counts": _counts_per_source(*drop_summary),
        "decontamination": pairs_meta.get("decontamination"),
        "total_rows": total,
        "parts": parts,
        "formats": list(conf.export.formats),
        "files": files + [f for p in products.values() for f in p["files"]],
        "products": {name: {k: v for k, v in p.items() if k != "files"} for name, p in products.items()},
        "split": {"validation_fraction": conf.export.validation_fraction, "rows": _split_totals(exported)},
        "selection": selection,
        "scorers": pairs_meta.get("scorers", {}),
        "conf": conf.as_dict(),
        "code_execution": code_execution(conf.code.sandbox.kind),
    }
    rewritten = rewrite_counts(pairs, conf)
    if rewritten:
        manifest["rewrites"] = rewritten
    try:
        report = write_report_and_card(spark, conf, lake, pairs, manifest, exported, drop_summary, release)
        storage.write_text(spark, storage.join(release, "manifest.json"), json.dumps(manifest, indent=2) + "\n")
    except Exception:
        discard(spark, release)
        raise
    checkpoint("export.release_written")
    publish(spark, out, run.run_id, run.run_id)
    pruned = prune_releases(spark, out, conf.export.keep_releases)
    log.info(
        "%d pairs in %d part(s) -> %s (published; %d old release(s) removed), %.1fs",
        total, len(parts), release, len(pruned), time.monotonic() - started,
    )
    return ExportResult(release, parts, total, version, manifest, files, report)


def exported_counts(selected: DataFrame) -> dict[str, dict[str, int]]:
    """{source: {split: rows}} of the exported rows."""
    out: dict[str, dict[str, int]] = {}
    for r in selected.groupBy("source", SPLIT).count().collect():
        out.setdefault(r["source"], {})[r[SPLIT]] = r["count"]
    return {s: dict(sorted(v.items())) for s, v in sorted(out.items())}


def _split_totals(exported: dict[str, dict[str, int]]) -> dict[str, int]:
    totals = {"train": 0, "validation": 0}
    for splits in exported.values():
        for split, n in splits.items():
            totals[split] += n
    return totals


def write_report_and_card(spark, conf: Config, lake: Lake, pairs: DataFrame, manifest: dict, exported: dict,
                          drop_summary: tuple[dict, dict], release: str) -> dict:
    """report.json, report.html and README.md into the release; notes them in `manifest`."""
    report = build_report(spark, conf, lake, with_exported_texts(pairs, conf), manifest, exported, drop_summary)
    storage.write_text(spark, storage.join(release, "report.json"), json.dumps(report, indent=2) + "\n")
    storage.write_text(spark, storage.join(release, "report.html"), render_html(report))
    storage.write_text(spark, storage.join(release, "README.md"), render_card(conf, manifest, report))
    manifest["report"] = {"json": "report.json", "html": "report.html"}
    manifest["card"] = "README.md"
    return report

