# Databricks notebook source
# MAGIC %md
# MAGIC # instructlake: export (gold)
# MAGIC
# MAGIC Writes the kept pairs as JSON parts **`<output>/releases/<run id>/<name>_part<K>.json`** (each a JSON list
# MAGIC of `[source, text]`) with **`manifest.json`**, then publishes the release by replacing **`<output>/CURRENT`**.
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
result = run_stages(dbutils.widgets.get("conf"), dbutils.widgets.get("overrides"), ("export",),
                    catalog=dbutils.widgets.get("catalog"), schema=dbutils.widgets.get("schema"))
