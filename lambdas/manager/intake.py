"""Edge parsing for the Manager's three inputs: alarm state changes, IssueReported, metric scans.

Everything becomes an `Intake`: a validated issue plus where it came from and its fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from selfheal_core.events import (
    InvalidEvent,
    IssueReportedV1,
    IssueType,
    Severity,
    describe_validation_error,
    parse_producer_issue,
    storable_number,
)
from selfheal_core.redact import scrub

from .home import Home, locate

# AWS's own events, and the only source each may come from: a producer may put any detail-type
# on the bus, and the Unrouted rule brings it here (a forged alarm would heal, a forged scan run).
ALARM_DETAIL_TYPE, ALARM_SOURCE = "CloudWatch Alarm State Change", "aws.cloudwatch"
ALARM_STATES = frozenset({"ALARM", "OK", "INSUFFICIENT_DATA"})
SCHEDULED_DETAIL_TYPE, SCHEDULED_SOURCE = "Scheduled Event", "aws.events"

# CloudWatch metric name -> issue type (first match wins; checked case-insensitively).
METRIC_ISSUE_TYPES = [
    ("throttl", IssueType.THROTTLING),
    ("error", IssueType.HIGH_ERROR_RATE),
    ("fault", IssueType.HIGH_ERROR_RATE),
    ("5xx", IssueType.HIGH_ERROR_RATE),
    ("duration", IssueType.LATENCY),
    ("latency", IssueType.LATENCY),
    ("memory", IssueType.MEMORY),
    ("exception", IssueType.EXCEPTION),
]
# Metrics whose names match above but that no runbook addresses: failed dead-letter or destination
# delivery, code-signing refusals, clients' own errors (API Gateway 4XX). They classify as unknown.
NOT_FUNCTION_FAULTS = frozenset({"deadlettererrors", "signaturevalidationerrors", "4xxerror", "4xx"})
# AWS/Lambda names the function `FunctionName`; LambdaInsights (the only Lambda memory metrics) `function_name`.
FUNCTION_DIMENSIONS = ("FunctionName", "function_name")
SERVICE_DIMENSIONS = (*FUNCTION_DIMENSIONS, "ServiceName", "service", "Service", "ApiName", "QueueName", "TableName")
# Severity in an alarm's name or description, most severe first, read from whole words (snake_case,
# kebab-case and CamelCase split: "slow" is not "low"), never when negated ("non-critical").
# Labels count anywhere; "high" and "low" only beside "severity", "priority" or "sev": they mostly
# describe the metric ("OrdersLowSuccessRate", "the success rate is low"), not the alarm.
SEVERITY_LABELS = [
    (Severity.CRITICAL, frozenset({"critical", "sev1", "p1"})),
    (Severity.HIGH, frozenset({"sev2", "p2", "urgent"})),
    (Severity.LOW, frozenset({"sev4", "sev5", "p4", "p5"})),
]
SEVERITY_LEVELS = {"high": Severity.HIGH, "low": Severity.LOW}
SEVERITY_NOUNS = frozenset({"severity", "priority", "sev"})
NEGATIONS = frozenset({"not", "non", "no"})
# CloudWatch caps a description at 1,024 characters; a direct invoke could send far more.
MAX_SEVERITY_TEXT = 2_048


@dataclass(frozen=True)
class Intake:
    issue: IssueReportedV1
    fingerprint: str
    origin: str  # "issue" | "alarm" | "scan"
    alarm_state: str | None = None  # for alarms: ALARM / OK / INSUFFICIENT_DATA
    # for alarms: the one function its metrics name (`name:alias` for an alias's), the function to investigate
    alarm_function: str | None = None
    alarm_since: str | None = None  # for alarms: when the alarm entered the state (detail.state.timestamp)


def fingerprint(service: str, issue_type: str, resource: str | None) -> str:
    """Same service + type + resource = the same problem, however many times it is reported.

    Exact, not case-folded: Lambda function names and alarm names are case-sensitive, so
    `Checkout` and `checkout` are two functions whose incidents must not fold into one."""
    basis = json.dumps([service, issue_type, resource or ""])  # not joined: alarm names may contain "|"
    return hashlib.sha256(basis.encode()).hexdigest()[:24]


def legacy_fingerprint(service: str, issue_type: str, resource: str | None) -> str:
    """The fingerprint as computed before 2026-11-29 (case-folded, joined with "|"): an alarm that
    opened its incident before an upgrade still finds it when it returns to OK."""
    basis = "|".join([service.lower(), issue_type, (resource or "").lower()])
    return hashlib.sha256(basis.encode()).hexdigest()[:24]


def delivery_key(event: dict[str, Any]) -> str:
    """What identifies one report: its source, its time and its content, not the event id.

    A Lambda retry has the same id; an EventBridge replay has a new id but the same source, time
    and detail. Both must land on the same incident rather than open a second one.
    """
    detail = json.dumps(event.get("detail"), sort_keys=True, default=str)
    basis = f"{event.get('source', '')}|{event.get('time', '')}|{detail}"
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def parse_issue_reported(event: dict[str, Any]) -> Intake:
    """`IssueReported` may carry its fields as the whole detail or inside the envelope's data."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise InvalidEvent("IssueReported detail must be a JSON object")
    issue = parse_producer_issue(detail)
    if (issue.code is not None and issue.code.artifact is not None) or issue.evidence_artifact is not None:
        # Claim checks are created by the Manager only: a producer's artifact key could point at
        # another incident's code, or at nothing.
        raise InvalidEvent("code.artifact and evidence_artifact are set by Selfheal only; send code.files and evidence")
    issue = redact_issue(issue)
    resource = issue.resource or (issue.idempotency_key if issue.idempotency_key and not issue.code else None)
    return Intake(issue=issue, fingerprint=fingerprint(issue.service, issue.issue_type, resource), origin="issue")


def redact_issue(issue: IssueReportedV1) -> IssueReportedV1:
    """Log text is untrusted: secrets are removed before it is stored, sent on or shown to a model."""
    return issue.model_copy(
        update={"summary": scrub(issue.summary), "evidence": [scrub(line) for line in issue.evidence]}
    )


def parse_alarm(event: dict[str, Any]) -> Intake:
    """A CloudWatch alarm state change; any shape it should not have is refused with the reason."""
    try:
        return _parse_alarm(event)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, InvalidEvent):
            raise
        raise InvalidEvent(
            f"alarm state change has an unexpected shape: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc


def from_aws(event: dict[str, Any], source: str) -> None:
    """Refuse an AWS event's detail-type from any other source (a producer's forgery)."""
    if event.get("source") != source:
        raise InvalidEvent(
            f"{str(event.get('detail-type'))[:100]!r} comes from {source} only, not {str(event.get('source'))[:100]!r}"
        )


def parse_scheduled(event: dict[str, Any]) -> None:
    """The scan's schedule: no content, only its source to check."""
    from_aws(event, SCHEDULED_SOURCE)


def _parse_alarm(event: dict[str, Any]) -> Intake:
    from_aws(event, ALARM_SOURCE)
    detail = event.get("detail")
    if not isinstance(detail, dict) or "alarmName" not in detail or "state" not in detail:
        raise InvalidEvent("alarm state change must have detail.alarmName and detail.state")
    if not isinstance(detail["alarmName"], str) or not detail["alarmName"] or not isinstance(detail["state"], dict):
        raise InvalidEvent("alarm state change must have a non-empty detail.alarmName and a detail.state object")
    # Imported here: Powertools' data_classes package imports every event class (~90 ms of cold start).
    from aws_lambda_powertools.utilities.data_classes.cloud_watch_alarm_event import CloudWatchAlarmData

    alarm = CloudWatchAlarmData(detail)
    try:
        state = alarm.state.value
        if state not in ALARM_STATES:
            raise InvalidEvent(f"unknown alarm state {str(state)[:40]!r}; expected one of {sorted(ALARM_STATES)}")
        reason = alarm.state.reason
        metrics = _alarm_metrics(alarm)
    except KeyError as exc:
        raise InvalidEvent(f"alarm state change is missing {exc}") from exc
    except TypeError as exc:
        raise InvalidEvent(
            "alarm state change has a field of the wrong type (detail.state and detail.configuration.metrics "
            f"as CloudWatch sends them expected): {str(exc)[:200]}"
        ) from exc
    metric_names = [m.get("name", "") for m in metrics]
    functions = _functions_of(metrics)
    issue_type = _issue_type_for(metric_names, alarm.alarm_name)
    # The one function the metrics name is the service (a math alarm over a queue and a function
    # concerns the function: its apply window and labels are the function's).
    service = (functions[0] if len(functions) == 1 else None) or _service_for(metrics) or alarm.alarm_name
    description = alarm.configuration.description or "" if "configuration" in detail else ""
    severity = _severity_for(alarm.alarm_name, description, issue_type)
    try:
        signals = _reason_signals(alarm.state.reason_data_decoded if alarm.state.get("reasonData") else None)
    except (ValueError, TypeError):  # reasonData is a JSON string; a malformed one just carries no signals
        signals = {}
    try:
        issue = IssueReportedV1(
            service=service[:128],
            issue_type=issue_type,
            severity=severity,
            summary=f"Alarm {alarm.alarm_name} is {state}: {reason}"[:2000],
            signals=signals,
            evidence=[
                f"metrics: {', '.join(n for n in metric_names if n) or 'expression'}",
                *(
                    [f"metrics over {len(functions)} functions ({', '.join(functions)[:300]}): no single target"]
                    if len(functions) > 1
                    else []
                ),
            ],
            resource=alarm.alarm_name,
        )
    except ValidationError as exc:
        raise InvalidEvent(f"alarm state change is invalid: {describe_validation_error(exc)}") from exc
    return Intake(
        issue=issue,
        fingerprint=fingerprint(service, issue_type.value, alarm.alarm_name),
        origin="alarm",
        alarm_state=state,
        alarm_function=_alarm_target(metrics, functions),
        alarm_since=str(alarm.state.get("timestamp") or "")[:40] or None,
    )


def alarm_elsewhere(event: dict[str, Any], home: Home) -> str | None:
    """Why an alarm state change is not this Manager's to act on: its envelope or its alarm ARN
    names another account or Region (a bus that receives an organisation's events). None when it
    is ours. A field left out is not checked: EventBridge always sets them (and the rule pins them),
    only a direct invoke, which needs lambda:InvokeFunction, can leave them out."""
    found = [("the event", event.get("account"), event.get("region"))]
    resources = event.get("resources")
    detail = event.get("detail")
    arns = [*(resources if isinstance(resources, list) else []), isinstance(detail, dict) and detail.get("alarmArn")]
    found += [("the alarm ARN", *located) for located in map(locate, arns) if located]
    # A monitoring account's alarm over a source account's metrics (cross-account observability):
    # its FunctionName names a function there, not our namesake.
    found += [("a metric", account, None) for account in _metric_accounts(detail)]
    for where, account, region in found:
        if (account or region) and not home.holds(account or home.account, region or home.region):
            return (
                f"alarm state change from another account or Region: {where} names account "
                f"{str(account or '?')[:20]} / Region {str(region or '?')[:20]}, not this Manager's ({home})"
            )
    return None


def _metric_accounts(detail: Any) -> list[str]:
    """The accounts an alarm's metrics name (`accountId` on a query or on its metric)."""
    configuration = detail.get("configuration") if isinstance(detail, dict) else None
    metrics = configuration.get("metrics") if isinstance(configuration, dict) else None
    accounts = []
    for query in metrics if isinstance(metrics, list) else []:
        stat = query.get("metricStat") if isinstance(query, dict) else None
        metric = stat.get("metric") if isinstance(stat, dict) else None
        for holder in (query, metric):
            if isinstance(holder, dict) and holder.get("accountId"):
                accounts.append(str(holder["accountId"]))
    return accounts


def _alarm_metrics(alarm: Any) -> list[dict[str, Any]]:
    """Single-metric and metric-math alarms both list metrics; math entries have no metricStat.
    A Metrics Insights query counts as the metric it selects (`query_metric`)."""
    found = []
    for metric in alarm.configuration.metrics if "configuration" in alarm else []:
        if "metricStat" in metric:
            found.append(metric.metric_stat.metric)
        elif isinstance(expression := metric.get("expression"), str) and (queried := query_metric(expression)):
            found.append(queried)
    return found


# A Metrics Insights query: SELECT FUNC(metric) FROM namespace | SCHEMA(namespace, dims...) [the rest].
_QUERY = re.compile(
    r'^\s*SELECT\s+\w+\s*\(\s*"?(?P<name>[^"()\s]+)"?\s*\)\s+FROM\s+'
    r'(?:SCHEMA\s*\(\s*"?(?P<schema>[^",()\s]+)"?[^)]*\)|"?(?P<namespace>[^"\s]+)"?)(?P<rest>.*)$',
    re.IGNORECASE | re.DOTALL,
)
# The only rest that names one function: a single equality, nothing grouped, nothing else.
_ONE_FUNCTION = re.compile(
    r"^\s*WHERE\s+\"?(?P<key>FunctionName|function_name)\"?\s*=\s*'(?P<function>[^']+)'\s*$", re.IGNORECASE
)


def query_metric(expression: str) -> dict[str, Any] | None:
    """The metric a Metrics Insights query selects, with its function dimension (`FunctionName`,
    or LambdaInsights' `function_name`) when it names exactly one function (`WHERE FunctionName =
    'x'`, no GROUP BY); None for math expressions."""
    query = _QUERY.match(expression[:2_048])
    if query is None:
        return None
    one = _ONE_FUNCTION.match(query["rest"])
    return {
        "namespace": query["schema"] or query["namespace"],
        "name": query["name"],
        "dimensions": {next(d for d in FUNCTION_DIMENSIONS if d.lower() == one["key"].lower()): one["function"]}
        if one
        else {},
    }


def _issue_type_for(metric_names: list[str], alarm_name: str) -> IssueType:
    """From the metrics, then the alarm's name; an alarm only over NOT_FUNCTION_FAULTS is unknown."""
    faults = [name for name in metric_names if name and name.lower() not in NOT_FUNCTION_FAULTS]
    if any(metric_names) and not faults:
        return IssueType.UNKNOWN
    for name in [*faults, alarm_name]:
        lowered = name.lower()
        for needle, issue_type in METRIC_ISSUE_TYPES:
            if needle in lowered:
                return issue_type
    return IssueType.UNKNOWN


def _functions_of(metrics: list[dict[str, Any]]) -> list[str]:
    """The distinct functions an alarm's metrics name; a change to one of several is no fix for their sum."""
    found: list[str] = []
    for metric in metrics:
        named = _function_in(metric.get("dimensions") or {})
        if named and named[0] not in found:
            found.append(named[0])
    return found


def _alarm_target(metrics: list[dict[str, Any]], functions: list[str]) -> str | None:
    """The one function the alarm is about, qualified (`name:alias`, `name:3`) when its metrics are
    an alias's or a version's; None for several functions or several qualifiers."""
    if len(functions) != 1:
        return None
    qualifiers = {named[1] for m in metrics if (named := _function_in(m.get("dimensions") or {})) and named[1]}
    if len(qualifiers) > 1:
        return None
    return f"{functions[0]}:{qualifiers.pop()}" if qualifiers else functions[0]


def _function_in(dimensions: dict[str, Any]) -> tuple[str, str | None] | None:
    """(function, alias or version) a metric's dimensions name: AWS/Lambda adds `Resource`
    (`name:alias`) for an alias's metrics and `ExecutedVersion` for a version's; LambdaInsights
    pairs `function_name` with `version`."""
    # CloudWatch dimension values are strings: anything else names no function.
    name: str | None = next(
        (dimensions[key] for key in FUNCTION_DIMENSIONS if isinstance(dimensions.get(key), str)), None
    )
    if not name:
        return None
    resource = dimensions.get("Resource")
    resource = resource if isinstance(resource, str) else ""
    if resource.startswith(f"{name}:"):
        return name, resource[len(name) + 1 :]
    version = dimensions.get("ExecutedVersion") or ("function_name" in dimensions and dimensions.get("version"))
    return name, str(version) if version else None


def _service_for(metrics: list[dict[str, Any]]) -> str | None:
    for metric in metrics:
        dimensions = metric.get("dimensions") or {}
        for key in SERVICE_DIMENSIONS:
            if dimensions.get(key) and isinstance(dimensions[key], str):
                return str(dimensions[key])
    return None


def _words(text: str) -> list[str]:
    """Lower-case words, CamelCase split, with "sev 1" / "sev-1" / "P-1" joined into one label."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text[:MAX_SEVERITY_TEXT])
    words = re.findall(r"[a-z]+|[0-9]+", spaced.lower())
    joined: list[str] = []
    for word in words:
        if word.isdigit() and joined and joined[-1] in ("sev", "p"):
            joined[-1] += word
        else:
            joined.append(word)
    return joined


def _claims(words: list[str]) -> set[Severity]:
    """The severities the words claim ("high"/"low" only beside "severity"/"priority"/"sev")."""
    found = set()
    for i, word in enumerate(words):
        if i and words[i - 1] in NEGATIONS:
            continue
        found |= {level for level, labels in SEVERITY_LABELS if word in labels}
        if word in SEVERITY_LEVELS:
            beside = {words[j] for j in (i - 1, i + 1) if 0 <= j < len(words)}
            if beside & SEVERITY_NOUNS:
                found.add(SEVERITY_LEVELS[word])
    return found


def _severity_for(name: str, description: str, issue_type: IssueType) -> Severity:
    claimed = _claims(_words(name)) | _claims(_words(description))
    for level in (Severity.CRITICAL, Severity.HIGH, Severity.LOW):
        if level in claimed:
            return level
    return Severity.HIGH if issue_type in (IssueType.HIGH_ERROR_RATE, IssueType.EXCEPTION) else Severity.MEDIUM


def _reason_signals(reason_data: Any) -> dict[str, float]:
    if not isinstance(reason_data, dict):
        return {}
    points = reason_data.get("recentDatapoints") or []
    candidates = {
        "latest_datapoint": points[-1] if isinstance(points, list) and points else None,
        "threshold": reason_data.get("threshold"),
    }
    signals: dict[str, float] = {}
    for name, value in candidates.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            with contextlib.suppress(ValueError, OverflowError):
                signals[name] = storable_number(float(value))
    return signals
