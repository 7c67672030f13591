"""What the Databricks notebooks share: turning their widget values into a Config.

A notebook's `conf` widget names a YAML file: an absolute path (a workspace
file or a `/Volumes/...` path), or a path relative to the repository root
(`conf/databricks.yaml` in a Databricks Git folder), or the name of a conf
shipped in the wheel. The `overrides` widget holds `dotted.key=value` lines,
the same as `--set` on the command line.
"""
from __future__ import annotations

import os
from pathlib import Path

from jobs.config import CONF_DIR, Config, load_config

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
