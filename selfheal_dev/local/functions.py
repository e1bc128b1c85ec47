"""Lambda functions of the template, run as worker processes (the emulated Lambda platform).

Each function gets a pool of worker processes (warm containers): up to its reserved
concurrency, or the runtime's default. A worker is started on first use (a cold start),
kept for later invocations, and replaced after a timeout or a crash. Its environment is the
function's resolved `Environment.Variables` plus what the Lambda platform sets, with the
emulator endpoint and per-function fake credentials (the API calls it makes are counted
per function at the endpoint). PYTHONPATH is the code asset plus each layer's `python/`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .assembly import REGION, Assembly, Resource

BOOTSTRAP = Path(__file__).resolve().parent / "_bootstrap" / "lambda_bootstrap.py"
# Where the Engineer reaches Claude, passed from the user's shell when set (a gateway, a Bedrock-compatible fake).
ENGINEER_ENDPOINT_VARS = ("ANTHROPIC_BASE_URL", "ANTHROPIC_BEDROCK_BASE_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
SECRET_KEY = "selfheal-local-secret"  # noqa: S105 - the emulator accepts any credentials
# Worker processes per function at most, whatever concurrency is reserved (a laptop, not a fleet).
MAX_LOCAL_WORKERS = 16
SLOT_POLL_S = 0.5  # how soon an idle serving thread notices a lower concurrency


@dataclass
class FunctionSpec:
    name: str
    arn: str
    logical_key: str
    handler: str
    timeout_s: float
    memory_mb: int
    environment: dict[str, str]
    code_dir: Path
    layer_dirs: list[Path]
    log_group: str
    access_key: str
    reserved_concurrency: int | None = None
    role_arn: str = ""  # the principal its calls are made as (the bus policy checks it)
    runtime: str = "python3.x"
    # "PER_TENANT": an execution environment only ever serves one tenant id (Lambda tenant isolation).
    tenant_isolation: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arn": self.arn,
            "handler": self.handler,
            "timeout_s": self.timeout_s,
            "memory_mb": self.memory_mb,
            "code_dir": str(self.code_dir),
            "layer_dirs": [str(p) for p in self.layer_dirs],
            "log_group": self.log_group,
        }


def access_key_for(function_name: str) -> str:
    # Looks like an access key id; unique per function so the endpoint can attribute calls.
    digest = uuid.uuid5(uuid.NAMESPACE_URL, function_name).hex.upper()
    return f"ASIALOCAL{digest[:11]}"


def function_specs(assembly: Assembly) -> list[FunctionSpec]:
    layers = {r.physical_id: r for r in assembly.of_type("AWS::Lambda::LayerVersion")}
    specs = []
    for res in assembly.of_type("AWS::Lambda::Function"):
        specs.append(_spec(assembly, res, layers))
    return specs


def _spec(assembly: Assembly, res: Resource, layers: dict[str, Resource]) -> FunctionSpec:
    p = res.properties
    code_dir = assembly.asset_dir(res)
    if code_dir is None:
        code = p.get("Code", {})
        if "ZipFile" in code:  # inline code: write it where the handler can import it
            code_dir = assembly.directory / f"inline.{res.logical_id}"
            code_dir.mkdir(exist_ok=True)
            module = p.get("Handler", "index.handler").rsplit(".", 1)[0]
            (code_dir / f"{module}.py").write_text(code["ZipFile"])
        else:
            raise RuntimeError(f"{res.physical_id}: cannot find the code asset (synthesize with asset metadata)")
    layer_dirs = []
    for layer_arn in p.get("Layers", []):
        layer = layers.get(layer_arn)
        if layer is None:
            continue  # a layer from outside the app (e.g. a public one): nothing to mount locally
        layer_dir = assembly.asset_dir(layer)
        if layer_dir is not None:
            layer_dirs.append(layer_dir / "python" if (layer_dir / "python").is_dir() else layer_dir)
    log_group = p.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{res.physical_id}"
    return FunctionSpec(
        name=res.physical_id,
        arn=res.attributes["Arn"],
        logical_key=res.key,
        handler=p.get("Handler", "index.handler"),
        timeout_s=float(p.get("Timeout", 3)),
        memory_mb=int(p.get("MemorySize", 128)),
        environment={k: str(v) for k, v in p.get("Environment", {}).get("Variables", {}).items()},
        code_dir=code_dir,
        layer_dirs=layer_dirs,
        log_group=str(log_group),
        access_key=access_key_for(res.physical_id),
        role_arn=str(p.get("Role", "")),
        reserved_concurrency=p.get("ReservedConcurrentExecutions"),
        runtime=str(p.get("Runtime", "python3.x")),
        tenant_isolation=(p.get("TenancyConfig") or {}).get("TenantIsolationMode"),
    )


try:  # loaded once in the parent: the child after fork only makes the syscall
    _LIBC: Any = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _die_with_parent() -> None:
    """Own process group (Ctrl-C is the runtime's to handle; the group is killed as a whole),
    and killed by the kernel if the runtime dies without cleaning up (Linux PR_SET_PDEATHSIG)."""
    os.setpgrp()
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)


class _Spawner:
    """Starts worker processes from one thread that lives as long as the runtime.

    Linux sends PR_SET_PDEATHSIG when the *thread* that started the child exits, not the process:
    started from a pool's serving thread, a worker was SIGKILLed when that thread retired (a
    lower reserved concurrency), even while another thread was using it.
    """

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, start: Callable[[], Any]) -> Any:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="worker-spawner", daemon=True)
                self._thread.start()
        answer: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
        self._requests.put((start, answer))
        ok, value = answer.get()
        if not ok:
            raise value
        return value

    def _serve(self) -> None:
        while True:
            start, answer = self._requests.get()
            try:
                answer.put((True, start()))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
                answer.put((False, exc))


_SPAWNER = _Spawner()


@dataclass
class InvocationResult:
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    init_ms: float | None = None
    max_memory_mb: int = 0
    request_id: str = ""
    timed_out: bool = False
    timeout_s: float | None = None  # the limit this invocation ran under (the function's may change since)
    log_stream: str = ""  # the worker's stream: where Lambda writes the invocation's REPORT line


class Worker:
    """One warm 'container' of a function."""

    def __init__(
        self,
        spec: FunctionSpec,
        endpoint: str,
        on_output: Callable[[FunctionSpec, str, str], None],
        generation: int = 0,
    ) -> None:
        self.spec = spec
        self.endpoint = endpoint
        self.generation = generation  # the function configuration this environment was started with
        self.on_output = on_output
        self.log_stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{secrets.token_hex(16)}"
        read_fd, write_fd = os.pipe()
        env = self._environment()
        env["SELFHEAL_REPLY_FD"] = str(write_fd)
        # SELFHEAL_REPLY_FD in the child is the reply channel; stdout/stderr are the function logs.
        try:
            self.proc: subprocess.Popen[str] = _SPAWNER.run(
                lambda: subprocess.Popen(
                    [sys.executable, "-u", str(BOOTSTRAP)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    cwd=str(spec.code_dir),
                    pass_fds=(write_fd,),
                    preexec_fn=_die_with_parent,
                    text=True,
                    bufsize=1,
                )
            )
        finally:
            os.close(write_fd)
        self.replies = os.fdopen(read_fd, "r", buffering=1)
        # One reader for the worker's life: a thread started per reply cost a thread start (and,
        # on a busy machine, a scheduling round trip) on every invocation.
        self._reply_lines: queue.Queue[str] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr,), daemon=True),
            threading.Thread(target=self._read_replies, daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.ready: dict[str, Any] | None = None
        self.cold = True
        self.tenant_id: str | None = None  # set on first use when the function isolates tenants

    def _environment(self) -> dict[str, str]:
        spec = self.spec
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
        if spec.environment.get("AGENT_NAME") == "engineer":
            keep.update({k: os.environ[k] for k in ENGINEER_ENDPOINT_VARS if os.environ.get(k)})
        python_path = [str(spec.code_dir), *(str(p) for p in spec.layer_dirs)]
        return {
            **keep,
            **spec.environment,
            # What the Lambda platform sets for every function.
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            "TZ": ":UTC",
            "PYTHONPATH": os.pathsep.join(python_path),
            "PYTHONDONTWRITEBYTECODE": "1",
            # The emulator, and credentials that identify this function at the endpoint.
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": spec.access_key,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": f"selfheal-local-{spec.name}",
            "SELFHEAL_LOCAL_FUNCTION_ARN": spec.arn,
            # No X-Ray daemon locally: the Tracer stays a no-op.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_XRAY_SDK_ENABLED": "false",
        }

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.on_output(self.spec, self.log_stream, line.rstrip("\n"))

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        if self.ready is None:
            line = self._read_reply(timeout)
            if line is None:
                raise TimeoutError("init timed out")
            self.ready = json.loads(line)
        return self.ready

    def _read_replies(self) -> None:
        """Owns the reply pipe: reads it until the worker exits, then closes it (closing it from
        another thread would wait for this blocked read anyway)."""
        with contextlib.suppress(Exception):
            for line in self.replies:
                self._reply_lines.put(line)
        with contextlib.suppress(Exception):
            self.replies.close()
        self._reply_lines.put("")  # the worker exited

    def _read_reply(self, timeout: float) -> str | None:
        """The worker's next reply line; "" once it has exited, None if nothing came within `timeout`."""
        try:
            line = self._reply_lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if not line:
            self._reply_lines.put(line)  # and for any later read too
        return line

    def invoke(self, event: Any, timeout_s: float, request_id: str) -> InvocationResult:
        init_ms = None
        started = time.time()
        try:
            ready = self.wait_ready(max(timeout_s, 10.0))
        except TimeoutError:
            self.kill()
            return InvocationResult(
                False, error={"errorType": "Runtime.InitTimeout", "errorMessage": "init did not finish"}, timed_out=True
            )
        if self.cold:
            init_ms = float(ready.get("init_ms", 0))
        if ready.get("error"):
            self.kill()
            return InvocationResult(False, error=ready["error"], init_ms=init_ms, request_id=request_id)
        deadline_ms = (time.time() + timeout_s) * 1000
        request = {"id": request_id, "request_id": request_id, "event": event, "deadline_ms": deadline_ms}
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request, default=str) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.kill()
            return InvocationResult(
                False, error={"errorType": "Runtime.ExitError", "errorMessage": "worker exited"}, init_ms=init_ms
            )
        line = self._read_reply(timeout_s + 0.5)
        self.cold = False
        if line is None:
            self.kill()
            elapsed = time.time() - started
            return InvocationResult(
                False,
                error={"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {elapsed:.2f} seconds"},
                duration_ms=timeout_s * 1000,
                init_ms=init_ms,
                request_id=request_id,
                timed_out=True,
                timeout_s=timeout_s,
            )
        if not line:
            code = self.proc.poll()
            self.kill()
            return InvocationResult(
                False,
                error={"errorType": "Runtime.ExitError", "errorMessage": f"worker exited (code {code})"},
                init_ms=init_ms,
                request_id=request_id,
            )
        reply = json.loads(line)
        return InvocationResult(
            ok=bool(reply.get("ok")),
            result=reply.get("result"),
            error=reply.get("error"),
            duration_ms=float(reply.get("duration_ms", 0)),
            init_ms=init_ms,
            max_memory_mb=int(reply.get("max_memory_mb", 0)),
            request_id=request_id,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 2.0) -> None:
        with contextlib.suppress(Exception):
            if self.proc.stdin:
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        self.kill()

    def kill(self) -> None:
        """Stop the worker and anything it started (its process group)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(1.0)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2.0)


@dataclass
class Invocation:
    """One event for one function, with what the router needs to retry or dead-letter it."""

    event: dict[str, Any]
    source: str  # rule ARN, "direct", ...
    max_retries: int = 0
    max_age_s: float = 86_400.0
    dead_letter_arn: str | None = None
    target_arn: str = ""
    attempt: int = 0
    first_seen: float = field(default_factory=time.time)
    enqueued_at: float = field(default_factory=time.time)
    tenant_id: str | None = None
    # Synchronous (RequestResponse) invocations get their result here instead of the router.
    reply: queue.Queue[InvocationResult] | None = None


class FunctionPool:
    """Invocations of one function: a queue, up to `concurrency` warm workers.

    The function's configuration can change while it runs (the Lambda API of the local
    runtime): the timeout is read per invocation; a change of memory or environment bumps
    `generation`, so warm workers of the old configuration are retired and the next
    invocation starts a new one (as Lambda starts new execution environments); reserved
    concurrency resizes the pool (0 = throttled: nothing runs, async invocations wait).
    """

    def __init__(
        self,
        spec: FunctionSpec,
        endpoint: str,
        concurrency: int,
        on_output: Callable[[FunctionSpec, str, str], None],
        on_result: Callable[[FunctionSpec, Invocation, InvocationResult, float], None],
    ) -> None:
        self.spec = spec
        self.endpoint = endpoint
        self.concurrency = max(0, concurrency)
        self.on_output = on_output
        self.on_result = on_result
        self.queue: queue.Queue[Invocation | None] = queue.Queue()
        self.workers: list[Worker] = []
        self.idle: list[Worker] = []
        self.lock = threading.Lock()
        self.busy = 0
        self.generation = 0
        self.stats: dict[str, Any] = {
            "invocations": 0,
            "errors": 0,
            "timeouts": 0,
            "cold_starts": 0,
            "last_activity": None,
        }
        self._stopping = False
        self._slots: dict[int, threading.Thread] = {}
        with self.lock:
            self._fill_slots()

    @property
    def threads(self) -> list[threading.Thread]:
        with self.lock:
            return list(self._slots.values())

    def _fill_slots(self) -> None:
        """Called with the lock held: one serving thread per unit of concurrency (capped locally)."""
        for index in range(min(self.concurrency, MAX_LOCAL_WORKERS)):
            thread = self._slots.get(index)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(
                    target=self._loop, args=(index,), name=f"fn-{self.spec.name}-{index}", daemon=True
                )
                self._slots[index] = thread
                thread.start()

    def set_concurrency(self, concurrency: int) -> None:
        """New reserved concurrency: threads above it finish their invocation and leave."""
        with self.lock:
            self.concurrency = max(0, concurrency)
            self._fill_slots()

    def reconfigured(self) -> None:
        """The function's configuration changed: no warm worker of the old one serves again."""
        with self.lock:
            self.generation += 1
            stale, self.idle = self.idle, []
            for worker in stale:
                if worker in self.workers:
                    self.workers.remove(worker)
        for worker in stale:
            worker.stop(grace=0.5)

    def submit(self, invocation: Invocation) -> None:
        invocation.enqueued_at = time.time()
        self.queue.put(invocation)

    @property
    def pending(self) -> int:
        return self.queue.qsize() + self.busy

    def _retire(self, index: int) -> bool:
        with self.lock:
            if index < min(self.concurrency, MAX_LOCAL_WORKERS):
                return False
            if self._slots.get(index) is threading.current_thread():
                del self._slots[index]
            return True

    def _loop(self, index: int = 0) -> None:
        while True:
            if self._stopping or self._retire(index):
                break
            try:
                item = self.queue.get(timeout=SLOT_POLL_S)
            except queue.Empty:
                continue
            if item is None or self._stopping:
                break
            if self._retire(index):  # concurrency lowered while waiting: hand the item back
                self.queue.put(item)
                break
            with self.lock:
                self.busy += 1
                # Like Lambda: reuse an idle warm worker; start a new one (cold) only if none is free.
                # With tenant isolation a worker only ever serves the tenant it first served.
                worker = self._take_idle(item.tenant_id)
                generation = self.generation
            try:
                if worker is None or not worker.alive:
                    worker = Worker(self.spec, self.endpoint, self.on_output, generation)
                    worker.tenant_id = item.tenant_id
                    with self.lock:
                        self.workers.append(worker)
                        self.stats["cold_starts"] += 1
                request_id = str(uuid.uuid4())
                started = time.time()
                result = worker.invoke(item.event, self.spec.timeout_s, request_id)
                result.log_stream = worker.log_stream
                retired: Worker | None = None
                with self.lock:
                    self.stats["invocations"] += 1
                    self.stats["errors"] += 0 if result.ok else 1
                    self.stats["timeouts"] += 1 if result.timed_out else 0
                    self.stats["last_activity"] = datetime.now(UTC).isoformat(timespec="seconds")
                    if worker.alive and worker.generation == self.generation:
                        self.idle.append(worker)
                    elif worker in self.workers:
                        self.workers.remove(worker)
                        retired = worker if worker.alive else None
                if retired is not None:
                    retired.stop(grace=0.5)
                self.on_result(self.spec, item, result, started)
            except Exception as exc:  # noqa: BLE001 - the platform must keep serving
                self.on_output(self.spec, "-", f"[selfheal-local] platform error: {exc!r}")
            finally:
                with self.lock:
                    self.busy -= 1

    def _take_idle(self, tenant_id: str | None) -> Worker | None:
        """Called with the lock held."""
        for worker in reversed(self.idle):
            if worker.generation != self.generation:
                continue
            if self.spec.tenant_isolation != "PER_TENANT" or worker.tenant_id == tenant_id:
                self.idle.remove(worker)
                return worker
        if self.spec.tenant_isolation == "PER_TENANT" and len(self.idle) >= self.concurrency:
            self.idle.pop(0).stop(grace=0.5)  # an environment of an older tenant makes room
        return None

    def stop(self) -> None:
        self._stopping = True
        threads = self.threads
        for _ in threads:
            self.queue.put(None)
        with self.lock:
            workers = list(self.workers)
        for w in workers:
            w.stop(grace=1.0)
        for t in threads:
            t.join(timeout=3)
        for w in workers:
            w.kill()

    def pids(self) -> list[int]:
        with self.lock:
            return [w.proc.pid for w in self.workers if w.alive]
