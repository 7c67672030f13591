# Databricks notebook source
# MAGIC %md
# MAGIC # instructlake: pairs (silver)
# MAGIC
# MAGIC Cuts every bronze dialogue to its first (instruction, response), scores it and applies the conf's
# MAGIC filters in order, writing **`<lake>/silver/pairs`**: one row per candidate pair with its score columns
# MAGIC and `drop_reason` (null when kept). Only bronze rows without a pair are scored, unless the conf's
# MAGIC sources or filters, or the decontamination filter's benchmark files, changed.
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
from jobs.pairs import run_pairs

result = run_pairs(spark, conf)
print(f"{result.table} (version {result.version})")
print(format_summary(result.counts))
