# Databricks notebook source
# MAGIC %md
# MAGIC # instructlake: generate (silver)
# MAGIC
# MAGIC Selects paragraphs of the `web_text` sources' bronze tables (length, language, toxicity, at most
# MAGIC `qa.max_paragraphs`) into **`<lake>/silver/paragraphs`** with their TF-IDF topics, asks the language model
# MAGIC of the conf (`llm:`) for a Who/What/Where/When/Why/How question and its answer per paragraph, caching every
# MAGIC call in **`<lake>/silver/generations`**, and writes the checked, balanced pairs into **`<lake>/silver/qa`**,
# MAGIC where the pairs stage picks them up as `synthetic_qa`. A re-run calls the model only for new prompts.
# MAGIC
# MAGIC Then the Python code sources: functions written by the model from MBPP train examples (`code.generate`), and
# MAGIC every program with tests (MBPP prompt and train tasks, HumanEval, the generated functions) run once in the
# MAGIC sandbox of `code.sandbox` (bubblewrap, or the weaker `process` fallback where user namespaces are not
# MAGIC allowed), into **`<lake>/silver/code_functions`** and **`<lake>/silver/executions`**.
# MAGIC
# MAGIC Widgets: `conf` is the YAML conf file (relative to the repository root, absolute, or a conf shipped in the
# MAGIC wheel); `overrides` holds `dotted.key=value` lines, as `--set` does on the command line, e.g.
# MAGIC `llm.backend=openai`.

# COMMAND ----------

dbutils.widgets.text("conf", "conf/databricks.yaml", "Conf file")
dbutils.widgets.text("overrides", "", "Overrides (key=value, one per line)")
dbutils.widgets.text("catalog", "", "Unity Catalog catalog (empty: tables by path)")
dbutils.widgets.text("schema", "", "Schema of the tables")

# COMMAND ----------

import checkout  # noqa: F401  the repository as the package `instructlake` where the wheel is not installed
from instructlake.jobs.notebook import run_stages

# The stage on this cluster's `spark` session, with its built-in Delta Lake.
result = run_stages(dbutils.widgets.get("conf"), dbutils.widgets.get("overrides"), ("generate",),
                    catalog=dbutils.widgets.get("catalog"), schema=dbutils.widgets.get("schema"))
