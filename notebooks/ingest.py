# Databricks notebook source
# MAGIC %md
# MAGIC # instructlake: ingest (bronze)
# MAGIC
# MAGIC Reads the raw files of every enabled source (HH-RLHF JSON lines, red-team JSON arrays) and writes
# MAGIC **`<lake>/bronze/<source name>`**, one Delta table per source: the raw fields, typed, with provenance
# MAGIC (source file, row index, content id, run id). Bad records and bad files go to **`<lake>/quarantine`** with
# MAGIC their reason; **`<lake>/ingest_log`** records every file read with its counts. Files already ingested and
# MAGIC unchanged are not read again.
# MAGIC
# MAGIC Widgets: `conf` is the YAML conf file (relative to the repository root, absolute, or a conf shipped in the
# MAGIC wheel); `overrides` holds `dotted.key=value` lines, as `--set` does on the command line, e.g.
# MAGIC `paths.lake=/Volumes/main/instructlake/lake`.

# COMMAND ----------

dbutils.widgets.text("conf", "conf/databricks.yaml", "Conf file")
dbutils.widgets.text("overrides", "", "Overrides (key=value, one per line)")

# COMMAND ----------

from jobs.notebook import notebook_conf
from jobs.session import get_spark

conf = notebook_conf(dbutils.widgets.get("conf"), dbutils.widgets.get("overrides"))
spark = get_spark(conf.spark)  # the cluster's own session, with its built-in Delta Lake

# COMMAND ----------

from jobs.ingest import run_ingest

results = run_ingest(spark, conf)
for r in results:
    print(f"{r.source}: {len(r.read_files)} file(s) read, {r.rows} rows in {r.table}, {r.quarantined} quarantined")
