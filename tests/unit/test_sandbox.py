"""The QA runner's sandbox: untrusted code sees no secrets, no network, and dies at its limits.

Each test runs twice: with the `unshare` namespaces (when this machine allows them) and with
the Python guard alone, which is what the runner has in Lambda (where its microVM, its
log-only role and its VPC without a route out are the boundary).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdas.qa_runner import sandbox
from lambdas.qa_runner.sandbox import SandboxLimits, run_in_sandbox

LIMITS = SandboxLimits(wall_seconds=20, cpu_seconds=10, memory_bytes=512 * 1024 * 1024, output_bytes=16_000)


@pytest.fixture(params=["namespaces", "guard_only"])
def isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "namespaces" and not sandbox.namespace_prefix():
        pytest.skip("unshare is not available here")
    if request.param == "guard_only":
        monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ())
    return request.param


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Under namespaces the command runs as an unprivileged user that must reach its directory;
    pytest's own tmp_path sits below a root-only (0700) directory."""
    path = Path(tempfile.mkdtemp(prefix="selfheal-sandbox-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_python(tmp_path: Path, code: str, limits: SandboxLimits = LIMITS) -> sandbox.SandboxRun:
    return run_in_sandbox(tmp_path, [sys.executable, "-c", code], limits)


def test_child_environment_has_no_credentials(isolation: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canaries = {
        "AWS_ACCESS_KEY_ID": "AKIA" + "IOSFODNN7CANARY1",
        "AWS_SECRET_ACCESS_KEY": "canary-secret-access-key",
        "AWS_SESSION_TOKEN": "canary-session-token",
        "ANTHROPIC_API_KEY": "sk-ant-" + "canary",
        "GITHUB_TOKEN": "canary-github-token",
        "DB_PASSWORD": "canary-db-password",
    }
    for name, value in canaries.items():
        monkeypatch.setenv(name, value)

    run = run_python(tmp_path, "import json, os; print(json.dumps(dict(os.environ)))")

    assert run.exit_code == 0, run.stderr_excerpt
    child_env = json.loads(run.stdout_excerpt)
    assert not [
        n for n in child_env if n.startswith("AWS_") or any(w in n for w in ("KEY", "SECRET", "TOKEN", "PASSWORD"))
    ]
    assert not [v for v in canaries.values() if v in run.stdout_excerpt]
    # HOME and TMPDIR are the run's scratch directory, beside the tree: never the tree itself
    # (`expanduser('~') == cwd` would tell a test run from production)
    home = Path(child_env["HOME"])
    assert home == Path(child_env["TMPDIR"]) and home.parent == tmp_path.resolve().parent and home != tmp_path.resolve()


def test_network_is_blocked(isolation: str, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "    print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('BLOCKED', exc)\n"
    )
    try:
        run = run_python(tmp_path, code)
    finally:
        listener.close()

    # Then the run ends at the attempt: the `except` that would carry on never runs
    assert run.exit_code == sandbox.GUARD_EXIT
    assert run.killed_reason and "network access" in run.killed_reason
    assert "CONNECTED" not in run.stdout_excerpt and "BLOCKED" not in run.stdout_excerpt


def test_python_guard_blocks_socket_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ())

    run = run_python(tmp_path, "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM)")

    assert run.exit_code == sandbox.GUARD_EXIT
    assert "network access is blocked" in run.stderr_excerpt


@pytest.mark.parametrize("pid", ["parent", "1", "self"])
def test_reading_the_parents_environ_is_blocked(isolation: str, tmp_path: Path, pid: str) -> None:
    target = {"parent": str(os.getpid()), "1": "1", "self": "self"}[pid]
    code = (
        "try:\n"
        f"    print('READ', open('/proc/{target}/environ', 'rb').read()[:200])\n"
        "except OSError as exc:\n"
        "    print('CAUGHT', exc)\n"
    )

    run = run_python(tmp_path, code)

    assert run.exit_code == sandbox.GUARD_EXIT, run.stderr_excerpt
    assert run.killed_reason and "reading process environments" in run.killed_reason
    assert "READ" not in run.stdout_excerpt and "CAUGHT" not in run.stdout_excerpt
    assert "AWS_SECRET_ACCESS_KEY" not in run.stdout_excerpt + run.stderr_excerpt


def test_starting_other_programs_is_blocked(isolation: str, tmp_path: Path) -> None:
    # `cat /proc/<ppid>/environ` or `curl` would otherwise walk around the Python guard.
    code = (
        "import subprocess\ntry:\n    subprocess.run(['cat', '/proc/1/environ'])\nexcept OSError:\n    print('CAUGHT')"
    )

    run = run_python(tmp_path, code)

    assert run.exit_code == sandbox.GUARD_EXIT
    assert run.killed_reason and "starting processes" in run.killed_reason
    assert "CAUGHT" not in run.stdout_excerpt


def test_infinite_loop_is_killed_by_the_cpu_limit(isolation: str, tmp_path: Path) -> None:
    run = run_python(tmp_path, "while True: pass", SandboxLimits(wall_seconds=30, cpu_seconds=1))

    assert run.exit_code != 0
    assert not run.timed_out
    assert run.killed_reason and "cpu time limit" in run.killed_reason


def test_hang_is_killed_by_the_wall_clock_limit(isolation: str, tmp_path: Path) -> None:
    run = run_python(tmp_path, "import time; time.sleep(600)", SandboxLimits(wall_seconds=1))

    assert run.timed_out
    assert run.exit_code != 0
    assert run.killed_reason and "wall-clock timeout" in run.killed_reason


def test_memory_bomb_is_stopped_by_the_memory_limit(isolation: str, tmp_path: Path) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))\n"

    run = run_python(tmp_path, code, SandboxLimits(memory_bytes=256 * 1024 * 1024))

    assert run.exit_code != 0
    assert run.killed_reason and "memory limit" in run.killed_reason


def test_output_is_capped_keeping_head_and_tail(isolation: str, tmp_path: Path) -> None:
    code = "import sys\nsys.stdout.write('START' + 'x' * 5_000_000 + 'END')\n"

    run = run_python(tmp_path, code, SandboxLimits(output_bytes=10_000))

    assert run.exit_code == 0
    assert len(run.stdout_excerpt) < 10_100
    assert run.stdout_excerpt.startswith("START") and run.stdout_excerpt.endswith("END")
    assert "bytes omitted" in run.stdout_excerpt


def test_a_command_that_cannot_start_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ())

    run = run_in_sandbox(tmp_path, ["/nonexistent/binary"], LIMITS)

    assert run.exit_code == 127
    assert not run.ok
