"""The daily LLM budget as a hard stop (docs/architecture.md, "Monitoring and cost"): reserve before the call, reconcile after.

One item per UTC day, pk BUDGET#LLM / sk <yyyy-mm-dd>, holds `reserved_usd`, `spent_usd` and
their sum `committed_usd`. DynamoDB conditions cannot add, so "reserved + spent + amount <=
limit" is written as `committed_usd <= limit - amount`, the headroom computed here. One
conditional UpdateItem per reservation: concurrent callers can never overspend.
A reservation that is never reconciled (the function died) stays reserved until the day rolls over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from botocore.exceptions import ClientError

from selfheal_core import aws
from selfheal_core.events import utc_now
from selfheal_core.observability import logger

from . import names
from .emf import MetricSink

BUDGET_PK = "BUDGET#LLM"
_MICRO = Decimal("0.000000001")
# The largest figure written: far above any real budget or call, and small enough that quantizing
# to 1e-9 stays within Decimal's 28 digits (a 1e20 USD "cost" raised InvalidOperation).
MAX_USD = Decimal(10**12)


def _figure(value: object) -> Decimal | None:
    """`value` as USD, or None when it is no cost at all (negative, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    amount = Decimal(str(value))
    return None if amount.is_nan() or amount < 0 else amount


def _usd(amount: Decimal) -> Decimal:
    """Capped at MAX_USD (infinity too), rounded to 1e-9 USD, written without trailing zeros or
    exponent (plain DynamoDB numbers)."""
    text = format(min(amount, MAX_USD).quantize(_MICRO, rounding=ROUND_HALF_UP), "f")
    return Decimal(text.rstrip("0").rstrip(".") if "." in text else text)


@dataclass(frozen=True)
class BudgetStatus:
    period: str
    limit_usd: float
    reserved_usd: float
    spent_usd: float
    remaining_usd: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reservation:
    """Holds `amount_usd` of the period's budget until `reconcile` moves the actual cost to spent."""

    def __init__(self, guard: BudgetGuard, period: str, amount_usd: Decimal, model: str) -> None:
        self.guard = guard
        self.period = period
        self.amount_usd = float(amount_usd)
        self.model = model
        self._amount = amount_usd
        self._done = False
        self._lock = threading.Lock()

    def reconcile(self, actual_cost_usd: float) -> None:
        """Idempotent: a second call (e.g. from a retry path) changes nothing.

        A figure that is no cost (negative, NaN, not a number) charges the reservation, an
        absurd one is capped: never raises on the figure, never under-counts.
        """
        with self._lock:
            if self._done:
                return
            figure = _figure(actual_cost_usd)
            actual = self._amount if figure is None else _usd(figure)
            if figure is None or figure > MAX_USD:
                logger.warning(
                    "LLM budget: an implausible call cost was settled safely",
                    extra={"reported": repr(actual_cost_usd)[:100], "charged_usd": float(actual), "model": self.model},
                )
            # Marked done only once settled: a failed write can be retried, not leaked.
            self.guard._settle(self.period, reserved=self._amount, actual=actual)
            self._done = True

    def release(self) -> None:
        """The call was not made (or failed before any token was billed)."""
        self.reconcile(0.0)


class BudgetGuard:
    """Implements lambdas/engineer/providers/base.py BudgetGuard; `limit_usd` may be a callable (hot reload)."""

    def __init__(
        self,
        table_name: str,
        limit_usd: float | Callable[[], float],
        *,
        environment: str = "",
        sink: MetricSink | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.table_name = table_name
        self._limit = limit_usd
        self.environment = environment
        self.sink = sink
        self._clock = clock or (lambda: datetime.now(UTC))

    def limit_usd(self) -> float:
        return float(self._limit() if callable(self._limit) else self._limit)

    def period(self) -> str:
        return self._clock().date().isoformat()

    def reserve(self, max_cost_usd: float, *, model: str) -> Reservation | None:
        period, figure, limit_figure = self.period(), _figure(max_cost_usd), _figure(self.limit_usd())
        limit = Decimal(0) if limit_figure is None else _usd(limit_figure)  # no usable limit: refuse every call
        if figure is None:  # an estimate that is no cost cannot be reserved safely
            self._refused(period, MAX_USD, limit, model)
            return None
        amount = _usd(figure)
        headroom = limit - amount
        if headroom < 0:
            self._refused(period, amount, limit, model)
            return None
        try:
            result = aws.table(self.table_name).update_item(
                Key={"pk": BUDGET_PK, "sk": period},
                UpdateExpression="ADD reserved_usd :a, committed_usd :a SET limit_usd = :limit, updated_at = :now",
                ConditionExpression="attribute_not_exists(committed_usd) OR committed_usd <= :headroom",
                ExpressionAttributeValues={":a": amount, ":limit": limit, ":headroom": headroom, ":now": utc_now()},
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            self._refused(period, amount, limit, model)
            return None
        committed = result["Attributes"]["committed_usd"]
        self._gauge(committed, limit)
        return Reservation(self, period, amount, model)

    def budget_status(self) -> BudgetStatus:
        period = self.period()
        item = (
            aws.table(self.table_name).get_item(Key={"pk": BUDGET_PK, "sk": period}, ConsistentRead=True).get("Item")
            or {}
        )
        limit = self.limit_usd()
        reserved = float(item.get("reserved_usd", 0))
        spent = float(item.get("spent_usd", 0))
        return BudgetStatus(period, limit, reserved, spent, max(0.0, limit - reserved - spent))

    # ------------------------------------------------------------------ internals
    def _settle(self, period: str, *, reserved: Decimal, actual: Decimal) -> None:
        aws.table(self.table_name).update_item(
            Key={"pk": BUDGET_PK, "sk": period},
            UpdateExpression="ADD reserved_usd :release, spent_usd :actual, committed_usd :delta SET updated_at = :now",
            ExpressionAttributeValues={
                ":release": -reserved,
                ":actual": actual,
                ":delta": actual - reserved,
                ":now": utc_now(),
            },
        )

    def _refused(self, period: str, amount: Decimal, limit: Decimal, model: str) -> None:
        logger.warning(
            "LLM budget refused a reservation",
            extra={"period": period, "amount_usd": float(amount), "limit_usd": float(limit), "model": model},
        )
        if self.sink is not None:
            self.sink.add(names.COSTS, names.BUDGET_REFUSALS, 1, dimensions=[{names.ENVIRONMENT: self.environment}])

    def _gauge(self, committed: Decimal, limit: Decimal) -> None:
        if self.sink is not None and limit > 0:
            self.sink.add(
                names.COSTS,
                names.BUDGET_USED_PERCENT,
                float(committed / limit * 100),
                dimensions=[{names.ENVIRONMENT: self.environment}],
                unit="Percent",
            )


def notify_budget_paused(topic_arn: str, incident_id: str, reason: str) -> str:
    """Email the operators (alerts topic) that an incident waits for budget. Returns the message id."""
    message = (
        f"Incident {incident_id} is paused (BUDGET_PAUSED): the daily LLM budget cannot cover the next model call.\n"
        f"Reason: {reason[:1000]}\n\n"
        "No model call was made. The incident resumes when the budget is raised "
        "(SSM parameter <prefix>daily-llm-budget-usd) or the UTC day rolls over.\n"
        f"Inspect it with: selfheal trace {incident_id}"
    )
    response = aws.client("sns").publish(
        TopicArn=topic_arn,
        Subject=f"Selfheal: incident {incident_id} paused by the LLM budget"[:100],
        Message=message,
        MessageAttributes={
            "event": {"DataType": "String", "StringValue": "BudgetPaused"},
            "incident_id": {"DataType": "String", "StringValue": incident_id},
        },
    )
    return response["MessageId"]
