"""Named checkpoints where a test can stop a real process to inject a crash.

Production runs pass through `checkpoint(name)` at no cost. When the
environment names a checkpoint (`INSTRUCTLAKE_PAUSE_AT=export.part_published`,
comma-separated for several) and a FIFO (`INSTRUCTLAKE_PAUSE_FIFO`), the first
process to reach it writes "<name> <pid>" to the FIFO and then blocks until it
is killed; the test reads the line and sends SIGKILL at exactly that point.
Each checkpoint fires once (a marker file beside the FIFO), so a retried task
or a re-run passes through.

Checkpoints: `ingest.bronze_written`, `export.part_published`,
`export.release_written`, `worker.red_team_split` (inside a Python worker),
`generate.chunk_committed` (a chunk of model calls is in the cache table).
"""
from __future__ import annotations

import os
import signal

PAUSE_AT = "INSTRUCTLAKE_PAUSE_AT"
PAUSE_FIFO = "INSTRUCTLAKE_PAUSE_FIFO"


def checkpoint(name: str) -> None:
    names = os.environ.get(PAUSE_AT)
    if not names or name not in names.split(","):
        return
    fifo = os.environ[PAUSE_FIFO]
    try:
        os.close(os.open(f"{fifo}.{name}.fired", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    with open(fifo, "w") as f:
        f.write(f"{name} {os.getpid()}\n")
    while True:
        signal.pause()
