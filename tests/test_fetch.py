"""`instructlake fetch` against a real HTTP server on 127.0.0.1 that serves the files under their
published paths (a mirror, as `--base-url` expects), with real faults: a dropped connection, wrong bytes."""
from __future__ import annotations

import hashlib
import io
import json
import struct
import subprocess
import sys
import threading
import urllib.parse
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import REPO
from instructlake.core.config import CONF_DIR
from instructlake.jobs.runner import load_config
from instructlake.jobs.stages.fetch import (
    ArchiveRefused, Catalog, ChecksumMismatch, Dataset, RemoteFile, extract, fetch, load_catalog, mirror_url,
)
from test_hostile_input import deflated_zeros


class Mirror(ThreadingHTTPServer):
    """Serves bytes by URL path, honours Range requests, and can cut a response short once."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), MirrorHandler)
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def publish(self, url: str, data: bytes) -> None:
        self.files[urllib.parse.urlsplit(mirror_url(url, self.base_url)).path] = data


class MirrorHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        server: Mirror = self.server
        rng = self.headers.get("Range")
        server.requests.append((self.path, rng))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(data):
            self.send_error(416)
            return
        body = data[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = server.drop_after.pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-file
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def mirror():
    server = Mirror()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def catalog(mirror, shared_data) -> Catalog:
    """The real catalog, with the shared copies of its files published on the mirror."""
    cat = load_catalog()
    by_path = {f.path: f for ds in cat.sources.values() for f in ds.files}
    for path in ["humaneval/HumanEval.jsonl.gz", "gsm8k/train.jsonl", "gsm8k/test.jsonl", "mbpp/mbpp.jsonl",
                 "hh-rlhf/helpful-online/test.jsonl.gz"]:
        mirror.publish(by_path[path].url, (shared_data / path).read_bytes())
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for name in ["conala-train.json", "conala-test.json"]:
            z.writestr(f"conala-corpus/{name}", (shared_data / "conala" / name).read_bytes())
    mirror.publish(by_path["conala/conala-corpus-v1.1.zip"].url, archive.getvalue())
    return cat


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_clean_fetch_then_nothing_to_do(mirror, catalog, tmp_path, shared_data):
    raw = tmp_path / "raw"
    log = io.StringIO()
    result = fetch(["humaneval", "gsm8k", "mbpp"], str(raw), mirror.base_url, catalog, backoff=0, stream=log)
    assert sorted(result.downloaded) == ["gsm8k/test.jsonl", "gsm8k/train.jsonl", "humaneval/HumanEval.jsonl.gz", "mbpp/mbpp.jsonl"]
    for path in result.downloaded:
        assert (raw / path).read_bytes() == (shared_data / path).read_bytes()
        assert not (raw / (path + ".part")).exists()
    lock = json.loads((raw / "fetch-lock.json").read_text())
    assert lock["gsm8k/train.jsonl"]["sha256"] == "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"
    assert "fetch gsm8k/gsm8k/train.jsonl: 100.0% 4.2/4.2 MB" in log.getvalue() and "verified" in log.getvalue()
    served = len(mirror.requests)
    again = fetch(["humaneval", "gsm8k", "mbpp"], str(raw), mirror.base_url, catalog, backoff=0, stream=io.StringIO())
    assert again.downloaded == [] and len(again.skipped) == 4
    assert len(mirror.requests) == served  # nothing was asked of the server


def test_resume_after_the_connection_drops(mirror, catalog, tmp_path, shared_data):
    url = next(f.url for f in catalog.sources["gsm8k"].files if f.path == "gsm8k/train.jsonl")
    path = urllib.parse.urlsplit(mirror_url(url, mirror.base_url)).path
    mirror.drop_after[path] = 1_000_000
    fetch(["gsm8k"], str(tmp_path / "raw"), mirror.base_url, catalog, backoff=0, stream=io.StringIO())
    assert (tmp_path / "raw" / "gsm8k/train.jsonl").read_bytes() == (shared_data / "gsm8k/train.jsonl").read_bytes()
    asked = [r for p, r in mirror.requests if p == path]
    assert asked == [None, "bytes=1000000-"]  # the second request resumed where the first was cut


def test_checksum_mismatch_deletes_the_partial_file(mirror, catalog, tmp_path, shared_data):
    # The shared copy of this file was re-compressed by its origin: its bytes differ from Anthropic's.
    only = Catalog({"hh-rlhf": type(catalog.sources["hh-rlhf"])(
        files=[f for f in catalog.sources["hh-rlhf"].files if f.path == "hh-rlhf/helpful-online/test.jsonl.gz"])})
    only.sources["hh-rlhf"].files[0].size = None  # let the download complete, so the hash is what fails
    with pytest.raises(ChecksumMismatch) as info:
        fetch(None, str(tmp_path / "raw"), mirror.base_url, only, backoff=0, stream=io.StringIO())
    actual = sha((shared_data / "hh-rlhf/helpful-online/test.jsonl.gz").read_bytes())
    message = str(info.value)
    assert "hh-rlhf/helpful-online/test.jsonl.gz" in message
    assert "expected 39a475cc7e0df972902f8e3a0972726fce826ac65369bda8c671de4330c60a10" in message and f"got {actual}" in message
    assert not any((tmp_path / "raw").rglob("*.part")) and not (tmp_path / "raw/hh-rlhf/helpful-online/test.jsonl.gz").exists()


def test_unpublished_checksum_is_pinned_on_first_use_and_archives_extracted(mirror, catalog, tmp_path, shared_data):
    raw = tmp_path / "raw"
    first = fetch(["conala"], str(raw), mirror.base_url, catalog, backoff=0, stream=io.StringIO())
    assert first.extracted == ["conala/conala-corpus/conala-train.json", "conala/conala-corpus/conala-test.json"]
    assert (raw / "conala/conala-corpus/conala-train.json").read_bytes() == (shared_data / "conala/conala-train.json").read_bytes()
    pinned = json.loads((raw / "fetch-lock.json").read_text())["conala/conala-corpus-v1.1.zip"]["sha256"]
    assert pinned == sha((raw / "conala/conala-corpus-v1.1.zip").read_bytes())
    assert fetch(["conala"], str(raw), mirror.base_url, catalog, backoff=0, stream=io.StringIO()).downloaded == []
    # The mirror now serves other bytes: a fresh download is checked against the pinned hash.
    url = catalog.sources["conala"].files[0].url
    mirror.publish(url, b"PK not the same archive")
    (raw / "conala/conala-corpus-v1.1.zip").unlink()
    with pytest.raises(ChecksumMismatch, match=f"expected {pinned}"):
        fetch(["conala"], str(raw), mirror.base_url, catalog, backoff=0, stream=io.StringIO())


def test_remote_raw_zone_goes_through_hadoop(spark, mirror, catalog, tmp_path, shared_data):
    raw = (tmp_path / "zone").as_uri()
    result = fetch(["humaneval"], raw, mirror.base_url, catalog, spark=spark, backoff=0, stream=io.StringIO(),
                   via_hadoop=True, cache=tmp_path / "cache")
    assert result.downloaded == ["humaneval/HumanEval.jsonl.gz"]
    data = (shared_data / "humaneval/HumanEval.jsonl.gz").read_bytes()
    assert (tmp_path / "zone/humaneval/HumanEval.jsonl.gz").read_bytes() == data
    assert json.loads((tmp_path / "zone/fetch-lock.json").read_text())["humaneval/HumanEval.jsonl.gz"]["size"] == len(data)
    again = fetch(["humaneval"], raw, mirror.base_url, catalog, spark=spark, backoff=0, stream=io.StringIO(),
                  via_hadoop=True, cache=tmp_path / "cache")
    assert again.skipped == ["humaneval/HumanEval.jsonl.gz"]


def test_cli_fetch(mirror, catalog, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "instructlake.jobs.cli", "fetch", "humaneval", "--raw", str(tmp_path / "raw"), "--base-url", mirror.base_url],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 file(s) downloaded, 0 already present and verified" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "instructlake.jobs.cli", "fetch", "nosuch", "--raw", str(tmp_path / "raw")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "unknown source(s) nosuch" in proc.stderr


def test_full_build_conf_loads():
    conf = load_config(CONF_DIR / "full.yaml")
    assert [s.name for s in conf.sources] == ["helpful_online", "helpful_rejection_sampled", "red_team_attempts"]
    catalog_paths = {f.path for ds in load_catalog().sources.values() for f in ds.files}
    for s in conf.sources:
        for p in s.paths:
            assert p.startswith("raw/") and p[len("raw/"):] in catalog_paths


# --- zip bombs ----------------------------------------------------------------------------------


def zip_archive(members: dict[str, tuple[bytes, int, int]]) -> bytes:
    """A zip archive of deflated members, written by hand so that a member can be a bomb made in a
    fraction of a second, or declare a size it does not have: {name: (raw deflate data, CRC-32,
    size as declared in its headers)}."""
    out, directory = bytearray(), bytearray()
    for name, (data, crc, size) in members.items():
        encoded, offset = name.encode(), len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size, len(encoded), 0)
        out += encoded + data
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), size,
                                 len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), len(out), 0)
    return bytes(out + directory + end)


def deflated(data: bytes) -> tuple[bytes, int, int]:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(), zlib.crc32(data), len(data)


def test_zip_bomb_is_refused_and_nothing_is_extracted(mirror, tmp_path):
    bomb, crc = deflated_zeros(1 << 30)
    archive = zip_archive({"data/small.json": deflated(b'[{"intent": "x"}]'), "data/big.json": (bomb, crc, 1 << 30)})
    url = "https://example.org/bomb/archive.zip"
    mirror.publish(url, archive)
    catalog = Catalog({"bomb": Dataset(files=[RemoteFile(path="bomb/archive.zip", url=url,
                                                          extract=["data/small.json", "data/big.json"])])})
    with pytest.raises(ArchiveRefused) as info:
        fetch(["bomb"], str(tmp_path / "raw"), mirror.base_url, catalog, backoff=0, stream=io.StringIO())
    message = str(info.value)
    assert "\n" not in message and message.startswith("archive.zip: member data/big.json declares 1073741824 bytes")
    assert f"beyond the bound of {100 * len(bomb)} bytes" in message and "nothing was extracted" in message
    assert sorted(p.name for p in (tmp_path / "raw").rglob("*") if p.is_file()) == ["archive.zip"]


def test_a_zip_directory_that_lies_is_caught_while_extracting(tmp_path):
    """The headers say 1 KiB, the data is 64 MiB of zeros: extraction stops at the declared size,
    finds the checksum wrong, and leaves nothing; the absolute bound holds for honest members too."""
    bomb, crc = deflated_zeros(64 << 20, block=16 << 20)
    archive = tmp_path / "lying.zip"
    archive.write_bytes(zip_archive({"a.json": deflated(b'{"a": 1}'), "b.json": (bomb, crc, 1024)}))
    with pytest.raises(ArchiveRefused, match=r"^lying.zip: member b.json is damaged or not what its directory entry says "
                                             r"\(Bad CRC-32 for file 'b.json'\); nothing was extracted$"):
        extract(archive, ["a.json", "b.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lying.zip"]
    honest = tmp_path / "honest.zip"
    honest.write_bytes(zip_archive({"c.json": deflated(b"x" * 5000)}))
    with pytest.raises(ArchiveRefused, match="declares 5000 bytes .* beyond the bound of 4096 bytes"):
        extract(honest, ["c.json"], max_bytes=4096)
    assert extract(honest, ["c.json"]) == [tmp_path / "c.json"] and (tmp_path / "c.json").read_bytes() == b"x" * 5000
