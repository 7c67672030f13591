# Databricks notebook source
# MAGIC %md
# MAGIC # instructlake: the whole pipeline
# MAGIC
# MAGIC Runs the three stages on this cluster's existing `spark` session (and its built-in Delta Lake):
# MAGIC
# MAGIC 1. **ingest**: the configured raw files into one bronze Delta table per source (`<lake>/bronze/<source>`), bad records into `<lake>/quarantine`;
# MAGIC 2. **pairs**: the first (instruction, response) of every dialogue, with score columns and `drop_reason`, into `<lake>/silver/pairs`;
# MAGIC 3. **export**: the kept pairs as JSON parts `<name>_part<K>.json` and `manifest.json` in `<output>`.
# MAGIC
# MAGIC Widgets: `conf` is the YAML conf file (relative to the repository root, or absolute); `overrides` holds
# MAGIC `dotted.key=value` lines, the same as `--set` on the command line (for example `paths.lake=dbfs:/instructlake/lake`).

# COMMAND ----------

dbutils.widgets.text("conf", "conf/base.yaml", "Conf file")
dbutils.widgets.text("overrides", "", "Overrides (key=value, one per line)")

# COMMAND ----------

import os
import sys

# The repository root holds jobs/, udfs/ and conf/; a notebook runs from notebooks/.
repo_root = os.path.abspath(os.path.join(os.getcwd(), "..")) if os.path.basename(os.getcwd()) == "notebooks" else os.getcwd()
if repo_root not in sys.path:
    sys.path.insert(0, repo_root)

from jobs.config import load_config

conf_path = dbutils.widgets.get("conf")
if not os.path.isabs(conf_path):
    conf_path = os.path.join(repo_root, conf_path)
overrides = [line.strip() for line in dbutils.widgets.get("overrides").splitlines() if line.strip()]
conf = load_config(conf_path, overrides)

# COMMAND ----------

from jobs.pipeline import run_pipeline
from jobs.session import get_spark

result = run_pipeline(get_spark(conf.spark), conf)

# COMMAND ----------

from jobs.cli import format_summary

print(format_summary(result.pairs.counts, result.export.output))
