# Databricks notebook source
# MAGIC %md
# MAGIC # instructlake: export (gold)
# MAGIC
# MAGIC Writes the kept pairs as JSON parts **`<output>/releases/<run id>/<name>_part<K>.json`** (each a JSON list
# MAGIC of `[source, text]`) with **`manifest.json`**, then publishes the release by replacing **`<output>/CURRENT`**.
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

from jobs.cli import format_summary, manifest_counts
from jobs.export import run_export

result = run_export(spark, conf)
print(format_summary(manifest_counts(result.manifest), result.output))
