"""What the Databricks notebooks share: their widget values into a conf, then stages of the stage list.

A notebook's `conf` widget names a YAML file: an absolute path (a workspace
file or a `/Volumes/...` path), or a path relative to the repository root
(`conf/databricks.yaml` in a Databricks Git folder), or the name of a conf
shipped in the wheel. The `overrides` widget holds `dotted.key=value` lines,
the same as `--set` on the command line. Each notebook is a thin shell:
`run_stages(conf, overrides, stages)` runs stages of
`instructlake.jobs.runner.STAGES` on the cluster's session and prints the
closing summary.
"""
from __future__ import annotations

import os
from pathlib import Path

from instructlake.core.config import CONF_DIR, Config
from instructlake.core.session import get_spark
from instructlake.jobs.runner import STAGE_NAMES, PipelineResult, load_config, run_pipeline
from instructlake.jobs.summary import summary

REPO_ROOT = CONF_DIR.parent


def resolve_conf_path(value: str) -> Path:
    """The conf file a widget value names (see module doc); the value as given when nothing matches."""
    path = Path(value)
    if path.is_absolute():
        return path
    for base in (Path(os.getcwd()), REPO_ROOT, CONF_DIR):
        candidate = base / path
        if candidate.is_file():
            return candidate
    return path


def notebook_conf(conf_value: str, overrides_text: str) -> Config:
    overrides = [line.strip() for line in overrides_text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return load_config(resolve_conf_path(conf_value.strip()), overrides)


def run_stages(conf_value: str, overrides_text: str, stages: tuple[str, ...] = STAGE_NAMES,
               catalog: str = "", schema: str = "") -> PipelineResult:
    """Run `stages` with the conf the widgets name, on the active session (the cluster's), and print
    the summary. `catalog` and `schema` (both set) put the tables in the metastore by name."""
    if catalog.strip() and schema.strip():
        overrides_text += f"\npaths.catalog={catalog.strip()}.{schema.strip()}"
    conf = notebook_conf(conf_value, overrides_text)
    result = run_pipeline(get_spark(conf.spark), conf, stages=stages)
    print(summary(result))
    return result
