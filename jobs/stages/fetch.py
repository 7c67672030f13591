"""`instructlake fetch [SOURCE ...]`: the seed's upstream files into the raw zone.

The files, with their canonical URL, size and sha256, are listed in
`conf/sources.yaml`. For each file: skip it when the raw zone already holds
it verified; else download into `<file>.part` (resuming a partial download
with an HTTP Range request), retrying with exponential backoff on network
errors, timeouts and 5xx answers; then check its size and sha256. A checksum
mismatch deletes the partial file and fails, naming the file and both
hashes. A file without a published checksum is pinned on its first verified
download in `<raw>/fetch-lock.json` and checked against that later. Zip
members listed under `extract` are unpacked beside the archive, all or none:
an archive whose members expand beyond `max_extracted_bytes` or beyond
`max_extract_ratio` times their compressed size (a zip bomb) is refused with
one line naming it and the bound, by the sizes its directory declares and
again by the bytes actually written (a directory can lie), and no extracted
file, whole or partial, is left behind.

The raw zone is a local folder or any URI Spark reads (s3a://, abfss://,
dbfs:/ ...): for a remote one, files are downloaded into a local cache first
and then copied through Hadoop's FileSystem.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from instructlake.core import storage
from instructlake.core.config import CONF_DIR
from instructlake.core.confload import load
from instructlake.core.errors import ConfigError, FetchError
from instructlake.core.session import get_spark

CATALOG = CONF_DIR / "sources.yaml"
LOCK = "fetch-lock.json"
CHUNK = 1 << 20
BASE_URL_ENV = "INSTRUCTLAKE_FETCH_BASE_URL"
DOWNLOAD_CACHE = "~/.cache/instructlake/downloads"
# What one extracted archive member may expand to: at most MAX_EXTRACTED_BYTES, and once past
# EXTRACT_RATIO_FROM at most MAX_EXTRACT_RATIO times its compressed size (text compresses about
# 3 to 10 times, a zip bomb about 1,000).
MAX_EXTRACTED_BYTES = 8 << 30
MAX_EXTRACT_RATIO = 100.0
EXTRACT_RATIO_FROM = 64 << 20


@dataclass
class RemoteFile:
    path: str
    url: str
    size: Optional[int] = field(default=None, metadata={"min": 0})
    sha256: Optional[str] = None
    extract: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.path.startswith("/") or ".." in Path(self.path).parts:
            raise ConfigError("path", f"must be a relative path inside the raw zone, got {self.path!r}")
        if not re.match(r"^https?://[^/]+/", self.url):
            raise ConfigError("url", f"expected an http(s) URL, got {self.url!r}")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ConfigError("sha256", "expected 64 lower-case hex digits or null")
        if self.extract and not self.path.endswith(".zip"):
            raise ConfigError("extract", "only zip archives can be extracted")


@dataclass
class Dataset:
    files: list[RemoteFile]
    license: str = ""
    homepage: str = ""


@dataclass
class Catalog:
    sources: dict[str, Dataset]


class ChecksumMismatch(FetchError):
    pass


class ArchiveRefused(FetchError):
    """An archive whose members expand beyond the bounds, or cannot be extracted as they claim."""


def load_catalog(path: str | Path | None = None) -> Catalog:
    return load(Catalog, path or CATALOG)


def mirror_url(url: str, base_url: Optional[str]) -> str:
    """The URL to download from: the canonical one, or `base_url/<host>/<path>` on a mirror."""
    if not base_url:
        return url
    parts = urllib.parse.urlsplit(url)
    return f"{base_url.rstrip('/')}/{parts.netloc}{parts.path}"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class Progress:
    """One progress line per file on stderr: redrawn on a terminal, every 25% otherwise."""

    def __init__(self, label: str, total: Optional[int], stream=None):
        self.label, self.total, self.stream = label, total, stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started, self.done, self.last_quarter = time.monotonic(), 0, -1

    def update(self, done: int) -> None:
        self.done = done
        if self.tty:
            self.stream.write("\r" + self._line())
        elif self.total:
            quarter = int(4 * done / self.total)
            if quarter > self.last_quarter:
                self.last_quarter = quarter
                self.stream.write(self._line() + "\n")

    def finish(self, note: str) -> None:
        self.stream.write(("\r" if self.tty else "") + f"{self._line()} {note}\n")
        self.stream.flush()

    def _line(self) -> str:
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        if self.total:
            return f"fetch {self.label}: {100 * self.done / self.total:5.1f}% {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB {rate / 1e6:.1f} MB/s"
        return f"fetch {self.label}: {self.done / 1e6:.1f} MB {rate / 1e6:.1f} MB/s"


RETRYABLE = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, socket.timeout)


def download(
    url: str, part: Path, size: Optional[int], progress: Progress,
    retries: int = 5, timeout: float = 60, backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Download `url` into `part`, resuming what `part` already holds."""
    part.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have == size:
            return
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                if have and resp.status != 206:  # the server ignored the Range: start over
                    have = 0
                expected = int(resp.headers["Content-Length"]) + have if resp.headers.get("Content-Length") else None
                with open(part, "ab" if have else "wb") as out:
                    done = have
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        done += len(block)
                        progress.update(done)
                if expected is not None and done < expected:
                    raise http.client.IncompleteRead(b"", expected - done)
                return
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing left to send: the part is complete
                return
            if e.code < 500 and e.code not in (408, 429):
                raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
            error: Exception = e
        except RETRYABLE as e:
            error = e
        if attempt == retries:
            raise FetchError(f"{url}: gave up after {retries + 1} attempts: {error}")
        sleep(backoff * 2**attempt)


def _read_lock(spark, raw: str, remote: bool) -> dict:
    uri = storage.join(raw, LOCK)
    if not remote:
        p = _local(uri)
        return json.loads(p.read_text()) if p.exists() else {}
    return json.loads(storage.read_text(spark, uri)) if storage.exists(spark, uri) else {}


def _write_lock(spark, raw: str, lock: dict, remote: bool) -> None:
    text = json.dumps(dict(sorted(lock.items())), indent=2) + "\n"
    if not remote:
        p = _local(storage.join(raw, LOCK))
        tmp = p.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, p)
    else:
        storage.write_text(spark, storage.join(raw, LOCK), text)


def member_bound(compressed: int, max_bytes: int, max_ratio: float) -> int:
    """The most bytes a member of `compressed` bytes may expand to (see `MAX_EXTRACTED_BYTES`)."""
    return min(max_bytes, max(EXTRACT_RATIO_FROM, int(max_ratio * compressed)))


def extract(archive: Path, members: list[str], max_bytes: int = MAX_EXTRACTED_BYTES,
            max_ratio: float = MAX_EXTRACT_RATIO) -> list[Path]:
    """Extract `members` of the zip `archive` beside it (each under its own path inside the archive),
    all or none; returns their paths. `ArchiveRefused` when one of them declares, or turns out to
    hold, more than `member_bound` bytes, or is damaged: then no extracted file is left."""
    try:
        z = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise ArchiveRefused(f"{archive.name}: not a readable zip archive: {e}") from None
    done: list[tuple[Path, Path]] = []
    with z:
        try:
            infos = [z.getinfo(m) for m in members]
        except KeyError as e:
            raise ArchiveRefused(f"{archive.name}: no member {e.args[0]!r} to extract") from None
        bounds = [member_bound(i.compress_size, max_bytes, max_ratio) for i in infos]
        for info, bound in zip(infos, bounds):  # every declared size first: nothing is written for a bomb
            if info.file_size > bound:
                raise ArchiveRefused(
                    f"{archive.name}: member {info.filename} declares {info.file_size} bytes ({info.compress_size} "
                    f"compressed), beyond the bound of {bound} bytes (at most {max_bytes}, and {max_ratio:g} times its "
                    "compressed size); nothing was extracted"
                )
        try:
            for info, bound in zip(infos, bounds):
                dest = archive.parent / info.filename
                part = dest.with_name(dest.name + ".part")
                dest.parent.mkdir(parents=True, exist_ok=True)
                done.append((part, dest))
                written = 0
                with z.open(info) as src, open(part, "wb") as dst:
                    while block := src.read(CHUNK):
                        written += len(block)
                        if written > bound:  # more than its directory entry said
                            raise ArchiveRefused(
                                f"{archive.name}: member {info.filename} expands beyond the bound of {bound} bytes "
                                f"(at most {max_bytes}, and {max_ratio:g} times its compressed size); nothing was extracted"
                            )
                        dst.write(block)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            for part, _ in done:
                part.unlink(missing_ok=True)
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ArchiveRefused(f"{archive.name}: member {info.filename} is damaged or not what its directory entry "
                                 f"says ({why}); nothing was extracted") from None
        except BaseException:
            for part, _ in done:
                part.unlink(missing_ok=True)
            raise
    for part, dest in done:
        os.replace(part, dest)
    return [dest for _, dest in done]


def _is_local(uri: str) -> bool:
    return uri.startswith("file:") or uri.startswith("/")


def _local(uri: str) -> Path:
    return Path(urllib.parse.urlsplit(uri).path if uri.startswith("file:") else uri)


@dataclass
class FetchResult:
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    extracted: list[str] = field(default_factory=list)


def fetch(
    names: list[str] | None = None,
    raw: str = "raw",
    base_url: Optional[str] = None,
    catalog: Catalog | None = None,
    spark=None,
    retries: int = 5,
    timeout: float = 60,
    backoff: float = 1.0,
    stream=None,
    via_hadoop: Optional[bool] = None,
    cache: Optional[Path] = None,
    max_extracted_bytes: int = MAX_EXTRACTED_BYTES,
    max_extract_ratio: float = MAX_EXTRACT_RATIO,
) -> FetchResult:
    """Fetch the files of the named sources (all when none) into the raw zone `raw`.

    `via_hadoop` forces (or forbids) the remote path: download into `cache`
    (default ~/.cache/instructlake/downloads), then copy through Hadoop's
    FileSystem; by default it is taken for every URI that is not a local path.
    `max_extracted_bytes`, `max_extract_ratio`: the bounds of an extracted
    archive member (`member_bound`).
    """
    catalog = catalog or load_catalog()
    unknown = [n for n in names or [] if n not in catalog.sources]
    if unknown:
        raise FetchError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(catalog.sources)}")
    raw = storage.resolve(raw)
    base_url = base_url or os.environ.get(BASE_URL_ENV)
    remote = via_hadoop if via_hadoop is not None else not _is_local(raw)
    if remote and spark is None:
        spark = get_spark()
    cache = cache or Path(os.path.expanduser(DOWNLOAD_CACHE))
    lock = _read_lock(spark, raw, remote)
    result = FetchResult()
    for name in names or list(catalog.sources):
        for f in catalog.sources[name].files:
            _fetch_one(f, name, raw, base_url, lock, result, spark, remote, cache, retries, timeout, backoff, stream,
                       max_extracted_bytes, max_extract_ratio)
            _write_lock(spark, raw, lock, remote)
    return result


def _fetch_one(f: RemoteFile, name, raw, base_url, lock, result, spark, remote, cache, retries, timeout, backoff, stream,
               max_extracted_bytes: int = MAX_EXTRACTED_BYTES, max_extract_ratio: float = MAX_EXTRACT_RATIO) -> None:
    expected_sha = f.sha256 or lock.get(f.path, {}).get("sha256")
    expected_size = f.size if f.size is not None else lock.get(f.path, {}).get("size")
    target = storage.join(raw, f.path)
    local = _local(target) if not remote else cache / f.path
    if _present_and_verified(spark, f, target, local, remote, expected_sha, expected_size, lock):
        result.skipped.append(f.path)
    else:
        part = local.with_name(local.name + ".part")
        progress = Progress(f"{name}/{f.path}", expected_size, stream)
        download(mirror_url(f.url, base_url), part, expected_size, progress, retries, timeout, backoff)
        actual = sha256_of(part)
        size = part.stat().st_size
        if expected_sha is not None and actual != expected_sha:
            part.unlink()
            raise ChecksumMismatch(
                f"{f.path}: sha256 mismatch: expected {expected_sha}, got {actual} "
                f"(from {mirror_url(f.url, base_url)}; the partial file was deleted)"
            )
        if expected_size is not None and size != expected_size:
            part.unlink()
            raise ChecksumMismatch(f"{f.path}: size mismatch: expected {expected_size} bytes, got {size}")
        os.replace(part, local)
        if remote:
            _copy_to(spark, local, target)
        progress.finish("verified" if expected_sha else "pinned (no published checksum)")
        lock[f.path] = {"sha256": actual, "size": size, "url": f.url}
        result.downloaded.append(f.path)
    outs = {m: storage.join(raw, str(Path(f.path).parent / m)) for m in f.extract}
    todo = [m for m in f.extract
            if not (f.path in result.skipped and (_local(outs[m]).exists() if not remote else storage.exists(spark, outs[m])))]
    for member, dest in zip(todo, extract(local, todo, max_extracted_bytes, max_extract_ratio) if todo else []):
        if remote:
            _copy_to(spark, dest, outs[member])
        result.extracted.append(str(Path(f.path).parent / member))


def _present_and_verified(spark, f, target, local, remote, expected_sha, expected_size, lock) -> bool:
    if remote:
        # The remote copy was verified before it was uploaded; its entry in the lock says so.
        entry = lock.get(f.path)
        if not entry or entry["sha256"] != expected_sha or not storage.exists(spark, target):
            return False
        return storage.file_status(spark, [target])[target][0] == entry["size"]
    if not local.is_file() or expected_sha is None:
        return False
    if expected_size is not None and local.stat().st_size != expected_size:
        return False
    return sha256_of(local) == expected_sha


def _copy_to(spark, local: Path, target: str) -> None:
    jvm = spark._jvm
    src = jvm.org.apache.hadoop.fs.Path(local.as_uri())
    dst = jvm.org.apache.hadoop.fs.Path(target)
    fs = dst.getFileSystem(spark._jsc.hadoopConfiguration())
    fs.copyFromLocalFile(False, True, src, dst)
