"""Scheduled metric scan: Lambda functions whose metrics breach the SSM thresholds become issues.

A breaching function whose configuration or code changed inside the window is left to the next
scan: the window's figures mix the function before and after the change, so a fix Selfheal (or
anyone) applied minutes ago would be judged, and reopened, on the errors it fixed
(docs/decision_log.md, "The scan judges a function on figures after its last change").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from selfheal_core import aws
from selfheal_core.config import ScanThresholds
from selfheal_core.events import IssueReportedV1, IssueType, Severity
from selfheal_core.observability import logger

from .intake import Intake, fingerprint

WINDOW = timedelta(minutes=5)
# CloudWatch rounds the window's start down to whole minutes: a change in the minute before it still counts.
CHANGE_SLACK = timedelta(minutes=1)
MAX_FUNCTIONS = 100  # GetMetricData takes 500 queries; 4 per function


def scan_lambda_metrics(
    thresholds: ScanThresholds, *, exclude_prefix: str, cloudwatch: Any = None, lambda_client: Any = None
) -> list[Intake]:
    cloudwatch = cloudwatch or aws.client("cloudwatch")
    names = sorted(
        {
            d["Value"]
            for m in _all_pages(cloudwatch.list_metrics, "Metrics", Namespace="AWS/Lambda", MetricName="Invocations")
            for d in m.get("Dimensions", [])
            if d["Name"] == "FunctionName" and not d["Value"].startswith(exclude_prefix)
        }
    )[:MAX_FUNCTIONS]
    if not names:
        return []
    queries = []
    for i, name in enumerate(names):
        for metric, stat in (("Invocations", "Sum"), ("Errors", "Sum"), ("Throttles", "Sum"), ("Duration", "p95")):
            queries.append(
                {
                    "Id": f"{metric.lower()}_{i}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/Lambda",
                            "MetricName": metric,
                            "Dimensions": [{"Name": "FunctionName", "Value": name}],
                        },
                        "Period": int(WINDOW.total_seconds()),
                        "Stat": stat,
                    },
                }
            )
    end = datetime.now(UTC)
    results = _all_pages(
        cloudwatch.get_metric_data, "MetricDataResults", MetricDataQueries=queries, StartTime=end - WINDOW, EndTime=end
    )
    values = {r["Id"]: (r["Values"][0] if r.get("Values") else 0.0) for r in results}
    intakes = []
    for i, name in enumerate(names):
        breach = _breach(
            name,
            {m: values.get(f"{m}_{i}", 0.0) for m in ("invocations", "errors", "throttles", "duration")},
            thresholds,
        )
        if breach and not _changed_since(name, end - WINDOW - CHANGE_SLACK, lambda_client or aws.client("lambda")):
            intakes.append(breach)
    return intakes


def _changed_since(function: str, since: datetime, lambda_client: Any) -> bool:
    """Whether the function was changed after `since` (one read, for breaching functions only).
    When its configuration cannot be read the breach stands: the investigation reports why."""
    try:
        modified = lambda_client.get_function_configuration(FunctionName=function).get("LastModified")
        changed_at = datetime.fromisoformat(str(modified))  # 2026-11-27T11:43:15.123+0000
    except (ClientError, ValueError, TypeError) as exc:
        logger.info("scan: last change of a breaching function unknown", extra={"function": function, "why": str(exc)})
        return False
    if changed_at.tzinfo is None or changed_at <= since:
        return False
    logger.info(
        "scan: breach left to the next scan, the function changed inside the window",
        extra={"function": function, "last_modified": modified},
    )
    return True


def _all_pages(call: Any, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = call(**kwargs)
        items.extend(page.get(key, []))
        if not page.get("NextToken"):
            return items
        kwargs["NextToken"] = page["NextToken"]


def _breach(function: str, v: dict[str, float], t: ScanThresholds) -> Intake | None:
    error_rate = 100.0 * v["errors"] / v["invocations"] if v["invocations"] else 0.0
    checks = [
        (
            error_rate > t.error_rate_pct,
            IssueType.HIGH_ERROR_RATE,
            f"error rate {error_rate:.1f}% > {t.error_rate_pct}%",
        ),
        (v["throttles"] > t.throttles, IssueType.THROTTLING, f"{v['throttles']:.0f} throttles > {t.throttles:.0f}"),
        (
            v["duration"] > t.latency_p95_ms,
            IssueType.LATENCY,
            f"p95 duration {v['duration']:.0f} ms > {t.latency_p95_ms:.0f} ms",
        ),
    ]
    for breached, issue_type, summary in checks:
        if breached:
            issue = IssueReportedV1(
                service=function,
                issue_type=issue_type,
                severity=Severity.HIGH if issue_type is IssueType.HIGH_ERROR_RATE else Severity.MEDIUM,
                summary=f"Metric scan: {function} {summary}",
                signals={"error_rate_pct": round(error_rate, 3), **{k: float(x) for k, x in v.items()}},
                resource=f"scan:{function}",
            )
            return Intake(
                issue=issue, fingerprint=fingerprint(function, issue_type.value, f"scan:{function}"), origin="scan"
            )
    return None
