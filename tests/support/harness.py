"""A local runtime in a child process, for tests and benchmarks.

with RuntimeProcess(assembly=path, state_dir=tmp) as rt:
    rt.aws("events", "put-events", "--entries", "file://issue.json")   # the real AWS CLI
    rt.control("idle", {"timeout": 60})
assert not rt.leftover  # no worker survived the stop
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from selfheal.ops.target import control


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class RuntimeProcess:
    def __init__(
        self,
        *,
        state_dir: Path,
        assembly: Path | None = None,
        app: str | None = None,
        context: dict[str, str] | None = None,
        port: int | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "selfheal",
            "local",
            "up",
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
        ]
        if assembly:
            cmd += ["--assembly", str(assembly)]
        if app:
            cmd += ["--app", app]
        for k, v in (context or {}).items():
            cmd += ["-c", f"{k}={v}"]
        self.cmd = cmd + list(extra_args or [])
        self.env = {**os.environ, **(env or {})}
        for key in ("AWS_ENDPOINT_URL",):
            self.env.pop(key, None)
        self.proc: subprocess.Popen[str] | None = None
        self.seen_pids: set[int] = set()
        self.leftover: list[int] = []
        self.output = ""

    def start(self, timeout: float = 120.0) -> RuntimeProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.state_dir / "harness.log").open("w")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, text=True, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runtime exited ({self.proc.returncode}):\n{self.log()[-4000:]}")
            with contextlib.suppress(Exception):
                self.control("status", timeout=2)
                return self
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"runtime not ready in {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        path = self.state_dir / "harness.log"
        return path.read_text() if path.exists() else ""

    def control(self, route: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        if self.proc is not None:
            self.seen_pids.update(descendants(self.proc.pid))
        return control(self.endpoint, route, body, timeout=timeout)

    def idle(self, timeout: float = 60.0, quiet: float = 1.0) -> bool:
        return bool(self.control("idle", {"timeout": timeout, "quiet": quiet}, timeout=timeout + 10)["idle"])

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="ASIALOCALTEST000000",
            aws_secret_access_key="x",
        )

    def listen(self, name: str, pattern: dict[str, Any], bus: str = "default") -> Any:
        """A rule matching `pattern` that writes what it matches to a log group (a Logs target,
        as the template's audit rule has); returns a function reading the events received."""
        logs, events = self.client("logs"), self.client("events")
        group = f"/selfheal/tests/{name}"
        logs.create_log_group(logGroupName=group)
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
        arn = f"arn:aws:logs:us-east-1:123456789012:log-group:{group}"
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "log", "Arn": arn}])

        def received() -> list[dict[str, Any]]:
            found = logs.filter_log_events(logGroupName=group).get("events", [])
            return [json.loads(e["message"]) for e in found]

        return received

    def aws(self, *args: str, check: bool = True) -> dict[str, Any]:
        """The stock AWS CLI (awscli package) against the endpoint; parsed JSON output."""
        env = {
            **self.env,
            "AWS_ACCESS_KEY_ID": "ASIALOCALAWSCLI0000",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_PAGER": "",
        }
        env.pop("AWS_PROFILE", None)
        proc = subprocess.run(
            [sys.executable, "-m", "awscli", "--endpoint-url", self.endpoint, "--output", "json", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"aws {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def selfheal(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "AWS_ACCESS_KEY_ID": "ASIALOCALOPERATOR00", "AWS_SECRET_ACCESS_KEY": "x"}
        proc = subprocess.run(
            [sys.executable, "-m", "selfheal", *args, "--endpoint-url", self.endpoint],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"selfheal {' '.join(args)} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
        return proc

    def stop(self, timeout: float = 30.0) -> list[int]:
        """SIGINT (like Ctrl-C), wait; returns processes that survived (should be none)."""
        if self.proc is None:
            return []
        self.seen_pids.update(descendants(self.proc.pid))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        deadline = time.time() + 5
        while time.time() < deadline and any(alive(p) for p in self.seen_pids):
            time.sleep(0.1)
        self.leftover = [p for p in self.seen_pids if alive(p)]
        for pid in self.leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self._log.close()
        self.output = self.log()
        return self.leftover

    def __enter__(self) -> RuntimeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
