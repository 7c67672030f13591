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
# MAGIC `paths.lake=/Volumes/main/instructlake/lake`; `catalog` and `schema`, when both are set, put every
# MAGIC table in Unity Catalog by name (`<catalog>.<schema>.silver_pairs`, ...; `paths.catalog`).

# COMMAND ----------

dbutils.widgets.text("conf", "conf/databricks.yaml", "Conf file")
dbutils.widgets.text("overrides", "", "Overrides (key=value, one per line)")
dbutils.widgets.text("catalog", "", "Unity Catalog catalog (empty: tables by path)")
dbutils.widgets.text("schema", "", "Schema of the tables")

# COMMAND ----------

import checkout  # noqa: F401  the repository as the package `instructlake` where the wheel is not installed
from instructlake.jobs.notebook import run_stages

# The stage on this cluster's `spark` session, with its built-in Delta Lake.
result = run_stages(dbutils.widgets.get("conf"), dbutils.widgets.get("overrides"), ("ingest",),
                    catalog=dbutils.widgets.get("catalog"), schema=dbutils.widgets.get("schema"))
