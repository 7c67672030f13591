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
    from jobs.config import SparkSettings
    from jobs.session import get_spark

    session = get_spark(SparkSettings(master="local[2]", shuffle_partitions=2, app_name="instructlake-tests"))
    yield session
    session.stop()


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "hh-rlhf").is_dir():
        pytest.skip(f"the shared real data is not at {SHARED_DATA} (set INSTRUCTLAKE_SHARED_DATA)")
    return SHARED_DATA


# The web-text source makes the pipeline run a language model, the code sources run programs:
# off unless a test turns them on.
NO_WEB_TEXT = "sources.wikitext.enabled=false"
NO_CODE = ["sources.conala.enabled=false", "sources.mbpp.enabled=false", "code.generate.count=0"]
NO_CODE_ARGS = [a for s in NO_CODE for a in ("--set", s)]  # the same, for the command line


def local_conf(tmp_path: Path, *overrides: str):
    """conf/local.yaml with the lake and output under tmp_path (and the web-text and code sources off)."""
    from jobs.config import load_config

    return load_config(
        REPO / "conf" / "local.yaml",
        [NO_WEB_TEXT, *NO_CODE, f"paths.lake={(tmp_path / 'lake').as_uri()}", f"paths.output={(tmp_path / 'out').as_uri()}", *overrides],
    )


def release_dir(out: Path) -> Path:
    """The published release folder of an output folder (what `out/CURRENT` points at)."""
    return out / (out / "CURRENT").read_text().strip()
