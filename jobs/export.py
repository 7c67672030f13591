"""Stage 3, gold: the kept pairs as JSON parts, plus `manifest.json`.

Each part `<name>_part<K>.json` is a JSON list of `[source, text]`, where
`text` is the pair rendered by the conf's template (default
``User: {instruction}\\n\\nAssistant: {response}<|endoftext|>``;
`udfs.pair_format.parse_pair` inverts it exactly). The rows are put in a
deterministic order (a seeded hash shuffle, or grouped by source), numbered
without collecting them to the driver, cut into parts of `rows_per_part`
(or into `num_parts`), and written by Spark's text writer into a staging
folder; the finished files are then moved into the output folder. The same
pairs table and conf give byte-identical parts.

`manifest.json` beside the parts records the input files with their row
counts, the Delta table versions read, counts per source (read, kept,
dropped by reason), each part's rows and sha256, the conf and the git commit.

    spark-submit jobs/export.py --conf conf/local.yaml
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file by spark-submit
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import storage
from jobs.config import Config
from jobs.lake import Lake, RunContext, commit_metadata, git_commit, read_version, with_position
from udfs.filters import DROP_REASON
from udfs.pair_format import PairTemplate

log = logging.getLogger("instructlake.export")

@dataclass
class ExportResult:
    output: str
    parts: list[dict]
    total_rows: int
    pairs_version: int
    manifest: dict


def order_key(conf: Config) -> list:
    """A total, deterministic order of the kept pairs (independent of file locations)."""
    tie = [F.col("source_name"), F.col("row_index"), F.col("content_id"), F.col("source_file")]
    if conf.export.order == "source":
        rank = F.lit(len(conf.label_order))
        for i, label in reversed(list(enumerate(conf.label_order))):
            rank = F.when(F.col("source") == label, F.lit(i)).otherwise(rank)
        return [rank, *tie]
    shuffle = F.sha2(
        F.concat_ws(":", F.lit(str(conf.export.seed)), F.col("content_id"), F.col("source_name"), F.col("row_index")),
        256,
    )
    return [shuffle, *tie]


def _number_rows(spark, kept: DataFrame, conf: Config, staging: str) -> tuple[DataFrame, int]:
    """Sort `kept` and give each row its 0-based global position `idx`.

    The sorted rows are materialized once in staging, so that the numbering
    and the later write see exactly the same partitions (a sort's range
    boundaries come from sampling and could differ between two computations).
    """
    sorted_uri = storage.join(staging, "sorted")
    ordered = kept.orderBy(*order_key(conf)).withColumn("_order", F.monotonically_increasing_id())
    ordered.write.mode("overwrite").parquet(sorted_uri)
    numbered = with_position(spark.read.parquet(sorted_uri), "idx", ids="_order")
    return numbered, numbered.count()


def _rows_per_part(conf: Config, total: int) -> int:
    if conf.export.rows_per_part is not None:
        return conf.export.rows_per_part
    return max(1, math.ceil(total / conf.export.num_parts))


def write_parts(spark, kept: DataFrame, conf: Config, out: str, staging: str) -> list[dict]:
    """Write the JSON parts into `out`; returns [{file, rows, bytes, sha256}] in part order."""
    numbered, total = _number_rows(spark, kept, conf, staging)
    name = conf.export.name
    for old in storage.list_files(spark, out):
        if re.fullmatch(rf"{re.escape(name)}_part\d+\.json", old.rsplit("/", 1)[-1]):
            storage.delete(spark, old)
    if total == 0:
        return []
    rpp = _rows_per_part(conf, total)
    template = PairTemplate.parse(conf.export.template)
    text = template.render_col(F.col("instruction"), F.col("response"))
    element = F.to_json(F.array(F.col("source"), text))
    first = F.col("idx") % rpp == 0
    last = (F.col("idx") == total - 1) | (F.col("idx") % rpp == rpp - 1)
    line = F.concat(F.when(first, F.lit("[\n")).otherwise(F.lit("")), element, F.when(last, F.lit("\n]")).otherwise(F.lit(",")))
    text_uri = storage.join(staging, "text")
    (
        numbered.select((F.floor(F.col("idx") / rpp) + 1).cast("int").alias("part"), "idx", line.alias("line"))
        .repartition("part")
        .sortWithinPartitions("part", "idx")
        .select("line", "part")
        .write.mode("overwrite")
        .partitionBy("part")
        .text(text_uri)
    )
    n_parts = math.ceil(total / rpp)
    targets = []
    for k in range(1, n_parts + 1):
        files = [f for f in storage.list_files(spark, storage.join(text_uri, f"part={k}")) if f.endswith(".txt")]
        if len(files) != 1:
            raise RuntimeError(f"expected one file for part {k}, found {len(files)}")
        target = storage.join(out, f"{name}_part{k}.json")
        storage.rename(spark, files[0], target)
        targets.append(target)
    digests = {
        r["path"]: (r["sha256"], r["length"])
        for r in spark.read.format("binaryFile").load(targets)
        .select("path", F.sha2("content", 256).alias("sha256"), "length").collect()
    }
    parts = []
    for k, target in enumerate(targets, start=1):
        sha, length = next(v for p, v in digests.items() if p.rsplit("/", 1)[-1] == target.rsplit("/", 1)[-1])
        rows = min(rpp, total - (k - 1) * rpp)
        parts.append({"file": target.rsplit("/", 1)[-1], "rows": rows, "bytes": length, "sha256": sha})
    return parts


def _counts_per_source(pairs: DataFrame) -> dict:
    out: dict = {}
    for r in pairs.groupBy("source", DROP_REASON).count().collect():
        entry = out.setdefault(r["source"], {"read": 0, "kept": 0, "dropped": {}})
        entry["read"] += r["count"]
        if r[DROP_REASON] is None:
            entry["kept"] += r["count"]
        else:
            entry["dropped"][r[DROP_REASON]] = r["count"]
    for entry in out.values():
        entry["dropped"] = dict(sorted(entry["dropped"].items()))
    return dict(sorted(out.items()))


def _input_files(spark, conf: Config, lake: Lake, bronze_versions: dict[str, int]) -> list[dict]:
    quarantine = (
        {
            (r["source_name"], r["source_file"]): r["count"]
            for r in spark.read.format("delta").load(lake.quarantine).groupBy("source_name", "source_file").count().collect()
        }
        if storage.exists(spark, lake.quarantine)
        else {}
    )
    files = []
    for source in conf.enabled_sources:
        if source.name not in bronze_versions:
            continue
        bronze, _ = read_version(spark, lake.bronze(source.name), bronze_versions[source.name])
        ingested = {r["source_file"]: r["count"] for r in bronze.groupBy("source_file").count().collect()}
        names = sorted(set(ingested) | {f for (s, f) in quarantine if s == source.name})
        for f in names:
            q = quarantine.get((source.name, f), 0)
            files.append(
                {
                    "source_name": source.name,
                    "source": source.label,
                    "uri": f,
                    "rows_read": ingested.get(f, 0) + q,
                    "rows_ingested": ingested.get(f, 0),
                    "rows_quarantined": q,
                }
            )
    return files


def run_export(spark, conf: Config, run: RunContext | None = None, as_of_version: Optional[int] = None) -> ExportResult:
    run = run or RunContext()
    lake = Lake.of(conf)
    out = storage.resolve(conf.paths.output)
    started = time.monotonic()
    if not storage.exists(spark, lake.pairs):
        raise FileNotFoundError(f"pairs table not found at {lake.pairs}; run `instructlake pairs` first")
    pairs, version = read_version(spark, lake.pairs, as_of_version)
    pairs_meta = commit_metadata(spark, lake.pairs, version)
    staging = storage.join(out, "_staging", run.run_id)
    storage.mkdirs(spark, out)
    kept = pairs.where(F.col(DROP_REASON).isNull())
    try:
        parts = write_parts(spark, kept, conf, out, staging)
    finally:
        storage.delete(spark, staging)
    storage.delete(spark, storage.join(out, "_staging"))
    total = sum(p["rows"] for p in parts)
    bronze_versions = pairs_meta.get("bronze_versions", {})
    manifest = {
        "name": conf.export.name,
        "format": "json_parts",
        "element": ["source", "instruction_response_pair"],
        "template": conf.export.template,
        "run_id": run.run_id,
        "created_at": run.started_at.isoformat(),
        "git_commit": git_commit(),
        "conf_digest": conf.digest(),
        "tables": {
            "pairs": {"uri": lake.pairs, "version": version},
            "bronze": {
                name: {"uri": lake.bronze(name), "version": v} for name, v in sorted(bronze_versions.items())
            },
        },
        "inputs": _input_files(spark, conf, lake, bronze_versions),
        "counts": _counts_per_source(pairs),
        "total_rows": total,
        "parts": parts,
        "conf": conf.as_dict(),
    }
    storage.write_text(spark, storage.join(out, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    log.info("%d pairs in %d part(s) -> %s, %.1fs", total, len(parts), out, time.monotonic() - started)
    return ExportResult(out, parts, total, version, manifest)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import main as cli_main

    return cli_main(["export", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    raise SystemExit(main())
