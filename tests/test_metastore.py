"""Tables by name in a real metastore (`paths.catalog`): Spark's Hive support with a local Derby
metastore, as pyspark ships it. Two processes of their own, one after the other (an embedded
Derby metastore takes one JVM at a time): the first runs the pipeline, the second opens a new
session on the same metastore, finds every table by name, exports by time travel, and re-runs
the pipeline incrementally."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import CHEAP, NO_CODE, NO_WEB_TEXT, REPO, hive_options, release_dir

CATALOG = "spark_catalog.instructlake"


def overrides(tmp: Path) -> list[str]:
    options = hive_options(tmp)
    return [NO_WEB_TEXT, *NO_CODE, "sources.helpful_rejection_sampled.enabled=false", f"paths.catalog={CATALOG}",
            f"paths.lake={tmp / 'unused-lake'}", f"paths.output={tmp / 'out'}", "export.formats=[json_parts,chat]",
            "spark.options=" + json.dumps(options)]


SECOND_SESSION = textwrap.dedent("""
    import json, sys
    from instructlake.core.lake import Lake, RunContext, latest_version
    from instructlake.core.session import get_spark
    from instructlake.jobs.runner import Options, load_config, run_pipeline, run_stage

    conf = load_config(sys.argv[1], sys.argv[3:])
    spark = get_spark(conf.spark)
    lake = Lake.of(conf)
    names = sorted(r.tableName for r in spark.sql("SHOW TABLES IN {catalog}").collect())
    tables = [lake.bronze("helpful_online"), lake.bronze("red_team_attempts"), lake.quarantine, lake.ingest_log,
              lake.pairs, lake.preference, lake.conversations]
    before = {{t: latest_version(spark, t) for t in tables}}
    kept = spark.table(lake.pairs).where("drop_reason IS NULL").count()
    comments = {{r.col_name: r.comment for r in spark.sql(f"DESCRIBE TABLE {{lake.pairs}}").collect()}}
    detail = spark.sql(f"DESCRIBE TABLE EXTENDED {{lake.pairs}}").collect()
    table_comment = next((r.data_type for r in detail if r.col_name == "Comment"), None)
    rerun = run_pipeline(spark, conf, RunContext())
    after = {{t: latest_version(spark, t) for t in tables}}
    old = run_stage("export", spark, load_config(sys.argv[1], [*sys.argv[3:], "paths.output=" + sys.argv[2]]),
                    options=Options(as_of_version=before[lake.pairs]))
    print("RESULT " + json.dumps({{"names": names, "before": before, "after": after, "kept": kept,
                                   "comments": comments, "table_comment": table_comment,
                                   "rerun_total": rerun.export.total_rows, "old_total": old.total_rows}}))
""").format(catalog=CATALOG)


def test_tables_by_name_in_a_metastore(tmp_path):
    args = overrides(tmp_path)
    products = ["products.preference.enabled=true", "products.conversations.enabled=true"]
    first = subprocess.run([sys.executable, "-m", "instructlake.jobs.cli", "run", "--conf", str(CHEAP),
                            *[a for s in [*args, *products] for a in ("--set", s)]],
                           capture_output=True, text=True, cwd=REPO, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (tmp_path / "unused-lake").exists()  # every table is in the warehouse, by name
    warehouse = {p.name for p in (tmp_path / "warehouse" / "instructlake.db").iterdir()}
    assert {"bronze_helpful_online", "silver_pairs", "silver_preference", "silver_conversations", "ingest_log"} <= warehouse
    published = release_dir(tmp_path / "out")
    manifest = json.loads((published / "manifest.json").read_text())

    script = tmp_path / "second.py"
    script.write_text(SECOND_SESSION)
    second = subprocess.run([sys.executable, str(script), str(CHEAP), str(tmp_path / "old"), *args, *products],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(next(line for line in second.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert {"bronze_helpful_online", "bronze_red_team_attempts", "quarantine", "ingest_log", "silver_pairs",
            "silver_preference", "silver_conversations"} <= set(result["names"])
    assert result["kept"] == manifest["total_rows"]
    assert result["after"] == result["before"]  # the re-run by name is incremental: nothing new, no new version
    assert result["rerun_total"] == result["old_total"] == manifest["total_rows"]
    assert result["comments"]["drop_reason"] and result["comments"]["source_file"]
    assert result["table_comment"]
    old_parts = {p.name: p.read_bytes() for p in release_dir(tmp_path / "old").glob("*_part*.json")}
    assert old_parts == {p.name: p.read_bytes() for p in published.glob("*_part*.json")} != {}
