"""Oversized and deep input: a 50 MB line, 10^6 nested brackets, a 100 MB JSON-array element, a
gzip bomb, a file too large to read whole. Each is quarantined with its reason, within bounded
memory, and the rest of its file goes through. The checks are asserted on the pure functions
and on small DataFrames; the whole on one ingest of all of them beside good records (and on
one of a refused file, then its good replacement)."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import struct
import tracemalloc
import zlib
from pathlib import Path

from conftest import CHEAP, NO_WEB_TEXT, REPO, local_conf
from test_reliability import cli_args
from instructlake.core.config import IngestSettings
from instructlake.core.lake import Lake, RunContext
from instructlake.jobs.sources.base import read_whole_files
from instructlake.jobs.stages.ingest import run_ingest
from instructlake.udfs.records import Field, gzip_bound, inspect_file, split_json_array, with_typed_fields

MiB = 1 << 20
DEEP = "[" * 10**6 + "]" * 10**6  # far beyond any JSON parser's depth limit


def deflated_zeros(total: int, block: int = 16 * MiB) -> tuple[bytes, int]:
    """(raw deflate data, CRC-32) of `total` zero bytes (a multiple of `block`), made in a fraction
    of a second: after a full flush the compressor starts afresh, so every block of zeros
    compresses to the same bytes, which are repeated instead of compressed again."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(block)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(total // block):
        crc = zlib.crc32(zeros, crc)
    return first + again * (total // block - 1) + c.flush(), crc


@functools.lru_cache(maxsize=2)
def gzip_of_zeros(total: int) -> bytes:
    """A gzip bomb: one gzip stream of `total` zero bytes (1 GiB is about 1 MB)."""
    data, crc = deflated_zeros(total)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + data + struct.pack("<II", crc, total & 0xFFFFFFFF)


def dialogue(i: int) -> str:
    return json.dumps({"chosen": f"\n\nHuman: Question {i}?\n\nAssistant: " + "A helpful answer. " * 8, "rejected": "x"})


def red_team(i: int) -> str:
    return json.dumps({"transcript": f"\n\nHuman: Question {i}?\n\nAssistant: An answer.", "rating": 1.0})


# --- pure functions ----------------------------------------------------------------------------


def test_split_array_quarantines_a_deep_element_and_goes_on():
    deep_object = '{"a": ' * 5000 + "1" + "}" * 5000
    tricky = '["]", "\\"]", {"k": "[{"}]'  # brackets inside strings, an escaped quote
    text = f'[{{"a": 1}}, {DEEP}, {tricky},\n {deep_object} , {{"b": 2}}]'
    got = list(split_json_array(text))
    assert got == [
        (0, '{"a": 1}', None),
        (1, DEEP[:2000], "too_deeply_nested"),
        (2, tricky, None),
        (3, deep_object[:2000], "too_deeply_nested"),
        (4, '{"b": 2}', None),
    ]
    # A deep element that never closes is the last record; one closed only inside a string too.
    assert list(split_json_array('[1, ' + "[" * 5000)) == [(0, "1", None), (1, "[" * 2000, "too_deeply_nested")]
    unclosed = "[" * 5000 + '"' + "]" * 5000 + '"]'
    assert list(split_json_array(f"[{unclosed}, 2]")) == [(0, unclosed[:2000], "too_deeply_nested")]


def test_gzip_bomb_is_told_in_bounded_memory():
    bomb = gzip_of_zeros(1 << 30)
    assert len(bomb) < 2 * MiB
    limits = IngestSettings()
    tracemalloc.start()
    try:
        assert inspect_file(bomb, True, limits) == "gzip_bomb"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # About three chunks of 4 MiB (zlib's output blocks, the chunk they are joined into, the one
    # before) and a slice of input: not the 100 MB it got to.
    assert peak < 20 * MiB
    assert gzip_bound(len(bomb), limits) == (100 * len(bomb), "gzip_bomb")
    assert inspect_file(bomb, True, limits, whole=True) == "gzip_bomb"
    text = "".join(dialogue(i) + "\n" for i in range(2000)).encode()
    fine = zlib.compress(text, 9, wbits=31)
    assert inspect_file(fine, True, limits) is None and inspect_file(fine, True, limits, whole=True) is None
    # The absolute bound, and a file read whole beyond max_file_bytes.
    assert inspect_file(fine, True, IngestSettings(max_record_bytes=1024, max_expanded_bytes=len(text) - 1)) == "gzip_bomb"
    assert inspect_file(fine, True, IngestSettings(max_file_bytes=len(text) - 1), whole=True) == "file_too_large"
    # The bounds do not change what a damaged or padded file is.
    assert inspect_file(fine[: len(fine) // 2], True, limits) == "truncated_gzip"
    assert inspect_file(fine + fine + bytes(64), True, limits) is None
    assert inspect_file(fine + b"junk", True, limits) == "corrupt_gzip"
    assert inspect_file(zlib.compress(b"", wbits=31), True, limits) == "empty_file"


def test_typed_fields_refuse_a_large_or_deep_record_before_parsing(spark):
    fields = [Field("text", "string", required=True)]
    raws = [
        '{"text": "ok"}',
        json.dumps({"text": "x" * 70000}),                        # over the bound of 64 KiB
        json.dumps({"text": "é" * 33000}, ensure_ascii=False),  # 33,012 characters, 66,012 bytes
        "[" * 5000 + "]" * 5000,
        '{"text": ' * 2000 + '"x"' + "}" * 2000,
        '{"text": ' + "[" * 999 + "]" * 999 + "}",                 # 1,000 levels: parsed
        '{"text": "x", "b": ' + "[" * 2000 + "]" * 2000 + "}",     # deep after a sibling: Spark's parser only refuses
        DEEP,                                                      # over the bound, so not looked into
        "",
        None,
    ]
    df = spark.createDataFrame(list(enumerate(raws)), "i long, raw string")
    got = [r["_error"] for r in with_typed_fields(df, fields, max_record_bytes=64 * 1024).orderBy("i").collect()]
    assert got == [None, "record_too_large", "record_too_large", "too_deeply_nested", "too_deeply_nested",
                   "wrong_type:text", "malformed_json", "record_too_large", "blank_line", "blank_line"]


def test_a_splitter_that_meets_deep_nesting_ends_its_file_not_the_task(spark, tmp_path):
    """A format's splitter that leaves Python's RecursionError to the reader gives one last record
    `too_deeply_nested` instead of a failed task."""
    def lines_parsed(text, source_file):
        for i, line in enumerate(text.splitlines()):
            json.loads(line)
            yield i, line, None

    f = tmp_path / "lines.jsonl"
    f.write_text('{"a": 1}\n' + DEEP + '\n{"a": 2}\n')
    rows = read_whole_files(spark, [f.as_uri()], lines_parsed).orderBy("row_index").collect()
    assert [(r["row_index"], r["raw"], r["_read_error"]) for r in rows] == [(0, '{"a": 1}', None), (1, "", "too_deeply_nested")]


# --- one ingest of every hostile file beside good ones -----------------------------------------


def test_hostile_files_are_quarantined_and_the_rest_goes_through(spark, tmp_path):
    hh, rt = tmp_path / "hh", tmp_path / "rt"
    hh.mkdir()
    rt.mkdir()
    huge_line = json.dumps({"chosen": "\n\nHuman: Hi\n\nAssistant: " + "long " * (10 * MiB), "rejected": "x"})
    assert len(huge_line) > 50 * MiB
    (hh / "lines.jsonl").write_text("\n".join([dialogue(0), huge_line, DEEP, dialogue(1), '{"chosen": ' + DEEP + "}",
                                               dialogue(2)]) + "\n")
    (hh / "bomb.jsonl.gz").write_bytes(gzip_of_zeros(1 << 30))
    (hh / "fine.jsonl.gz").write_bytes(zlib.compress("".join(dialogue(i) + "\n" for i in range(3, 6)).encode(), wbits=31))
    huge_element = json.dumps({"transcript": "\n\nHuman: Hi\n\nAssistant: " + "long " * (20 * MiB), "rating": 0.0})
    assert len(huge_element) > 100 * MiB
    (rt / "array.json").write_text("[" + ", ".join([red_team(0), huge_element, DEEP, red_team(1)]) + "]")
    (rt / "bomb.json.gz").write_bytes(gzip_of_zeros(1 << 30))
    with open(rt / "too_large.json", "wb") as f:  # a sparse file: its size alone refuses it
        f.truncate(128 * MiB + 1)

    overrides = [f"sources.helpful_online.paths=[{hh}]", "sources.helpful_rejection_sampled.enabled=false",
                 f"sources.red_team_attempts.paths=[{rt}]", f"ingest.max_file_bytes={128 * MiB}", NO_WEB_TEXT]
    conf = local_conf(tmp_path, *overrides)
    # A process of its own, as `instructlake ingest` runs: a JVM with local mode's default heap (2 GiB)
    # and nothing else in it, so that what these files cost is what is measured.
    proc = subprocess.run(
        [sys.executable, "-m", "instructlake.jobs.cli", *cli_args("ingest", CHEAP, tmp_path),
         *[a for o in overrides for a in ("--set", o)]],
        cwd=REPO, env={**os.environ, "PYSPARK_PYTHON": sys.executable}, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lake = Lake.of(conf)
    quarantine = spark.read.format("delta").load(lake.quarantine).collect()
    assert {(Path(r["source_file"]).name, r["row_index"], r["reason"]) for r in quarantine} == {
        ("lines.jsonl", 1, "record_too_large"),
        ("lines.jsonl", 2, "too_deeply_nested"),
        ("lines.jsonl", 4, "too_deeply_nested"),
        ("bomb.jsonl.gz", -1, "gzip_bomb"),
        ("array.json", 1, "record_too_large"),
        ("array.json", 2, "too_deeply_nested"),
        ("bomb.json.gz", -1, "gzip_bomb"),
        ("too_large.json", -1, "file_too_large"),
    }
    assert max(len(r["raw"]) for r in quarantine) == 2000  # previews only
    bronze = {
        name: {Path(r["source_file"]).name: r["count"]
               for r in spark.read.format("delta").load(lake.bronze(name)).groupBy("source_file").count().collect()}
        for name in ("helpful_online", "red_team_attempts")
    }
    assert bronze == {"helpful_online": {"lines.jsonl": 3, "fine.jsonl.gz": 3}, "red_team_attempts": {"array.json": 2}}
    # rows read = in bronze + quarantined, file by file; a refused file reads none.
    logged = {Path(r["source_file"]).name: (r["rows_read"], r["rows_ingested"], r["rows_quarantined"], list(r["file_errors"]))
              for r in spark.read.format("delta").load(lake.ingest_log).collect()}
    assert logged == {
        "lines.jsonl": (6, 3, 3, []), "fine.jsonl.gz": (3, 3, 0, []), "bomb.jsonl.gz": (0, 0, 0, ["gzip_bomb"]),
        "array.json": (4, 2, 2, []), "bomb.json.gz": (0, 0, 0, ["gzip_bomb"]),
        "too_large.json": (0, 0, 0, ["file_too_large"]),
    }
    assert "helpful_online: 6 rows in bronze, 3 quarantined" in proc.stderr
    assert "red_team_attempts: 2 rows in bronze, 2 quarantined" in proc.stderr
    # Each refused file is told in one line naming it, the reason and the bound.
    refused = [m for m in proc.stderr.splitlines() if "not read" in m]
    assert len(refused) == 3 and all("\n" not in m for m in refused)
    bomb = next(m for m in refused if "bomb.jsonl.gz" in m)
    assert "gzip_bomb" in bomb and f"{100 * len(gzip_of_zeros(1 << 30))} bytes" in bomb
    assert any("too_large.json" in m and f"max_file_bytes ({128 * MiB} bytes)" in m for m in refused)


def test_a_refused_file_then_its_good_replacement(spark, tmp_path):
    """A first run whose only file is a bomb still makes the (empty) bronze table; when the file
    is replaced by a good one, the re-run reads it and its quarantine row goes."""
    raw = tmp_path / "hh"
    raw.mkdir()
    f = raw / "dialogues.jsonl.gz"
    f.write_bytes(gzip_of_zeros(1 << 30))
    conf = local_conf(tmp_path, f"sources.helpful_online.paths=[{raw}]", "sources.helpful_rejection_sampled.enabled=false",
                      "sources.red_team_attempts.enabled=false")
    lake = Lake.of(conf)
    first = run_ingest(spark, conf, RunContext())[0]
    assert (first.rows, first.quarantined) == (0, 0)
    assert spark.read.format("delta").load(lake.bronze("helpful_online")).count() == 0
    quarantine = lambda: [(Path(r["source_file"]).name, r["row_index"], r["reason"])  # noqa: E731
                          for r in spark.read.format("delta").load(lake.quarantine).collect()]
    assert quarantine() == [("dialogues.jsonl.gz", -1, "gzip_bomb")]
    assert run_ingest(spark, conf, RunContext())[0].read_files == []  # a refused file is not checked again
    f.write_bytes(zlib.compress("".join(dialogue(i) + "\n" for i in range(4)).encode(), wbits=31))
    again = run_ingest(spark, conf, RunContext())[0]
    assert ([Path(x).name for x in again.read_files], again.rows, again.quarantined) == (["dialogues.jsonl.gz"], 4, 0)
    assert spark.read.format("delta").load(lake.bronze("helpful_online")).count() == 4 and quarantine() == []
