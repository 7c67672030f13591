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

from jobs.cli import format_summary
from jobs.pipeline import run_pipeline

result = run_pipeline(spark, conf)
print(format_summary(result.pairs.counts, result.export.output))
