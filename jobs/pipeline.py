"""The whole pipeline in one call: ingest (bronze), generate (questions, code) and pairs (silver), export (gold).

    spark-submit jobs/pipeline.py --conf conf/local.yaml
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file by spark-submit
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from dataclasses import dataclass
from typing import Optional

from jobs.config import Config
from jobs.export import ExportResult, run_export
from jobs.generate_code import CodeResult, run_code
from jobs.generate_qa import GenerateResult, run_generate
from jobs.ingest import IngestResult, run_ingest
from jobs.lake import RunContext
from jobs.pairs import PairsResult, run_pairs


@dataclass
class PipelineResult:
    ingest: list[IngestResult]
    pairs: PairsResult
    export: ExportResult
    generate: Optional[GenerateResult] = None  # None when no web_text source is enabled
    code: Optional[CodeResult] = None          # None when no code source is enabled


def run_pipeline(spark, conf: Config, run: RunContext | None = None) -> PipelineResult:
    run = run or RunContext()
    ingested = run_ingest(spark, conf, run)
    generated = run_generate(spark, conf, run)
    coded = run_code(spark, conf, run)
    pairs = run_pairs(spark, conf, run)
    exported = run_export(spark, conf, run)
    return PipelineResult(ingested, pairs, exported, generated, coded)


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import main as cli_main

    return cli_main(["run", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    raise SystemExit(main())
