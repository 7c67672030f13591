"""One run at a time per lake and per output folder, on a machine's own file systems.

Delta keeps each table consistent under concurrent writers, but not what a
run does across tables and files: two ingests of a new file both append it
(a blind append never conflicts), two exports race for `CURRENT`, two
generate stages call the model for the same prompts. So every stage holds an
exclusive lock on `<lake>/_instructlake.lock` (and the export also on
`<output>/_instructlake.lock`) while it runs: an `fcntl` lock, which the
operating system releases when its process ends, however it ends, so a
killed run never leaves a stale lock behind.

A second run waits for the holder (it logs who holds the lock, once) up to
`paths.lock_wait_s`, then stops with `LakeBusyError`, one line naming the
folder and the holder. Locks are re-entrant within a process: `run` holds
the lake's lock across its stages and each stage takes it again at no cost.

The tables of a lake by name (`paths.catalog`) are guarded by a lock file
named after the schema in the system's temporary folder, so that two runs
on one machine take turns there too. Only local paths (`file:` URIs and
absolute paths) are locked. A lake on an
object store or a workspace volume is shared between machines, where a
local lock means nothing: there, one job at a time per lake is the
scheduler's promise (the bundle's jobs have `max_concurrent_runs: 1`), and a
Delta conflict that still happens stops the stage with one line
(`instructlake.core.lake.conflict_of`).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from instructlake.core.errors import InstructlakeError
from instructlake.core.storage import machine_local

LOCK_FILE = "_instructlake.lock"
POLL_S = 0.1

log = logging.getLogger("instructlake.lock")


class LakeBusyError(InstructlakeError):
    """Another run holds the lock of a lake or output folder for longer than the conf waits."""


_held: dict[str, list] = {}  # lock file -> [file descriptor, depth]
_guard = threading.Lock()


def holder_of(lock_file: str) -> str:
    """Who holds a lock, as its holder wrote it ("pid 123 on host, `instructlake run`, since 12:00:01")."""
    try:
        with open(lock_file, encoding="utf-8") as f:
            info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on {info.get('host')}, `{info.get('command')}`, since {since}"


def _acquire(lock_file: str, wait_s: float, what: str) -> int:
    """The descriptor of `lock_file`, locked; `what` names what it guards in messages."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LakeBusyError(
                    f"{what} is in use by {holder_of(lock_file)}; waited {wait_s:g}s "
                    "(paths.lock_wait_s): run again when it is done"
                ) from None
            if not told:
                log.info("%s is in use by %s; waiting up to %gs", what, holder_of(lock_file), wait_s)
                told = True
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(["instructlake", *sys.argv[1:]])[:200],
            "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    if told:
        log.info("%s is free: going on", what)
    return fd


@contextmanager
def holding(folders: list[tuple[str, str]], wait_s: float) -> Iterator[None]:
    """Hold the locks of `folders` ((what, URI) pairs, e.g. ("lake /x/lake", "file:/x/lake"),
    `what` naming it in messages) while the block runs; folders that are not local are skipped
    (module doc)."""
    taken: list[str] = []
    try:
        for what, uri in folders:
            folder = machine_local(uri)
            if folder is None:
                continue
            lock_file = os.path.join(folder, LOCK_FILE)
            with _guard:
                entry = _held.get(lock_file)
                if entry is not None:
                    entry[1] += 1
                    taken.append(lock_file)
                    continue
            os.makedirs(folder, exist_ok=True)
            fd = _acquire(lock_file, wait_s, what)
            with _guard:
                _held[lock_file] = [fd, 1]
            taken.append(lock_file)
        yield
    finally:
        for lock_file in reversed(taken):
            with _guard:
                entry = _held[lock_file]
                entry[1] -= 1
                if entry[1] == 0:
                    del _held[lock_file]
                    os.close(entry[0])  # closing the descriptor releases the lock
