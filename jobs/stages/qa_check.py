"""`instructlake qa-check`: the conf's question-answer checks over a QA data set of one's own.

The input is JSON lines (a file, a folder or a glob; any URI Spark reads),
one `{context|paragraph, question, answer}` object per line (`answers` as
SQuAD has it, and `type` / `qa_type`, are understood too:
`instructlake.udfs.qa_checks.parse_record`). Every line gets a verdict, in
the input's order, in `<output>/verdicts.jsonl`: the input object's own
fields (an `id`, say), then `line` (the line's number, 1-based, over the
input files in name order), every score of the checks, the verification
columns when `qa.verify` is on, and `drop_reason` / `drop_stage` (null when
kept). A line that is not JSON, not an object, or lacks a field is not lost:
its verdict says why (`not_json`, `not_an_object`, `missing_field:<name>`,
`not_text:<name>`; stage `input`), so rows in = rows out.
`<output>/summary.json` has the counts per reason and stage, the share each
check accepts, and the conf's thresholds.

`qa.verify` (model-based verification) runs when the conf turns it on, its
calls cached in the lake's `silver/generations` like every model call, so a
second audit of the same rows calls nothing.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from pyspark.sql import functions as F

from instructlake.core import storage
from instructlake.core.config import Config
from instructlake.core.lake import Lake, RunContext
from instructlake.jobs.stages.generate_qa import ModelCalls, model_of, verify_pairs
from instructlake.udfs.qa_checks import (
    RECORD_COLUMNS, SCORE_COLUMNS, check_acceptance, parse_records_udf, verdict_lines_udf, with_qa_checks,
)
from instructlake.udfs.qa_verify import VERIFY_COLUMNS

log = logging.getLogger("instructlake.qa_check")

VERDICTS = "verdicts.jsonl"
SUMMARY = "summary.json"


@dataclass
class QaCheckResult(ModelCalls):
    rows: int = 0
    kept: int = 0
    reasons: dict = field(default_factory=dict)    # drop reason -> rows
    stages: dict = field(default_factory=dict)     # drop stage -> rows
    accepted: dict = field(default_factory=dict)   # check -> share of the parsed rows it accepts
    output: str = ""


def _lines(spark, inputs: list[str]):
    """The input lines with `line`, their number over the files in name order, without a global
    sort: a task reads a file's rows in order, so within one (file, task) the row ids are
    consecutive; the first line of each such piece comes from the pieces' sizes (a few rows)."""
    files = storage.expand_inputs(spark, inputs, "qa-check --input")
    df = spark.read.text(files).select(
        "value", F.col("_metadata.file_path").alias("_file"), F.spark_partition_id().alias("_task"),
        F.monotonically_increasing_id().alias("_seq"),
    )
    pieces = df.groupBy("_file", "_task").agg(F.min("_seq").alias("_first"), F.count(F.lit(1)).alias("_rows")).collect()
    starts, line = [], 1
    for p in sorted(pieces, key=lambda p: (p["_file"], p["_first"])):
        starts.append((p["_file"], p["_task"], p["_first"], line))
        line += p["_rows"]
    if not starts:
        return df.select("value", F.lit(None).cast("long").alias("line"))
    offsets = spark.createDataFrame(starts, "_file string, _task int, _first long, _start long")
    return df.join(F.broadcast(offsets), ["_file", "_task"]).select(
        "value", (F.col("_start") + F.col("_seq") - F.col("_first")).alias("line")
    )


def run_qa_check(spark, conf: Config, inputs: list[str], output: str, run: RunContext | None = None) -> QaCheckResult:
    """Check every line of `inputs`; write the verdicts and the summary under `output`."""
    run = run or RunContext()
    started = time.monotonic()
    result = QaCheckResult(output=storage.resolve(output))
    lines = _lines(spark, inputs)
    parsed = lines.withColumn("_r", parse_records_udf()(F.col("value"))).select("*", *[F.col(f"_r.{c}").alias(c) for c in RECORD_COLUMNS]).drop("_r")
    valid = F.col("input_reason").isNull()
    scored = with_qa_checks(parsed, conf.qa.checks, question="question", answer="answer", paragraph="context")
    df = scored.withColumns({
        "qa_drop_reason": F.when(valid, F.col("qa_drop_reason")).otherwise(F.col("input_reason")),
        "qa_drop_stage": F.when(~valid, F.lit("input")).when(F.col("qa_drop_reason").isNotNull(), F.lit("qa_checks")),
        "generation_error": F.lit(None).cast("string"),
        # What the prompts of qa.verify may name, and the cache's call order.
        "text": F.col("context"), "title": F.lit(""), "section": F.lit(""), "topics": F.array().cast("array<string>"),
        "_group": F.floor(F.col("line") / 64).cast("int"), "_order": F.col("line"),
    })
    model = model_of(conf) if conf.qa.verify.methods else ""
    df = verify_pairs(spark, conf, Lake.of(conf), run, df, model, result)
    out_columns = ["line", *SCORE_COLUMNS[:-1], *(VERIFY_COLUMNS[:-1] if conf.qa.verify.methods else []), "drop_reason", "drop_stage"]
    df = df.withColumnsRenamed({"qa_drop_reason": "drop_reason", "qa_drop_stage": "drop_stage"})
    verdict = F.to_json(F.struct(*out_columns), {"ignoreNullFields": "false"})
    df = df.withColumn("_json", verdict_lines_udf()(F.col("value"), verdict)).persist()
    try:
        _write(spark, df.orderBy("line").select("_json"), result.output)
        # Counts and shares are aggregated by Spark: the verdicts themselves stay in the file.
        groups = df.groupBy("drop_reason", "drop_stage").count().collect()
        result.accepted = check_acceptance(df, conf.qa.checks)
    finally:
        df.unpersist()
    result.rows = sum(g["count"] for g in groups)
    result.kept = sum(g["count"] for g in groups if g["drop_reason"] is None)
    for key, field_ in (("drop_reason", "reasons"), ("drop_stage", "stages")):
        totals = Counter()
        for g in groups:
            if g[key] is not None:
                totals[g[key]] += g["count"]
        setattr(result, field_, dict(totals.most_common()))
    summary = {
        "rows": result.rows, "kept": result.kept, "dropped": result.rows - result.kept, "by_reason": result.reasons,
        "by_stage": result.stages, "accepted_by_check": result.accepted, "checks": asdict(conf.qa.checks),
        "verify": asdict(conf.qa.verify), "model_calls": result.calls, "cache_hits": result.cache_hits, "run_id": run.run_id,
    }
    storage.write_text(spark, storage.join(result.output, SUMMARY), json.dumps(summary, indent=2) + "\n")
    log.info("%d rows checked: %d kept, %d dropped; %d model call(s), %d from the cache; %.1fs",
             result.rows, result.kept, result.rows - result.kept, result.calls, result.cache_hits, time.monotonic() - started)
    return result


def _write(spark, lines, output: str) -> None:
    """The lines, in order, as `<output>/verdicts.jsonl` (one file, replaced whole)."""
    scratch = storage.join(output, "_verdicts")
    storage.delete(spark, scratch)
    lines.coalesce(1).write.mode("overwrite").text(scratch)
    [part] = [f for f in storage.list_files(spark, scratch) if f.rsplit("/", 1)[-1].startswith("part-")]
    storage.replace(spark, part, storage.join(output, VERDICTS))
    storage.delete(spark, scratch)


def summary_table(result: QaCheckResult) -> str:
    """The closing lines of the command: counts, then rows per drop reason."""
    lines = [f"{result.rows} rows: {result.kept} kept, {result.rows - result.kept} dropped -> {result.output}/{VERDICTS}"]
    lines += [f"  {reason:<32} {count:>7}" for reason, count in result.reasons.items()]
    if result.accepted:
        lines.append("accepted by each check: " + ", ".join(f"{c} {s:.0%}" for c, s in result.accepted.items()))
    return "\n".join(lines)
