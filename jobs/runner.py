"""The one stage list, and the pipeline runner: ingest, generate, pairs, export.

`STAGES` is what the CLI offers as subcommands, what `run_pipeline` runs in
order (the CLI's `run`, `spark-submit jobs/pipeline.py`), and what each
notebook runs one of: the order is written here only. `load_config` builds a
`Config` with the registries of the layers below (the filters' conf specs,
the source formats).

Every stage runs holding the lake's lock (`instructlake.core.lock`; the
export also the output's), so two runs on one machine take turns. A stage
whose Delta commit loses a race with a writer the lock cannot see (another
machine) is run again from the start, which is safe because every stage is
idempotent; after `CONFLICT_ATTEMPTS` lost races it stops with one line.
"""
from __future__ import annotations

import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from instructlake.core import config as core_config
from instructlake.core.config import Config
from instructlake.core.lake import Lake, RunContext, conflict_of
from instructlake.core.errors import ConfigError, DiskFullError, InstructlakeError
from instructlake.core.lock import holding
from instructlake.core import storage
from instructlake.jobs.sources import FORMATS, sources_made
from instructlake.jobs.stages.export import ExportResult, run_export
from instructlake.jobs.stages.generate_code import CodeResult, run_code
from instructlake.jobs.stages.generate_qa import GenerateResult, run_generate
from instructlake.jobs.stages.ingest import IngestResult, run_ingest
from instructlake.jobs.stages.pairs import PairsResult, run_pairs
from instructlake.jobs.stages.products import run_products
from instructlake.udfs.filters import SPECS

REGISTRIES = {"filters": SPECS, "formats": FORMATS}
CONFLICT_ATTEMPTS = 3

log = logging.getLogger("instructlake.run")


class ConcurrentWriteError(InstructlakeError):
    """A stage kept losing its Delta commits to another writer of the same tables."""


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The validated conf of a YAML file (default `conf/local.yaml`) with `--set` overrides."""
    conf = core_config.load_config(path, overrides, REGISTRIES)
    check_compute(conf)
    return conf


def check_compute(conf: Config) -> None:
    """A conf whose model calls cannot run where it runs is an error: on serverless compute the
    Spark tasks that call the model cannot reach an OpenAI-compatible endpoint."""
    generates = bool(sources_made(conf, "paragraphs")) or conf.code.generate.count > 0
    if conf.spark.compute == "serverless" and conf.llm.backend == "openai" and generates:
        raise ConfigError("llm.backend", "openai calls its endpoint from Spark tasks, which serverless compute cannot do: run "
                          "the generate stage on classic compute (resources/instructlake_classic.job.yml), use "
                          "llm.backend: llama_cpp, or turn generation off")


@dataclass(frozen=True)
class Options:
    """What a run may ask of its stages besides the conf."""

    full: bool = False                   # pairs: recompute every pair, not only the new ones
    as_of_version: Optional[int] = None  # export: the pairs table as of this Delta version


@dataclass
class Generated:
    """The generate stage's two steps: question-answer pairs, and code (None when a step has no source)."""

    qa: Optional[GenerateResult] = None
    code: Optional[CodeResult] = None

    @property
    def counts(self) -> list:
        return (self.qa.counts if self.qa else []) + (self.code.counts if self.code else [])


def _generate(spark, conf: Config, run: RunContext, options: Options) -> Generated:
    return Generated(run_generate(spark, conf, run), run_code(spark, conf, run))


def _pairs(spark, conf: Config, run: RunContext, options: Options) -> PairsResult:
    """The pairs table, then the other products' tables (preference, conversations)."""
    result = run_pairs(spark, conf, run, full=options.full)
    result.products = run_products(spark, conf, run)
    return result


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    run: Callable[[Any, Config, RunContext, Options], Any]


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "raw files into bronze Delta tables (one per source)",
          lambda spark, conf, run, options: run_ingest(spark, conf, run)),
    Stage("generate", "synthetic question-answer pairs and Python functions with an LLM; programs run with their tests",
          _generate),
    Stage("pairs", "bronze rows into the silver pairs, preference and conversations tables, with scores and drop reasons",
          _pairs),
    Stage("export", "kept pairs into a release: JSON parts, other formats, report, card and manifest",
          lambda spark, conf, run, options: run_export(spark, conf, run, options.as_of_version)),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


@dataclass
class PipelineResult:
    results: dict[str, Any] = field(default_factory=dict)  # stage name -> its result

    @property
    def ingest(self) -> Optional[list[IngestResult]]:
        return self.results.get("ingest")

    @property
    def generate(self) -> Optional[GenerateResult]:
        return self.results["generate"].qa if "generate" in self.results else None

    @property
    def code(self) -> Optional[CodeResult]:
        return self.results["generate"].code if "generate" in self.results else None

    @property
    def pairs(self) -> Optional[PairsResult]:
        return self.results.get("pairs")

    @property
    def export(self) -> Optional[ExportResult]:
        return self.results.get("export")


def folders_of(conf: Config, stages: tuple[str, ...]) -> list[tuple[str, str]]:
    """(what, URI) of the folders `stages` write: the lake (for tables by name, a folder named
    after the schema in the temporary folder), and the output for the export."""
    if conf.paths.catalog:
        folder = os.path.join(tempfile.gettempdir(), "instructlake-locks", conf.paths.catalog)
        folders = [(f"the tables of {conf.paths.catalog}", folder)]
    else:
        lake = Lake.of(conf).root
        folders = [(f"lake {storage.machine_local(lake) or lake}", lake)]
    if "export" in stages:
        out = storage.resolve(conf.paths.output)
        folders.append((f"output {storage.machine_local(out) or out}", out))
    return folders


@contextmanager
def exclusive(conf: Config, stages: tuple[str, ...] = STAGE_NAMES):
    """Hold the locks `stages` need for as long as the block runs (`instructlake.core.lock`)."""
    with holding(folders_of(conf, stages), conf.paths.lock_wait_s):
        yield


def disk_full(stage: str, free_before: dict[str, Optional[int]]) -> DiskFullError:
    """The one-line error of a stage that filled a file system: the folder with the least space
    left, and the space the stage had there (what it needs is more than that)."""
    free_now = {uri: storage.free_bytes(uri) for uri in free_before}
    known = [uri for uri in free_now if free_now[uri] is not None]
    if not known:
        return DiskFullError(f"stage {stage}: no space left on device; free space and run it again")
    uri = min(known, key=lambda u: free_now[u])
    return DiskFullError(
        f"stage {stage}: no space left on device under {storage.machine_local(uri)}: the stage had "
        f"{free_before[uri]:,} bytes free there and needs more ({free_now[uri]:,} free now); free space and run it "
        "again (the tables' last commits and the published release are unchanged)"
    )


def _attempts(stage: Stage, spark, conf: Config, run: RunContext, options: Options):
    """Run `stage`, again from the start after a lost Delta commit race (module doc); a full
    file system ends it with one line (`disk_full`)."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        written = [Lake.of(conf).root] + ([storage.resolve(conf.paths.output)] if stage.name == "export" else [])
        free_before = {uri: storage.free_bytes(uri) for uri in written}
        try:
            return stage.run(spark, conf, run, options)
        except Exception as error:
            if storage.is_disk_full(error) and not isinstance(error, DiskFullError):
                raise disk_full(stage.name, free_before) from None
            conflict = conflict_of(error)
            if conflict is None:
                raise
            if attempt == CONFLICT_ATTEMPTS:
                raise ConcurrentWriteError(
                    f"stage {stage.name}: another writer changed the same Delta tables {attempt} times while this "
                    f"stage wrote them ({conflict[1][:300]}); run it again when the other writer is done"
                ) from None
            log.warning("stage %s: a Delta commit lost to a concurrent writer (%s); running the stage again "
                        "(attempt %d of %d)", stage.name, conflict[0], attempt + 1, CONFLICT_ATTEMPTS)


def run_stage(name: str, spark, conf: Config, run: RunContext | None = None, options: Options | None = None):
    """Run one stage of `STAGES` by name, holding its locks; returns its result."""
    stage = next(s for s in STAGES if s.name == name)
    with exclusive(conf, (name,)):
        return _attempts(stage, spark, conf, run or RunContext(), options or Options())


def run_pipeline(spark, conf: Config, run: RunContext | None = None, options: Options | None = None,
                 stages: tuple[str, ...] = STAGE_NAMES) -> PipelineResult:
    """Run `stages` (default: all) in the order of `STAGES`, as one run, holding their locks."""
    run = run or RunContext()
    result = PipelineResult()
    with exclusive(conf, stages):
        for stage in STAGES:
            if stage.name in stages:
                result.results[stage.name] = _attempts(stage, spark, conf, run, options or Options())
    return result
