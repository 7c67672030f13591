"""The source-format registry: every module of this package that declares a `FORMAT`.

One module per format (`hh_rlhf`, `red_team`, `web_text`, `conala`, `mbpp`,
`humaneval`): its reader, its bronze schema, how its candidate pairs are made
(see `base.SourceFormat`). The conf loader, the ingest, generate and pairs
stages, the report and the card learn the formats from here; adding a format
is adding a module.
"""
from __future__ import annotations

import importlib
import pkgutil

from instructlake.core.config import Config, Source
from instructlake.jobs.sources.base import SourceFormat

__all__ = ["FORMATS", "SourceFormat", "format_of", "sources_made"]


def _discover() -> dict[str, SourceFormat]:
    found: dict[str, SourceFormat] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        declared = getattr(importlib.import_module(f"{__name__}.{info.name}"), "FORMAT", None)
        if isinstance(declared, SourceFormat):
            found[declared.name] = declared
    return found


FORMATS: dict[str, SourceFormat] = _discover()


def format_of(source: Source) -> SourceFormat:
    return FORMATS[source.format]


def sources_made(conf: Config, generated: str) -> list[Source]:
    """The enabled sources whose candidates the generate stage makes (`paragraphs` or `programs`)."""
    return [s for s in conf.enabled_sources if format_of(s).generated == generated]
