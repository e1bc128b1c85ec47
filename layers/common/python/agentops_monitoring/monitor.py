"""AgentOpsMonitor: every agent's one port for events, decisions, collaboration and cost.

Each call makes one record (keys per selfheal_core/keys.py) and adds EMF metrics to the
monitor's sink; the agent skeleton (selfheal_core/agent.py) flushes it once per invocation. One monitor lives per
function (module level) and is re-bound at the start of every invocation.

Inside an invocation (begin_invocation .. end_invocation) records are held and written when the
step settles (`settle`): together with the invocation's cost records and the incident's cost, in
one transaction, instead of one PutItem each (docs/decision_log.md, "Records settle with the
step"). Outside an invocation (the CLI, tests) each record is written at once.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from selfheal_core import aws, keys
from selfheal_core.config import Settings, get_runtime_parameters, get_settings
from selfheal_core.ddb import to_item, typed_operation
from selfheal_core.incidents import IncidentStore
from selfheal_core.observability import logger
from selfheal_core.redact import scrub_data

from . import billing, names, records
from .budget import BudgetGuard
from .costs import PriceTable, load_price_table
from .emf import MetricSink
from .store import timeline
from .tracing import AgentOpsTracing

_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")

# DynamoDB's limits for one TransactWriteItems: 100 items and 4 MB (kept below it).
TRANSACTION_ITEMS, TRANSACTION_BYTES = 100, 3_500_000


@dataclass
class _Write:
    """One held write: a record (a Put, conditional when `once`: written at most once under its
    key), or an operation another component handed over, already in the client's shape (`raw`)."""

    table: str
    item: dict[str, Any]
    once: bool = False
    on_written: Callable[[], None] | None = None
    raw: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        if self.raw is not None:
            ((_op, spec),) = self.raw.items()
            return spec["TableName"], json.dumps(spec.get("Key"), sort_keys=True)
        return self.table, json.dumps([str(self.item.get("pk")), str(self.item.get("sk"))])

    def operation(self) -> dict[str, Any]:
        if self.raw is not None:
            return self.raw
        put: dict[str, Any] = {"TableName": self.table, "Item": to_item(self.item)}
        if self.once:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        return typed_operation({"Put": put})


class AgentEventType(StrEnum):
    ISSUE_DETECTED = names.ISSUE_DETECTED
    CODE_GENERATED = names.CODE_GENERATED
    TEST_PASSED = names.TEST_PASSED
    TEST_FAILED = names.TEST_FAILED
    DECISION_MADE = names.DECISION_MADE
    COLLABORATION = "collaboration"
    EVENT_REJECTED = names.EVENT_REJECTED


class AgentOpsMonitor:
    def __init__(
        self,
        agent_name: str,
        settings: Settings | None = None,
        *,
        prices: PriceTable | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.agent = agent_name
        self.settings = settings or get_settings()
        self.environment = self.settings.environment
        self.sink = MetricSink()
        self.tracing = AgentOpsTracing(self.settings.secret_name, agent=agent_name, environment=self.environment)
        self._prices = prices
        self._clock = clock or (lambda: datetime.now(UTC))
        self.incident_id: str | None = None
        self.correlation_id: str | None = None
        self._requests: Counter[str] = Counter()
        self._llm_cost_since_decision = 0.0
        # Held records (None: not inside an invocation, write at once) and what to add to the incident's cost.
        self._pending: dict[tuple[str, str], _Write] | None = None  # by item key: a transaction writes an item once
        self._incident_cost: dict[str, float] = {}
        self._settled = self._priced = False
        self._started = time.perf_counter()

    # ------------------------------------------------------------------ binding
    def bind(self, *, incident_id: str | None = None, correlation_id: str | None = None) -> None:
        """Attribute what follows to this incident (agents call it once they know the id)."""
        if incident_id:
            self.incident_id = incident_id
        if correlation_id:
            self.correlation_id = correlation_id
        self.tracing.bind(incident_id=incident_id, correlation_id=correlation_id)

    def begin_invocation(self, event: Any) -> None:
        self.incident_id = self.correlation_id = None
        self._reset_invocation()
        self._pending, self._incident_cost, self._settled, self._priced = {}, {}, False, False
        self._started = time.perf_counter()
        detail = event.get("detail") if isinstance(event, dict) else None
        metadata = detail.get("metadata") if isinstance(detail, dict) else None
        if isinstance(metadata, dict):
            self.incident_id = metadata.get("incident_id") or None
            self.correlation_id = metadata.get("correlation_id") or None
        self.tracing.start(incident_id=self.incident_id, correlation_id=self.correlation_id)

    def settle(self, context: Any, duration_s: float | None = None) -> None:
        """Price the invocation so far and write it with every held record; once per invocation.

        The agent skeleton calls it when a step has finished, inside idempotency: if the write
        fails, the step is not marked done and the Lambda retry redoes it (and its records).
        """
        if self._settled:
            return
        self._settled = True  # a failed settle is not retried by end_invocation: the Lambda retry redoes the step
        self._price(context, duration_s)
        self._write_pending()

    def held_for(self, context: Any) -> tuple[list[dict[str, Any]], float]:
        """The held writes, with the invocation priced so far, as transaction operations (client
        shape), and what they add to the bound incident's cost: for a step that writes them in its
        own transaction (the Manager's fold) and then calls `settled`. Nothing is written here; if
        that transaction fails, `settle` writes them as usual. ([], 0) when they concern other incidents.
        """
        self._price(context)
        if any(cost for incident, cost in self._incident_cost.items() if incident != self.incident_id):
            return [], 0.0
        held = (self._pending or {}).values()
        return [w.operation() for w in held], self._incident_cost.get(self.incident_id or "", 0.0)

    def settled(self) -> None:
        """The caller wrote what `held_for` gave it: nothing is left to write."""
        for write in (self._pending or {}).values():
            if write.on_written is not None:
                write.on_written()
        self._pending, self._incident_cost, self._settled = {}, {}, True

    def _price(self, context: Any, duration_s: float | None = None) -> None:
        if not self._priced:
            self._priced = True
            self.track_lambda_execution(
                context, time.perf_counter() - self._started if duration_s is None else duration_s
            )

    def end_invocation(self, context: Any, duration_s: float, *, success: bool) -> None:
        """Settle (unless the step did), end the trace, flush every namespace; never raises."""
        for step in (
            lambda: self.settle(context, duration_s),
            lambda: self.tracing.end(success=success),
            self.flush,
        ):
            try:
                step()
            except Exception:  # noqa: BLE001 - monitoring must not replace the handler's outcome
                logger.exception("monitoring step failed at the end of the invocation")
        self._pending = None

    def flush(self) -> None:
        self.sink.flush()

    # ------------------------------------------------------------------ records
    def record_event(self, event_type: AgentEventType | str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        name = event_type.value if isinstance(event_type, AgentEventType) else str(event_type)
        if not _EVENT_NAME.fullmatch(name):
            raise ValueError(f"event type must be snake_case: {name!r}")
        item = records.event_item(
            agent=self.agent,
            incident_id=self.incident_id,
            correlation_id=self.correlation_id,
            event_type=name,
            data=data,
            now=self._now(),
        )
        self._put(self.settings.monitoring_table_name, item)
        self._count(names.EVENTS, name, {names.AGENT: self.agent})
        return item

    def record_decision(
        self,
        decision_type: str,
        reasoning_chain: list[dict[str, Any]],
        inputs: Any,
        outputs: Any,
        confidence_score: float,
        *,
        model: str | None = None,
        cost_usd: float | None = None,
        once: str | None = None,
    ) -> dict[str, Any]:
        """`cost_usd` defaults to the LLM cost tracked since this invocation's previous decision.

        `once`: a key for this step of this incident (e.g. "propose_fix#2"). The decision is then
        written at most once, whatever retries and replays run the step again.
        """
        item = self.decision_item(
            decision_type, reasoning_chain, inputs, outputs, confidence_score, model=model, cost_usd=cost_usd, once=once
        )
        # Counted when written: a step run again does not record (or count) its decision twice.
        self._put(self.settings.decisions_table_name, item, once=once is not None, on_written=self.count_decision)
        return item

    def recorded(self, once: str) -> bool:
        """Is the bound incident's step decision `once` written (one read)? Then the invocation
        that recorded it settled, and whatever it announced went out: a retry finishes only a step
        that did not settle."""
        key = {"pk": keys.owner_pk(self.incident_id, self.agent), "sk": records.once_sk(self.agent, once)}
        return "Item" in aws.table(self.settings.decisions_table_name).get_item(Key=key, ConsistentRead=True)

    def decision_item(
        self,
        decision_type: str,
        reasoning_chain: list[dict[str, Any]],
        inputs: Any,
        outputs: Any,
        confidence_score: float,
        *,
        model: str | None = None,
        cost_usd: float | None = None,
        once: str | None = None,
    ) -> dict[str, Any]:
        """The decision record, not written: for a caller that writes it in its own transaction
        (the Manager's fold) and then calls `count_decision`."""
        # Decisions quote test output, log lines and model text: no secret is stored in them.
        reasoning_chain, inputs, outputs = scrub_data(reasoning_chain), scrub_data(inputs), scrub_data(outputs)
        decision = records.Decision.model_validate(
            {"decision_type": decision_type, "reasoning_chain": reasoning_chain, "confidence_score": confidence_score}
        )
        cost = self._llm_cost_since_decision if cost_usd is None else cost_usd
        self._llm_cost_since_decision = 0.0
        return records.decision_item(
            agent=self.agent,
            incident_id=self.incident_id,
            correlation_id=self.correlation_id,
            decision=decision,
            inputs=inputs,
            outputs=outputs,
            model=model,
            cost_usd=cost,
            now=self._now(),
            once=once,
        )

    def count_decision(self) -> None:
        self._count(names.EVENTS, names.DECISION_MADE, {names.AGENT: self.agent})

    def record_collaboration(self, from_agent: str, to_agent: str, message_type: str) -> dict[str, Any]:
        item = records.message_item(
            from_agent=from_agent,
            to_agent=to_agent,
            message_type=message_type,
            incident_id=self.incident_id,
            correlation_id=self.correlation_id,
            now=self._now(),
        )
        self._put(self.settings.monitoring_table_name, item)
        self._requests["eventbridge_events"] += 1  # each message is one PutEvents entry
        self._count(names.COLLABORATION, names.MESSAGE_COUNT, {names.FLOW: names.flow(from_agent, to_agent)})
        self._count(names.COLLABORATION, names.AGENT_COMMUNICATION, {names.MESSAGE_TYPE: message_type})
        return item

    def record_status(self, status: str, *, incident_cost_usd: float | None = None) -> None:
        """Every status an incident enters: `IncidentStore(on_transition=monitor.record_status)`
        (feeds "incidents by status").

        On RESOLVED pass the incident's cost_usd: one ResolvedIncidentCost sample per incident.
        """
        status = getattr(status, "value", status)
        self._count(names.EVENTS, names.INCIDENT_TRANSITIONS, {names.STATUS: status})
        if status == "RESOLVED" and incident_cost_usd is not None:
            self.sink.add(
                names.COSTS,
                names.RESOLVED_INCIDENT_COST,
                float(incident_cost_usd),
                dimensions=[self._dims()],
                unit="None",
            )

    def record_qa_run(self, isolation: str) -> None:
        """One QA runner invocation, by the isolation it ran under (namespaces, microvm, none)."""
        self._count(names.EVENTS, names.QA_RUNS, {names.ISOLATION_MODE: isolation})

    def record_sweep(self, outcome: str) -> None:
        """One overdue incident the sweeper handled: redriven, escalated or failed."""
        self._count(names.EVENTS, names.SWEPT_INCIDENTS, {names.OUTCOME: outcome})

    # ------------------------------------------------------------------ costs
    def prices(self) -> PriceTable:
        if self._prices is not None:
            return self._prices
        return load_price_table(
            parameter_prefix=self.settings.parameter_prefix, max_age=self.settings.parameters_max_age
        )

    def price_call(self, usage: Any) -> float:
        """Price an LlmUsage without recording it (worst-case reservations)."""
        return (
            self.prices()
            .llm_cost(
                usage.model,
                usage.input_tokens,
                usage.output_tokens,
                getattr(usage, "cache_creation_input_tokens", 0),
                getattr(usage, "cache_read_input_tokens", 0),
            )
            .cost_usd
        )

    def track_llm_usage(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_creation_input_tokens: int = 0,
        cache_read_input_tokens: int = 0,
        *,
        cache_write_1h_input_tokens: int = 0,
    ) -> float:
        """Record one model call's usage, priced by the table; returns its cost in USD."""
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
            "cache_write_1h_input_tokens": cache_write_1h_input_tokens,
        }
        priced = self.prices().price_usage(model, usage)
        if priced.unknown_model:
            logger.warning(
                "unknown model priced by the fallback rule",
                extra={"model": model, "priced_as": priced.priced_as, "cost_usd": priced.cost_usd},
            )
            self._count(names.COSTS, names.UNPRICED_MODEL_CALLS, {names.AGENT: self.agent})
        self._record_cost(
            "llm",
            priced.cost_usd,
            model=model,
            usage=usage,
            pricing=priced.pricing(),
            unknown_model=priced.unknown_model,
            breakdown=priced.breakdown,
        )
        self.sink.add(
            names.COSTS,
            names.LLM_COST,
            priced.cost_usd,
            unit="None",
            dimensions=[self._dims({names.AGENT: self.agent}), self._dims({names.MODEL: priced.priced_as})],
        )
        for token_type, count in (
            ("input", input_tokens),
            ("output", output_tokens),
            ("cache_write", cache_creation_input_tokens),
            ("cache_read", cache_read_input_tokens),
        ):
            self.sink.add(
                names.COSTS,
                names.LLM_TOKENS,
                count,
                dimensions=[self._dims({names.MODEL: priced.priced_as, names.TOKEN_TYPE: token_type})],
            )
        self._llm_cost_since_decision += priced.cost_usd
        self.tracing.llm_span(model, usage, priced.cost_usd)
        return priced.cost_usd

    def track_lambda_execution(self, context: Any, duration: float) -> float:
        """Price this invocation (compute + the requests it made) and record it; returns USD."""
        memory_mb = int(
            getattr(context, "memory_limit_in_mb", 0) or os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 128)
        )
        architecture = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
        prices = self.prices()
        compute = prices.lambda_cost(duration, memory_mb, architecture)
        details = {
            "duration_s": round(duration, 6),
            "memory_mb": memory_mb,
            "architecture": architecture,
            "function_name": getattr(context, "function_name", None),
        }
        request_id = str(getattr(context, "aws_request_id", "") or "").lower()
        self.sink.add(
            names.COSTS, names.LAMBDA_COST, compute, unit="None", dimensions=[self._dims({names.AGENT: self.agent})]
        )
        requests = dict(self._requests)
        self._requests.clear()
        estimated = billing.REQUEST_ID.fullmatch(request_id) is not None
        # The cost records below, and the add to the incident, are writes of this invocation too
        # (written in one transaction with the held records: two write units per item).
        own_writes = 4 if estimated else (2 if self.incident_id else 1)
        requests["dynamodb_writes"] = requests.get("dynamodb_writes", 0) + own_writes
        events = prices.request_cost(**requests)
        if estimated:
            # Estimated now; the cost reconciler replaces it with the billed figure from the REPORT line.
            self._record_lambda_estimate(compute, request_id, details, events_usd=events, requests=requests)
        else:
            self._record_cost("lambda", compute, **details)
            self._record_cost("events", events, requests=requests)
        self.sink.add(
            names.COSTS, names.EVENT_COST, events, unit="None", dimensions=[self._dims({names.AGENT: self.agent})]
        )
        return compute + events

    def budget_guard(self) -> BudgetGuard:
        """Today's LLM budget; the limit is re-read from SSM (cached) at every reservation."""
        return BudgetGuard(
            self.settings.monitoring_table_name,
            lambda: get_runtime_parameters(self.settings).daily_llm_budget_usd,
            environment=self.environment,
            sink=self.sink,
            clock=self._clock,
        )

    # ------------------------------------------------------------------ reads / tracing
    def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        return timeline(
            incident_id,
            decisions_table=self.settings.decisions_table_name,
            monitoring_table=self.settings.monitoring_table_name,
        )

    # ------------------------------------------------------------------ internals
    def _reset_invocation(self) -> None:
        self._requests = Counter()
        self._llm_cost_since_decision = 0.0

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="milliseconds")

    def _dims(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {names.ENVIRONMENT: self.environment, **(extra or {})}

    def _count(self, namespace: str, name: str, extra: dict[str, str]) -> None:
        self.sink.add(namespace, name, 1, dimensions=[self._dims(extra)])

    def _put(
        self,
        table_name: str,
        item: dict[str, Any],
        *,
        once: bool = False,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        """Hold the record for the step's settle, or (outside an invocation) write it now.

        `once`: write only if no item has this key (a step run again records its decision once);
        `on_written` runs when the record is actually written.
        """
        write = _Write(table_name, item, once, on_written)
        self._requests["dynamodb_writes"] += 1
        if self._pending is None:
            self._transact([write], {})
        else:
            self._pending.setdefault(write.key, write)  # the first record under a key is the one written

    def hold(self, operation: dict[str, Any]) -> None:
        """Write another component's operation (client shape) with the step's records when it settles
        (Powertools idempotency's "completed" write, see selfheal_core/edge.py); now outside an invocation."""
        write = _Write("", {}, raw=operation)
        self._requests["dynamodb_writes"] += 1
        if self._pending is None:
            self._transact([write], {})
        else:
            self._pending.pop(write.key, None)
            self._pending[write.key] = write

    def _write_pending(self) -> None:
        held, self._pending = list((self._pending or {}).values()), {}
        # Handed-over operations (idempotency's COMPLETED) go in the last transaction: if an earlier
        # chunk fails, the step is not marked done and its retry writes the records.
        held = [w for w in held if w.raw is None] + [w for w in held if w.raw is not None]
        costs, self._incident_cost = self._incident_cost, {}
        chunk: list[_Write] = []
        size = 0
        for write in held:
            item_size = len(json.dumps(write.item, default=str))
            if chunk and (len(chunk) + len(costs) >= TRANSACTION_ITEMS or size + item_size > TRANSACTION_BYTES):
                self._transact(chunk, {})
                chunk, size = [], 0
            chunk.append(write)
            size += item_size
        if chunk or costs:
            self._transact(chunk, costs)  # the incident totals go with the last records

    def _transact(self, writes: list[_Write], incident_costs: dict[str, float]) -> None:
        """Write records and add to incidents' cost in one transaction.

        A record that exists already (a `once` write: a decision or invocation link an earlier run
        wrote) and an incident that is gone are left out, and the rest is written.
        """
        store = IncidentStore(self.settings.decisions_table_name)
        costs = [(incident_id, cost) for incident_id, cost in incident_costs.items() if cost]
        while writes or costs:
            operations = [w.operation() for w in writes]
            operations += [typed_operation({"Update": store.cost_update(i, c)}) for i, c in costs]
            try:
                aws.client("dynamodb").transact_write_items(TransactItems=operations)
            except ClientError as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                failed = {n for n, code in enumerate(reasons) if code == "ConditionalCheckFailed"}
                if not failed or any(code not in (None, "None", "ConditionalCheckFailed") for code in reasons):
                    raise  # throttling, a conflict, a validation error: the Lambda retry redoes the step
                for n, (incident_id, _cost) in enumerate(costs, start=len(writes)):
                    if n in failed:
                        logger.warning("cost not added: incident not found", extra={"incident_id": incident_id})
                costs = [c for n, c in enumerate(costs, start=len(writes)) if n not in failed]
                writes = [w for n, w in enumerate(writes) if n not in failed]
                continue
            for write in writes:
                if write.on_written is not None:
                    write.on_written()
            return

    def _record_cost(self, kind: str, cost_usd: float, **details: Any) -> None:
        item = records.cost_item(
            agent=self.agent,
            incident_id=self.incident_id,
            correlation_id=self.correlation_id,
            kind=kind,
            cost_usd=cost_usd,
            now=self._now(),
            environment=self.environment,
            **details,
        )
        self._put(self.settings.monitoring_table_name, item)
        self._add_to_incident(cost_usd)
        # TotalCost rolls up to (environment) alone: the cost alarm needs one series.
        self.sink.add(
            names.COSTS,
            names.TOTAL_COST,
            cost_usd,
            unit="None",
            dimensions=[self._dims({names.AGENT: self.agent}), self._dims()],
        )

    def _record_lambda_estimate(
        self, cost_usd: float, request_id: str, details: dict[str, Any], *, events_usd: float, requests: dict[str, Any]
    ) -> None:
        """The invocation's cost records, its invocation link (the reconciler's key) and the incident's total."""
        now = self._now()
        common: dict[str, Any] = {
            "agent": self.agent,
            "incident_id": self.incident_id,
            "correlation_id": self.correlation_id,
            "now": now,
            "environment": self.environment,
        }
        item = records.cost_item(
            kind="lambda",
            cost_usd=cost_usd,
            request_id=request_id,
            estimated_usd=cost_usd,
            cost_source="estimate",
            **common,
            **details,
        )
        events_item = records.cost_item(kind="events", cost_usd=events_usd, requests=requests, **common)
        link = billing.invocation_link(
            request_id=request_id,
            agent=self.agent,
            incident_id=self.incident_id,
            cost=item,
            estimated_usd=cost_usd,
            memory_mb=details["memory_mb"],
            duration_s=details["duration_s"],
            now=now,
        )
        table = self.settings.monitoring_table_name
        self._put(table, item)
        self._put(table, events_item)
        self._put(table, link, once=True)  # a retry under the same request id keeps the first estimate's link
        self._add_to_incident(cost_usd + events_usd)
        for cost in (cost_usd, events_usd):
            self.sink.add(
                names.COSTS,
                names.TOTAL_COST,
                cost,
                unit="None",
                dimensions=[self._dims({names.AGENT: self.agent}), self._dims()],
            )

    def _add_to_incident(self, cost_usd: float) -> None:
        """Add to the bound incident's cost: with the held records, or now outside an invocation."""
        if not self.incident_id:
            return
        if self._pending is None:
            self._transact([], {self.incident_id: cost_usd})
        else:
            self._incident_cost[self.incident_id] = self._incident_cost.get(self.incident_id, 0.0) + cost_usd
