"""What the operator verbs do, against real AWS or the local endpoint (same code path).

`connect()` decides where to talk to: `--endpoint-url`, else a running `selfheal local up`
of this project, else the default AWS credential chain. Resource names come from the
stacks' outputs (CloudFormation locally emulated by the runtime's status), falling back to
the naming convention for `--env`. Every function returns plain JSON-able data; cli.py
formats it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from selfheal_core import catalog as names

LOCAL_CLIENT_KEY = "ASIALOCALOPERATOR00"


class OperatorError(RuntimeError):
    """A problem the operator can fix; the message says how."""


@dataclass
class Target:
    env: str
    region: str
    endpoint_url: str | None
    local: bool
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ clients
    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url)
        return self._clients[service]

    def output(self, key: str) -> Any:
        for outputs in self.outputs.values():
            if key in outputs:
                return outputs[key]
        return None

    # ------------------------------------------------------------------ names
    @property
    def bus(self) -> str:
        return self.output("EventBusName") or names.bus_name(self.env)

    @property
    def decisions_table(self) -> str:
        return self.output("DecisionsTableName") or names.decisions_table_name(self.env)

    @property
    def monitoring_table(self) -> str:
        return self.output("MonitoringTableName") or names.monitoring_table_name(self.env)

    @property
    def alerts_topic_arn(self) -> str | None:
        return self.output("AlertsTopicArn")

    def function(self, agent: str) -> str:
        return self.output(f"{agent.title()}FunctionName") or names.function_name(self.env, agent)

    def describe(self) -> dict[str, Any]:
        return {"env": self.env, "region": self.region, "endpoint_url": self.endpoint_url, "local": self.local}


def connect(*, endpoint_url: str | None, env: str, region: str | None, state_dir: Path | None = None) -> Target:
    from .local.control import control, find_running

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    local_status: dict[str, Any] | None = None
    if endpoint_url is None:
        running = find_running(state_dir)
        if running:
            endpoint_url = running["endpoint"]
    if endpoint_url:
        try:
            local_status = control(endpoint_url, "status", timeout=5)
        except Exception:  # noqa: BLE001 - any other endpoint (LocalStack, a proxy...) is fine too
            local_status = None
        # Local emulators accept any credentials; give boto3 some when none are configured.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", LOCAL_CLIENT_KEY)
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "selfheal-local")
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
        region = "us-east-1" if local_status else region
    os.environ["AWS_DEFAULT_REGION"] = region
    target = Target(env=env, region=region, endpoint_url=endpoint_url, local=local_status is not None)
    if local_status:
        target.outputs = local_status.get("outputs", {})
    else:
        target.outputs = _cloudformation_outputs(target)
    from selfheal_core import aws as core_aws

    core_aws.reset_clients()
    return target


def _cloudformation_outputs(target: Target) -> dict[str, dict[str, Any]]:
    outputs: dict[str, dict[str, Any]] = {}
    try:
        cfn = target.client("cloudformation")
        for stack in names.stack_names(target.env).values():
            try:
                described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
            except Exception:  # noqa: BLE001, S112 - a stack that is not deployed has no outputs
                continue
            outputs[stack] = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    except Exception:  # noqa: BLE001, S110 - no credentials yet: the naming convention still works
        pass
    return outputs


def _local_control(target: Target, route: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    from .local.control import control

    if not target.local or not target.endpoint_url:
        raise OperatorError(f"'{route}' needs the local runtime (selfheal local up)")
    return control(target.endpoint_url, route, body, timeout=timeout)


# ============================================================================ inject


def _put(target: Target, entries: list[dict[str, Any]]) -> dict[str, Any]:
    events = target.client("events")
    ids: list[str] = []
    failed: list[dict[str, Any]] = []
    for start in range(0, len(entries), 10):
        batch = entries[start : start + 10]
        for _round in range(4):
            resp = events.put_events(Entries=batch)
            retry = []
            for entry, result in zip(batch, resp["Entries"], strict=True):
                if result.get("EventId"):
                    ids.append(result["EventId"])
                elif result.get("ErrorCode") in ("ThrottlingException", "InternalException", "InternalFailure"):
                    retry.append(entry)
                else:
                    failed.append({"error_code": result.get("ErrorCode"), "error_message": result.get("ErrorMessage")})
            if not retry:
                break
            batch = retry
            time.sleep(0.1 * 2**_round)
        else:
            failed.extend({"error_code": "Throttled", "error_message": "gave up after 4 rounds"} for _ in batch)
    return {"event_ids": ids, "sent": len(ids), "failed": failed}


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
    raw = json.loads(Path(path).read_text())
    if isinstance(raw, dict) and "Entries" in raw:
        raw = raw["Entries"]
    if isinstance(raw, list):
        out = []
        for e in raw:
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
    raise OperatorError(f"{path}: expected put-events entries, an EventBridge event or an IssueReported detail")


def inject_entries(target: Target, entries: list[dict[str, Any]], count: int = 1) -> dict[str, Any]:
    result = _put(target, entries * max(1, count))
    result["detail_types"] = sorted({e["DetailType"] for e in entries})
    result["bus"] = sorted({e.get("EventBusName", "default") for e in entries})
    return result


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
) -> dict[str, Any]:
    """`detail` of a real single-metric "CloudWatch Alarm State Change" event."""
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
            "metrics": [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm_name)),
                    "metricStat": {
                        "metric": {"dimensions": dimensions, "name": metric, "namespace": namespace},
                        "period": period,
                        "stat": stat,
                    },
                    "returnData": True,
                }
            ],
        },
    }


def inject_alarm(target: Target, *, alarm_name: str, count: int = 1, **kwargs: Any) -> dict[str, Any]:
    """Locally: the real-shaped event on the default bus. On AWS (where `aws.*` sources cannot be
    put), the alarm itself is set to the state, which makes CloudWatch emit the real event."""
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
                StateValue=kwargs.get("state", "ALARM"),
                StateReason="selfheal inject --alarm (operator test)",
            )
        return {"alarm": alarm_name, "set_state": kwargs.get("state", "ALARM"), "times": count}
    region = target.region
    detail = alarm_event_detail(alarm_name=alarm_name, **kwargs)
    entry = {
        "Source": "aws.cloudwatch",
        "DetailType": "CloudWatch Alarm State Change",
        "Detail": json.dumps(detail),
        "Resources": [f"arn:aws:cloudwatch:{region}:123456789012:alarm:{alarm_name}"],
        "EventBusName": "default",
    }
    result = _put(target, [entry] * max(1, count))
    result["alarm"] = alarm_name
    return result


LOCAL_USER_HEADER = "X-Selfheal-Local-User"


def approvals_url(target: Target) -> str:
    """The approvals function URL: the stack output, else Lambda's URL config for the function."""
    url = target.output("ApprovalsUrl")
    if url:
        return str(url)
    try:
        return str(target.client("lambda").get_function_url_config(FunctionName=target.function("approvals"))["FunctionUrl"])
    except Exception as exc:  # noqa: BLE001 - explained to the operator
        raise OperatorError(f"cannot find the approvals function URL for env {target.env!r} ({type(exc).__name__}); "
                            "is the pipeline stack deployed?") from exc


def approval(target: Target, incident_id: str, *, granted: bool, comment: str = "",
             typed_name: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Approve or reject through the approvals function URL, SigV4-signed with the operator's
    credentials. The function records the caller's IAM ARN as the approver (locally
    `local:<user>`); a typed name only travels as part of the comment."""
    import getpass
    import urllib.error
    import urllib.request

    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    url = approvals_url(target)
    body: dict[str, Any] = {"incident_id": incident_id, "decision": "approve" if granted else "reject", "comment": comment}
    if typed_name:
        body["approver"] = typed_name
    credentials = boto3.Session(region_name=target.region).get_credentials()
    if credentials is None:
        raise OperatorError("no AWS credentials: approvals are signed with your IAM identity")
    headers = {"Content-Type": "application/json"}
    if target.local:  # no IAM locally: the runtime names the approver local:<user> from this signed header
        headers[LOCAL_USER_HEADER] = os.environ.get("USER") or getpass.getuser()
    request = AWSRequest(method="POST", url=url, data=json.dumps(body).encode(), headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", target.region).add_auth(request)
    prepared = request.prepare()
    http_request = urllib.request.Request(url, data=prepared.body, headers=dict(prepared.headers), method="POST")  # noqa: S310 - the URL is our stack's output
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:  # noqa: S310
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read()
    try:
        result = json.loads(answer or b"{}")
    except ValueError:
        result = {"error": answer.decode("utf-8", "replace")[:500]}
    if status == 403:
        raise OperatorError("the approvals URL refused your credentials: attach the "
                            f"selfheal-{target.env}-approver policy to your IAM identity")
    if status >= 400:
        raise OperatorError(f"approval refused ({status}): {result.get('error') or result.get('Message') or result}")
    return {"incident_id": incident_id, **result, "http_status": status}


# ============================================================================ reads


def incidents(target: Target, days: int = 7, limit: int = 100) -> list[dict[str, Any]]:
    from selfheal_core.incidents import IncidentStore

    return [i.public() for i in IncidentStore(target.decisions_table).list_recent(days=days, limit=limit)]


def trace(target: Target, incident_id: str) -> dict[str, Any]:
    from selfheal_core.incidents import IncidentStore

    incident = IncidentStore(target.decisions_table).get(incident_id)
    if incident is None:
        raise OperatorError(f"incident {incident_id!r} not found")
    try:
        from agentops_monitoring import timeline
    except ImportError:  # pragma: no cover - the monitoring package is part of the layer
        timeline = None
    entries = (
        timeline(incident_id, decisions_table=target.decisions_table, monitoring_table=target.monitoring_table)
        if timeline
        else []
    )
    decisions = []
    for e in entries:
        if e.get("kind") != "decision":
            continue
        outputs = e.get("outputs") if isinstance(e.get("outputs"), dict) else {}
        decisions.append(
            {
                "at": e.get("at"),
                "agent": e.get("agent"),
                "correlation_id": e.get("correlation_id"),
                "decision_type": e.get("decision_type"),
                "reasoning_chain": e.get("reasoning_chain", []),
                "confidence_score": e.get("confidence_score"),
                "model": e.get("model"),
                "cost_usd": e.get("cost_usd", 0.0),
                "evidence": outputs.get("evidence") if isinstance(outputs, dict) else None,
                "outputs": outputs,
            }
        )
    costs = [e for e in entries if e.get("kind") == "cost"]
    messages = [e for e in entries if e.get("kind") == "message"]
    events = [e for e in entries if e.get("kind") == "event"]
    return {
        "incident": incident.public(),
        "status_history": _status_history(target, incident_id),
        "decisions": decisions,
        "messages": [
            {"at": m.get("at"), "flow": m.get("flow"), "message_type": m.get("message_type")} for m in messages
        ],
        "events": [
            {"at": e.get("at"), "agent": e.get("agent"), "event_type": e.get("event_type"), "data": e.get("data")}
            for e in events
        ],
        "costs": {
            "total_usd": round(sum(float(c.get("cost_usd", 0)) for c in costs), 8),
            "by_agent": _sum_by(costs, "agent"),
            "by_kind": _sum_by(costs, "kind"),
        },
        "correlation_ids": sorted({d["correlation_id"] for d in decisions if d.get("correlation_id")}),
        "agents": sorted({d["agent"] for d in decisions if d.get("agent")}),
    }


def patch(target: Target, incident_id: str) -> dict[str, Any]:
    """The validated code patch of a PATCH_READY incident, as an mbox message for `git am`."""
    from selfheal_core.artifacts import ArtifactStore
    from selfheal_core.events import ArtifactRef
    from selfheal_core.incidents import IncidentStore

    incident = IncidentStore(target.decisions_table).get(incident_id)
    if incident is None:
        raise OperatorError(f"incident {incident_id!r} not found in {target.decisions_table}")
    ref = _patch_ref(target, incident_id)
    if ref is None:
        raise OperatorError(f"incident {incident_id} has no validated code patch (status {incident.status}); "
                            "only code fixes are kept as patches")
    stored = ArtifactStore(ref["bucket"]).get_json(ArtifactRef.model_validate(ref))
    return {"incident_id": incident_id, "status": incident.status, "artifact": ref, "mbox": stored["mbox"]}


def _patch_ref(target: Target, incident_id: str) -> dict[str, Any] | None:
    from selfheal_core import aws, keys
    from selfheal_core.ddb import from_item

    item = aws.table(target.decisions_table).get_item(Key={"pk": keys.incident_pk(incident_id), "sk": keys.META}).get("Item") or {}
    ref = from_item(item.get("patch"))
    return ref if isinstance(ref, dict) else None


def _status_history(target: Target, incident_id: str) -> list[dict[str, Any]]:
    from selfheal_core import aws, keys
    from selfheal_core.ddb import from_item

    item = (
        aws.table(target.decisions_table)
        .get_item(Key={"pk": keys.incident_pk(incident_id), "sk": keys.META})
        .get("Item")
        or {}
    )
    return from_item(item.get("status_history", []))


def _sum_by(items: list[dict[str, Any]], key: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for item in items:
        out[str(item.get(key) or "unknown")] += float(item.get("cost_usd", 0) or 0)
    return {k: round(v, 8) for k, v in sorted(out.items())}


def costs(target: Target, days: int = 7) -> dict[str, Any]:
    """Cost by agent, model, incident and day (GSI2 COST#DAY#<day>, no scans) and today's budget."""
    from boto3.dynamodb.conditions import Key

    items: list[dict[str, Any]] = []
    try:
        from agentops_monitoring.store import query_all
    except ImportError:  # pragma: no cover
        query_all = None
    today = datetime.now(UTC).date()
    for offset in range(days):
        day = (today - timedelta(days=offset)).isoformat()
        kwargs = {"IndexName": "gsi2", "KeyConditionExpression": Key("gsi2pk").eq(f"COST#DAY#{day}")}
        if query_all is not None:
            items.extend(query_all(target.monitoring_table, **kwargs))
    by_model: dict[str, float] = defaultdict(float)
    for item in items:
        if item.get("kind") == "llm":
            by_model[str(item.get("model") or "unknown")] += float(item.get("cost_usd", 0) or 0)
    return {
        "window_days": days,
        "total_usd": round(sum(float(i.get("cost_usd", 0) or 0) for i in items), 8),
        "lambda": lambda_cost_sources(items),
        "by_agent": _sum_by(items, "agent"),
        "by_kind": _sum_by(items, "kind"),
        "by_model": {k: round(v, 8) for k, v in sorted(by_model.items())},
        "by_incident": _sum_by([i for i in items if i.get("incident_id")], "incident_id"),
        "by_day": _sum_by(items, "day"),
        "budget": budget(target),
    }


def lambda_cost_sources(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Lambda cost records by source: billed (from REPORT lines) or still the in-handler estimate."""
    lambdas = [i for i in items if i.get("kind") == "lambda"]
    billed = [i for i in lambdas if i.get("cost_source") == "billed"]
    estimated = [i for i in lambdas if i.get("cost_source") != "billed"]
    return {
        "total_usd": round(sum(float(i.get("cost_usd", 0) or 0) for i in lambdas), 12),
        "billed_usd": round(sum(float(i.get("cost_usd", 0) or 0) for i in billed), 12),
        "billed_invocations": len(billed),
        "estimated_usd": round(sum(float(i.get("cost_usd", 0) or 0) for i in estimated), 12),
        "awaiting_report": len(estimated),
        # What the handlers had estimated for the invocations that are billed now (the init phase is the gap).
        "billed_estimate_usd": round(sum(float(i.get("estimated_usd", 0) or 0) for i in billed), 12),
    }


def budget(target: Target) -> dict[str, Any]:
    from selfheal_core import aws
    from selfheal_core.ddb import from_item

    try:
        from agentops_monitoring.budget import BUDGET_PK
    except ImportError:  # pragma: no cover
        BUDGET_PK = "BUDGET#LLM"  # noqa: N806
    period = datetime.now(UTC).date().isoformat()
    item = from_item(aws.table(target.monitoring_table).get_item(Key={"pk": BUDGET_PK, "sk": period}).get("Item") or {})
    limit = None
    try:
        param = target.client("ssm").get_parameter(Name=f"{names.parameter_prefix(target.env)}daily-llm-budget-usd")
        limit = float(param["Parameter"]["Value"])
    except Exception:  # noqa: BLE001 - no parameter: show what the table knows
        limit = item.get("limit_usd")
    spent = float(item.get("spent_usd", 0) or 0)
    reserved = float(item.get("reserved_usd", 0) or 0)
    used_pct = round((spent + reserved) / limit * 100, 2) if limit else None
    return {
        "period": period,
        "limit_usd": limit,
        "spent_usd": spent,
        "reserved_usd": reserved,
        "used_percent": used_pct,
    }


def analyze(target: Target, hours: int = 24) -> dict[str, Any]:
    """The AgentOps analyzer's report: collaboration, effectiveness, optimizations, open incidents."""
    try:
        from agentops_monitoring.analyzer import AgentOpsAnalyzer
    except ImportError as exc:
        raise OperatorError(
            "the AgentOps analyzer (agentops_monitoring.analyzer) is not available in this build"
        ) from exc
    from selfheal_core.config import Settings

    settings = Settings(
        environment=target.env,
        event_bus_name=target.bus,
        decisions_table_name=target.decisions_table,
        monitoring_table_name=target.monitoring_table,
        idempotency_table_name=names.idempotency_table_name(target.env),
        artifacts_bucket=target.output("ArtifactsBucketName") or f"selfheal-{target.env}-artifacts",
        alerts_topic_arn=target.alerts_topic_arn
        or f"arn:aws:sns:{target.region}:000000000000:{names.alerts_topic_name(target.env)}",
        secret_name=names.secret_name(target.env),
        parameter_prefix=names.parameter_prefix(target.env),
    )
    analyzer = AgentOpsAnalyzer(settings)
    window_days = max(hours, 24)
    return _jsonable(
        {
            "window_hours": hours,
            "collaboration": analyzer.analyze_collaboration_patterns(time_window_hours=hours),
            "effectiveness": {
                agent: analyzer.analyze_agent_effectiveness(agent, time_window_hours=window_days)
                for agent in names.AGENTS
            },
            "optimization_opportunities": analyzer.identify_optimization_opportunities(time_window_hours=window_days),
            "open_incidents_by_status": analyzer.open_incidents_by_status(),
            "duplicate_storms": analyzer.duplicate_storms(time_window_hours=hours),
        }
    )


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


def rejected(target: Target, days: int = 7, limit: int | None = None) -> list[dict[str, Any]]:
    from selfheal_core.rejections import RejectionLog

    out = []
    for item in RejectionLog(target.monitoring_table).list(days=days, limit=limit):
        out.append(
            {
                k: item.get(k)
                for k in ("rejected_at", "agent", "detail_type", "source", "event_id", "reason", "raw", "truncated")
            }
        )
    return out


# ============================================================================ agents


def _rules(target: Target) -> list[dict[str, Any]]:
    """Every rule on the agents bus and the default bus, with its targets."""
    events = target.client("events")
    rules = []
    for bus in (target.bus, "default"):
        kwargs: dict[str, Any] = {"EventBusName": bus}
        while True:
            try:
                page = events.list_rules(**kwargs)
            except Exception:  # noqa: BLE001 - the bus may not exist in this account
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
        local_functions = _local_control(target, "status").get("functions", {})
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
            except Exception:  # noqa: BLE001
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
    except Exception:  # noqa: BLE001
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


# ============================================================================ notifications


def notifications(target: Target, limit: int = 50) -> list[dict[str, Any]]:
    if target.local:
        items = _local_control(target, "notifications").get("notifications", [])
        return items[-limit:]
    raise OperatorError(
        "on AWS, notifications are delivered to the topic's subscribers (email); "
        "`aws cloudwatch describe-alarm-history` shows alarm state changes"
    )


# ============================================================================ local helpers


def wait_idle(target: Target, timeout: float = 60.0, quiet: float = 1.0) -> bool:
    return bool(_local_control(target, "idle", {"timeout": timeout, "quiet": quiet}, timeout=timeout + 10).get("idle"))


def local_invocations(target: Target, since: float = 0.0) -> list[dict[str, Any]]:
    return list(_local_control(target, f"invocations?since={since}").get("invocations", []))


def api_calls(target: Target) -> dict[str, Any]:
    return dict(_local_control(target, "api-calls"))
