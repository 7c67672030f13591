"""instructlake: instruction-tuning data from raw text, with Apache Spark and Delta Lake.

The package has four layers, each importing only from the ones before it:
`instructlake.core` (conf, errors, tables, storage, session), `instructlake.udfs`
(scorers and filters), `instructlake.jobs.sources` and `instructlake.jobs.stages`
(source formats, then the stages), and the orchestration modules of
`instructlake.jobs` (the stage list, the CLI, the notebooks' helpers).
"""

__version__ = "0.2.0"
