"""`instructlake fetch` against a real HTTP server on 127.0.0.1 that serves the files under their
published paths (a mirror, as `--base-url` expects), with real faults: a dropped connection, wrong bytes."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import REPO
from instructlake.core.config import CONF_DIR
from instructlake.jobs.runner import load_config
from instructlake.jobs.stages.fetch import Catalog, ChecksumMismatch, fetch, load_catalog, mirror_url


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
