"""The documentation site: the strict MkDocs build (a broken link, anchor or nav entry fails it),
and the configuration reference that docs/hooks.py writes from the conf dataclasses, which must
list every key of `Config` and every key of every registered filter."""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from conftest import REPO
from instructlake.core.config import Config, FilterSpec
from instructlake.udfs.filters import SPECS

MKDOCS = Path(sys.executable).parent / "mkdocs"


def load_hooks():
    spec = importlib.util.spec_from_file_location("instructlake_docs_hooks", REPO / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inner(tp):
    """`tp` without Optional, and the item type of a list (else None)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
    return tp, item


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every key of a conf dataclass, written as the reference writes it: `a.b`, a list of
    mappings `a[]` with its items' keys `a[].b`. A list of filters ends the walk (its entries
    are the filter specs, checked one by one)."""
    keys = []
    for f in dataclasses.fields(cls):
        tp, item = _inner(typing.get_type_hints(cls)[f.name])
        key = f"{prefix}.{f.name}" if prefix else f.name
        if item is not None and dataclasses.is_dataclass(item):
            key += "[]"
            keys.append(key)
            if not issubclass(item, FilterSpec):
                keys += dotted_keys(item, key)
        elif dataclasses.is_dataclass(tp):
            keys.append(key)
            keys += dotted_keys(tp, key)
        else:
            keys.append(key)
    return keys


@pytest.fixture(scope="module")
def hooks():
    return load_hooks()


@pytest.fixture(scope="module")
def reference(hooks) -> str:
    return hooks.render_reference()


def test_strict_build_succeeds(tmp_path):
    out = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    page = (tmp_path / "site" / "configuration" / "index.html").read_text(encoding="utf-8")
    assert "conf-reference" not in page and "filters[].benchmarks[].task_ids" in page


def test_reference_lists_every_key_of_config(reference):
    keys = dotted_keys(Config)
    assert {"sources[].format", "filters[]", "qa.paragraphs.filters[]", "qa.checks.min_grounding", "code.chunk_size",
            "dedup.normalization.strip_punctuation", "code.sandbox.kind"} <= set(keys)
    missing = [k for k in keys if f"| `{k}` |" not in reference]
    assert missing == []


def test_reference_has_a_section_per_filter_with_its_keys(reference):
    """Each registered filter spec has its section, and each of its keys (nested ones too) is
    listed inside it, not only somewhere on the page."""
    # the reference's sections are level-3 headings, a filter's level 4, the mappings inside it level 5
    headings = [m.start() for m in re.finditer(r"^#{1,4} ", reference, flags=re.M)]
    for rule, spec in SPECS.items():
        marker = f"`rule: {rule}`"
        start = next((i for i in headings if reference[i:reference.index("\n", i)].count(marker)), None)
        assert start is not None, f"no section for the filter rule {rule!r}"
        end = next((i for i in headings if i > start), len(reference))
        section = reference[start:end]
        missing = [k for k in dotted_keys(spec, "filters[]") if f"| `{k}` |" not in section]
        assert missing == [], (rule, missing)


def test_reference_shows_defaults_ranges_choices_and_registries(reference):
    assert "| `export.validation_fraction` | number | `0.05` | 0 to 0.5 |" in reference
    assert "| `export.order` | string | `\"shuffle\"` | one of `shuffle`, `source` |" in reference
    fmt = next(line for line in reference.splitlines() if line.startswith("| `sources[].format` |"))
    for name in ("conala", "hh_rlhf", "humaneval", "mbpp", "red_team", "web_text"):
        assert f"`{name}`" in fmt
    # a trailing comment of the field line is its description
    assert "Programs per commit of silver/executions" in reference


def test_a_note_for_a_key_that_does_not_exist_fails_the_build(hooks, monkeypatch):
    monkeypatch.setitem(hooks.NOTES, "export.no_such_key", "a stale note")
    with pytest.raises(ValueError, match="no_such_key"):
        hooks.render_reference()
