"""Start, stop and find the local runtime (`selfheal local up|down|status`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfheal.ops.target import default_state_dir, find_running, pid_alive, project_root

from .assembly import DEFAULT_APP, Assembly, synthesize
from .runtime import LocalRuntime, RuntimeOptions


class RuntimeError_(RuntimeError):  # noqa: N801 - distinct from the builtin, same meaning
    pass


class PortInUse(RuntimeError_):
    """`local up --detach` on a port another process holds (a usage error, as in the foreground)."""


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def prepare_assembly(
    state_dir: Path,
    *,
    assembly_dir: Path | None,
    app: str,
    context: dict[str, str],
    endpoint: str,
    progress: Callable[[str], Any] | None = None,
) -> Assembly:
    if assembly_dir is None:
        if progress:
            progress("synthesizing the CDK app (bundling skipped)")
        assembly_dir = synthesize(state_dir / "cdk.out", app=app, context=context)
    return Assembly.load(assembly_dir, endpoint=endpoint)


def run_foreground(
    options: RuntimeOptions,
    *,
    app: str = DEFAULT_APP,
    assembly_dir: Path | None = None,
    context: dict[str, str] | None = None,
    echo: Callable[[str], None] = print,
    on_ready: Callable[[LocalRuntime], None] | None = None,
) -> int:
    """`selfheal local up`: runs until Ctrl-C / SIGTERM, then stops every worker."""
    if not port_free(options.host, options.port):
        echo(
            f"error: {options.host}:{options.port} is in use (another `selfheal local up`?). Use --port or `selfheal local down`."
        )
        return 2
    state_dir = Path(options.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    endpoint = f"http://{options.host}:{options.port}"
    started = time.time()
    assembly = prepare_assembly(
        state_dir,
        assembly_dir=assembly_dir,
        app=app,
        context=context or {},
        endpoint=endpoint,
        progress=(lambda m: echo(f"... {m}")) if not options.quiet else None,
    )
    runtime = LocalRuntime(assembly, options, echo=echo)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        runtime.start()
        (state_dir / "runtime.pid").write_text(str(os.getpid()))
        if not options.quiet:
            echo(summary(runtime, time.time() - started))
        if on_ready:
            on_ready(runtime)
        while not stop.wait(0.5):
            pass
        if not options.quiet:
            echo("stopping: workers, schedules, alarms, emulator ...")
    finally:
        runtime.stop()
        with contextlib.suppress(FileNotFoundError):
            (state_dir / "runtime.pid").unlink()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not options.quiet:
        echo("stopped.")
    return 0


def summary(runtime: LocalRuntime, elapsed: float) -> str:
    report = runtime.report.public()
    lines = [
        f"Selfheal local runtime ready on {runtime.endpoint} in {elapsed:.1f}s (stacks: {', '.join(s.name for s in runtime.assembly.stacks)})"
    ]
    for rtype, n in sorted(report["created_by_type"].items()):
        lines.append(f"  {n:>3} x {rtype}")
    lines.append(f"  {len(runtime.pools):>3} x AWS::Lambda::Function (worker processes)")
    if report["skipped"]:
        kinds = sorted({s["type"] for s in report["skipped"]})
        lines.append(
            f"  skipped (no local behaviour): {len(report['skipped'])} resources of {len(kinds)} types; `selfheal local status --json` lists them"
        )
    for failed in report["failed"]:
        lines.append(f"  FAILED {failed['type']} {failed['physical_id']}: {failed['error']}")
    lines.append(
        f"  try: aws --endpoint-url {runtime.endpoint} events put-events --entries file://tests/events/put_events_issue_reported.json"
    )
    lines.append("  Ctrl-C stops everything.")
    return "\n".join(lines)


def start_detached(
    options: RuntimeOptions,
    *,
    app: str,
    assembly_dir: Path | None,
    context: dict[str, str],
    timeout: float = 120.0,
    extra_args: list[str] | None = None,
) -> dict[str, Any]:
    state_dir = Path(options.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    running = find_running(state_dir)
    if running:
        return running
    if not port_free(options.host, options.port):
        raise PortInUse(f"{options.host}:{options.port} is in use; use --port or `selfheal local down`")
    cmd = [
        sys.executable,
        "-m",
        "selfheal",
        "local",
        "up",
        "--port",
        str(options.port),
        "--host",
        options.host,
        "--state-dir",
        str(state_dir),
        "--app",
        app,
        "--concurrency",
        str(options.concurrency),
        "--schedule-speedup",
        str(options.schedule_speedup),
        "--alarm-interval",
        str(options.alarm_interval_s),
    ]
    if assembly_dir:
        cmd += ["--assembly", str(assembly_dir)]
    for key, value in context.items():
        cmd += ["-c", f"{key}={value}"]
    cmd += extra_args or []
    log = (state_dir / "runtime.log").open("w")
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=str(project_root()),
    )
    (state_dir / "runtime.pid").write_text(str(proc.pid))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError_(
                f"the runtime exited with code {proc.returncode}; see {state_dir / 'runtime.log'}:\n"
                + (state_dir / "runtime.log").read_text()[-3000:]
            )
        state = find_running(state_dir)
        if state:
            return state
        time.sleep(0.3)
    stop_detached(state_dir)
    raise RuntimeError_(f"the runtime did not become ready in {timeout:.0f}s; see {state_dir / 'runtime.log'}")


def stop_detached(state_dir: Path | None = None, timeout: float = 20.0) -> bool:
    """Stop a background runtime by its pid file; True if one was running."""
    state_dir = state_dir or default_state_dir()
    pid_file = state_dir / "runtime.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip() or 0)
    if not pid or not pid_alive(pid):
        pid_file.unlink(missing_ok=True)
        (state_dir / "runtime.json").unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline and pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    (state_dir / "runtime.json").unlink(missing_ok=True)
    return True
