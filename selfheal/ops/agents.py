"""`selfheal agents`: each agent's rules, invocations, errors, DLQ depth; stop and start its rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from selfheal_core import catalog as names

from .target import OperatorError, Target, local_control


def _rules(target: Target) -> list[dict[str, Any]]:
    """Every rule on the agents bus and the default bus, with its targets."""
    events = target.client("events")
    rules = []
    for bus in (target.bus, "default"):
        kwargs: dict[str, Any] = {"EventBusName": bus}
        while True:
            try:
                page = events.list_rules(**kwargs)
            except ClientError:  # the bus may not exist in this account
                break
            for rule in page.get("Rules", []):
                targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus).get("Targets", [])
                rules.append({**rule, "EventBusName": bus, "Targets": targets})
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return rules


def _metric_sum(target: Target, namespace: str, metric: str, dims: dict[str, str], hours: int) -> float:
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(hours=hours)
    resp = target.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": metric,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                    },
                    "Period": 3600,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=start,
        EndTime=end,
    )
    return float(sum(resp["MetricDataResults"][0].get("Values", []))) if resp["MetricDataResults"] else 0.0


def agents(target: Target, hours: int = 24) -> list[dict[str, Any]]:
    rules = _rules(target)
    sqs = target.client("sqs")
    out = []
    local_functions: dict[str, Any] = {}
    if target.local:
        local_functions = local_control(target, "status").get("functions", {})
    for agent in names.AGENTS:
        fn = target.function(agent)
        targeting = [r for r in rules if any(t["Arn"].endswith(f":function:{fn}") for t in r["Targets"])]
        dlq_arns = sorted(
            {
                t.get("DeadLetterConfig", {}).get("Arn")
                for r in targeting
                for t in r["Targets"]
                if t["Arn"].endswith(f":function:{fn}") and t.get("DeadLetterConfig", {}).get("Arn")
            }
        )
        dlq_depth = 0
        dlqs = []
        for arn in dlq_arns:
            name = arn.split(":")[-1]
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
                    "Attributes"
                ]
                depth = int(attrs.get("ApproximateNumberOfMessages", 0))
            except ClientError:  # the queue is gone or not readable: unknown, not zero
                depth = None
            dlqs.append({"queue": name, "depth": depth})
            dlq_depth += depth or 0
        invocations = _metric_sum(target, "AWS/Lambda", "Invocations", {"FunctionName": fn}, hours)
        errors = _metric_sum(target, "AWS/Lambda", "Errors", {"FunctionName": fn}, hours)
        last_activity = (local_functions.get(fn) or {}).get("last_activity")
        if last_activity is None and not target.local:
            last_activity = _last_log_event(target, f"/aws/lambda/{fn}")
        states = sorted({r.get("State", "") for r in targeting})
        out.append(
            {
                "agent": agent,
                "function": fn,
                "invocations": int(invocations),
                "errors": int(errors),
                "last_activity": last_activity,
                "dlq_depth": dlq_depth,
                "dead_letter_queues": dlqs,
                "rules": [{"name": r["Name"], "bus": r["EventBusName"], "state": r.get("State")} for r in targeting],
                "state": "ENABLED"
                if states == ["ENABLED"]
                else "DISABLED"
                if states == ["DISABLED"]
                else "MIXED"
                if states
                else "NO RULES",
            }
        )
    return out


def _last_log_event(target: Target, group: str) -> str | None:
    try:
        streams = target.client("logs").describe_log_streams(
            logGroupName=group, orderBy="LastEventTime", descending=True, limit=1
        )
        ts = streams["logStreams"][0].get("lastEventTimestamp")
        return datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="seconds") if ts else None
    except (ClientError, IndexError):  # no such group, or no stream yet
        return None


def set_agent_state(target: Target, agent: str, *, enabled: bool) -> dict[str, Any]:
    if agent not in names.AGENTS:
        raise OperatorError(f"unknown agent {agent!r}; one of {', '.join(names.AGENTS)}")
    fn = target.function(agent)
    events = target.client("events")
    changed = []
    for rule in _rules(target):
        if any(t["Arn"].endswith(f":function:{fn}") for t in rule["Targets"]):
            (events.enable_rule if enabled else events.disable_rule)(
                Name=rule["Name"], EventBusName=rule["EventBusName"]
            )
            changed.append(rule["Name"])
    if not changed:
        raise OperatorError(f"no rule targets {fn}")
    return {"agent": agent, "function": fn, "state": "ENABLED" if enabled else "DISABLED", "rules": changed}
