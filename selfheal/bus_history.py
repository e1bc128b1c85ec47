"""The pipeline's bus over time: replay what the archive holds, and follow events as they happen.

Both read the agents bus's own records, never a copy: replays come from the EventBridge archive
(`StartReplay`), the live tail from the audit log group that receives every bus event
(CloudWatch Logs Live Tail on AWS; polled on the local emulator, which has no Live Tail).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from selfheal_core import catalog as names

from .ops.target import OperatorError, Target
from .output import one_line

# The status an agent-to-agent event moves its incident to (informational events carry theirs).
IMPLIED_STATUS = {
    "RemediationRequested": "REMEDIATING",
    "FixProposed": "FIX_PROPOSED",
    "FixValidated": "VALIDATED",
    "FixRejected": "REJECTED",
    "RemediationFailed": "FAILED",
}
REPLAY_MARGIN = timedelta(minutes=1)


def _archive_arn(target: Target) -> str:
    arn = target.output("ArchiveArn")
    if arn:
        return str(arn)
    return target.client("events").describe_archive(ArchiveName=names.archive_name(target.env))["ArchiveArn"]


def _bus_arn(target: Target) -> str:
    return target.client("events").describe_event_bus(Name=target.bus)["Arn"]


def replay_window(target: Target, incident_id: str) -> tuple[datetime, datetime]:
    """An incident's events lie between its creation and its last update."""
    from selfheal_core.incidents import IncidentStore

    incident = IncidentStore(target.decisions_table).get(incident_id)
    if incident is None:
        raise OperatorError(f"incident {incident_id} not found")
    start = datetime.fromisoformat(incident.created_at) - REPLAY_MARGIN
    end = datetime.fromisoformat(incident.updated_at) + REPLAY_MARGIN
    return start, end


def replay(target: Target, *, since: datetime, until: datetime | None = None, wait_s: float = 300.0) -> dict[str, Any]:
    """StartReplay of the archive onto the bus for [since, until); waits until it has finished."""
    until = until or datetime.now(UTC)
    if since >= until:
        raise OperatorError("--since must be before --until")
    events = target.client("events")
    name = f"selfheal-{target.env}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{int(time.time() * 1000) % 1000:03d}"
    started = events.start_replay(
        ReplayName=name,
        EventSourceArn=_archive_arn(target),
        EventStartTime=since,
        EventEndTime=until,
        Destination={"Arn": _bus_arn(target)},
        Description="selfheal replay (steps are idempotent: nothing already done runs again)",
    )
    deadline = time.monotonic() + wait_s
    state = started.get("State", "STARTING")
    while state in ("STARTING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(1.0)
        state = events.describe_replay(ReplayName=name)["State"]
    return {
        "replay_name": name,
        "state": state,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "archive_arn": _archive_arn(target),
    }


# ------------------------------------------------------------------------------------ tail


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def tail_line(event: dict[str, Any]) -> dict[str, Any]:
    """One bus event as a tail line: time, from -> to, detail-type, incident, status."""
    from selfheal_core.catalog import RECIPIENTS

    detail = _mapping(event.get("detail"))
    metadata = _mapping(detail.get("metadata"))
    data = _mapping(detail.get("data"))
    detail_type = str(event.get("detail-type", ""))
    source = str(event.get("source", ""))
    recipient = RECIPIENTS.get(detail_type)
    return {
        "time": event.get("time"),
        "from": source.removeprefix("agentops."),
        "to": recipient or ("manager" if detail_type == "IssueReported" else "audit"),
        "detail_type": detail_type,
        "incident_id": metadata.get("incident_id"),
        "status": data.get("status") or IMPLIED_STATUS.get(detail_type),
        "attempt": metadata.get("attempt"),
        "replayed": "replay-name" in event,
        "event_id": event.get("id"),
    }


def format_tail_line(line: dict[str, Any]) -> str:
    replay = " (replay)" if line["replayed"] else ""
    return one_line(
        f"{line['time']}  {line['from']:>8} -> {line['to']:<8}  {line['detail_type']:<22}  "
        f"{line['incident_id'] or '-':<18}  {line['status'] or '-'}{replay}"
    )


def _matches(line: dict[str, Any], incident_id: str | None, agent: str | None) -> bool:
    if incident_id and line["incident_id"] != incident_id:
        return False
    return not agent or agent in (line["from"], line["to"])


def tail(
    target: Target,
    *,
    incident_id: str | None = None,
    agent: str | None = None,
    seconds: float | None = None,
    emit: Callable[[dict[str, Any]], None],
) -> int:
    """Stream matching bus events until `seconds` have passed (or forever); returns lines emitted."""
    stop_at = time.monotonic() + seconds if seconds is not None else None
    messages = _poll_audit_log(target, stop_at) if target.local else _live_tail(target, stop_at)
    emitted = 0
    for message in messages:
        try:
            event = json.loads(message)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        line = tail_line(event)
        if _matches(line, incident_id, agent):
            emit(line)
            emitted += 1
    return emitted


def _audit_log_group(target: Target) -> str:
    return names.audit_log_group_name(target.env)


def _poll_audit_log(target: Target, stop_at: float | None) -> Iterator[str]:
    """The emulator has no Live Tail: poll the same log group for events newer than the last seen."""
    logs = target.client("logs")
    since_ms = int(time.time() * 1000) - 1_000
    seen: set[str] = set()
    while stop_at is None or time.monotonic() < stop_at:
        kwargs: dict[str, Any] = {"logGroupName": _audit_log_group(target), "startTime": since_ms}
        batch: list[dict[str, Any]] = []
        for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
            batch.extend(e for e in page.get("events", []) if e["eventId"] not in seen)
        for event in sorted(batch, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0))):
            seen.add(event["eventId"])
            since_ms = max(since_ms, int(event["timestamp"]))
            yield event["message"]
        time.sleep(0.5)


def _live_tail(target: Target, stop_at: float | None) -> Iterator[str]:
    """CloudWatch Logs Live Tail (StartLiveTail) on the audit log group."""
    arn = target.output("AuditLogGroupArn") or _log_group_arn(target)
    response = target.client("logs").start_live_tail(logGroupIdentifiers=[str(arn).removesuffix(":*")])
    stream = response["responseStream"]
    try:
        for update in stream:
            if stop_at is not None and time.monotonic() >= stop_at:
                return
            for result in update.get("sessionUpdate", {}).get("sessionResults", []):
                yield result.get("message", "")
    finally:
        stream.close()


def _log_group_arn(target: Target) -> str:
    account = target.client("sts").get_caller_identity()["Account"]
    return f"arn:aws:logs:{target.region}:{account}:log-group:{_audit_log_group(target)}"
