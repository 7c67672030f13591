"""Makes this repository importable as the package `instructlake` where the wheel is not installed.

A Databricks Git folder puts the repository's root on `sys.path`, and a
notebook runs from its own folder; but the package is the repository itself
(its `__init__.py` is at the root), so its name is not importable from there.
The notebooks import this module first: where `instructlake` is importable (the
wheel on the cluster, a job's library, `pip install -e .`) it does nothing.
"""
import importlib.util
import pathlib
import sys

if importlib.util.find_spec("instructlake") is None:
    _root = pathlib.Path(__file__).resolve().parents[1]
    _spec = importlib.util.spec_from_file_location("instructlake", _root / "__init__.py", submodule_search_locations=[str(_root)])
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["instructlake"] = _module
    _spec.loader.exec_module(_module)
