"""Hostile programs in the real bubblewrap sandbox: each ends with the right status within its limit,
and the host is checked afterwards (no process left, no file touched, nothing connected)."""
from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from conftest import REPO
from instructlake.udfs.sandbox import SandboxSettings, code_execution, marked_processes, run_program

BWRAP = SandboxSettings(kind="bwrap", timeout_s=3, cpu_s=10, memory_mb=256, max_processes=16, max_output_bytes=8192)
PROCESS = SandboxSettings(kind="process", timeout_s=3, cpu_s=10, memory_mb=256, max_processes=16, max_output_bytes=8192)
SLACK_S = 2.0  # starting and killing the sandbox


def run(code: str, settings: SandboxSettings = BWRAP):
    label = uuid.uuid4().hex[:12]
    result = run_program(code, "", settings, label)
    assert result.duration_s < settings.timeout_s + SLACK_S
    # Every process the program started carries its marker: none may be left on the host.
    assert marked_processes(f"instructlake-sandbox:{label}:") == [], "a sandboxed process outlived its run"
    return result


def test_a_good_program_passes_and_a_failing_assert_fails():
    assert run_program("def f(x):\n    return x + 1", "assert f(1) == 2", BWRAP).status == "passed"
    failed = run_program("def f(x):\n    return x", "assert f(1) == 2", BWRAP)
    assert (failed.status, failed.reason) == ("failed", "assertion") and "AssertionError" in failed.stderr_tail
    broken = run_program("def f(x) return x", "assert f(1) == 1", BWRAP)
    assert (broken.status, broken.reason) == ("error", "SyntaxError")


def test_infinite_loop_times_out():
    result = run("while True:\n    pass")
    assert (result.status, result.reason) == ("timeout", "wall_clock")
    assert result.duration_s >= BWRAP.timeout_s


def test_fork_bomb_is_contained():
    bomb = run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert bomb.status == "timeout"
    # The process limit holds for the sandbox's unprivileged uid: forks beyond it are refused.
    counted = run(
        "import os, time\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n    n += 1\nprint(n)"
    )
    assert counted.status == "passed" and int(counted.stdout_tail) < BWRAP.max_processes


def test_memory_hog_is_killed():
    result = run("chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))")
    assert (result.status, result.reason) == ("killed", "memory_limit")


def test_endless_output_is_capped_and_killed():
    result = run("while True:\n    print('x' * 1000)")
    assert (result.status, result.reason) == ("killed", "output_limit")
    assert 0 < len(result.stdout_tail) <= BWRAP.max_output_bytes


def test_no_network():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hello')")
        assert (result.status, result.reason) == ("error", "ConnectionRefusedError")
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected


def test_files_outside_the_sandbox_cannot_be_written_or_deleted(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    escape = tmp_path / "escape.txt"
    for code in (f"import os\nos.remove({str(victim)!r})", f"open({str(escape)!r}, 'w').write('out')",
                 f"open({str(victim)!r}, 'a').write('changed')", "open('/usr/escape.txt', 'w').write('out')"):
        result = run(code)
        assert result.status == "error", code
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]
    assert not Path("/usr/escape.txt").exists()
    # Its own temporary folder is writable, and private.
    inside = run("open('/tmp/scratch.txt', 'w').write('ok')\nassert open('/tmp/scratch.txt').read() == 'ok'")
    assert inside.status == "passed" and not Path("/tmp/scratch.txt").exists()


def test_project_files_cannot_be_read():
    secret = (REPO / "README.md").read_text(encoding="utf-8")[:40]
    result = run(f"print(open({str(REPO / 'README.md')!r}).read())")
    assert (result.status, result.reason) == ("error", "FileNotFoundError")
    assert secret not in result.stdout_tail
    listing = run("import os\nprint(sorted(os.listdir('/')))")
    assert listing.status == "passed"
    assert not {"work", "root", "home", "etc"} & set(eval(listing.stdout_tail))


def test_process_fallback_runs_with_limits_and_is_weaker():
    assert run_program("def f(x):\n    return 2 * x", "assert f(2) == 4", PROCESS).status == "passed"
    assert run("while True:\n    pass", PROCESS).status == "timeout"
    assert run("chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))", PROCESS).reason == "memory_limit"
    # It sees the host's files: that is why it is weaker.
    assert run(f"print(open({str(REPO / 'README.md')!r}).read(10))", PROCESS).status == "passed"
    assert code_execution("process")["weaker"] is True and code_execution("bwrap")["weaker"] is False
