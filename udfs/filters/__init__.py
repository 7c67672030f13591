"""The filter registry: every module of this package that declares a `FILTER` is a filter.

A filter is one module (see `base.Filter`): its conf spec, its scorer (pure and
Spark), its decision, its drop reasons and its versioned scorer name. The conf
loader, the pairs stage, the paragraph selection, the report and the card
learn the filters from here; adding a filter is adding a module.

`apply_filters(df, specs)` runs the conf's filters in order over a
DataFrame of candidate pairs (`instruction`, `response`, `source`,
`drop_reason`, `drop_stage`, ...).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Optional

from pyspark.sql import DataFrame

from instructlake.core.config import FilterSpec
from instructlake.core.storage import is_connect
from instructlake.udfs.filters.base import DROP_REASON, DROP_STAGE, Filter, Rewrite, applies_to, reason_kind, set_reason

__all__ = ["DROP_REASON", "DROP_STAGE", "FILTERS", "SPECS", "Filter", "Rewrite", "apply_filters", "applies_to",
           "filter_of", "reason_kind", "rewrites", "scorer_names", "set_reason"]


def _discover() -> dict[str, Filter]:
    found: dict[str, Filter] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        declared = getattr(importlib.import_module(f"{__name__}.{info.name}"), "FILTER", None)
        if isinstance(declared, Filter):
            for rule in declared.rules:
                if rule in found:
                    raise RuntimeError(f"two filter modules declare the rule {rule!r}")
                found[rule] = declared
    return found


FILTERS: dict[str, Filter] = _discover()  # by conf `rule`
SPECS: dict[str, type[FilterSpec]] = {rule: f.spec for rule, f in FILTERS.items()}  # the conf loader's registry


def filter_of(spec: FilterSpec) -> Filter:
    return FILTERS[spec.rule]


def apply_filters(df: DataFrame, specs: list[FilterSpec], texts_seen: Optional[dict] = None) -> DataFrame:
    """Applies every enabled filter of `specs` in order.

    With `texts_seen` (a dict), each filter with a model puts a Spark
    accumulator there under its key, counting the texts its model scored.
    """
    for spec in specs:
        if not spec.enabled:
            continue
        f = filter_of(spec)
        counter = None
        if texts_seen is not None and f.scorer is not None and not is_connect(df.sparkSession):  # no accumulators there
            counter = texts_seen[spec.key] = df.sparkSession.sparkContext.accumulator(0)
        df = f.apply(df, spec, counter)
    return df


def scorer_names(specs: list[FilterSpec]) -> dict[str, str]:
    """Versioned scorer names of the enabled filters that run a model, by filter key, e.g.
    `{"language": "lang/langdetect-1.0.9", "toxicity": "toxicity/detoxify-original"}`."""
    return {spec.key: filter_of(spec).scorer(spec) for spec in specs if spec.enabled and filter_of(spec).scorer}


def rewrites(specs: list[FilterSpec]) -> list[tuple[str, Rewrite]]:
    """(filter key, its rewrite columns) of the enabled filters that rewrite texts, in conf order."""
    out = []
    for spec in specs:
        f = filter_of(spec)
        declared = f.rewrite(spec) if spec.enabled and f.rewrite else None
        if declared is not None:
            out.append((spec.key, declared))
    return out
