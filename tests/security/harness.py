"""Hostile code and a runner process to run it in, for the security tests.

`run_in_runner_process` runs the QA runner the way Lambda (or the local runtime) does: a
separate process whose environment carries credentials (`CANARY_ENV`), so an attack that
reads its parent's environment has something real to find. The hostile snippets below use
only what a fix's test file could: ctypes, `_posixsubprocess`, `/proc`; each prints what it
got, and the test then looks for the canary in everything that came back (and at a socket it
listens on, and at the file system).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from selfheal_core.qa_run import RunBundle, RunReply, RunStep

ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary-" + "9f2c" * 8  # built at run time: no credential-shaped literal in the repository
CANARY_ENV = {
    "AWS_ACCESS_KEY_ID": "ASIA" + "CANARY" * 2 + "XXXX",
    "AWS_SECRET_ACCESS_KEY": CANARY,
    "AWS_SESSION_TOKEN": CANARY + "-token",
}

# Native helpers: no Python audit event fires for any of these calls.
PRELUDE = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]


def native_read(path):
    fd = libc.open(path.encode(), 0)
    if fd < 0:
        return None
    buf = ctypes.create_string_buffer(1 << 16)
    n = libc.read(fd, buf, 1 << 16)
    libc.close(fd)
    return buf.raw[:max(n, 0)]


def native_write(path, data=b"pwned"):
    fd = libc.open(path.encode(), 0o1 | 0o100 | 0o1000, 0o644)  # O_WRONLY|O_CREAT|O_TRUNC
    if fd < 0:
        return False
    libc.write(fd, data, len(data))
    libc.close(fd)
    return True


def all_environs():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            data = native_read(f"/proc/{pid}/environ")
            if data:
                found.append(data.decode(errors="replace"))
    return found


def fork_exec(argv):
    import _posixsubprocess
    args = [a.encode() for a in argv]
    errpipe_read, errpipe_write = os.pipe()
    common = (args, [args[0]], True, (), None, None, -1, -1, -1, -1, -1, -1,
              errpipe_read, errpipe_write, False, False, -1, None, None, None, -1, None)
    try:
        pid = _posixsubprocess.fork_exec(*common, False)
    except TypeError:
        pid = _posixsubprocess.fork_exec(*common)
    os.close(errpipe_write)
    os.waitpid(pid, 0)
"""


def hostile_test(body: str) -> str:
    """A test module whose one test runs `body` (indented) and then fails, so pytest shows its output."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return f"{PRELUDE}\n\ndef test_hostile():\n{indented}\n    assert False, 'shown'\n"


def bundle_for(test_body: str, *, files: dict[str, str] | None = None) -> RunBundle:
    return RunBundle(
        files={"app.py": "VALUE = 1\n", **(files or {}), "test_hostile.py": hostile_test(test_body)},
        steps=[RunStep(check="new_tests", argv=["python", "-m", "pytest", "-q", "test_hostile.py"], junit=True)],
    )


_RUNNER_MAIN = """
import json, sys
from lambdas.qa_runner import logic, sandbox
if sys.argv[1] == "guard-only":  # what the runner has in Lambda, without the microVM around it
    sandbox.namespace_prefix = lambda: ()
    logic.isolation_mode = lambda: "none"
print(json.dumps(logic.run_bundle(json.load(sys.stdin))))
"""


def run_in_runner_process(
    bundle: RunBundle, *, guard_only: bool = False, env: dict[str, str] | None = None
) -> RunReply:
    """The runner as its own process, with credentials in its environment, like a Lambda worker."""
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "common" / "python")]),
        **CANARY_ENV,
        **(env or {}),
    }
    if guard_only:
        child_env["SELFHEAL_ALLOW_UNISOLATED_QA"] = "true"
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER_MAIN, "guard-only" if guard_only else "normal"],
        input=json.dumps(bundle.model_dump(mode="json")),
        capture_output=True,
        text=True,
        env=child_env,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return RunReply.model_validate_json(proc.stdout.strip().splitlines()[-1])


def everything_returned(reply: RunReply) -> str:
    return json.dumps(reply.model_dump(mode="json"))


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds `marker` (a child that outlived its run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
