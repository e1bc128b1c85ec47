"""The local runtime: moto in-process on 127.0.0.1, provisioned from the synthesized
templates, with the Lambda platform, EventBridge delivery and CloudWatch alarms emulated.

One process holds the emulator (a threaded werkzeug server over moto's backends), the
router, the alarm evaluator, the schedule clock and the worker pools. Because moto's
backends live in this process, the runtime writes platform data (EMF metrics, Lambda and
EventBridge metrics, logs, alarm events) straight into them: only the agents' own calls go
over HTTP, and those are counted per function at the endpoint.

Control endpoints live under `/_selfheal/` on the same port (status, notifications,
api-calls, invocations, idle, alarms/evaluate, schedules/fire, shutdown). Function URLs are
served under `/_selfheal/url/<url-id>/` (the stack output holds the full URL); PutEvents is
checked against the template's event bus policy (see authz.py).

The Lambda API (list/get/create functions, configuration, tags, concurrency, event invoke
config, invoke) is served from the template's functions, not by moto: see lambda_api.py.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import queue
import re
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from selfheal.output import one_line, printable

from . import lambda_revisions, moto_patches
from .alarms import AlarmEvaluator
from .assembly import ACCOUNT, REGION, Assembly
from .authz import (
    PLATFORM_PRINCIPAL,
    BusPolicy,
    FunctionUrl,
    client_principal,
    function_urls,
    local_caller,
    url_event,
    url_only_functions,
)
from .endpoints import engineer_endpoint
from .functions import FunctionPool, FunctionSpec, Invocation, InvocationResult, function_specs
from .lambda_api import LambdaControlPlane
from .metrics import Datum, MetricStore, install_get_metric_data_patch, parse_emf
from .provision import Provisioner, ProvisionReport
from .router import Router, Scheduler
from .subscriptions import SubscriptionRouter

PLATFORM_KEY = "ASIALOCALPLATFORM00"
CONTROL_PREFIX = "/_selfheal/"
FUNCTION_URL_PREFIX = "/_selfheal/url/"
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
# EventBridge refuses a PutEvents request whose entries add up to more than 256 KB. Sized here
# as the service documents it, independently of the product's own count (selfheal_core.bus).
PUT_EVENTS_MAX_BYTES = 256 * 1024
# CloudWatch writes the emulator completes as AWS does (`AlarmEvaluator.through_api`).
ALARM_WRITES = frozenset({"PutMetricAlarm", "PutCompositeAlarm", "SetAlarmState"})


@dataclass
class RuntimeOptions:
    host: str = "127.0.0.1"
    port: int = 4566
    state_dir: Path = Path(".selfheal")
    concurrency: int = 2  # workers per function unless the template reserves concurrency
    schedule_speedup: float = 1.0
    alarm_interval_s: float = 10.0
    sample_interval_s: float = 5.0
    retry_base_s: float = 0.2
    verbose: bool = False
    quiet: bool = False


class LocalRuntime:
    def __init__(self, assembly: Assembly, options: RuntimeOptions, echo: Callable[[str], None] = print) -> None:
        self.assembly = assembly
        self.options = options
        self.endpoint = f"http://{options.host}:{options.port}"
        echo_lock = threading.Lock()

        def locked_echo(line: str) -> None:
            with echo_lock:  # whole lines only: pool threads print concurrently
                echo(line)

        self.echo = locked_echo
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.pools: dict[str, FunctionPool] = {}
        self.specs: dict[str, FunctionSpec] = {}
        self.api_calls: Counter[tuple[str, str, str]] = Counter()
        self.api_call_ms: defaultdict[tuple[str, str, str], float] = defaultdict(float)  # ms moto spent serving them
        self.api_wait_ms: defaultdict[tuple[str, str, str], float] = defaultdict(float)  # ms they queued for the lock
        self.invocations: deque[dict[str, Any]] = deque(maxlen=50_000)
        self.notifications: list[dict[str, Any]] = []
        self.report = ProvisionReport()
        self.bus_policy = BusPolicy.from_assembly(assembly)
        self.function_urls: dict[str, FunctionUrl] = function_urls(assembly)
        self.url_only: frozenset[str] = url_only_functions(assembly)
        self.subscriptions: SubscriptionRouter | None = None
        self._log_buffer: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._log_lock = threading.Lock()
        self._origin = threading.local()
        self._stop = threading.Event()
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._sampler: threading.Thread | None = None
        self.metric_store: MetricStore
        self.lambda_api = LambdaControlPlane(self)
        self.router = Router(self, retry_base_s=options.retry_base_s)
        self.scheduler = Scheduler(self, self.router, speedup=options.schedule_speedup)
        self.alarms = AlarmEvaluator(self, interval_s=options.alarm_interval_s)
        self.stopped = threading.Event()
        self.ready = threading.Event()  # set once everything is provisioned and the pools run
        state = Path(options.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        (state / "logs").mkdir(exist_ok=True)
        self.state_dir = state
        self._notifications_file = state / "notifications.jsonl"
        self._notifications_file.write_text("")

    # ------------------------------------------------------------------ moto access
    def backend(self, service: str) -> Any:
        from moto.backends import get_backend

        return get_backend(service)[ACCOUNT][REGION]  # type: ignore[call-overload]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
        self._install_patches()
        self._start_server()
        self.metric_store = MetricStore(self.backend("cloudwatch"))
        self._provision()
        for spec in function_specs(self.assembly):
            self.specs[spec.name] = spec
        self.lambda_api.load(self.assembly, self.specs)
        for name, spec in self.specs.items():
            concurrency = self.lambda_api.pool_size(name, self.options.concurrency)
            self.pools[name] = FunctionPool(spec, self.endpoint, concurrency, self._on_output, self._on_result)
        self.subscriptions = SubscriptionRouter(self.assembly, self.pools, self.log_platform)
        self.scheduler.start()
        self.alarms.start()
        self._sampler = threading.Thread(target=self._sample_loop, name="sampler", daemon=True)
        self._sampler.start()
        self.write_state_file()
        self.ready.set()

    @property
    def default_concurrency(self) -> int:
        return self.options.concurrency

    def add_function(self, spec: FunctionSpec) -> None:
        """A function created through the Lambda API: a pool like the template's functions."""
        self.specs[spec.name] = spec
        self.pools[spec.name] = FunctionPool(
            spec, self.endpoint, self.options.concurrency, self._on_output, self._on_result
        )

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self._stop.set()
        self.scheduler.stop()
        self.alarms.stop()
        self.router.stop()
        for pool in self.pools.values():
            pool.stop()
        self._flush_logs()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "runtime.json").unlink()
        self.stopped.set()

    def write_state_file(self) -> None:
        state = {
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "started_at": self.started_at,
            "assembly": str(self.assembly.directory),
            "stacks": [s.name for s in self.assembly.stacks],
            "outputs": self.assembly.outputs(),
        }
        (self.state_dir / "runtime.json").write_text(json.dumps(state, indent=2))

    def _start_server(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from .server import make_emulator_server

        moto_app = DomainDispatcherApplication(create_backend_app)
        self._server = make_emulator_server(self.options.host, self.options.port, self._wsgi(moto_app))
        self._server_thread = threading.Thread(target=self._server.serve_forever, name="emulator", daemon=True)
        self._server_thread.start()

    def _provision(self) -> None:
        import boto3

        session = boto3.Session(
            aws_access_key_id=PLATFORM_KEY,
            aws_secret_access_key="selfheal-local",  # noqa: S106 - the emulator accepts any credentials
            region_name=REGION,
        )
        self.report = Provisioner(session, self.endpoint).provision(self.assembly)
        for item in self.report.failed:
            self.log_platform(f"could not create {item['type']} {item['physical_id']}: {item['error']}")

    def _install_patches(self) -> None:
        from moto.sns.models import Topic

        moto_patches.install()
        lambda_revisions.install()  # RevisionId on functions: the heal loop's optimistic lock
        self.router.install()
        install_get_metric_data_patch(lambda _backend: self.metric_store)
        runtime = self
        original_publish = Topic.publish
        if getattr(original_publish, "_selfheal", False):
            original_publish = original_publish.__wrapped__  # type: ignore[attr-defined]

        def publish(topic: Any, message: str, subject: str | None = None, *args: Any, **kwargs: Any) -> str:
            message_id = original_publish(topic, message, subject, *args, **kwargs)
            runtime._record_notification(topic, message_id, message, subject)
            return message_id

        publish._selfheal = True  # type: ignore[attr-defined]
        publish.__wrapped__ = original_publish  # type: ignore[attr-defined]
        Topic.publish = publish  # type: ignore[method-assign,assignment]  # moto patched in place

    # ------------------------------------------------------------------ platform services
    def publish_sns(self, topic_arn: str, message: str, subject: str | None, origin: str) -> str:
        self._origin.value = origin
        try:
            with moto_patches.REQUEST_LOCK:
                return self.backend("sns").publish(message=message, arn=topic_arn, subject=subject)
        finally:
            self._origin.value = None

    def _record_notification(self, topic: Any, message_id: str, message: str, subject: str | None) -> None:
        subscriptions, _ = topic.sns_backend.list_subscriptions_by_topic(topic_arn=topic.arn)
        deliveries = []
        for sub in subscriptions:
            status = {
                "email": "not sent: no mail server locally (readable here)",
                "email-json": "not sent: no mail server locally (readable here)",
                "sqs": "delivered",
                "sms": "not sent locally",
            }.get(sub.protocol, "not emulated locally")
            deliveries.append({"protocol": sub.protocol, "endpoint": sub.endpoint, "status": status})
        record = {
            "notification_id": message_id,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "topic_arn": topic.arn,
            "subject": subject,
            "message": message,
            "origin": getattr(self._origin, "value", None) or "api",
            "deliveries": deliveries,
        }
        self.notifications.append(record)
        with contextlib.suppress(OSError), self._notifications_file.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def put_platform_event(
        self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str], bus: str = "default"
    ) -> None:
        with moto_patches.REQUEST_LOCK:
            self._put_platform_event(source, detail_type, detail, resources, bus)

    def _put_platform_event(
        self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str], bus: str
    ) -> None:
        self.backend("events").put_events(
            [
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "Resources": resources,
                    "EventBusName": bus,
                }
            ]
        )

    def emit_as_aws(self, entries: Any) -> dict[str, Any]:
        """Events as an AWS service emits them (sources `aws.*`, which PutEvents refuses to anyone
        else): locally, `selfheal inject --alarm` and the bench stand in for CloudWatch."""
        if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
            raise ValueError("entries: a list of 1 to 10 PutEvents entries")
        if not all(isinstance(e, dict) and str(e.get("Source") or "").startswith("aws.") for e in entries):
            raise ValueError("only events with an AWS service's source (aws.*) are emitted here; put the others")
        with moto_patches.REQUEST_LOCK:
            results = self.backend("events").put_events(entries)
        return {"FailedEntryCount": sum(1 for r in results if r.get("ErrorCode")), "Entries": results}

    def platform_metric(
        self, namespace: str, name: str, value: float, dimension_sets: list[dict[str, str]], unit: str | None = None
    ) -> None:
        now = time.time()
        self.metric_store.ingest(
            Datum(namespace, name, value, tuple(sorted(d.items())), now, unit) for d in dimension_sets
        )

    def log_platform(self, message: str) -> None:
        # Names in it come from API callers (an alarm's name): one line, nothing the terminal obeys.
        line = f"{datetime.now(UTC):%H:%M:%S} [platform] {printable(one_line(message))}"
        if not self.options.quiet:
            self.echo(line)

    def submit(self, function: str, invocation: Invocation) -> None:
        pool = self.pools.get(function)
        if pool is None:
            raise LookupError(f"function {function!r} is not part of the app")
        pool.submit(invocation)

    # ------------------------------------------------------------------ workers
    def _on_output(self, spec: FunctionSpec, stream: str, line: str) -> None:
        if line.startswith("{") and '"_aws"' in line:
            with contextlib.suppress(ValueError):
                self.metric_store.ingest(parse_emf(json.loads(line)))
        with self._log_lock:
            self._log_buffer.setdefault((spec.log_group, stream), []).append(
                {"timestamp": int(time.time() * 1000), "message": line}
            )
        with contextlib.suppress(OSError), (self.state_dir / "logs" / f"{spec.name}.log").open("a") as fh:
            fh.write(line + "\n")
        if self.options.verbose:
            self.echo(f"  {spec.name} | {line[:400]}")

    def _on_result(self, spec: FunctionSpec, invocation: Invocation, result: InvocationResult, started: float) -> None:
        ended = time.time()
        event = _mapping(invocation.event)
        detail = _mapping(event.get("detail"))
        meta = _mapping(detail.get("metadata"))
        record = {
            "function": spec.name,
            "request_id": result.request_id,
            "event_id": event.get("id"),
            "detail_type": event.get("detail-type"),
            "source": event.get("source"),
            "incident_id": meta.get("incident_id"),
            "correlation_id": meta.get("correlation_id"),
            "rule": invocation.source.rsplit("/", 1)[-1],
            "attempt": invocation.attempt,
            "ok": result.ok,
            "error": result.error,
            "result": result.result
            if isinstance(result.result, (dict, list, str, int, float, type(None)))
            else str(result.result),
            "enqueued_at": invocation.enqueued_at,
            "first_seen": invocation.first_seen,
            "started_at": started,
            "ended_at": ended,
            "duration_ms": round(result.duration_ms, 3),
            "init_ms": round(result.init_ms, 3) if result.init_ms is not None else None,
            "max_memory_mb": result.max_memory_mb,
        }
        self.invocations.append(record)
        dims = [{"FunctionName": spec.name}, {}]
        self.platform_metric("AWS/Lambda", "Invocations", 1.0, dims, "Count")
        self.platform_metric("AWS/Lambda", "Errors", 0.0 if result.ok else 1.0, dims, "Count")
        self.platform_metric("AWS/Lambda", "Duration", result.duration_ms, dims, "Milliseconds")
        self.platform_metric("AWS/Lambda", "Throttles", 0.0, dims, "Count")  # local pools queue instead of throttling
        if result.timed_out:  # what Lambda writes to the function's log on a timeout
            self._on_output(
                spec,
                result.log_stream or "-",
                f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%f}"[:-3]
                + f"Z {result.request_id} Task timed out after {result.timeout_s or spec.timeout_s:.2f} seconds",
            )
        if result.request_id:
            self._on_output(spec, result.log_stream or "-", report_line(spec, result))
        if not self.options.quiet:
            status = (
                "ok"
                if result.ok
                else f"ERROR {((result.error or {}).get('errorType') or '')}: {((result.error or {}).get('errorMessage') or '')[:120]}"
            )
            cold = f" (cold start {result.init_ms:.0f} ms)" if result.init_ms is not None else ""
            retry = f" retry {invocation.attempt}" if invocation.attempt else ""
            self.echo(
                f"{datetime.now(UTC):%H:%M:%S} {spec.name:<24} {event.get('detail-type', '-')!s:<30} {status} {result.duration_ms:.0f} ms{cold}{retry}"
            )
        if invocation.reply is not None:  # RequestResponse: the caller has the result, no retries
            invocation.reply.put(result)
            return
        self.router.on_function_result(invocation, result)

    def invoke_sync(self, function_name: str, event: Any, *, tenant_id: str | None = None) -> InvocationResult:
        """A RequestResponse invocation: queue it on the function's pool and wait for its result."""
        name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name
        pool = self.pools.get(name)
        if pool is None:
            raise KeyError(f"Function not found: {function_name}")
        if pool.spec.tenant_isolation == "PER_TENANT" and not tenant_id:
            raise ValueError("The invoked function is enabled with tenancy configuration. Add a valid tenant ID")
        if pool.concurrency == 0:  # reserved concurrency 0: Lambda throttles every synchronous call
            self.platform_metric("AWS/Lambda", "Throttles", 1.0, [{"FunctionName": name}, {}], "Count")
            raise Throttled("Rate Exceeded.")
        reply: queue.Queue[InvocationResult] = queue.Queue(maxsize=1)
        pool.submit(
            Invocation(event=event, source="direct", target_arn=pool.spec.arn, tenant_id=tenant_id, reply=reply)
        )
        return reply.get(timeout=pool.spec.timeout_s + 30)

    def _lambda_invoke(
        self, environ: dict[str, Any], start_response: Callable[..., Any], function_name: str
    ) -> list[bytes]:
        """`lambda:Invoke` (RequestResponse or Event), served by the worker pools rather than moto."""
        denied = self._invoke_denied(environ, function_name)
        if denied:
            return self._aws_error(start_response, "403 Forbidden", "AccessDeniedException", denied)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        invocation_type = environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")
        tenant_id = environ.get("HTTP_X_AMZ_TENANT_ID") or None
        headers = [("Content-Type", "application/json")]
        try:
            event = json.loads(raw or b"{}")
            if invocation_type == "Event":
                name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name
                pool = self.pools[name]
                # The function's event invoke config (as the Lambda API shows it now) governs retries.
                retries, max_age_s, on_failure = self.lambda_api.async_policy(name)
                pool.submit(
                    Invocation(
                        event=event,
                        source="direct",
                        target_arn=pool.spec.arn,
                        tenant_id=tenant_id,
                        max_retries=retries,
                        max_age_s=max_age_s,
                        dead_letter_arn=on_failure,
                    )
                )
                start_response("202 Accepted", [*headers, ("Content-Length", "0")])
                return [b""]
            result = self.invoke_sync(function_name, event, tenant_id=tenant_id)
        except KeyError as exc:
            return self._aws_error(start_response, "404 Not Found", "ResourceNotFoundException", str(exc.args[0]))
        except Throttled as exc:
            return self._aws_error(start_response, "429 Too Many Requests", "TooManyRequestsException", str(exc))
        except ValueError as exc:
            return self._aws_error(start_response, "400 Bad Request", "InvalidParameterValueException", str(exc))
        if result.ok:
            body = json.dumps(result.result, default=str).encode()
        else:
            body = json.dumps(result.error or {"errorMessage": "unknown error"}).encode()
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        headers += [("X-Amz-Executed-Version", "$LATEST"), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]

    def _invoke_denied(self, environ: dict[str, Any], function_name: str) -> str | None:
        """Why IAM would refuse this direct Invoke: a URL-only function (authz.url_only_functions)
        is invoked through its URL, whose event carries the caller Lambda authenticated."""
        name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name.split(":")[0]
        principal = self._principal(environ)
        if name not in self.url_only or principal == PLATFORM_PRINCIPAL:
            return None
        self.log_platform(f"Invoke denied: {principal} may invoke {name} only through its function URL")
        spec = self.specs.get(name)
        return (
            f"User: {principal} is not authorized to perform: lambda:InvokeFunction on resource: "
            f"{spec.arn if spec else name} because no identity-based policy allows the lambda:InvokeFunction action"
        )

    def _lookup_events(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """CloudTrail LookupEvents (moto has none): the Lambda API changes recorded locally."""
        from .lambda_api import LambdaApiError

        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
            payload = self.lambda_api.lookup_events(body if isinstance(body, dict) else {})
        except (ValueError, LambdaApiError) as exc:
            return self._aws_error(start_response, "400 Bad Request", "InvalidLookupAttributesException", str(exc))
        data = json.dumps(payload, default=str).encode()
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))])
        return [data]

    @staticmethod
    def _aws_error(start_response: Callable[..., Any], status: str, code: str, message: str) -> list[bytes]:
        body = json.dumps({"__type": code, "Type": "User", "message": message}).encode()
        start_response(
            status,
            [("Content-Type", "application/json"), ("X-Amzn-ErrorType", code), ("Content-Length", str(len(body)))],
        )
        return [body]

    # ------------------------------------------------------------------ background
    def _sample_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.options.sample_interval_s)):
            with contextlib.suppress(Exception), moto_patches.REQUEST_LOCK:
                self._flush_logs()
            now = time.time()
            if now - getattr(self, "_last_sample", 0) >= self.options.sample_interval_s:
                self._last_sample = now
                with contextlib.suppress(Exception), moto_patches.REQUEST_LOCK:
                    self._sample_queues()

    def _sample_queues(self) -> None:
        sqs = self.backend("sqs")
        for name, sqs_queue in list(sqs.queues.items()):
            visible = float(getattr(sqs_queue, "approximate_number_of_messages", 0) or 0)
            self.platform_metric(
                "AWS/SQS", "ApproximateNumberOfMessagesVisible", visible, [{"QueueName": name}], "Count"
            )

    def _flush_logs(self) -> None:
        with self._log_lock:
            buffered, self._log_buffer = self._log_buffer, {}
        if not buffered:
            return
        logs = self.backend("logs")
        for (group, stream), events in buffered.items():
            if stream == "-":
                stream = "platform"
            with contextlib.suppress(Exception):
                if group not in logs.groups:
                    logs.create_log_group(group, {})
                if stream not in logs.groups[group].streams:
                    logs.create_log_stream(group, stream)
                logs.put_log_events(group, stream, events)
            if self.subscriptions is not None and not self._stop.is_set():
                self.subscriptions.deliver(group, stream, events)

    # ------------------------------------------------------------------ queries
    def idle(self) -> bool:
        if self.subscriptions is not None:
            with self._log_lock:  # lines a subscription filter has still to deliver
                if any(self.subscriptions.subscribed(group) for group, _ in self._log_buffer):
                    return False
        pending = sum(p.pending for p in self.pools.values())
        return pending == 0 and self.router.pending_retries() == 0

    def wait_idle(self, timeout: float = 60.0, quiet_s: float = 1.0) -> bool:
        deadline = time.time() + timeout
        calm_since: float | None = None
        while time.time() < deadline:
            if self.idle():
                calm_since = calm_since or time.time()
                if time.time() - calm_since >= quiet_s:
                    return True
            else:
                calm_since = None
            time.sleep(0.05)
        return False

    def status(self) -> dict[str, Any]:
        functions = {}
        for name, pool in self.pools.items():
            with pool.lock:
                stats = dict(pool.stats)
            functions[name] = {**self.specs[name].public(), **stats, "pending": pool.pending, "workers": pool.pids()}
        cw = self.backend("cloudwatch")
        return {
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "started_at": self.started_at,
            "assembly": str(self.assembly.directory),
            "stacks": [s.name for s in self.assembly.stacks],
            "outputs": self.assembly.outputs(),
            "functions": functions,
            "resources": self.report.public(),
            "router": dict(self.router.counts),
            "schedules_fired": dict(self.scheduler.fired),
            "one_time_schedules": list(self.scheduler.one_time),
            "lambda_changes": list(self.lambda_api.changes),
            "alarms": {a.name: a.state_value for a in cw.alarms.values()},
            "alarm_errors": dict(self.alarms.errors),
            "alarm_transitions": list(self.alarms.transitions),
            "notifications": len(self.notifications),
            "subscription_filters": self.subscriptions.public() if self.subscriptions else [],
            "engineer_endpoint": engineer_endpoint(self.backend("ssm"), os.environ),
            "idle": self.idle(),
        }

    def api_call_summary(self) -> dict[str, Any]:
        by_caller: dict[str, dict[str, int]] = {}
        for (caller, service, action), n in self.api_calls.items():
            by_caller.setdefault(caller, {})[f"{service}:{action}"] = n
        totals = {caller: sum(v.values()) for caller, v in by_caller.items()}
        put_metric_data = sum(
            n
            for (caller, _s, action), n in self.api_calls.items()
            if action == "PutMetricData" and caller not in ("platform",)
        )
        slowest = sorted(self.api_call_ms.items(), key=lambda kv: -kv[1])[:15]
        serve_ms = {
            f"{c}:{s}:{a}": {
                "calls": self.api_calls[(c, s, a)],
                "total_ms": round(ms, 1),
                "mean_ms": round(ms / max(1, self.api_calls[(c, s, a)]), 2),
                "lock_wait_ms": round(self.api_wait_ms[(c, s, a)], 1),
            }
            for (c, s, a), ms in slowest
        }
        return {
            "by_caller": by_caller,
            "totals": totals,
            "put_metric_data_calls": put_metric_data,
            "serve_ms": serve_ms,
        }

    # ------------------------------------------------------------------ HTTP
    def _caller(self, environ: dict[str, Any]) -> tuple[str, str]:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        m = re.search(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/", auth)
        if not m:
            return "anonymous", "unknown"
        key, service = m.group(1), m.group(2)
        if key == PLATFORM_KEY:
            return "platform", service
        for spec in self.specs.values():
            if spec.access_key == key:
                return spec.name, service
        return "client", service

    def _principal(self, environ: dict[str, Any]) -> str:
        """The IAM principal ARN a request is made as (a function's role, or a non-agent client)."""
        m = re.search(r"Credential=([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        key = m.group(1) if m else ""
        if key == PLATFORM_KEY:
            return "platform"
        for spec in self.specs.values():
            if spec.access_key == key and spec.role_arn:
                return spec.role_arn
        return client_principal(key)

    def _put_events(self, environ: dict[str, Any], start_response: Callable[..., Any], moto_app: Any) -> list[bytes]:
        """PutEvents as EventBridge takes it: an entry with an AWS service's source (`aws.*`) or that
        the bus resource policy denies fails, the others go to moto."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            entries = json.loads(raw or b"{}").get("Entries") or []
        except (ValueError, AttributeError):
            entries = []
        if sum(_entry_size(e) for e in entries if isinstance(e, dict)) > PUT_EVENTS_MAX_BYTES:
            return self._aws_error(
                start_response,
                "400 Bad Request",
                "ValidationException",
                "Total size of the entries in the request is over the limit.",
            )
        principal = self._principal(environ)
        denials: dict[int, tuple[str, str]] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            if str(entry.get("Source") or "").startswith("aws."):
                # AWS services' sources are theirs alone: a forged alarm state change never reaches a rule.
                denials[i] = ("NotAuthorizedForSourceException", "Not authorized for the source.")
                self.log_platform(f"PutEvents refused: {principal} may not send source {entry.get('Source')!r}")
            elif statement := self.bus_policy.check(principal, entry):
                bus = str(entry.get("EventBusName") or "default")
                denials[i] = (
                    "AccessDeniedException",
                    f"User: {principal} is not authorized to perform: events:PutEvents on resource: "
                    f"event-bus/{bus} with an explicit deny in a resource-based policy ({statement.sid})",
                )
                self.log_platform(
                    f"PutEvents denied by bus policy {statement.sid}: {principal} may not send "
                    f"{entry.get('Source')!r} to {statement.bus}"
                )
        if not denials:
            return list(moto_app(environ, start_response))
        allowed = [e for i, e in enumerate(entries) if i not in denials]
        results: list[dict[str, Any]] = []
        if allowed:
            body = json.dumps({**json.loads(raw), "Entries": allowed}).encode()
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            captured: dict[str, Any] = {}

            def capture(status: str, _headers: list[tuple[str, str]], _exc_info: Any = None) -> Any:
                captured["status"] = status
                return lambda _data: None

            answer = b"".join(moto_app(environ, capture))
            if not str(captured.get("status", "")).startswith("200"):
                return self._aws_error(
                    start_response,
                    captured.get("status", "500 Internal Server Error"),
                    "InternalException",
                    answer.decode("utf-8", "replace")[:500],
                )
            results = list(json.loads(answer).get("Entries", []))
        merged, passed = [], iter(results)
        for i in range(len(entries)):
            if i in denials:
                merged.append({"ErrorCode": denials[i][0], "ErrorMessage": denials[i][1]})
            else:
                merged.append(next(passed, {"ErrorCode": "InternalException", "ErrorMessage": "no result"}))
        payload = json.dumps(
            {"FailedEntryCount": sum(1 for r in merged if r.get("ErrorCode")), "Entries": merged}
        ).encode()
        start_response(
            "200 OK", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(payload)))]
        )
        return [payload]

    def _function_url(self, environ: dict[str, Any], start_response: Callable[..., Any], path: str) -> list[bytes]:
        """A function URL request: AWS_IAM auth wants a SigV4 Authorization header (any local
        credentials); the function gets the payload format 2.0 event and answers the request."""
        url_id, _, rest = path[len(FUNCTION_URL_PREFIX) :].partition("/")
        url = self.function_urls.get(url_id)
        if url is None or not self.ready.is_set():
            return self._plain(start_response, "404 Not Found", {"Message": "Not Found"})
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        caller = local_caller(headers)
        if url.auth_type == "AWS_IAM" and caller is None:
            self.api_calls[("anonymous", "lambda", "InvokeFunctionUrl")] += 1
            return self._plain(start_response, "403 Forbidden", {"Message": "Forbidden"})
        access_key, caller_arn = caller or ("", "")
        self.api_calls[("client", "lambda", "InvokeFunctionUrl")] += 1
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        event = url_event(
            url,
            method=environ.get("REQUEST_METHOD", "GET"),
            path="/" + rest,
            query=environ.get("QUERY_STRING", ""),
            headers=headers,
            body=body,
            access_key=access_key,
            caller_arn=caller_arn,
            source_ip=environ.get("REMOTE_ADDR", ""),
        )
        result = self.invoke_sync(url.function, event)
        if not result.ok:
            return self._plain(start_response, "502 Bad Gateway", {"Message": "Internal Server Error"})
        answer = result.result
        if isinstance(answer, dict) and "statusCode" in answer:
            status = int(answer.get("statusCode") or 200)
            out_headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
            data = answer.get("body") or ""
            raw = base64.b64decode(data) if answer.get("isBase64Encoded") else str(data).encode()
        else:  # a bare result is JSON with status 200, as Lambda does
            status, out_headers, raw = 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Status"
        start_response(f"{status} {reason}", [*out_headers.items(), ("Content-Length", str(len(raw)))])
        return [raw]

    @staticmethod
    def _plain(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    @staticmethod
    def _action(environ: dict[str, Any]) -> str:
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            return target.rsplit(".", 1)[-1]
        path = environ.get("PATH_INFO", "")
        m = re.search(r"/operation/([A-Za-z]+)", path)
        if m:
            return m.group(1)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "Action" in query:
            return query["Action"][0]
        if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            form = parse_qs(body.decode("utf-8", "replace"))
            if "Action" in form:
                return form["Action"][0]
        method = environ.get("REQUEST_METHOD", "")
        if environ.get("selfheal.service") == "s3":
            has_key = "/" in path.strip("/")
            return {"GET": "Get", "PUT": "Put", "HEAD": "Head", "DELETE": "Delete", "POST": "Post"}.get(
                method, method
            ) + ("Object" if has_key else "Bucket")
        return f"{method} {rest_resource(path)}"

    def _wsgi(self, moto_app: Any) -> Callable[..., Any]:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            path = environ.get("PATH_INFO", "")
            if path.startswith(FUNCTION_URL_PREFIX):  # outside the request lock: the function calls the emulator
                return self._function_url(environ, start_response, path)
            if path.startswith(CONTROL_PREFIX):
                return self._control(environ, start_response, path[len(CONTROL_PREFIX) :])
            caller, service = self._caller(environ)
            environ["selfheal.service"] = service
            if service == "lambda":
                operation = self.lambda_api.route(environ.get("REQUEST_METHOD", "GET"), path)
                if operation is not None:  # the template's functions: never moto's (empty) Lambda backend
                    self.api_calls[(caller, "lambda", operation[0])] += 1
                    return self.lambda_api.handle(environ, start_response, operation[0], operation[1], caller)
            if service == "cloudtrail" and self._action(environ) == "LookupEvents":
                self.api_calls[(caller, "cloudtrail", "LookupEvents")] += 1
                return self._lookup_events(environ, start_response)
            invoke = INVOKE_PATH.match(path)
            if invoke and environ.get("REQUEST_METHOD") == "POST":
                # Outside the request lock: the invoked function makes API calls of its own.
                self.api_calls[(caller, "lambda", "Invoke")] += 1
                return self._lambda_invoke(environ, start_response, unquote(invoke.group(1)))
            if caller == "platform":
                with moto_patches.REQUEST_LOCK:
                    return list(moto_app(environ, start_response))
            key = (caller, service, self._action(environ))
            self.api_calls[key] += 1
            queued = time.perf_counter()
            # moto's backends are not safe for concurrent mutation: one request at a time.
            with moto_patches.REQUEST_LOCK:
                started = time.perf_counter()
                try:
                    if key[1:] == ("events", "PutEvents"):
                        return self._put_events(environ, start_response, moto_app)
                    if key[1] == "monitoring" and key[2] in ALARM_WRITES:
                        return self.alarms.through_api(key[2], lambda: list(moto_app(environ, start_response)))
                    return list(moto_app(environ, start_response))
                finally:
                    self.api_call_ms[key] += (time.perf_counter() - started) * 1000
                    self.api_wait_ms[key] += (started - queued) * 1000

        return app

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any], route: str) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body: dict[str, Any] = {}
        if length:
            with contextlib.suppress(ValueError):
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        status = "200 OK"
        payload: Any = None
        try:
            if not self.ready.is_set():
                status, payload = "503 Service Unavailable", {"error": "starting: provisioning from the templates"}
            elif route == "status":
                payload = self.status()
            elif route == "notifications":
                payload = {"notifications": self.notifications}
            elif route == "api-calls":
                payload = self.api_call_summary()
            elif route == "api-calls/reset" and method == "POST":
                self.api_calls.clear()
                self.api_call_ms.clear()
                self.api_wait_ms.clear()
                payload = {"reset": True}
            elif route == "invocations":
                since = float(query.get("since", 0))
                payload = {"invocations": [r for r in list(self.invocations) if r["ended_at"] >= since]}
            elif route == "idle" and method == "POST":
                timeout = float(body.get("timeout", query.get("timeout", 60)))
                quiet = float(body.get("quiet", query.get("quiet", 1.0)))
                payload = {"idle": self.wait_idle(timeout, quiet)}
            elif route == "aws-events" and method == "POST":
                payload = self.emit_as_aws(body.get("entries"))
            elif route == "alarms/evaluate" and method == "POST":
                payload = {"changes": self.alarms.evaluate_all()}
            elif route == "schedules/fire" and method == "POST":
                payload = {"fired": self.scheduler.fire_matching(str(body.get("rule", "")))}
            elif route == "shutdown" and method == "POST":
                threading.Thread(target=self._shutdown_soon, daemon=True).start()
                payload = {"stopping": True}
            else:
                status, payload = "404 Not Found", {"error": f"unknown control route {route!r}"}
        except Exception as exc:  # noqa: BLE001
            status, payload = "500 Internal Server Error", {"error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(payload, default=str).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _shutdown_soon(self) -> None:
        time.sleep(0.2)
        import signal

        os.kill(os.getpid(), signal.SIGTERM)


_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")


def rest_resource(path: str) -> str:
    """A REST-JSON call's resource for the API call counts: its first path segment (after an API
    version such as Lambda's `2015-03-31`), so that one row counts every CreateSchedule call
    (`POST /schedules`) rather than one per schedule name."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    keep = 2 if segments and _API_VERSION.fullmatch(segments[0]) else 1
    return "/" + "/".join(segments[:keep])


def _entry_size(entry: dict[str, Any]) -> int:
    """A PutEvents entry's size: Time 14 bytes; Source, DetailType, Detail and each Resource in UTF-8."""
    texts = [entry.get("Source"), entry.get("DetailType"), entry.get("Detail"), *(entry.get("Resources") or [])]
    return (14 if entry.get("Time") is not None else 0) + sum(len(str(t).encode()) for t in texts if t is not None)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def report_line(spec: FunctionSpec, result: InvocationResult) -> str:
    """The platform's REPORT line, as Lambda writes it: tab-separated, `Init Duration` on a cold start,
    and a `Billed Duration` that includes the init phase (billed for managed runtimes since August 2025)."""
    billed = max(1, math.ceil(result.duration_ms + (result.init_ms or 0.0)))
    fields = [
        f"REPORT RequestId: {result.request_id}",
        f"Duration: {result.duration_ms:.2f} ms",
        f"Billed Duration: {billed} ms",
        f"Memory Size: {spec.memory_mb} MB",
        f"Max Memory Used: {result.max_memory_mb} MB",
    ]
    if result.init_ms is not None:
        fields.append(f"Init Duration: {result.init_ms:.2f} ms")
    if result.timed_out:
        fields.append("Status: timeout")
    return "\t".join(fields) + "\t"


class Throttled(Exception):
    """A synchronous invocation of a function whose reserved concurrency is 0."""
