"""EventBridge delivery the way the template defines it, on top of moto's rules.

moto 5.2 stores rules and targets faithfully but delivers only to SQS/Logs targets, ignores
a rule's state and never fires schedules. The router replaces moto's per-rule delivery
(in-process, so every PutEvents from any client goes through it):

* a DISABLED rule delivers nothing; a schedule-only rule never matches events;
* patterns are matched by moto (covers prefix, suffix, anything-but incl. prefix, numeric,
  exists, wildcard, equals-ignore-case);
* Input / InputPath / InputTransformer are applied per target;
* Lambda targets go to the function's worker pool, SNS targets publish to the topic, Logs
  targets are written to moto's backend (the only target types the template has);
* a failed invocation is retried up to the target's RetryPolicy.MaximumRetryAttempts
  (within MaximumEventAgeInSeconds), then sent to its DeadLetterConfig queue with the
  error in EventBridge's DLQ message attributes;
* rules with `rate(...)` fire on schedule (optionally sped up);
* EventBridge Scheduler one-time schedules (`at(yyyy-mm-ddThh:mm:ss)`, created through the
  scheduler API and stored by moto) fire at their time (never sped up: whoever created one
  compares it with its own clock when it arrives, as the Manager does with a verify deadline), to
  their target (an event bus with EventBridgeParameters, as the Manager creates them, or a
  Lambda function) with their Input, and are deleted afterwards when ActionAfterCompletion is
  DELETE;
* AWS/Events metrics (MatchedEvents, TriggeredRules, Invocations, FailedInvocations) are
  recorded as the service would.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .assembly import ACCOUNT, REGION
from .functions import Invocation, InvocationResult
from .moto_patches import REQUEST_LOCK
from .platform import Platform

DEFAULT_MAX_RETRIES = 185
DEFAULT_MAX_AGE_S = 86_400


def iso_time(value: Any) -> str:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


_ARCHIVE_ARN = re.compile(r'"archive-arn": "arn:[^"]*:archive/([^":]+):')


def _archive_name(target: dict[str, Any]) -> str | None:
    """The archive behind an archive's managed rule target (its template names the archive ARN)."""
    template = str((target.get("InputTransformer") or {}).get("InputTemplate", ""))
    match = _ARCHIVE_ARN.search(template)
    return match.group(1) if match else None


def normalize_event(event: dict[str, Any]) -> dict[str, Any]:
    """moto's event -> the exact EventBridge shape (ISO time, no moto-only keys)."""
    out = copy.deepcopy(event)
    out.pop("ingestion-time", None)
    out["time"] = iso_time(out.get("time") or time.time())
    out.setdefault("version", "0")
    return {
        k: out[k]
        for k in (
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
            "replay-name",
        )
        if k in out
    }


# ---------------------------------------------------------------------------- input


def json_path(document: Any, path: str) -> Any:
    """`$.a.b[0].c` lookups (what InputPath and InputPathsMap use)."""
    if path in ("$", ""):
        return document
    node = document
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path.removeprefix("$").lstrip(".")):
        if part.startswith("["):
            idx = int(part[1:-1])
            if not isinstance(node, list) or idx >= len(node):
                return None
            node = node[idx]
        else:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
    return node


def transform_input(target: dict[str, Any], event: dict[str, Any]) -> Any:
    """The payload a target receives (Input, InputPath or InputTransformer, else the event)."""
    if target.get("Input") is not None:
        raw = target["Input"]
        try:
            return json.loads(raw)
        except (TypeError, ValueError):
            return raw
    if target.get("InputPath"):
        return json_path(event, target["InputPath"])
    transformer = target.get("InputTransformer")
    if not transformer:
        return event
    values = {name: json_path(event, path) for name, path in (transformer.get("InputPathsMap") or {}).items()}
    values.setdefault("aws.events.event.json", event)
    values.setdefault("aws.events.rule-arn", "")
    template = transformer.get("InputTemplate", "")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        value = values[name]
        before = template[: match.start()]
        inside_string = (len(re.findall(r'(?<!\\)"', before)) % 2) == 1
        if isinstance(value, str):
            return json.dumps(value)[1:-1] if inside_string else json.dumps(value)
        if value is None:
            return "" if inside_string else "null"
        return json.dumps(value)

    rendered = re.sub(r"<([\w.\-]+)>", replace, template)
    try:
        return json.loads(rendered)
    except ValueError:
        return rendered


# ---------------------------------------------------------------------------- schedules


def schedule_interval(expression: str) -> float | None:
    """Seconds between runs of a rate() expression (None for anything else: the template has no cron)."""
    m = re.fullmatch(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not m:
        return None
    unit = {"minute": 60, "hour": 3600, "day": 86400}[m.group(2).rstrip("s")]
    return int(m.group(1)) * unit


# ---------------------------------------------------------------------------- router


class Router:
    def __init__(self, platform: Platform, *, retry_base_s: float = 0.2, retry_cap_s: float = 2.0) -> None:
        self.platform = platform
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.counts: Counter[str] = Counter()
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._stopping = False

    # moto hook ------------------------------------------------------------------------
    def install(self) -> None:
        from moto.events.models import Rule

        router = self

        def send_to_targets(rule: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:  # noqa: ARG001
            router.on_event(rule, original_event)  # runs inside moto's PutEvents: REQUEST_LOCK is held

        Rule.send_to_targets = send_to_targets  # type: ignore[method-assign,assignment]  # moto patched in place

    def on_event(self, rule: Any, raw_event: dict[str, Any], *, scheduled: bool = False) -> None:
        if rule.state != "ENABLED":
            self.counts["skipped_disabled"] += 1
            return
        if not scheduled:
            if rule.scheduled_expression and not rule.event_pattern.dump():
                return  # a schedule rule does not match events
            if not rule.event_pattern.dump() or not rule.event_pattern.matches_event(raw_event):
                return
        event = normalize_event(raw_event)
        self._metric(rule, "MatchedEvents")
        self._metric(rule, "TriggeredRules")
        self.counts["matched"] += 1
        for target in list(rule.targets):
            if _archive_name(target):  # an archive's managed rule (its pattern already skips replays)
                self._archive(rule, target, event)
                continue
            try:
                payload = transform_input(target, event)
            except Exception as exc:  # noqa: BLE001
                self._failed(rule, target, event, "INPUT_TRANSFORMATION_ERROR", str(exc), 0, "NONE")
                continue
            self.deliver(rule, target, payload, event)

    # delivery -------------------------------------------------------------------------
    def deliver(self, rule: Any, target: dict[str, Any], payload: Any, event: dict[str, Any]) -> None:
        arn = str(target.get("Arn", ""))
        parts = arn.split(":")
        service = parts[2] if len(parts) > 2 else ""
        retry = target.get("RetryPolicy") or {}
        try:
            if service == "lambda":
                name = parts[6] if len(parts) > 6 else ""
                self.platform.submit(
                    name,
                    Invocation(
                        event=payload,
                        source=rule.arn,
                        max_retries=int(retry.get("MaximumRetryAttempts", DEFAULT_MAX_RETRIES)),
                        max_age_s=float(retry.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE_S)),
                        dead_letter_arn=(target.get("DeadLetterConfig") or {}).get("Arn"),
                        target_arn=arn,
                    ),
                )
                return  # counted as an invocation when the function has run
            if service == "sns":
                message = payload if isinstance(payload, str) else json.dumps(payload)
                self.platform.publish_sns(arn, message, subject=None, origin=f"rule {rule.name}")
            elif service == "logs":
                group = parts[6] if len(parts) > 6 else parts[-1]
                logs = self.platform.backend("logs")
                stream = str(uuid.uuid4())
                logs.create_log_stream(group, stream)
                logs.put_log_events(
                    group, stream, [{"timestamp": int(time.time() * 1000), "message": json.dumps(payload)}]
                )
            else:
                raise LookupError(f"target type {service!r} is not emulated locally")
            self._metric(rule, "Invocations")
            self.counts["delivered"] += 1
        except Exception as exc:  # noqa: BLE001 - delivery failures are counted and dead-lettered
            self._failed(rule, target, event, "DELIVERY_ERROR", f"{type(exc).__name__}: {exc}", 0, "NONE")

    def _archive(self, rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
        archive = self.platform.backend("events").archives.get(_archive_name(target))
        if archive is None:
            self._failed(rule, target, event, "DELIVERY_ERROR", f"archive {_archive_name(target)!r} is gone", 0, "NONE")
            return
        archive.events.append(event)
        self.counts["archived"] += 1

    # results of Lambda targets ----------------------------------------------------------
    def on_function_result(self, invocation: Invocation, result: InvocationResult) -> None:
        rule_name = invocation.source.rsplit("/", 1)[-1] if invocation.source.startswith("arn:") else None
        if result.ok:
            if rule_name:
                self._metric_named(invocation.source, "Invocations")
            self.counts["delivered"] += 1
            return
        age = time.time() - invocation.first_seen
        if invocation.attempt < invocation.max_retries and age < invocation.max_age_s and not self._stopping:
            invocation.attempt += 1
            delay = min(self.retry_cap_s, self.retry_base_s * 2 ** (invocation.attempt - 1))
            self.counts["retries"] += 1
            self._later(delay, lambda: self._resubmit(invocation))
            return
        condition = (
            "MaximumRetryAttempts" if invocation.attempt >= invocation.max_retries else "MaximumEventAgeInSeconds"
        )
        error = result.error or {}
        message = f"{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}"
        self.counts["failed"] += 1
        if rule_name:
            self._metric_named(invocation.source, "FailedInvocations")
        self._dead_letter(
            invocation.dead_letter_arn,
            invocation.event,
            invocation.source,
            invocation.target_arn,
            "FUNCTION_ERROR" if not result.timed_out else "TIMEOUT",
            message,
            invocation.attempt,
            condition,
        )

    def _resubmit(self, invocation: Invocation) -> None:
        if not self._stopping:
            with contextlib.suppress(LookupError):  # deleted since: nothing left to retry on
                self.platform.submit(invocation.target_arn.split(":")[6], invocation)

    def pending_retries(self) -> int:
        """Failed invocations waiting for their retry (the runtime is not idle while any wait)."""
        with self._lock:
            return len(self._timers)

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        timer: threading.Timer

        def run() -> None:
            with self._lock:
                self._timers.discard(timer)
            fn()

        timer = threading.Timer(delay, run)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def _failed(
        self,
        rule: Any,
        target: dict[str, Any],
        event: dict[str, Any],
        code: str,
        message: str,
        attempts: int,
        condition: str,
    ) -> None:
        self.counts["failed"] += 1
        self._metric(rule, "FailedInvocations")
        self._dead_letter(
            (target.get("DeadLetterConfig") or {}).get("Arn"),
            event,
            rule.arn,
            target.get("Arn", ""),
            code,
            message,
            attempts,
            condition,
        )

    def _dead_letter(
        self,
        dlq_arn: str | None,
        event: Any,
        rule_arn: str,
        target_arn: str,
        code: str,
        message: str,
        attempts: int,
        condition: str,
    ) -> None:
        if not dlq_arn:
            self.counts["dropped"] += 1
            self.platform.log_platform(f"dropped after {attempts} retries (no DLQ): {message}")
            return
        attributes = {
            "RULE_ARN": rule_arn,
            "TARGET_ARN": target_arn,
            "ERROR_CODE": code,
            "ERROR_MESSAGE": message[:1000],
            "EXHAUSTED_RETRY_CONDITION": condition,
            "RETRY_ATTEMPTS": str(attempts),
        }
        try:
            with REQUEST_LOCK:
                self.platform.backend("sqs").send_message(
                    queue_name=dlq_arn.split(":")[5],
                    message_body=json.dumps(event),
                    message_attributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
                )
            self.counts["dead_lettered"] += 1
            self.platform.log_platform(
                f"dead-lettered to {dlq_arn.split(':')[5]} after {attempts} retries: {message[:200]}"
            )
        except Exception as exc:  # noqa: BLE001
            self.counts["dropped"] += 1
            self.platform.log_platform(f"could not dead-letter to {dlq_arn}: {exc!r}")

    # metrics --------------------------------------------------------------------------
    def _metric(self, rule: Any, name: str) -> None:
        self.platform.platform_metric(
            "AWS/Events",
            name,
            1.0,
            [{"RuleName": rule.name}, {"EventBusName": rule.event_bus_name, "RuleName": rule.name}],
            "Count",
        )

    def _metric_named(self, rule_arn: str, name: str) -> None:
        resource = rule_arn.split(":rule/", 1)[-1]
        bus, _, rule_name = resource.rpartition("/")
        self.platform.platform_metric(
            "AWS/Events",
            name,
            1.0,
            [{"RuleName": rule_name}, {"EventBusName": bus or "default", "RuleName": rule_name}],
            "Count",
        )

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            timers = list(self._timers)
        for t in timers:
            t.cancel()


AT_EXPRESSION = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")


def at_time(expression: str, timezone: str | None = None) -> float | None:
    """Epoch seconds of an EventBridge Scheduler one-time expression (None for anything else)."""
    m = AT_EXPRESSION.fullmatch(expression.strip())
    if not m:
        return None
    from zoneinfo import ZoneInfo

    try:
        zone = ZoneInfo(timezone or "UTC")
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    try:
        return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=zone).timestamp()
    except ValueError:
        return None


class Scheduler(threading.Thread):
    """Fires scheduled rules (`speedup` divides rate() intervals for demos and tests) and
    one-time schedules, at their real time."""

    def __init__(self, platform: Platform, router: Router, speedup: float = 1.0, tick_s: float = 0.5) -> None:
        super().__init__(name="schedules", daemon=True)
        self.platform = platform
        self.router = router
        self.speedup = max(speedup, 1e-6)
        self.tick_s = tick_s
        self.next_run: dict[str, float] = {}
        self.fired: Counter[str] = Counter()
        self.one_time: list[dict[str, Any]] = []  # what fired: schedule, target, when, outcome
        self._done: set[tuple[str, float]] = set()  # (schedule ARN, its last modification): fired once
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.tick_s):
            with contextlib.suppress(Exception):
                self.tick()

    def tick(self, now: float | None = None) -> None:
        now = now or time.time()
        with contextlib.suppress(Exception):  # a broken schedule must not stop the rules below
            self.tick_one_time(now)
        backend = self.platform.backend("events")
        for bus in list(backend.event_buses.values()):
            for rule in list(bus.rules.values()):
                expr = rule.scheduled_expression
                if not expr:
                    continue
                interval = schedule_interval(expr)
                if interval is None:
                    continue
                key = rule.arn
                every = interval / self.speedup
                if key not in self.next_run:
                    self.next_run[key] = now + every
                    continue
                if now >= self.next_run[key]:
                    self.next_run[key] = now + every
                    self.fire(rule)

    # one-time schedules (EventBridge Scheduler) ---------------------------------------
    @staticmethod
    def due(schedule: Any) -> float | None:
        return at_time(schedule.schedule_expression, schedule.schedule_expression_timezone)

    def tick_one_time(self, now: float) -> None:
        with REQUEST_LOCK:
            backend = self.platform.backend("scheduler")
            ready = []
            for group in list(backend.schedule_groups.values()):
                for schedule in list(group.schedules.values()):
                    key = (schedule.arn, float(schedule.last_modified_date or 0))
                    if schedule.state != "ENABLED" or key in self._done:
                        continue
                    due = self.due(schedule)
                    if due is not None and now >= due:
                        ready.append((group.name, schedule, key))
            for group_name, schedule, key in ready:
                self._done.add(key)  # before delivery: a failing target is not retried forever
                self.fire_one_time(group_name, schedule)
                if (schedule.action_after_completion or "NONE") == "DELETE":
                    with contextlib.suppress(Exception):
                        backend.delete_schedule(group_name, schedule.name)

    def fire_one_time(self, group_name: str, schedule: Any) -> None:
        target = dict(schedule.target or {})
        arn = str(target.get("Arn", ""))
        raw_input = target.get("Input")
        record = {
            "schedule": f"{group_name}/{schedule.name}",
            "expression": schedule.schedule_expression,
            "target": arn,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.fired[f"schedule:{group_name}/{schedule.name}"] += 1
        try:
            self._deliver_one_time(group_name, schedule, target, arn, raw_input)
            record["outcome"] = "delivered"
        except Exception as exc:  # noqa: BLE001 - reported, never raised into the clock
            record["outcome"] = f"failed: {type(exc).__name__}: {exc}"
        self.one_time.append(record)
        self.platform.log_platform(
            f"schedule {record['schedule']} ({schedule.schedule_expression}) -> {arn}: {record['outcome']}"
        )

    def _deliver_one_time(
        self, group_name: str, schedule: Any, target: dict[str, Any], arn: str, raw_input: Any
    ) -> None:
        parts = arn.split(":")
        service = parts[2] if len(parts) > 2 else ""
        text = raw_input if isinstance(raw_input, str) else ("{}" if raw_input is None else json.dumps(raw_input))
        if service == "lambda":
            name = parts[6] if len(parts) > 6 else ""
            retry = target.get("RetryPolicy") or {}
            try:
                payload: Any = json.loads(text)
            except ValueError:
                payload = text
            self.platform.submit(
                name,
                Invocation(
                    event=payload,
                    source=f"schedule:{group_name}/{schedule.name}",
                    max_retries=int(retry.get("MaximumRetryAttempts", DEFAULT_MAX_RETRIES)),
                    max_age_s=float(retry.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE_S)),
                    dead_letter_arn=(target.get("DeadLetterConfig") or {}).get("Arn"),
                    target_arn=arn,
                ),
            )
            return
        events = self.platform.backend("events")
        if service == "events":  # an event bus: Input is the detail, EventBridgeParameters the envelope
            params = target.get("EventBridgeParameters") or {}
            if not params.get("Source") or not params.get("DetailType"):
                raise ValueError("an event bus target needs EventBridgeParameters Source and DetailType")
            json.loads(text)  # the detail must be a JSON object, as PutEvents requires
            events.put_events(
                [
                    {
                        "Source": params["Source"],
                        "DetailType": params["DetailType"],
                        "Detail": text,
                        "Resources": [schedule.arn],
                        "EventBusName": parts[5].split("/", 1)[-1] if len(parts) > 5 else "default",
                    }
                ]
            )
        else:
            raise LookupError(f"target {arn!r} is not emulated locally")

    def fire(self, rule: Any) -> None:
        if rule.state != "ENABLED":
            return
        self.fired[rule.name] += 1
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": math.floor(time.time()),
            "region": REGION,
            "resources": [rule.arn],
            "detail": {},
        }
        with REQUEST_LOCK:
            self.router.on_event(rule, event, scheduled=True)

    def fire_matching(self, name: str) -> list[str]:
        """Fire now every scheduled rule whose name contains `name` (all of them for "")."""
        fired = []
        for bus in list(self.platform.backend("events").event_buses.values()):
            for rule in list(bus.rules.values()):
                if rule.scheduled_expression and (not name or name in rule.name):
                    self.fire(rule)
                    fired.append(rule.name)
        return fired

    def stop(self) -> None:
        self._halt.set()
