"""Paths as URIs, and file operations through Hadoop's FileSystem.

Everything the pipeline reads or writes goes through Spark or Hadoop, so the
same code works on file://, dbfs:/, s3a://, abfss:// and Unity Catalog
volume paths. A path without a scheme that is relative is taken relative to
the working folder; absolute ones are left to the cluster's default file
system.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from instructlake.core.errors import InputNotFoundError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# The package's root: the repository in a checkout (with conf/ and data/sample/), the installed
# package in a wheel (with conf/).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def is_uri(path: str) -> bool:
    return bool(_SCHEME.match(path))


def find_file(path: str) -> str:
    """Where a file the conf names lies: URIs and absolute paths as they are; a relative path in
    the working folder, else under the package root (so the shipped prompts and the repository's
    sample benchmarks are found from anywhere, a notebook's own folder included)."""
    if is_uri(path) or os.path.isabs(path):
        return path
    for base in (os.getcwd(), str(PACKAGE_ROOT)):
        candidate = os.path.join(base, path)
        if os.path.isfile(candidate):
            return candidate
    return path


def resolve(path: str) -> str:
    """A URI for `path`: URIs and absolute paths unchanged, relative paths made absolute."""
    if is_uri(path) or path.startswith("/"):
        return path.rstrip("/") if len(path) > 1 else path
    return "file://" + os.path.abspath(path)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def _fs(spark, uri: str):
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    # The local file system writes and moves hidden .crc side files; the raw one
    # does not, so the output folder holds only the dataset's own files.
    if isinstance_of(spark, fs, "org.apache.hadoop.fs.LocalFileSystem"):
        fs = fs.getRawFileSystem()
    return fs, path


def isinstance_of(spark, obj, class_name: str) -> bool:
    return bool(spark._jvm.java.lang.Class.forName(class_name).isInstance(obj))


def expand_inputs(spark, patterns: list[str], what: str) -> list[str]:
    """Expand files, folders and globs into a sorted list of file URIs.

    Raises InputNotFoundError naming the pattern when one matches nothing.
    Hidden files (starting with '.' or '_') inside folders are skipped.
    """
    out: list[str] = []
    for pattern in patterns:
        uri = resolve(pattern)
        fs, path = _fs(spark, uri)
        statuses = fs.globStatus(path)
        found = []
        for st in statuses or []:
            if st.isDirectory():
                for child in fs.listStatus(st.getPath()):
                    name = child.getPath().getName()
                    if child.isFile() and not name.startswith((".", "_")):
                        found.append(child.getPath().toString())
            else:
                found.append(st.getPath().toString())
        if not found:
            raise InputNotFoundError(f"{what}: input path {pattern!r} ({uri}) matches no file")
        out.extend(found)
    return sorted(dict.fromkeys(out))


def file_status(spark, uris: list[str]) -> dict[str, tuple[int, int]]:
    """{uri: (size in bytes, modification time in ms)} for existing files."""
    out = {}
    for uri in uris:
        fs, path = _fs(spark, uri)
        st = fs.getFileStatus(path)
        out[uri] = (int(st.getLen()), int(st.getModificationTime()))
    return out


def exists(spark, uri: str) -> bool:
    fs, path = _fs(spark, uri)
    return bool(fs.exists(path))


def delete(spark, uri: str) -> None:
    fs, path = _fs(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def mkdirs(spark, uri: str) -> None:
    fs, path = _fs(spark, uri)
    fs.mkdirs(path)


def rename(spark, src: str, dst: str) -> None:
    fs, s = _fs(spark, src)
    _, d = _fs(spark, dst)
    if not fs.rename(s, d):
        raise OSError(f"could not rename {src} to {dst}")


def replace(spark, src: str, dst: str) -> None:
    """Move `src` over `dst`. Atomic where the file system's rename replaces (local, POSIX);
    elsewhere (HDFS, object stores) `dst` is deleted first, leaving a moment without it."""
    fs, s = _fs(spark, src)
    _, d = _fs(spark, dst)
    if fs.rename(s, d):
        return
    fs.delete(d, False)
    if not fs.rename(s, d):
        raise OSError(f"could not move {src} to {dst}")


def list_files(spark, uri: str) -> list[str]:
    """URIs of the files directly inside a folder, sorted; empty if it does not exist."""
    fs, path = _fs(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(st.getPath().toString() for st in fs.listStatus(path) if st.isFile())


def list_dirs(spark, uri: str) -> list[str]:
    fs, path = _fs(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(st.getPath().toString() for st in fs.listStatus(path) if st.isDirectory())


def write_text(spark, uri: str, text: str) -> None:
    """Write a small text file (UTF-8), replacing any existing one."""
    fs, path = _fs(spark, uri)
    data = text.encode("utf-8")
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def read_text(spark, uri: str) -> str:
    """Read a small text file (UTF-8)."""
    fs, path = _fs(spark, uri)
    jvm = spark._jvm
    stream = fs.open(path)
    try:
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode("utf-8")
