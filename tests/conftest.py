"""One Spark session for the whole test run (local mode, Delta from the jar cache)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED_DATA = Path(os.environ.get("INSTRUCTLAKE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def spark():
    from instructlake.core.config import SparkSettings
    from instructlake.core.session import get_spark

    # One shuffle partition: the tests' tables are a few hundred rows, and each
    # extra partition is a task whose start-up costs more than its work.
    session = get_spark(SparkSettings(master="local[2]", shuffle_partitions=1, app_name="instructlake-tests"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel users ship (`python -m build --wheel`), built once per test session."""
    import subprocess
    import sys

    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
                           capture_output=True, text=True, cwd=dist)
    assert build.returncode == 0, build.stderr[-2000:]
    return next(dist.glob("instructlake-*.whl"))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "hh-rlhf").is_dir():
        pytest.skip(f"the shared real data is not at {SHARED_DATA} (set INSTRUCTLAKE_SHARED_DATA)")
    return SHARED_DATA


# The web-text source makes the pipeline run a language model, the code sources run programs:
# off unless a test turns them on.
NO_WEB_TEXT = "sources.wikitext.enabled=false"
NO_CODE = ["sources.conala.enabled=false", "sources.mbpp.enabled=false", "code.generate.count=0"]
# conf/local.yaml writes every format; the tests write the JSON parts only unless they say otherwise.
PARTS_ONLY = "export.formats=[json_parts]"
NO_CODE_ARGS = [a for s in (*NO_CODE, PARTS_ONLY) for a in ("--set", s)]  # both, for the command line


# The tests' conf (the cheap filters only), and the whole local conf for the tests of the model filters.
CHEAP = REPO / "tests" / "cheap.yaml"
LOCAL = REPO / "conf" / "local.yaml"


# The preference and conversations products, off where they are not the point (tests/test_products.py).
NO_PRODUCTS = ("products.preference.enabled=false", "products.conversations.enabled=false")


def local_conf(tmp_path: Path, *overrides: str, conf: Path = CHEAP, products: bool = False):
    """`conf` (default: tests/cheap.yaml) with the lake and output under tmp_path (the web-text and
    code sources off, the JSON parts the only format, no product but the pairs unless `products`)."""
    from instructlake.jobs.runner import load_config

    return load_config(
        conf,
        [NO_WEB_TEXT, *NO_CODE, PARTS_ONLY, *(() if products else NO_PRODUCTS), f"paths.lake={(tmp_path / 'lake').as_uri()}",
         f"paths.output={(tmp_path / 'out').as_uri()}", *overrides],
    )


def hive_options(tmp: Path) -> dict[str, str]:
    """`spark.options` of a session with Spark's Hive support and a local Derby metastore under `tmp`
    (tables by name: tests/test_metastore.py, tests/test_bundle.py)."""
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(tmp / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={tmp / 'metastore_db'};create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.stream.error.file={tmp / 'derby.log'}",
    }


def release_dir(out: Path) -> Path:
    """The published release folder of an output folder (what `out/CURRENT` points at)."""
    return out / (out / "CURRENT").read_text().strip()


# The sample's helpful-online and red-team sources (360 dialogues), ingested and paired once
# for the export tests that need a lake (tests/test_formats.py, tests/test_report.py,
# tests/test_products.py), with the preference and conversations tables.
SMALL_LAKE = ("sources.helpful_rejection_sampled.enabled=false",)
ALL_FORMATS = ("export.formats=[json_parts,jsonl,chat,parquet,openai,sharegpt,alpaca]", "export.validation_fraction=0.2", "export.rows_per_part=150")


@pytest.fixture(scope="session")
def small_lake(spark, tmp_path_factory) -> Path:
    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.core.lake import RunContext
    from instructlake.jobs.stages.pairs import run_pairs
    from instructlake.jobs.stages.products import run_products

    root = tmp_path_factory.mktemp("small_lake")
    conf = local_conf(root, *SMALL_LAKE, conf=LOCAL, products=True)  # every filter: the report shows their scores
    run = RunContext()
    run_ingest(spark, conf, run)
    run_pairs(spark, conf, run)
    run_products(spark, conf, run)  # the preference and conversations tables (tests/test_products.py)
    return root


@pytest.fixture(scope="session")
def all_formats_export(spark, small_lake, tmp_path_factory):
    """(conf, ExportResult, release folder) of an export of every format and product from `small_lake`."""
    from instructlake.jobs.stages.export import run_export
    from instructlake.core.lake import RunContext

    out = tmp_path_factory.mktemp("all_formats")
    conf = local_conf(small_lake, *SMALL_LAKE, *ALL_FORMATS, f"paths.output={(out / 'out').as_uri()}", conf=LOCAL, products=True)
    result = run_export(spark, conf, RunContext())
    return conf, result, release_dir(out / "out")

