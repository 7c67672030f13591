"""Paths as URIs, and file operations through Hadoop's FileSystem.

Everything the pipeline reads or writes goes through Spark or Hadoop, so the
same code works on file://, dbfs:/, s3a://, abfss:// and Unity Catalog
volume paths. A path without a scheme that is relative is taken relative to
the working folder; absolute ones are left to the cluster's default file
system.

A Spark Connect session has no JVM on the client: there the file operations
run in Python on the paths the client can see, which are the local file
system (`file:` URIs and absolute paths: a local Connect server, or Unity
Catalog volumes under `/Volumes` on Databricks, a FUSE mount); another
scheme is an error saying so. Their results are written as Hadoop writes
them (`file:/abs/path`).
"""
from __future__ import annotations

import errno
import glob
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from instructlake.core.errors import InputNotFoundError, causes

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


def machine_local(uri: str) -> Optional[str]:
    """The local folder of a `file:` URI or an absolute path, on this machine's own file systems;
    None for other URIs and for workspace paths (`/Volumes`, `/dbfs`, `/Workspace`), which
    other machines share."""
    if uri.startswith("file:"):
        path = "/" + uri[len("file:"):].lstrip("/")
    elif uri.startswith("/"):
        path = uri
    else:
        return None
    if path.split("/")[1:2] in (["Volumes"], ["dbfs"], ["Workspace"]):
        return None
    return os.path.abspath(path)


def free_bytes(uri: str) -> Optional[int]:
    """Bytes free to this user on the local file system holding `uri` (its nearest existing
    folder); None where it is not local (`machine_local`)."""
    path = machine_local(uri)
    if path is None:
        return None
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def is_disk_full(error: BaseException) -> bool:
    """Whether `error`, or one it was raised from, is a write to a full file system (ENOSPC,
    also as Java's IOException text)."""
    return any((isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e)
               for e in causes(error))


def is_connect(spark) -> bool:
    """Whether `spark` is a Spark Connect session (no JVM on this side)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _local(uri: str) -> str:
    """The local path of a URI, for a Spark Connect session's file operations."""
    if uri.startswith("file:"):
        path = re.sub(r"^file:(//)?", "", uri)
        return "/" + path.lstrip("/")
    if is_uri(uri):
        raise InputNotFoundError(f"{uri}: a Spark Connect session reaches files through the local file system only "
                                 "(file: URIs, absolute paths, /Volumes/...); use such a path or a classic session")
    return os.path.abspath(uri)


def _uri(path: str) -> str:
    return "file:" + path


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
        if is_connect(spark):
            found = []
            for match in sorted(glob.glob(_local(uri))):
                if os.path.isdir(match):
                    found += [_uri(os.path.join(match, n)) for n in sorted(os.listdir(match))
                              if os.path.isfile(os.path.join(match, n)) and not n.startswith((".", "_"))]
                else:
                    found.append(_uri(match))
            if not found:
                raise InputNotFoundError(f"{what}: input path {pattern!r} ({uri}) matches no file")
            out.extend(found)
            continue
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
        if is_connect(spark):
            st = os.stat(_local(uri))
            out[uri] = (int(st.st_size), int(st.st_mtime * 1000))
            continue
        fs, path = _fs(spark, uri)
        st = fs.getFileStatus(path)
        out[uri] = (int(st.getLen()), int(st.getModificationTime()))
    return out


def exists(spark, uri: str) -> bool:
    if is_connect(spark):
        return os.path.exists(_local(uri))
    fs, path = _fs(spark, uri)
    return bool(fs.exists(path))


def delete(spark, uri: str) -> None:
    if is_connect(spark):
        path = _local(uri)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path) if os.path.exists(path) else None
        return
    fs, path = _fs(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def mkdirs(spark, uri: str) -> None:
    if is_connect(spark):
        os.makedirs(_local(uri), exist_ok=True)
        return
    fs, path = _fs(spark, uri)
    fs.mkdirs(path)


def rename(spark, src: str, dst: str) -> None:
    if is_connect(spark):
        os.makedirs(os.path.dirname(_local(dst)), exist_ok=True)
        os.rename(_local(src), _local(dst))
        return
    fs, s = _fs(spark, src)
    _, d = _fs(spark, dst)
    if not fs.rename(s, d):
        raise OSError(f"could not rename {src} to {dst}")


def replace(spark, src: str, dst: str) -> None:
    """Move `src` over `dst`. Atomic where the file system's rename replaces (local, POSIX);
    elsewhere (HDFS, object stores) `dst` is deleted first, leaving a moment without it."""
    if is_connect(spark):
        os.replace(_local(src), _local(dst))
        return
    fs, s = _fs(spark, src)
    _, d = _fs(spark, dst)
    if fs.rename(s, d):
        return
    fs.delete(d, False)
    if not fs.rename(s, d):
        raise OSError(f"could not move {src} to {dst}")


def list_files(spark, uri: str) -> list[str]:
    """URIs of the files directly inside a folder, sorted; empty if it does not exist."""
    if is_connect(spark):
        return _listed(uri, os.path.isfile)
    fs, path = _fs(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(st.getPath().toString() for st in fs.listStatus(path) if st.isFile())


def _listed(uri: str, keep) -> list[str]:
    folder = _local(uri)
    if not os.path.isdir(folder):
        return []
    return sorted(_uri(os.path.join(folder, n)) for n in os.listdir(folder) if keep(os.path.join(folder, n)))


def list_dirs(spark, uri: str) -> list[str]:
    if is_connect(spark):
        return _listed(uri, os.path.isdir)
    fs, path = _fs(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(st.getPath().toString() for st in fs.listStatus(path) if st.isDirectory())


def write_text(spark, uri: str, text: str) -> None:
    """Write a small text file (UTF-8), replacing any existing one."""
    if is_connect(spark):
        os.makedirs(os.path.dirname(_local(uri)), exist_ok=True)
        Path(_local(uri)).write_bytes(text.encode("utf-8"))
        return
    fs, path = _fs(spark, uri)
    data = text.encode("utf-8")
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def read_text(spark, uri: str) -> str:
    """Read a small text file (UTF-8)."""
    if is_connect(spark):
        return Path(_local(uri)).read_bytes().decode("utf-8")
    fs, path = _fs(spark, uri)
    jvm = spark._jvm
    stream = fs.open(path)
    try:
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode("utf-8")
