# Databricks notebook source
# MAGIC %md
# MAGIC # instructlake: pairs (silver)
# MAGIC
# MAGIC Makes the candidate pairs of every source (a dialogue's first exchange, a generated question, a verified code task), scores them and applies the conf's
# MAGIC filters in order, writing **`<lake>/silver/pairs`**: one row per candidate pair with its score columns
# MAGIC and `drop_reason` (null when kept). Only bronze rows without a pair are scored, unless the conf's
# MAGIC sources or filters, or the decontamination filter's benchmark files, changed.
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
result = run_stages(dbutils.widgets.get("conf"), dbutils.widgets.get("overrides"), ("pairs",),
                    catalog=dbutils.widgets.get("catalog"), schema=dbutils.widgets.get("schema"))
