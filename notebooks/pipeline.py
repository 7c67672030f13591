# Databricks notebook source
# MAGIC %md
# MAGIC # instructlake: the whole pipeline
# MAGIC
# MAGIC Runs the stages on this cluster's `spark` session:
# MAGIC 1. **ingest**: raw files into **`<lake>/bronze/<source>`**, bad records into **`<lake>/quarantine`**;
# MAGIC 2. **generate** (for `web_text` sources): question-answer pairs by the conf's language model into **`<lake>/silver/qa`**, every model call cached in **`<lake>/silver/generations`**;
# MAGIC 3. **pairs**: first (instruction, response) of every dialogue, scores and `drop_reason`, into **`<lake>/silver/pairs`**;
# MAGIC 4. **export**: the kept pairs as JSON parts and `manifest.json` in **`<output>/releases/<run id>/`**, published by **`<output>/CURRENT`**.
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

# The stages, in the order of the stage list (instructlake.jobs.runner.STAGES) on this cluster's `spark` session, with its built-in Delta Lake.
result = run_stages(dbutils.widgets.get("conf"), dbutils.widgets.get("overrides"),
                    catalog=dbutils.widgets.get("catalog"), schema=dbutils.widgets.get("schema"))
