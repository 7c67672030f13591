"""Long-running processes the tests start for real (a Spark master and worker, an LLM server):
started in their own session, their log copied to a file as it comes (so the pipe never fills),
ready when a given line shows in it, and stopped with their whole process group."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """`command` in the background; `wait_ready()` returns once `ready` appears in its log
    (stderr, or stdout and stderr together with `merge_output`)."""

    def __init__(self, command: list[str], log: Path, ready: str, env: dict | None = None, merge_output: bool = False):
        self.log, self.ready_marker, self.ready = log, ready, threading.Event()
        self.proc = subprocess.Popen(
            command, env=env, text=True, start_new_session=True,
            stdout=subprocess.PIPE if merge_output else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
        )
        threading.Thread(target=self._copy_log, daemon=True).start()

    def _copy_log(self) -> None:
        stream = self.proc.stdout if self.proc.stdout is not None else self.proc.stderr
        with open(self.log, "w") as copy:
            for line in stream:
                copy.write(line)
                copy.flush()
                if self.ready_marker in line:
                    self.ready.set()
        self.ready.set()  # the process ended: wake the waiter, which then sees it

    def wait_ready(self, timeout: float = 120) -> None:
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError(f"{Path(self.proc.args[0]).name} not ready: {self.ready_marker!r} not seen; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
