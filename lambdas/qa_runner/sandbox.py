"""Run untrusted code (a proposed fix and its tests) in a separate, limited process.

This module runs inside the QA runner function only (never in QA, which holds the pipeline's
permissions). Layers, each protecting against something the others do not:
- environment built from an allow-list: the child never sees the function's credentials;
- rlimits (CPU seconds, address space, file size, processes, no core files): runaway loops,
  memory bombs, disk filling and fork bombs die inside the child;
- a wall-clock timeout that kills the whole process group: hangs and sleeping children;
- output read through a head+tail cap: a flood of output cannot exhaust the parent's memory;
- `unshare` namespaces when available (root with util-linux: the local runtime, not Lambda):
  no network device but a down loopback, a private pid namespace whose init takes every
  process down with it (a double-forked `setsid` child cannot outlive the run), a private
  /proc where no outside process exists, every mount read-only except the run's own
  directories, and the command run as an unprivileged user with no capabilities;
- a Python guard (`sitecustomize` audit hook) in every Python child: stops the run at a socket,
  a read of any `environ` file under /proc, a spawned process, and (in test runs) a write of a
  source or configuration file outside its scratch directory (so a fix cannot rewrite
  the tests, conftest.py, pytest's configuration or bytecode while they run). It ends the process at once (`GUARD_EXIT`) rather than raise: an
  exception can be caught, and code that caught the denial could go on to pass, or use the
  denial to tell a test run from production. Audit hooks are not a security boundary
  (`python -S`, ctypes, `_posixsubprocess` get past them); they only make the common case fail
  early and visibly. Where there are no namespaces (Lambda), the boundary is the runner
  function itself: its own microVM per tenant, a role that may only write logs, and a VPC
  with no route out.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_MIB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    # Sized for the QA Lambda (180 s, 1024 MB): a validation makes up to five runs, and the
    # child's memory must leave room for the parent's.
    wall_seconds: float = 30.0
    cpu_seconds: int = 20
    memory_bytes: int = 512 * _MIB  # address space; a pytest run needs ~100-200 MiB of it
    file_size_bytes: int = 16 * _MIB
    max_processes: int = 64  # per user; not enforced for root
    output_bytes: int = 64 * 1024  # kept per stream: head + tail
    allow_subprocess: bool = False


@dataclass(frozen=True)
class SandboxRun:
    command: list[str]
    exit_code: int
    duration_ms: float
    stdout_excerpt: str
    stderr_excerpt: str
    timed_out: bool
    killed_reason: str | None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


# The exit code of a run the guard stopped (pytest's own codes are 0-5; signals are 128+N).
GUARD_EXIT = 86
GUARD_MARK = "selfheal sandbox stopped the run:"

GUARD_SOURCE = '''\
"""Selfheal sandbox guard, loaded by every Python child through sitecustomize."""
import os as _os
import socket as _socket
import sys as _sys

# The stderr the runner reads, kept before pytest captures fd 2 for each test.
_REPORT_FD = _os.dup(2)

_ALLOW_SPAWN = _os.environ.get("SELFHEAL_SANDBOX_ALLOW_SPAWN") == "1"
_SPAWN_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn"}
_NET_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"}


def _is_environ(path):
    # Any file named "environ" (also via symlinks or a dir_fd): /proc/<pid>/environ of the parent
    # holds the credentials this child's scrubbed environment does not.
    try:
        path = _os.fsdecode(path)
    except TypeError:
        return False
    return _os.path.basename(path) == "environ" or _os.path.basename(_os.path.realpath(path)) == "environ"


# With SELFHEAL_SANDBOX_SCRATCH set (test runs, not the compile step), no source or configuration
# file may be written, replaced, linked, truncated or removed outside that directory, and no
# directory of the project's tree renamed, linked or removed: a fix must not rewrite tests,
# conftest.py, pytest's configuration or bytecode while the tests run, nor swap tests/ for a copy
# of its own. (Directories a test creates may come and go.) Paths relative to a directory
# descriptor are resolved through it; `open` does not report its dir_fd, which namespaces cover.
_SCRATCH = _os.environ.get("SELFHEAL_SANDBOX_SCRATCH")
_SCRATCH = _os.path.realpath(_SCRATCH) + _os.sep if _SCRATCH else None
_PROTECTED = (".py", ".pyc", ".pth", ".toml", ".ini", ".cfg")
_WRITES = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _os.O_APPEND
# event -> (index of a path, index of the directory descriptor it is relative to, or None)
_CHANGE_EVENTS = {"os.rename": ((0, 2), (1, 3)), "os.link": ((1, 3),), "os.symlink": ((1, 2),),
                  "os.truncate": ((0, None),), "os.remove": ((0, 1),), "os.rmdir": ((0, 1),)}


def _tree_dirs():
    found = set()
    for top, dirs, _files in _os.walk("."):
        real = _os.path.realpath(top)
        if not (real + _os.sep).startswith(_SCRATCH):
            st = _os.stat(top)
            found.add((st.st_dev, st.st_ino))
    return found


_TREE_DIRS = _tree_dirs() if _SCRATCH else set()


def _resolved(path, dir_fd):
    if isinstance(dir_fd, int) and dir_fd >= 0 and not _os.path.isabs(path):
        return _os.path.join(_os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    return path


def _protected(path, dir_fd=None):
    # A descriptor (os.fdopen, pytest's capture) was opened by a path checked when it was opened.
    try:
        path = _resolved(_os.fsdecode(path), dir_fd)
    except (TypeError, OSError):
        return False
    real = _os.path.realpath(path)  # through symlinks, also one in the scratch dir that points out
    if (real + _os.sep).startswith(_SCRATCH):
        return False
    if path.lower().endswith(_PROTECTED) or real.lower().endswith(_PROTECTED):
        return True
    try:
        st = _os.stat(real)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in _TREE_DIRS


def _guard_writes(event, args):
    if event == "open" and len(args) > 2 and isinstance(args[2], int) and args[2] & _WRITES:
        paths = [(args[0], None)]
    else:
        paths = [(args[i], args[fd] if fd is not None and fd < len(args) else None)
                 for i, fd in _CHANGE_EVENTS.get(event, ()) if i < len(args)]
    for path, dir_fd in paths:
        if _protected(path, dir_fd):
            _stop(
                f"changing {_os.fsdecode(path)}: writing source or configuration files outside the scratch"
                " directory is blocked in the Selfheal sandbox"
            )


def _stop(reason):
    # Not an exception: a caller could catch it and carry on. The run ends here, visibly.
    try:
        _os.write(_REPORT_FD, f"\\n{GUARD_MARK} {reason}\\n".encode("utf-8", "replace"))
    finally:
        _os._exit({GUARD_EXIT})


def _guard(event, args):
    if event == "socket.__new__" and args[1] != _socket.AF_UNIX:
        _stop("network access is blocked in the Selfheal sandbox")
    if event in _NET_EVENTS:
        _stop(f"network access ({event}) is blocked in the Selfheal sandbox")
    if event == "open" and args and isinstance(args[0], (str, bytes)) and _is_environ(args[0]):
        _stop("reading process environments is blocked in the Selfheal sandbox")
    if event in _SPAWN_EVENTS and not _ALLOW_SPAWN:
        _stop(f"starting processes ({event}) is blocked in the Selfheal sandbox")
    if _SCRATCH:
        _guard_writes(event, args)


_sys.addaudithook(_guard)
'''.replace("{GUARD_EXIT}", str(GUARD_EXIT)).replace("{GUARD_MARK}", GUARD_MARK)

NOBODY = 65534
# Runs as the init of the new pid namespace (so not `exec`: init ignores SIGXCPU and friends;
# the shell runs the command as its child and exits with its status, which kills the rest).
# Arguments: the writable directories, "--", the command. Every mount is made read-only, then
# each writable directory is bound read-write over itself; if any other visible mount is still
# writable (e.g. a path the loop could not name) nothing runs. Then the command runs as nobody
# with no capabilities (it cannot remount anything back).
_NAMESPACE_INIT = r"""
for m in $(awk '{print $5}' /proc/self/mountinfo); do mount -o remount,bind,ro "$m" 2>/dev/null; done
writable=" "
while [ "$1" != "--" ]; do
  mount --bind "$1" "$1" && mount -o remount,bind,rw "$1" || { echo "cannot bind $1" >&2; exit 125; }
  writable="$writable$1 "
  shift
done
shift
for m in $(awk '{id[NR]=$1; parent[NR]=$2; at[NR]=$5; opts[NR]=$6}
    END {for (i = 1; i <= NR; i++) {hidden = 0
         for (j = 1; j <= NR; j++) if (at[j] == at[i] && parent[j] == id[i]) hidden = 1
         if (!hidden && opts[i] ~ /(^|,)rw(,|$)/) print at[i]}}' /proc/self/mountinfo); do
  case "$writable" in *" $m "*) ;; *) echo "selfheal sandbox: $m stays writable; not running" >&2; exit 125;; esac
done
cd "$PWD" || exit 125  # the working directory as seen through the new (writable) mount
setpriv --reuid=65534 --regid=65534 --clear-groups --bounding-set=-all --inh-caps=-all --no-new-privs "$@"
exit $?
"""
_UNSHARE = ("unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts")


@functools.cache
def namespace_prefix() -> tuple[str, ...]:
    """The `unshare` prefix when the full set of namespaces works here, or () (Lambda, containers)."""
    prefix = (*_UNSHARE, "/bin/sh", "-c", _NAMESPACE_INIT, "sh")
    try:
        with tempfile.TemporaryDirectory(prefix="selfheal-probe-") as probe_dir:
            os.chown(probe_dir, NOBODY, NOBODY)
            probe = subprocess.run(
                [*prefix, probe_dir, "--", "/bin/sh", "-c", f"touch {probe_dir}/ok"],
                capture_output=True,
                timeout=10,
                check=False,
            )
            worked = probe.returncode == 0 and (Path(probe_dir) / "ok").exists()
    except (OSError, subprocess.SubprocessError):
        return ()
    return prefix if worked else ()


def isolation_mode() -> str:
    """`namespaces` (unshare works), `microvm` (a real Lambda environment) or `none`.

    The local runtime sets SELFHEAL_LOCAL_FUNCTION_ARN in its workers, which also carry
    AWS_LAMBDA_FUNCTION_NAME: a local worker is not a microVM.
    """
    if namespace_prefix():
        return "namespaces"
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and not os.environ.get("SELFHEAL_LOCAL_FUNCTION_ARN"):
        return "microvm"
    return "none"


def _child_env(guard_dir: Path, tmp_dir: Path, allow_subprocess: bool, protect_sources: bool) -> dict[str, str]:
    """Built from scratch, never copied: nothing AWS_*, no keys, secrets or tokens."""
    python_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{python_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_dir),  # not the working directory: `expanduser('~') == cwd` would tell a run
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONPATH": os.pathsep.join([str(guard_dir), *_support_paths()]),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # only pytest's own plugins, nothing installed beside it
        "TMPDIR": str(tmp_dir),
    }
    if allow_subprocess:
        env["SELFHEAL_SANDBOX_ALLOW_SPAWN"] = "1"
    if protect_sources:
        env["SELFHEAL_SANDBOX_SCRATCH"] = str(tmp_dir)
    return env


@functools.cache
def _support_paths() -> tuple[str, ...]:
    # In Lambda pytest lives in a layer that the runtime puts on PYTHONPATH, which the
    # scrubbed environment drops; hand the child exactly the directory that holds it.
    import importlib.util

    spec = importlib.util.find_spec("pytest")
    if spec is None or spec.origin is None:
        return ()
    return (str(Path(spec.origin).parent.parent),)


def _limit_child(limits: SandboxLimits) -> None:
    """Runs in the child between fork and exec: only async-signal-safe-ish setrlimit calls."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_bytes, limits.file_size_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class _CappedReader(threading.Thread):
    """Drains a pipe keeping at most `cap` bytes: the first half and the latest half."""

    def __init__(self, stream: IO[bytes], cap: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.half = stream, max(cap // 2, 1)
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def run(self) -> None:
        while chunk := self.stream.read1(65536):  # type: ignore[attr-defined]
            self.total += len(chunk)
            room = self.half - len(self.head)
            self.head += chunk[:room]
            self.tail += chunk[max(room, 0) :]
            del self.tail[: max(len(self.tail) - self.half, 0)]

    def text(self) -> str:
        omitted = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {omitted} bytes omitted ...]\n".encode() if omitted else b""
        return (bytes(self.head) + middle + bytes(self.tail)).decode("utf-8", errors="replace")


def run_in_sandbox(
    workdir: Path,
    command: Sequence[str],
    limits: SandboxLimits,
    *,
    writable: Sequence[Path] = (),
    protect_sources: bool = True,
) -> SandboxRun:
    """Run `command` in `workdir` under every layer above; never raises for what the child does.

    `protect_sources`: the guard refuses to write .py/.pyc/.pth/.toml/.ini/.cfg files anywhere
    but its scratch directory beside `workdir` (off only for the compile step, which writes the
    tree's bytecode).

    With namespaces only `workdir` and `writable` can be written to, by the unprivileged
    user they are handed to; their parent directories must be traversable by it.
    """
    workdir = Path(workdir).resolve()
    # Beside the project, not in it: a fix could tell a run from production by a `.tmp` next to it.
    tmp_dir = Path(tempfile.mkdtemp(prefix="scratch-", dir=workdir.parent))
    prefix = namespace_prefix()
    bound = [workdir, tmp_dir, *(Path(p).resolve() for p in writable)]
    try:
        return _sandboxed(command, workdir, tmp_dir, limits, prefix, bound, protect_sources)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _sandboxed(
    command: Sequence[str],
    workdir: Path,
    tmp_dir: Path,
    limits: SandboxLimits,
    prefix: tuple[str, ...],
    bound: list[Path],
    protect_sources: bool,
) -> SandboxRun:
    if prefix and os.geteuid() == 0:
        for path in bound:
            _hand_over(path)
    with tempfile.TemporaryDirectory(prefix="selfheal-guard-") as guard:
        guard_dir = Path(guard)
        guard_dir.chmod(0o755)  # readable by the unprivileged user, writable by nobody but us
        (guard_dir / "sitecustomize.py").write_text(GUARD_SOURCE)
        argv = [*prefix, *(str(p) for p in bound), "--", *command] if prefix else list(command)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=_child_env(guard_dir, tmp_dir, limits.allow_subprocess, protect_sources),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # own process group, killed as a whole
                preexec_fn=functools.partial(_limit_child, limits),  # only setrlimit calls: safe enough
                close_fds=True,
            )
        except OSError as exc:
            return SandboxRun(list(command), 127, 0.0, "", f"cannot start: {exc}", False, "not started")
        readers = [_CappedReader(proc.stdout, limits.output_bytes), _CappedReader(proc.stderr, limits.output_bytes)]  # type: ignore[arg-type]
        for reader in readers:
            reader.start()
        timed_out = False
        try:
            proc.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc.pid)  # also reaps background processes a test left behind
        exit_code = proc.wait()
        duration_ms = (time.monotonic() - started) * 1000
        for reader in readers:
            # A grandchild that escaped the group may hold a pipe open; do not wait on it forever.
            reader.join(timeout=2)
        stdout, stderr = readers[0].text(), readers[1].text()
    return SandboxRun(
        list(command),
        exit_code,
        round(duration_ms, 1),
        stdout,
        stderr,
        timed_out,
        _killed_reason(exit_code, timed_out, stderr, limits),
    )


def _hand_over(root: Path) -> None:
    """Give a writable directory (and everything in it) to the unprivileged user."""
    os.chown(root, NOBODY, NOBODY)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), NOBODY, NOBODY, follow_symlinks=False)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, signal.SIGKILL)


def _killed_reason(exit_code: int, timed_out: bool, stderr: str, limits: SandboxLimits) -> str | None:
    if timed_out:
        return f"wall-clock timeout ({limits.wall_seconds:g}s)"
    if exit_code == GUARD_EXIT:
        said = [line for line in stderr.splitlines() if line.startswith(GUARD_MARK)]
        return (said[-1] if said else f"{GUARD_MARK} exit code {GUARD_EXIT}")[:300]
    # `unshare --fork` exits with 128+N when its child dies of signal N.
    signum = -exit_code if exit_code < 0 else exit_code - 128 if exit_code > 128 else 0
    if signum in (signal.SIGXCPU, signal.SIGKILL) and exit_code != 0:
        return f"cpu time limit ({limits.cpu_seconds}s)" if signum == signal.SIGXCPU else "killed (SIGKILL)"
    if signum == signal.SIGXFSZ:
        return f"file size limit ({limits.file_size_bytes} bytes)"
    if exit_code != 0 and "MemoryError" in stderr[-4000:]:
        return f"memory limit ({limits.memory_bytes // _MIB} MiB)"
    if signum == signal.SIGSEGV:
        return "crashed (SIGSEGV; possibly the memory limit)"
    return None
