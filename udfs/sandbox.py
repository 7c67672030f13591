"""Run an untrusted Python program (code plus its assert tests) in a sandbox, with limits.

`run_program(code, tests, settings)` runs `code`, then `tests`, as one
`__main__` module in a new process and returns an `Execution`: `status`
(`passed`, `failed`, `error`, `timeout`, `killed`), `reason` (what ended it,
for example `assertion`, `memory_limit`, `output_limit`, `signal:9`),
`duration_s` and the tails of stdout and stderr.

Two kinds of sandbox (`SandboxSettings.kind`):

- `bwrap` (bubblewrap): the program sees a read-only `/usr` (and the `/lib*`
  links into it), a private `/proc` and `/dev`, and an empty writable tmpfs
  as `/tmp` (its working folder); nothing else of the host: not `/etc`,
  `/home`, `/root`, `/work`, the host's `/tmp` or the project folder. All
  namespaces are new (`--unshare-all`: no network but its own loopback, its
  own pids, IPC and hostname), it runs as the unprivileged uid/gid 65534 in
  a new user namespace (so the process limit holds although the pipeline
  runs as root), in a new session, with an empty environment, and dies with
  its parent (`--die-with-parent`). Killing bwrap ends the sandbox's pid
  namespace, and with it every process the program started.
- `process`: the fallback where bubblewrap cannot run (some managed
  clusters). The program gets its own session and process group, the same
  resource limits, an empty environment and a fresh temporary working folder
  (as uid 65534 when the pipeline runs as root), but it sees the host's
  files and network: it is weaker, and the export manifest says so.

In both, a small bootstrap (`BOOTSTRAP`) inside the child sets the resource
limits with `resource.setrlimit` (CPU seconds, address space, processes, file
size, no core files), then reads the program from stdin and runs it. The
parent kills the whole process group after `timeout_s` of wall-clock time,
and reads stdout and stderr with a byte cap (`max_output_bytes` each): a
program that writes more is killed (`killed`, `output_limit`), so output never
fills memory or disk.

Status: exit 0 is `passed`; an `AssertionError` is `failed`; a `MemoryError`
(the address-space limit) is `killed` (`memory_limit`); any other exception or
exit code is `error`; death by a signal (the CPU limit's SIGXCPU or SIGKILL)
is `killed`; the wall-clock limit is `timeout`.
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Iterator, NamedTuple, Optional

import pandas as pd

NOBODY = 65534
STATUSES = ("passed", "failed", "error", "timeout", "killed")
TAIL_CHARS = 2000
MEMORY_ERROR_EXIT = 86  # the bootstrap's exit code for a MemoryError
ASSERTION_EXIT = 87     # ... and for an AssertionError

# Runs inside the child: limits first, then the program (read from stdin) as __main__.
BOOTSTRAP = f"""
import resource, sys
cpu, mem, nproc, fsize = (int(a) for a in sys.argv[1:5])
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
source = sys.stdin.read()
sys.stdin.close()
sys.argv = ["program"]
try:
    exec(compile(source, "program.py", "exec"), {{"__name__": "__main__", "__builtins__": __builtins__}})
except MemoryError:
    sys.stderr.write("MemoryError\\n")
    sys.stderr.flush()
    import os
    os._exit({MEMORY_ERROR_EXIT})
except AssertionError:
    import traceback
    traceback.print_exc()
    sys.stderr.flush()
    import os
    os._exit({ASSERTION_EXIT})
"""


@dataclass(frozen=True)
class SandboxSettings:
    """How programs run; every field goes into the key of an execution (`settings_json`)."""

    kind: str = "bwrap"                # bwrap | process
    python: str = "/usr/bin/python3"   # the interpreter, a system one (bwrap mounts only /usr)
    timeout_s: float = 10.0            # wall clock, then the process group is killed
    cpu_s: int = 10                    # RLIMIT_CPU (SIGXCPU at this, SIGKILL one second later)
    memory_mb: int = 512               # RLIMIT_AS
    max_processes: int = 16            # RLIMIT_NPROC (processes of the sandbox's uid)
    max_file_mb: int = 16              # RLIMIT_FSIZE
    max_output_bytes: int = 65536      # per stream; more output kills the program

    def settings_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


class Execution(NamedTuple):
    status: str
    reason: Optional[str]
    duration_s: float
    exit_code: Optional[int]
    stdout_tail: str
    stderr_tail: str


class SandboxUnavailableError(RuntimeError):
    """The configured sandbox cannot run here (no bwrap, no user namespaces, no interpreter)."""


def program_text(code: str, tests: str) -> str:
    """What runs: the code, then the tests, as one module (line ends normalized)."""
    code = (code or "").replace("\r\n", "\n")
    tests = (tests or "").replace("\r\n", "\n")
    return f"{code.rstrip()}\n\n\n{tests.rstrip()}\n"


def _bwrap_command(s: SandboxSettings) -> list[str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError("code.sandbox.kind: bwrap: bubblewrap is not installed (`make setup` installs it); or use kind: process")
    links = []
    for name in ("lib", "lib64", "lib32", "bin", "sbin"):
        target = os.path.join("/", name)
        if os.path.islink(target) and os.readlink(target).lstrip("/").startswith("usr/"):
            links += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            links += ["--ro-bind", target, target]
    return [
        bwrap, "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
        "--die-with-parent", "--new-session", "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr", *links,
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
        "--",
    ]


def _limits(s: SandboxSettings) -> list[str]:
    return [str(s.cpu_s), str(s.memory_mb * 1024 * 1024), str(s.max_processes), str(s.max_file_mb * 1024 * 1024)]


def _unprivileged(workdir: str) -> dict:
    """Popen arguments that run the child (bwrap itself, or the program) as uid/gid 65534 when
    started as root: the kernel does not apply RLIMIT_NPROC to processes of the host's root, even
    inside a user namespace that maps them to another uid."""
    if os.geteuid() != 0:
        return {}
    os.chown(workdir, NOBODY, NOBODY)
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def _read_capped(proc: subprocess.Popen, cap: int, deadline: float) -> tuple[bytes, bytes, Optional[str]]:
    """Read stdout and stderr until both close, at most `cap` bytes each; returns (out, err,
    'output_limit' | 'timeout' | None). Stops reading (the caller kills) on either limit."""
    sel = selectors.DefaultSelector()
    buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    for stream in buffers:
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    why = None
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                why = "timeout"
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = buffers[key.fileobj]
                buf += chunk[: cap + 1 - len(buf)] if len(buf) <= cap else b""
                if len(buf) > cap:
                    why = "output_limit"
            if why:
                break
    finally:
        sel.close()
    return bytes(buffers[proc.stdout][:cap]), bytes(buffers[proc.stderr][:cap]), why


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def marked_processes(marker: str) -> list[int]:
    """Pids of this machine's processes whose command line holds `marker` (forks keep it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _kill_marked(marker: str, limit_s: float = 5.0) -> None:
    """SIGKILL every process of a killed program until none is left: the kernel ends a pid
    namespace's processes asynchronously, and the process sandbox's forks may leave the group."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        pids = marked_processes(marker)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _classify(code: Optional[int], why: Optional[str], stderr: str) -> tuple[str, Optional[str]]:
    if why == "timeout":
        return "timeout", "wall_clock"
    if why == "output_limit":
        return "killed", "output_limit"
    if code == 0:
        return "passed", None
    if code == ASSERTION_EXIT:
        return "failed", "assertion"
    if code == MEMORY_ERROR_EXIT:
        return "killed", "memory_limit"
    # A death by a signal: negative for the process sandbox, 128 + signal as bwrap passes it on.
    sig = -code if code is not None and code < 0 else code - 128 if code is not None and 128 < code < 160 else None
    if sig is not None:
        return "killed", "cpu_limit" if sig == signal.SIGXCPU else f"signal:{sig}"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return "error", (last.split(":", 1)[0][:80] or f"exit:{code}")


def run_program(code: str, tests: str, settings: SandboxSettings, label: str = "program") -> Execution:
    """Run `code` then `tests` in the sandbox of `settings` (see the module doc)."""
    s = settings
    if not os.path.isfile(s.python):
        raise SandboxUnavailableError(f"code.sandbox.python: no interpreter at {s.python}")
    prefix = _bwrap_command(s) if s.kind == "bwrap" else []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="instructlake-sandbox-") as workdir:
        marker = f"instructlake-sandbox:{label}:{os.getpid()}:{time.monotonic_ns()}"
        argv = [*prefix, s.python, "-I", "-B", "-c", BOOTSTRAP, *_limits(s), marker]
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=workdir if s.kind == "process" else None, env={} if s.kind == "process" else {"PATH": "/usr/bin:/bin"},
            start_new_session=True, close_fds=True, **_unprivileged(workdir),
        )
        why = None
        try:
            try:
                proc.stdin.write(program_text(code, tests).encode("utf-8"))
                proc.stdin.close()
            except BrokenPipeError:
                pass
            out, err, why = _read_capped(proc, s.max_output_bytes, started + s.timeout_s)
            if why:
                _kill_group(proc)
            try:
                exit_code = proc.wait(timeout=max(0.1, started + s.timeout_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                why = why or "timeout"
                _kill_group(proc)
                exit_code = proc.wait()
        finally:
            _kill_group(proc)  # whatever the program left in its group
            if why or s.kind == "process":
                _kill_marked(marker)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                stream.close()
    stderr = err.decode("utf-8", "replace")
    status, reason = _classify(None if why else exit_code, why, stderr)
    return Execution(
        status, reason, round(time.monotonic() - started, 3), exit_code,
        out.decode("utf-8", "replace")[-TAIL_CHARS:], stderr[-TAIL_CHARS:],
    )


def code_execution(kind: str) -> dict:
    """The export manifest's `code_execution` entry: which sandbox verified the code pairs."""
    if kind == "bwrap":
        note = ("bubblewrap: no network, read-only /usr only, private /tmp, uid 65534 in new namespaces; "
                "limits on CPU, memory, processes, file size, output and wall-clock time")
        return {"sandbox": "bwrap", "weaker": False, "note": note}
    note = ("process fallback: own session, the same limits, empty environment, temporary working folder, "
            "uid 65534 when run as root; the program sees the host's files and network")
    return {"sandbox": "process", "weaker": True, "note": note}


# --- Spark ----------------------------------------------------------------------

EXEC_SCHEMA = (
    "key string, status string, reason string, duration_s double, exit_code int, stdout_tail string, stderr_tail string"
)


def execute_udf(settings: SandboxSettings):
    """A `mapInPandas` function: (key, code, tests) rows in, `EXEC_SCHEMA` rows out, each program run
    in the sandbox."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            results = [run_program(c, t, settings, k[:16]) for k, c, t in zip(batch["key"], batch["code"], batch["tests"])]
            yield pd.DataFrame(
                {
                    "key": batch["key"].tolist(),
                    "status": [r.status for r in results],
                    "reason": [r.reason for r in results],
                    "duration_s": [float(r.duration_s) for r in results],
                    "exit_code": pd.array([r.exit_code for r in results], dtype="Int32"),
                    "stdout_tail": [r.stdout_tail for r in results],
                    "stderr_tail": [r.stderr_tail for r in results],
                }
            )

    return run
