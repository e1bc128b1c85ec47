"""The one agent skeleton: `agent_handler(agent, {detail-type: route}, ...)` is a whole Lambda handler.

What every agent does around its logic, outermost first, and why in this order:
1. the Logger context with the correlation id: every line of the invocation carries it;
2. Metrics (cold-start metric, flushed even when the handler raises);
3. X-Ray, opt-in (observability.traced);
4. the monitor: binds the incident, prices and flushes every invocation, rejected ones too;
5. screening: bounds, JSON shape, a detail-type this agent routes, its source and model. A
   refusal is recorded (operators list it) before idempotency could cache it under the
   producer's key, where the corrected event sent again would be answered "rejected";
6. a route's `first` step, which may answer alone before idempotency (the Manager's fold of a
   duplicate, exactly-once by its own conditional write: 2 API calls instead of 7);
7. idempotency, built on the first invocation: Powertools' DynamoDB persistence layer costs
   about 150 ms of cold start at import, and screened-out events never need it;
8. the route, with the screening's parse result; an InvalidEvent raised inside is a rejection;
9. the monitor settles: the step's records, its cost and idempotency's "completed" write in one
   transaction. If it fails, the step stays INPROGRESS until the function's time is up and the
   Lambda retry redoes it; it is never marked done without its records.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from .config import Settings
from .edge import KEY_REUSED, bounds_problem, idempotency, reject
from .events import DATA_MODELS, Envelope, InvalidEvent, parse_detail
from .observability import CORRELATION_ID_PATH, logger, metrics, traced


class Monitor(Protocol):
    """What the skeleton needs of agentops_monitoring.AgentOpsMonitor (no import: no package circle)."""

    def begin_invocation(self, event: Any) -> None: ...
    def end_invocation(self, context: Any, duration_s: float, *, success: bool) -> None: ...
    def settle(self, context: Any) -> None: ...
    def hold(self, operation: dict[str, Any]) -> None: ...
    def bind(self, *, incident_id: str | None = None, correlation_id: str | None = None) -> None: ...
    def record_event(self, event_type: Any, data: dict[str, Any] | None = None) -> Any: ...


def parse_step(event: dict[str, Any]) -> Envelope:
    """An agent-to-agent step: its source and its versioned model."""
    return parse_detail(
        event["detail-type"], event.get("detail"), source=event.get("source", ""), event_id=event.get("id")
    )


@dataclass(frozen=True)
class Route:
    """How one detail-type is handled. `parse` validates at the edge; its result is `Call.parsed`.

    `idempotent=False` is for events guarded by their own conditional writes (the Manager's due
    events), whose early "not due" answer must not become the cached answer to the on-time one.
    `first`: runs before idempotency and answers alone when it returns a result; it must be
    exactly-once by its own writes (None: carry on to `handle`).
    """

    handle: Callable[[Call], dict[str, Any]]
    parse: Callable[[dict[str, Any]], Any] = parse_step
    idempotent: bool = True
    first: Callable[[Call], dict[str, Any] | None] | None = None


@dataclass
class Call:
    """One invocation as a route sees it."""

    event: dict[str, Any]
    context: Any
    parsed: Any
    agent: str
    settings: Settings
    monitor: Monitor
    _ports: Callable[[Any], Any]
    _built: list[Any] = field(default_factory=list)

    @property
    def ports(self) -> Any:
        """The agent's ports, built once per invocation and only when a route needs them."""
        if not self._built:
            self._built.append(self._ports(self.context))
        return self._built[0]

    @property
    def metadata(self) -> Any:
        return self.parsed.metadata

    @property
    def data(self) -> Any:
        return self.parsed.data

    @property
    def replayed(self) -> bool:
        """Delivered by an EventBridge archive replay."""
        return "replay-name" in self.event

    @property
    def correlation_id(self) -> str:
        return str(self.event.get("id") or "")

    def reject(self, reason: str) -> dict[str, Any]:
        return reject(self.event, reason, agent=self.agent, settings=self.settings, monitor=self.monitor)


def instrument(monitor: Monitor) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Bind the invocation's ids, then price, trace and flush it whatever the handler does."""

    def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            monitor.begin_invocation(event)
            started = time.perf_counter()
            success = False
            try:
                result = handler(event, context)
                success = True
                return result
            finally:
                monitor.end_invocation(context, time.perf_counter() - started, success=success)

        return wrapper

    return decorator


_CALL: contextvars.ContextVar[Call] = contextvars.ContextVar("selfheal_agent_call")


def _screen(event: Any, table: Mapping[str, Route], name: str) -> tuple[str | None, Route | None, Any]:
    """Why the event is refused (None when it is not), its route, and what the route's parser made of it."""
    problem = bounds_problem(event)
    if problem is None and not isinstance(event, dict):
        problem = "event must be a JSON object"
    if problem is not None:
        return problem, None, None
    detail_type = event.get("detail-type", "")
    route = table.get(detail_type) if isinstance(detail_type, str) else None
    if route is None:
        return _no_route(detail_type, table, name), None, None
    try:
        return None, route, route.parse(event)
    except InvalidEvent as exc:
        return exc.reason, route, None


def _idempotent(run: Callable[..., Any], settings: Settings, monitor: Monitor) -> Callable[..., dict[str, Any]]:
    """`run` under Powertools' idempotency, built on the first invocation that needs it."""
    built: list[Callable[..., Any]] = []

    def keyed(event: dict[str, Any], context: Any) -> dict[str, Any]:
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyValidationError,
        )

        if not built:
            from aws_lambda_powertools.utilities.idempotency import idempotent

            persistence, config = idempotency(settings, hold=monitor.hold)
            built.append(idempotent(persistence_store=persistence, config=config)(run))
        for wait in IN_PROGRESS_WAITS:
            try:
                return built[0](event, context)
            except IdempotencyValidationError:
                return _CALL.get().reject(KEY_REUSED)
            except IdempotencyAlreadyInProgressError:
                # A duplicate delivery (two people approving at once) while the first runs the step:
                # its answer is usually a moment away. Still running after the waits: raised, so
                # Lambda retries this delivery, which then reads the stored answer.
                if wait is None or _remaining_s(context) < wait + 1:
                    raise
                time.sleep(wait)
        raise AssertionError("unreachable")  # the last wait is None

    return keyed


# Seconds between tries of a step another invocation holds (None: give up, raise).
IN_PROGRESS_WAITS = (0.25, 0.5, 1.0, 2.0, None)


def _remaining_s(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if callable(remaining) else 30.0


def _no_route(detail_type: Any, table: Mapping[str, Route], name: str) -> str:
    """The refusal of a detail-type this agent has no route for, with the spelling it meant, if any
    (producers' events no route takes reach the Manager through the Unrouted rule)."""
    reason = f"{name} does not handle {str(detail_type)[:100]!r}"
    folded = "".join(ch for ch in str(detail_type).lower() if ch.isalnum())
    meant = [known for known in table if "".join(ch for ch in known.lower() if ch.isalnum()) == folded]
    return f"{reason}; detail-types are case-sensitive: did you mean {meant[0]!r}?" if meant else reason


def agent_handler(
    agent: str,
    routes: Mapping[str | Enum, Route | Callable[[Call], dict[str, Any]]],
    *,
    settings: Settings,
    monitor: Monitor,
    ports: Callable[[Any], Any],
    label: str | None = None,
) -> Callable[[Any, Any], dict[str, Any]]:
    """A Lambda handler that screens, de-duplicates and routes each event to one route.

    `ports(context)` builds the agent's ports; `label` names the agent in refusals ("the Engineer").
    """
    table = {
        str(k.value if isinstance(k, Enum) else k): v if isinstance(v, Route) else Route(v) for k, v in routes.items()
    }
    unknown = sorted(t for t, r in table.items() if r.parse is parse_step and t not in DATA_MODELS)
    if unknown:
        raise ValueError(f"{agent}: no event model for {unknown}; give these routes a parser")
    name = label or f"the {agent}"

    def run(event: dict[str, Any], context: Any) -> dict[str, Any]:  # noqa: ARG001 - Powertools' idempotent passes (event, context)
        call = _CALL.get()
        try:
            return table[event["detail-type"]].handle(call)
        except InvalidEvent as exc:
            return call.reject(exc.reason)

    keyed = _idempotent(run, settings, monitor)

    def screened(event: Any, context: Any) -> dict[str, Any]:
        problem, route, parsed = _screen(event, table, name)
        if problem is not None or route is None:
            return reject(event, problem or "no route", agent=agent, settings=settings, monitor=monitor)
        if isinstance(parsed, Envelope):
            monitor.bind(incident_id=parsed.metadata.incident_id, correlation_id=parsed.metadata.correlation_id)
        call = Call(event, context, parsed, agent, settings, monitor, ports)
        token = _CALL.set(call)
        try:
            # An answer is never empty: `or` carries on only when the first step had none.
            answer = (route.first and route.first(call)) or (
                keyed(event, context) if route.idempotent else run(event, context)
            )
            monitor.settle(context)
            return answer
        finally:
            _CALL.reset(token)

    @logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
    @metrics.log_metrics(capture_cold_start_metric=True)
    @traced
    @instrument(monitor)
    def handler(event: Any, context: Any) -> dict[str, Any]:
        return screened(event, context)

    return handler
