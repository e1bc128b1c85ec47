"""`selfheal inject`: an issue (flags or a file) or a real-shaped CloudWatch alarm state change."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from selfheal_core import catalog as names
from selfheal_core.bus import put_entries

from .target import OperatorError, Target, UsageError, local_control

AWS_SOURCE_PREFIX = "aws."


def _put(target: Target, entries: list[dict[str, Any]]) -> dict[str, Any]:
    as_aws = target.local and any(str(e.get("Source", "")).startswith(AWS_SOURCE_PREFIX) for e in entries)
    result = put_entries(entries, client=_LocalAwsService(target) if as_aws else target.client("events"))
    return {"event_ids": result.event_ids, "sent": len(result.event_ids), "failed": result.failed}


class _LocalAwsService:
    """PutEvents refuses `aws.*` sources to anyone but the service that owns them: the local
    runtime emits them as the service would, through its control API (same request shape)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        return dict(local_control(self.target, "aws-events", {"entries": Entries}))


def issue_detail(
    *,
    service: str,
    issue_type: str,
    severity: str,
    summary: str,
    signals: dict[str, float] | None = None,
    evidence: list[str] | None = None,
    code_dir: Path | None = None,
    test_command: str | None = None,
    idempotency_key: str | None = None,
    resource: str | None = None,
) -> dict[str, Any]:
    detail: dict[str, Any] = {"service": service, "issue_type": issue_type, "severity": severity, "summary": summary}
    if signals:
        detail["signals"] = signals
    if evidence:
        detail["evidence"] = evidence
    if code_dir:
        files = {}
        for path in sorted(Path(code_dir).rglob("*")):
            if (
                path.is_file()
                and "__pycache__" not in path.parts
                and path.suffix in (".py", ".txt", ".cfg", ".toml", ".ini", ".json")
            ):
                files[str(path.relative_to(code_dir))] = path.read_text()
        detail["code"] = {"files": files, **({"test_command": test_command} if test_command else {})}
    if idempotency_key:
        detail["idempotency_key"] = idempotency_key
    if resource:
        detail["resource"] = resource
    return detail


def entries_from_file(target: Target, path: Path) -> list[dict[str, Any]]:
    """A file may hold put-events entries, an EventBridge event, or an IssueReported detail."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--file {path}: {exc}") from None
    if isinstance(raw, dict) and "Entries" in raw:
        raw = raw["Entries"]
    if isinstance(raw, list):
        out = []
        for n, e in enumerate(raw):
            if not isinstance(e, dict) or not e.get("DetailType") or not e.get("Source"):
                raise UsageError(f"--file {path}: entry {n} is not a put-events entry with Source and DetailType")
            entry = dict(e)
            entry.setdefault("EventBusName", target.bus)
            if not isinstance(entry.get("Detail"), str):
                entry["Detail"] = json.dumps(entry.get("Detail", {}))
            out.append(entry)
        return out
    if isinstance(raw, dict) and "detail-type" in raw and "detail" in raw:
        bus = "default" if str(raw.get("source", "")).startswith("aws.") else target.bus
        return [
            {
                "Source": raw.get("source") or names.INJECT_SOURCE,
                "DetailType": raw["detail-type"],
                "Detail": json.dumps(raw["detail"]),
                "Resources": raw.get("resources", []),
                "EventBusName": bus,
            }
        ]
    if isinstance(raw, dict):
        return [
            {
                "Source": names.INJECT_SOURCE,
                "DetailType": "IssueReported",
                "Detail": json.dumps(raw),
                "EventBusName": target.bus,
            }
        ]
    raise UsageError(f"--file {path}: expected put-events entries, an EventBridge event or an IssueReported detail")


def inject_entries(target: Target, entries: list[dict[str, Any]], count: int = 1) -> dict[str, Any]:
    result = _put(target, entries * max(1, count))
    result["detail_types"] = sorted({e["DetailType"] for e in entries})
    result["bus"] = sorted({e.get("EventBusName", "default") for e in entries})
    return result


# What describes an alarm's metric: taken from the alarm itself when it exists.
DEFINITION_FIELDS = ("namespace", "metric", "dimensions", "stat", "period", "threshold")
FALLBACK_DEFINITION: dict[str, Any] = {
    "namespace": "AWS/Lambda",
    "metric": "Errors",
    "stat": "Sum",
    "period": 60,
    "threshold": 5.0,
}


def _metric_of(stat: dict[str, Any]) -> dict[str, Any]:
    """A DescribeAlarms MetricStat in the alarm state-change event's shape."""
    metric = stat.get("Metric", {})
    return {
        "metric": {
            "dimensions": {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])},
            "name": metric.get("MetricName", ""),
            "namespace": metric.get("Namespace", ""),
        },
        "period": stat.get("Period", 60),
        "stat": stat.get("Stat", ""),
    }


def alarm_definition(target: Target, alarm_name: str) -> dict[str, Any] | None:
    """The alarm's own definition from DescribeAlarms, in the state-change event's terms; None
    when there is no such alarm. Single-metric and metric-math alarms alike."""
    found = target.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name]).get("MetricAlarms", [])
    if not found:
        return None
    alarm = found[0]
    if alarm.get("MetricName"):
        single = {
            "Metric": {
                "Namespace": alarm.get("Namespace", ""),
                "MetricName": alarm["MetricName"],
                "Dimensions": alarm.get("Dimensions", []),
            },
            "Period": alarm.get("Period", 60),
            "Stat": alarm.get("Statistic") or alarm.get("ExtendedStatistic", ""),
        }
        metrics = [
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm_name)),
                "metricStat": _metric_of(single),
                "returnData": True,
            }
        ]
    else:
        metrics = []
        for query in alarm.get("Metrics", []):
            entry: dict[str, Any] = {"id": query["Id"], "returnData": query.get("ReturnData", True)}
            if "Expression" in query:
                entry.update(expression=query["Expression"], label=query.get("Label", query["Id"]))
            if "MetricStat" in query:
                entry["metricStat"] = _metric_of(query["MetricStat"])
            metrics.append(entry)
    return {
        "arn": alarm.get("AlarmArn"),
        "description": alarm.get("AlarmDescription"),
        "threshold": float(alarm.get("Threshold", 0.0)),
        "metrics": metrics,
    }


def alarm_event_detail(
    *,
    alarm_name: str,
    state: str,
    namespace: str,
    metric: str,
    dimensions: dict[str, str],
    stat: str,
    period: int,
    threshold: float,
    value: float,
    description: str | None = None,
    metrics: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`detail` of a real "CloudWatch Alarm State Change" event: of a single-metric alarm, or of
    the alarm whose `metrics` (the event's configuration.metrics) are given."""
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) - timedelta(seconds=period)

    def cw(ts: datetime) -> str:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"

    previous = "OK" if state == "ALARM" else "ALARM"
    comparison = "greater than or equal to"
    verb = "was" if state == "ALARM" else "was not"
    reason = (
        f"Threshold Crossed: 1 out of the last 1 datapoints [{value} ({start:%d/%m/%y %H:%M:%S})] {verb} {comparison} "
        f"the threshold ({threshold}) (minimum 1 datapoint for {previous} -> {state} transition)."
    )
    reason_data = {
        "version": "1.0",
        "queryDate": cw(now),
        "startDate": cw(start),
        "statistic": stat,
        "period": period,
        "recentDatapoints": [value],
        "threshold": threshold,
        "evaluatedDatapoints": [{"timestamp": cw(start), "sampleCount": 1.0, "value": value}],
    }
    if metrics is None:
        metrics = [
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm_name)),
                "metricStat": {
                    "metric": {"dimensions": dimensions, "name": metric, "namespace": namespace},
                    "period": period,
                    "stat": stat,
                },
                "returnData": True,
            }
        ]
    return {
        "alarmName": alarm_name,
        "state": {"value": state, "reason": reason, "reasonData": json.dumps(reason_data), "timestamp": cw(now)},
        "previousState": {
            "value": previous,
            "reason": "Threshold Crossed (previous evaluation)",
            "timestamp": cw(now - timedelta(minutes=5)),
        },
        "configuration": {
            "description": description or f"{metric} of {', '.join(dimensions.values()) or namespace}",
            "metrics": metrics,
        },
    }


def inject_alarm(
    target: Target, *, alarm_name: str, state: str = "ALARM", value: float = 37.0, count: int = 1, **given: Any
) -> dict[str, Any]:
    """Locally: the real-shaped event on the default bus. On AWS (where `aws.*` sources cannot be
    put), the alarm itself is set to the state, which makes CloudWatch emit the real event.

    The event describes the alarm as DescribeAlarms does when it exists; `given` (namespace,
    metric, dimensions, stat, period, threshold) describes one that does not, and is refused for
    one that does (its own definition is the truth, not what was typed)."""
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - set(DEFINITION_FIELDS))
    if unknown:
        raise TypeError(f"inject_alarm: unexpected {unknown}")
    if not target.local and not target.endpoint_url:
        cw = target.client("cloudwatch")
        found = cw.describe_alarms(AlarmNames=[alarm_name]).get("MetricAlarms", [])
        if not found:
            raise OperatorError(
                f"alarm {alarm_name!r} not found in {target.region}: on AWS `inject --alarm` sets an existing alarm's state"
            )
        for _ in range(max(1, count)):
            cw.set_alarm_state(
                AlarmName=alarm_name,
                StateValue=state,
                StateReason="selfheal inject --alarm (operator test)",
            )
        return {"alarm": alarm_name, "set_state": state, "times": count}
    region = target.region
    existing = alarm_definition(target, alarm_name)
    if existing is not None:
        if given:
            flags = " ".join(f"--{k}" for k in sorted(given))
            raise UsageError(f"alarm {alarm_name!r} exists: the event describes it as defined; drop {flags}")
        first = next((m["metricStat"] for m in existing["metrics"] if "metricStat" in m), None)
        detail = alarm_event_detail(
            alarm_name=alarm_name,
            state=state,
            value=value,
            namespace=first["metric"]["namespace"] if first else "",
            metric=first["metric"]["name"] if first else "expression",
            dimensions=first["metric"]["dimensions"] if first else {},
            stat=first["stat"] if first else "",
            period=int(first["period"]) if first else 60,
            threshold=existing["threshold"],
            description=existing["description"],
            metrics=existing["metrics"],
        )
        arn = existing["arn"] or f"arn:aws:cloudwatch:{region}:123456789012:alarm:{alarm_name}"
    else:
        definition = {**FALLBACK_DEFINITION, **given}
        if "dimensions" not in definition:
            # A Lambda alarm named <function>-<metric> is about that function.
            lambda_alarm = definition["namespace"] == "AWS/Lambda"
            definition["dimensions"] = {"FunctionName": alarm_name.rsplit("-", 1)[0]} if lambda_alarm else {}
        detail = alarm_event_detail(alarm_name=alarm_name, state=state, value=value, **definition)
        arn = f"arn:aws:cloudwatch:{region}:123456789012:alarm:{alarm_name}"
    entry = {
        "Source": "aws.cloudwatch",
        "DetailType": "CloudWatch Alarm State Change",
        "Detail": json.dumps(detail),
        "Resources": [arn],
        "EventBusName": "default",
    }
    result = _put(target, [entry] * max(1, count))
    result["alarm"] = alarm_name
    return result
