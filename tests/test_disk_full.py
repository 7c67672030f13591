"""A file system that fills up under the export and under the ingest: a small tmpfs of the test's
own (mounting needs root; elsewhere these tests are skipped)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import local_conf, release_dir
from test_reliability import GOOD, jsonl, part_bytes
from instructlake.core.errors import DiskFullError
from instructlake.core.lake import Lake, RunContext, is_delta
from instructlake.core.storage import free_bytes, is_disk_full
from instructlake.jobs.runner import run_pipeline, run_stage

ONLY_HH = ("sources.helpful_rejection_sampled.enabled=false", "sources.red_team_attempts.enabled=false")


@pytest.fixture
def small_disk(tmp_path):
    """A function that mounts a tmpfs of `size` bytes at a new folder and returns it."""
    mounted: list[Path] = []

    def mount(name: str, size: int) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the full-disk tests need root")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """A file that takes all the space of `folder`'s file system but `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free_bytes(str(folder)) - leave))
    return filler


def records(n: int, seed: int = 0) -> bytes:
    """Dialogues with varied words (they do not compress away)."""
    import random

    rng = random.Random(seed)
    words = [f"w{rng.randrange(10**6)}" for _ in range(5000)]
    return jsonl({"chosen": f"\n\nHuman: Question {i}: {' '.join(rng.sample(words, 12))}?\n\nAssistant: "
                            + " ".join(rng.sample(words, 60)), "rejected": "x"} for i in range(n))


def test_disk_full_is_told_apart():
    assert is_disk_full(OSError(28, "No space left on device"))
    wrapped = RuntimeError("job aborted")
    wrapped.__cause__ = RuntimeError("java.io.IOException: No space left on device")
    assert is_disk_full(wrapped) and not is_disk_full(OSError(13, "Permission denied"))


def test_an_export_onto_a_full_disk_keeps_the_published_release(spark, tmp_path, small_disk):
    out = small_disk("out", 8 << 20)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(records(1500))
    conf = local_conf(tmp_path, f"sources.helpful_online.paths=[{raw}]", *ONLY_HH, f"paths.output={out.as_uri()}")
    run_pipeline(spark, conf, RunContext())
    published = release_dir(out)
    before = {p.name: p.read_bytes() for p in published.iterdir()}
    assert sum(len(b) for b in before.values()) > 200_000
    filler = fill(out, 100_000)
    with pytest.raises(DiskFullError) as full:
        run_stage("export", spark, conf, RunContext())
    message = str(full.value)
    assert "\n" not in message and message.startswith(f"stage export: no space left on device under {out}: the stage had ")
    assert "bytes free there and needs more" in message
    # The previous release is still the published one, byte for byte; the new one left nothing behind.
    assert release_dir(out) == published and {p.name: p.read_bytes() for p in published.iterdir()} == before
    assert [d.name for d in (out / "releases").iterdir()] == [published.name] and not (out / "_staging").exists()
    filler.unlink()
    again = run_stage("export", spark, conf, RunContext())
    assert release_dir(out) != published and part_bytes(out) == {k: v for k, v in before.items() if "_part" in k}
    assert again.total_rows == json.loads(before["manifest.json"])["total_rows"]


def test_an_ingest_onto_a_full_disk_commits_nothing_and_a_rerun_completes(spark, tmp_path, small_disk):
    lake = small_disk("lake", 16 << 20)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(jsonl(GOOD[:50]))
    (raw / "b.jsonl").write_bytes(records(8000, seed=1))
    assert os.path.getsize(raw / "b.jsonl") > 4_000_000
    overrides = (f"sources.helpful_online.paths=[{raw}]", *ONLY_HH)
    conf = local_conf(tmp_path, *overrides, f"paths.lake={lake.as_uri()}")
    filler = fill(lake, 600_000)
    with pytest.raises(DiskFullError) as full:
        run_stage("ingest", spark, conf, RunContext())
    message = str(full.value)
    assert "\n" not in message and message.startswith(f"stage ingest: no space left on device under {lake}: the stage had ")
    tables = Lake.of(conf)
    assert not is_delta(spark, tables.ingest_log)  # no file is recorded as ingested
    if is_delta(spark, tables.bronze("helpful_online")):  # a commit that made it holds whole files only
        assert spark.read.format("delta").load(tables.bronze("helpful_online")).count() in (0, 8050)
    filler.unlink()
    run_pipeline(spark, conf, RunContext())
    bronze = spark.read.format("delta").load(tables.bronze("helpful_online"))
    assert bronze.count() == 8050 and bronze.select("source_file", "row_index").distinct().count() == 8050
    undisturbed = local_conf(tmp_path / "u", *overrides)
    run_pipeline(spark, undisturbed, RunContext())
    assert part_bytes(tmp_path / "out") == part_bytes(tmp_path / "u" / "out")
