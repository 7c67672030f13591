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

# COMMAND ----------

from jobs.notebook import notebook_conf
from jobs.session import get_spark

conf = notebook_conf(dbutils.widgets.get("conf"), dbutils.widgets.get("overrides"))
spark = get_spark(conf.spark)  # the cluster's own session, with its built-in Delta Lake

# COMMAND ----------

from jobs.cli import format_summary
from jobs.generate_qa import run_generate

result = run_generate(spark, conf)
if result is None:
    print("no web_text source enabled: nothing to generate")
else:
    print(f"{result.calls} model call(s), {result.cache_hits} from the cache; tables {result.tables}")
    print(format_summary(result.counts))

# COMMAND ----------

from jobs.generate_code import run_code

code = run_code(spark, conf)
if code is None:
    print("no code source enabled: no program to run")
else:
    print(f"{code.generations} function(s) generated, {code.calls} model call(s); {code.programs} program(s) with tests, "
          f"{code.executed} run now ({code.sandbox} sandbox); tables {code.tables}")
    print(format_summary(code.counts))
