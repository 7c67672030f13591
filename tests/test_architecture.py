"""The shape of the code: four layers checked by import-linter, the filter and source-format
registries, and imports at the top of modules."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from instructlake.core.config import FilterSpec
from instructlake.jobs.sources import FORMATS
from instructlake.udfs.filters import FILTERS, SPECS

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGE_DIRS = ("core", "udfs", "jobs")
# Imported where they are used, never at the top: each is heavy and optional (an extra of its own).
LAZY = {"torch", "detoxify", "transformers", "llama_cpp", "profanity_check"}


def lint(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(cwd / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_import_contracts_hold():
    out = lint(REPO)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in out.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    """The contracts bite: a copy of the package whose scorer module imports a stage fails them."""
    package = tmp_path / "instructlake"
    package.mkdir()
    shutil.copy(REPO / "__init__.py", package)
    for d in PACKAGE_DIRS:
        shutil.copytree(REPO / d, package / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    text = package / "udfs" / "text.py"
    text.write_text(text.read_text() + "\nfrom instructlake.jobs.stages import pairs  # noqa: E402\n")
    out = lint(tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "instructlake.udfs.text -> instructlake.jobs.stages.pairs" in out.stdout
    assert "Layers: orchestration > stages > source formats > udfs > core BROKEN" in out.stdout


def _function_body_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found += [(node.lineno, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((node.lineno, node.module or ""))
    return found


def test_imports_inside_functions_only_for_heavy_optional_dependencies():
    offending = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for d in PACKAGE_DIRS for path in sorted((REPO / d).rglob("*.py"))
        for line, module in _function_body_imports(path) if module.split(".")[0] not in LAZY
    ]
    assert offending == []


def test_every_filter_declares_what_the_registry_needs():
    assert set(SPECS) == {"instruction_length", "response_length", "red_team_rating", "decontamination", "language", "toxicity", "pii",
                          "template_tokens"}
    for rule, f in FILTERS.items():
        assert issubclass(f.spec, FilterSpec) and rule in f.rules
        assert f.reasons and all(r == r.strip() and ":" not in r for r in f.reasons)
    # the model filters name their scorer with its version
    assert {r for r, f in FILTERS.items() if f.scorer} == {"language", "toxicity"}


def test_every_source_format_declares_its_reader_schema_and_candidates():
    assert set(FORMATS) == {"hh_rlhf", "red_team", "web_text", "conala", "mbpp", "humaneval"}
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.fields and fmt.stages and fmt.describe
        assert callable(fmt.read) and callable(fmt.candidates)
        assert (fmt.programs is not None) == (fmt.generated == "programs")
