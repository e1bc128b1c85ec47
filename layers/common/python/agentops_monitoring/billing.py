"""Lambda cost from the bill's own numbers: the platform's `REPORT` lines, reconciled per request id.

Every agent invocation records an *estimate* of its Lambda cost from inside the handler
(AgentOpsMonitor.track_lambda_execution). That misses the init phase, which AWS bills for
managed runtimes since August 2025. After each invocation the Lambda platform writes one
`REPORT` line to the function's log group:

    REPORT RequestId: <uuid>\tDuration: 12.34 ms\tBilled Duration: 873 ms\tMemory Size: 256 MB\t
    Max Memory Used: 81 MB\tInit Duration: 860.02 ms\t

A subscription filter sends these lines to the cost reconciler, which prices `Billed Duration`
x `Memory Size` at the table's GB-second price plus the request, and replaces the estimate:

* The monitor wrote, in one transaction with the estimate's cost record, an invocation link
  `LAMBDA#<request id>` | `#INVOCATION` naming the cost record, the agent and the incident.
* The reconciler updates the cost record (cost_usd becomes the billed figure, the estimate
  stays as `estimated_usd`) and adds the difference to the incident's cost_usd in one
  transaction, on condition that the record is not billed yet: a replayed batch changes
  nothing, and a crash between the two writes cannot happen.
* An invocation that never reached the monitor (a timeout, a crash at import) has no link:
  its billed cost is recorded for the agent, once (the link is created with it).

Log text is untrusted (a handler can print anything, including a line that looks like a
REPORT line). A line only changes a record when its request id was linked by the same agent's
monitor, its `Memory Size` is the one that invocation ran with and its `Billed Duration`
covers the duration the handler measured; otherwise it is counted as implausible and logged.
What remains possible is a handler printing a plausible line for its own request before the
platform does: the first line wins, so such a forgery can overstate that invocation's cost
(the safe direction for budgets and alarms) but understate it by at most its init phase.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from selfheal_core import aws, keys
from selfheal_core.ddb import from_item, get_items, to_item, typed_operation
from selfheal_core.observability import logger

from . import names, records
from .costs import PriceTable
from .emf import MetricSink

LINK_SK = "#INVOCATION"
LINK_TTL_DAYS = 90
# Lambda's limits: a 15-minute timeout and a 10-second init phase (plus rounding).
MAX_BILLED_MS = 900_000 + 10_000 + 1
# Lines reconciled together: one BatchGetItem (<= 100 keys) and one transaction of at most
# 2 writes per line + 1 per incident (<= 100 items).
BATCH_LINES = 25
REQUEST_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FIELD = re.compile(r"^(?P<key>[A-Za-z][A-Za-z ]*): (?P<value>\S+)(?: (?P<unit>ms|MB))?$")


def link_pk(request_id: str) -> str:
    return f"LAMBDA#{request_id}"


@dataclass(frozen=True)
class Report:
    request_id: str
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_mb: int | None = None
    init_ms: float | None = None


class Outcome(StrEnum):
    BILLED = "billed"  # the estimate was replaced by the billed figure
    UNLINKED = "unlinked"  # no monitor record (the invocation failed before it): billed cost recorded for the agent
    DUPLICATE = "duplicate"  # already reconciled (a replayed batch)
    IMPLAUSIBLE = "implausible"  # does not match the invocation it names: ignored
    NOT_A_REPORT = "not_a_report"


def parse_report(message: str) -> Report | None:
    """The fields of one platform REPORT line, or None when the line is not one."""
    first = message.strip("\n").split("\n", 1)[0]  # X-Ray adds a second line: "XRAY TraceId: ..."
    if not first.startswith("REPORT RequestId: "):
        return None
    fields: dict[str, str] = {}
    for part in first[len("REPORT ") :].split("\t"):
        if not part.strip():
            continue
        match = _FIELD.match(part.strip())
        if match is None:
            return None
        fields[match.group("key")] = match.group("value")
    try:
        request_id = fields["RequestId"]
        if not REQUEST_ID.fullmatch(request_id):
            return None
        report = Report(
            request_id=request_id.lower(),
            duration_ms=float(fields["Duration"]),
            billed_ms=int(fields["Billed Duration"]),
            memory_mb=int(fields["Memory Size"]),
            max_memory_mb=int(fields["Max Memory Used"]) if "Max Memory Used" in fields else None,
            init_ms=float(fields["Init Duration"]) if "Init Duration" in fields else None,
        )
    except (KeyError, ValueError):
        return None
    numbers = [report.duration_ms, report.billed_ms, report.memory_mb, report.init_ms or 0.0]
    if any(not math.isfinite(n) or n < 0 for n in numbers) or not 128 <= report.memory_mb <= 10_240:
        return None
    if not 1 <= report.billed_ms <= MAX_BILLED_MS:
        return None
    return report


def decode_subscription(event: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudWatch Logs subscription event: {"awslogs": {"data": base64(gzip(json))}}."""
    data = (event.get("awslogs") or {}).get("data") if isinstance(event, Mapping) else None
    if not isinstance(data, str):
        raise ValueError("not a CloudWatch Logs subscription event")
    payload = json.loads(gzip.decompress(base64.b64decode(data, validate=True)))
    if not isinstance(payload, dict):
        raise ValueError("the subscription payload is not a JSON object")
    return payload


def encode_subscription(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of decode_subscription (what CloudWatch Logs delivers to a Lambda destination)."""
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


@dataclass(frozen=True)
class _Planned:
    """A line whose writes are in the batch's transaction."""

    index: int
    report: Report
    outcome: Outcome
    agent: str  # whose cost it is (for the metrics)
    billed: float
    delta: float  # what the total cost moves by


class BilledCostReconciler:
    def __init__(
        self,
        *,
        environment: str,
        monitoring_table: str,
        decisions_table: str,
        prices: Callable[[], PriceTable],
        agents_by_log_group: Mapping[str, str],
        architecture: str = "x86_64",
        sink: MetricSink | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.environment = environment
        self.monitoring_table = monitoring_table
        self.decisions_table = decisions_table
        self._prices = prices
        self.agents_by_log_group = dict(agents_by_log_group)
        self.architecture = architecture
        self.sink = sink or MetricSink()
        self._clock = clock or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------ batches
    def handle(self, event: Mapping[str, Any]) -> dict[str, int]:
        """One subscription delivery; raises on storage errors so Lambda retries the whole batch."""
        payload = decode_subscription(event)
        if payload.get("messageType") != "DATA_MESSAGE":
            return {}  # CONTROL_MESSAGE: CloudWatch Logs checking that the destination is reachable
        log_group = str(payload.get("logGroup", ""))
        agent = self.agents_by_log_group.get(log_group)
        if agent is None:
            raise ValueError(f"log group {log_group!r} is not an agent's")
        counts: dict[str, int] = {}
        reports: list[Report] = []
        for log_event in payload.get("logEvents") or []:
            message = log_event.get("message", "") if isinstance(log_event, Mapping) else ""
            report = parse_report(str(message))
            if report is None:
                counts[Outcome.NOT_A_REPORT.value] = counts.get(Outcome.NOT_A_REPORT.value, 0) + 1
            else:
                reports.append(report)
        for start in range(0, len(reports), BATCH_LINES):
            for outcome in self.reconcile_batch(reports[start : start + BATCH_LINES], agent):
                counts[outcome.value] = counts.get(outcome.value, 0) + 1
        self.sink.flush()
        return counts

    def reconcile_batch(self, reports: list[Report], agent: str) -> list[Outcome]:
        """The lines of one delivery: their links in one BatchGetItem, their writes in one transaction.

        Lines are judged in order, each against the link as the lines before it leave it (so a line
        repeated in the batch is a duplicate, as it would be one by one). The transaction is all or
        nothing; when a condition fails (a concurrent delivery, a deleted incident) the planned lines
        are reconciled one by one (`reconcile`), which sorts out each line's own case."""
        links = self._links({r.request_id for r in reports})
        now = self._now()
        outcomes: list[Outcome] = []
        planned: list[_Planned] = []
        writes: list[dict[str, Any]] = []
        deltas: dict[str, float] = {}
        for index, report in enumerate(reports):
            billed = self._prices().billed_lambda_cost(report.billed_ms, report.memory_mb, self.architecture)
            link = links.get(report.request_id)
            if link is None:
                links[report.request_id], items = self._unlinked_items(report, agent, billed, now)
                planned.append(_Planned(index, report, Outcome.UNLINKED, agent, billed, billed))
            elif (judged := self._judge(report, agent, link)) is not None:
                self._count(judged, report, agent, link)
                outcomes.append(judged)
                continue
            else:
                items, incident_id, delta = self._billed_items(report, link, billed, now)
                if incident_id:
                    deltas[incident_id] = deltas.get(incident_id, 0.0) + delta
                links[report.request_id] = {**link, "billed_usd": billed}
                planned.append(_Planned(index, report, Outcome.BILLED, str(link.get("agent", "")), billed, delta))
            writes.extend(items)
            outcomes.append(Outcome.BILLED)  # placeholder until the transaction says
        if planned:
            writes.extend(self._incident_update(i, d) for i, d in sorted(deltas.items()))
            for line, outcome in zip(planned, self._commit(writes, planned, agent), strict=True):
                outcomes[line.index] = outcome
        return outcomes

    def _commit(self, writes: list[dict[str, Any]], planned: list[_Planned], agent: str) -> list[Outcome]:
        try:
            self._transact(writes)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            return [self.reconcile(line.report, agent) for line in planned]
        for line in planned:
            self._metrics(line.agent, line.billed, line.delta)
            self._count(line.outcome, line.report, agent, None)
        return [line.outcome for line in planned]

    # ------------------------------------------------------------------ one REPORT line
    def reconcile(self, report: Report, agent: str) -> Outcome:
        billed = self._prices().billed_lambda_cost(report.billed_ms, report.memory_mb, self.architecture)
        link = self._get(self.monitoring_table, link_pk(report.request_id), LINK_SK)
        if link is None:
            outcome = self._record_unlinked(report, agent, billed)
        else:
            outcome = self._judge(report, agent, link) or self._apply(report, link, billed)
        self._count(outcome, report, agent, link)
        return outcome

    def _judge(self, report: Report, agent: str, link: Mapping[str, Any]) -> Outcome | None:
        """IMPLAUSIBLE or DUPLICATE for a linked line, None when it is to be billed."""
        if link.get("agent") != agent or not _plausible(report, link):
            return Outcome.IMPLAUSIBLE
        if link.get("billed_usd") is not None:
            return Outcome.DUPLICATE
        return None

    def _count(self, outcome: Outcome, report: Report, agent: str, link: Mapping[str, Any] | None) -> None:
        if outcome is Outcome.IMPLAUSIBLE:
            logger.warning(
                "REPORT line does not match the invocation it names; ignored",
                extra={"request_id": report.request_id, "agent": agent, "linked_agent": (link or {}).get("agent")},
            )
        self.sink.add(
            names.COSTS,
            names.BILLING_REPORTS,
            1,
            dimensions=[{names.ENVIRONMENT: self.environment, names.OUTCOME: outcome.value}],
        )

    def _billed_items(
        self, report: Report, link: Mapping[str, Any], billed: float, now: str
    ) -> tuple[list[dict[str, Any]], str | None, float]:
        """The cost record and link updates of a linked line; the incident and its delta to add."""
        billed_fields = {
            ":b": billed,
            ":bd": report.billed_ms,
            ":d": report.duration_ms,
            ":m": report.memory_mb,
            ":i": report.init_ms if report.init_ms is not None else 0.0,
            ":src": "billed",
            ":at": now,
        }
        cost_update = {
            "Update": {
                "TableName": self.monitoring_table,
                "Key": {"pk": link["cost_pk"], "sk": link["cost_sk"]},
                "UpdateExpression": "SET cost_usd = :b, billed_usd = :b, billed_duration_ms = :bd, "
                "report_duration_ms = :d, report_memory_mb = :m, init_duration_ms = :i, "
                "cost_source = :src, billed_at = :at",
                "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(billed_usd)",
                "ExpressionAttributeValues": to_item(billed_fields),
            }
        }
        link_update = {
            "Update": {
                "TableName": self.monitoring_table,
                "Key": {"pk": link_pk(report.request_id), "sk": LINK_SK},
                "UpdateExpression": "SET billed_usd = :b, billed_at = :at",
                "ConditionExpression": "attribute_not_exists(billed_usd)",
                "ExpressionAttributeValues": to_item({":b": billed, ":at": now}),
            }
        }
        estimate = float(link.get("estimated_usd") or 0.0)
        return [cost_update, link_update], link.get("incident_id"), billed - estimate

    def _incident_update(self, incident_id: str, delta: float) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.decisions_table,
                "Key": {"pk": keys.incident_pk(incident_id), "sk": keys.META},
                "UpdateExpression": "ADD cost_usd :delta",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": to_item({":delta": delta}),
            }
        }

    def _apply(self, report: Report, link: dict[str, Any], billed: float) -> Outcome:
        items, incident_id, delta = self._billed_items(report, link, billed, self._now())
        if incident_id:
            items.append(self._incident_update(incident_id, delta))
        try:
            self._transact(items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            again = self._get(self.monitoring_table, link_pk(report.request_id), LINK_SK) or {}
            if again.get("billed_usd") is not None:
                return Outcome.DUPLICATE  # a concurrent delivery of the same line won
            if not incident_id or self._get(self.decisions_table, keys.incident_pk(incident_id), keys.META):
                raise
            self._transact(items[:2])  # the incident is gone: the records are still corrected
        self._metrics(link.get("agent", ""), billed, delta)
        return Outcome.BILLED

    def _unlinked_items(
        self, report: Report, agent: str, billed: float, now: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The link (created billed) and the agent's cost record of a line no monitor linked."""
        cost = records.cost_item(
            agent=agent,
            incident_id=None,
            correlation_id=None,
            kind="lambda",
            cost_usd=billed,
            now=now,
            environment=self.environment,
            request_id=report.request_id,
            billed_usd=billed,
            billed_duration_ms=report.billed_ms,
            report_duration_ms=report.duration_ms,
            report_memory_mb=report.memory_mb,
            init_duration_ms=report.init_ms or 0.0,
            cost_source="billed",
            billed_at=now,
            memory_mb=report.memory_mb,
            architecture=self.architecture,
        )
        link = invocation_link(
            request_id=report.request_id,
            agent=agent,
            incident_id=None,
            cost=cost,
            estimated_usd=None,
            memory_mb=report.memory_mb,
            duration_s=None,
            now=now,
        )
        link["billed_usd"] = billed
        link["billed_at"] = now
        items = [
            {
                "Put": {
                    "TableName": self.monitoring_table,
                    "Item": to_item(link),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Put": {"TableName": self.monitoring_table, "Item": to_item(cost)}},
        ]
        return link, items

    def _record_unlinked(self, report: Report, agent: str, billed: float) -> Outcome:
        _link, items = self._unlinked_items(report, agent, billed, self._now())
        try:
            self._transact(items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            return Outcome.DUPLICATE
        self._metrics(agent, billed, billed)
        return Outcome.UNLINKED

    # ------------------------------------------------------------------ internals
    def _metrics(self, agent: str, billed: float, delta: float) -> None:
        env = {names.ENVIRONMENT: self.environment}
        self.sink.add(
            names.COSTS, names.BILLED_LAMBDA_COST, billed, unit="None", dimensions=[{**env, names.AGENT: agent}]
        )
        # TotalCost carried the estimate; the difference makes it (and the cost alarm) follow the bill.
        self.sink.add(names.COSTS, names.TOTAL_COST, delta, unit="None", dimensions=[{**env, names.AGENT: agent}, env])

    def _links(self, request_ids: set[str]) -> dict[str, dict[str, Any]]:
        """request id -> its invocation link (one consistent BatchGetItem)."""
        found = get_items(self.monitoring_table, [{"pk": link_pk(r), "sk": LINK_SK} for r in sorted(request_ids)])
        return {str(link["request_id"]): link for link in found.values()}

    def _get(self, table: str, pk: str, sk: str) -> dict[str, Any] | None:
        item = aws.table(table).get_item(Key={"pk": pk, "sk": sk}, ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def _transact(self, items: list[dict[str, Any]]) -> None:
        transact(items)

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="milliseconds")


def _plausible(report: Report, link: Mapping[str, Any]) -> bool:
    """A REPORT line for this invocation: same memory, and billed at least what the handler measured."""
    if int(link.get("memory_mb") or 0) != report.memory_mb:
        return False
    measured_ms = float(link.get("duration_s") or 0.0) * 1000
    return report.billed_ms + 1 >= measured_ms and report.duration_ms + 1 >= measured_ms


def invocation_link(
    *,
    request_id: str,
    agent: str,
    incident_id: str | None,
    cost: Mapping[str, Any],
    estimated_usd: float | None,
    memory_mb: int,
    duration_s: float | None,
    now: str,
) -> dict[str, Any]:
    """The item that ties a Lambda request id to its agent, incident and cost record."""
    return {
        "pk": link_pk(request_id),
        "sk": LINK_SK,
        "record_type": "invocation",
        "request_id": request_id,
        "agent": agent,
        "incident_id": incident_id,
        "cost_pk": cost["pk"],
        "cost_sk": cost["sk"],
        "estimated_usd": estimated_usd,
        "memory_mb": memory_mb,
        "duration_s": duration_s,
        "created_at": now,
        "ttl": int(time.time()) + LINK_TTL_DAYS * 86_400,
    }


def transact(items: list[dict[str, Any]]) -> None:
    """TransactWriteItems with resource-style (plain Python / Decimal) values serialized for the client."""
    aws.client("dynamodb").transact_write_items(TransactItems=[typed_operation(item) for item in items])


def report_lines(messages: Iterable[str]) -> list[Report]:
    return [r for r in (parse_report(m) for m in messages) if r is not None]
