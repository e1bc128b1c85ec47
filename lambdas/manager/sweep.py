"""The sweeper: nothing stays stuck (docs/architecture.md, "Reliability").

On every scheduled scan, an incident that has sat in a working status longer than the step it
waits on allows is re-driven: the step's request is sent again, marked `redrive`, and each step
finishes from what it stored (the Engineer's proposal, QA's verdict), so a re-drive never asks
the model twice nor moves an incident back. An incident that re-driving did not move, or one in
a status no step owns (a bug we do not know yet), is escalated with the reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from selfheal_core.catalog import AGENT_TIMEOUT_S, SETTLED, TERMINAL, Status
from selfheal_core.events import DetailType, IssueReportedV1, Metadata
from selfheal_core.incidents import Incident
from selfheal_core.observability import logger

from . import heal, logic
from .intake import Intake
from .scan import CHANGE_SLACK
from .scan import WINDOW as SCAN_WINDOW

# The agent whose step moves each working status on (its timeout: catalog.AGENT_TIMEOUT_S).
STEP_OWNER = {
    Status.DETECTED: "manager",  # triage and investigation, then RemediationRequested
    Status.REMEDIATING: "engineer",  # the proposal
    Status.FIX_PROPOSED: "qa",  # the validation
    Status.VALIDATING: "qa",
    Status.VALIDATED: "manager",  # the decision on QA's record
    Status.REJECTED: "engineer",  # the next attempt, or giving up
}
# Swept by their own loops on the same scan: heal steps (heal.sweep_overdue) and waits (resume_*).
SWEPT_ELSEWHERE = SETTLED | {Status.APPROVED, Status.ROLLED_BACK}
# A step may run its function's full timeout on each try (1 + ASYNC_RETRY_ATTEMPTS in
# stacks/constants.py), Lambda waits about 1 and then 2 minutes between tries, and one scan
# interval is the margin.
TRIES, RETRY_DELAYS_S, MARGIN_S = 3, 180, 300
MAX_REDRIVES = 2
SCAN_DAYS, SCAN_LIMIT = 7, 2_000


def handle_scheduled_scan(
    intakes: list[Intake], ports: logic.ManagerPorts, *, correlation_id: str, now: datetime
) -> dict[str, Any]:
    """The 5-minute schedule: open what the metric scan found, resume paused and waiting incidents,
    finish overdue heal steps, then re-drive or escalate whatever else is stuck.

    A finding on a function that already has an open incident of the same type (opened by its
    alarm or a report, under another fingerprint) is that incident seen again: it is left to it,
    before any tokens are spent on a second proposal for the same failure. So is one on a function
    a change of ours touched inside the scan's window (applied or rolled back): reserved
    concurrency and retries do not move the LastModified the scan checks."""
    recent = ports.incidents.list_recent(days=SCAN_DAYS, limit=SCAN_LIMIT)
    watched = [i for i in recent if i.status not in TERMINAL]
    open_problems = {(i.service, i.issue_type) for i in watched}
    touched = {str((i.change or {})["target"]) for i in recent if _changed_since(i, now - SCAN_WINDOW - CHANGE_SLACK)}
    known = [
        i.issue.service
        for i in intakes
        if (i.issue.service, str(i.issue.issue_type)) in open_problems or i.issue.service in touched
    ]
    if known:
        logger.info("scan: findings left to their incidents", extra={"services": known})
    results = [
        logic.handle_intake(intake, ports, correlation_id=f"{correlation_id}:{intake.issue.service}")
        for intake in intakes
        if intake.issue.service not in known
    ]
    resumed = logic.resume_budget_paused(ports, watched, budget_remaining_usd=logic.resumable_budget_usd(ports))
    retried = logic.resume_after_provider_wait(ports, watched, now=now)
    swept = heal.sweep_overdue(ports, watched)  # heal steps whose one-time schedule never delivered
    stuck = sweep_stuck(ports, watched, now=now)
    return {
        "action": "scanned",
        "results": results,
        "left_to_their_incidents": known,
        "resumed": resumed,
        "retried": retried,
        "swept": swept,
        "stuck": [f"{o['incident_id']} {o['action']}" for o in stuck],
    }


def allowance(status: Status) -> timedelta:
    owner = STEP_OWNER.get(status)
    timeout = AGENT_TIMEOUT_S[owner] if owner else max(AGENT_TIMEOUT_S.values())
    return timedelta(seconds=timeout * TRIES + RETRY_DELAYS_S + MARGIN_S)


def _changed_since(incident: Incident, since: datetime) -> bool:
    """Did this incident's change land, or get rolled back, after `since`?"""
    change = incident.change or {}
    if not change.get("target"):
        return False
    moments = [heal.parse_time(change.get("applied_at"))]
    if incident.heal_phase in ("rolled_back", "rollback_failed", "restored_by_hand"):
        moments.append(heal.parse_time(incident.updated_at))
    return any(when is not None and when > since for when in moments)


def sweep_stuck(ports: logic.ManagerPorts, incidents: list[Incident], *, now: datetime) -> list[dict[str, Any]]:
    """Re-drive or escalate each overdue incident; one incident's failure never stops the others."""
    outcomes = []
    for incident in incidents:
        status = Status(incident.status)
        if status in SWEPT_ELSEWHERE or now < _since(incident) + allowance(status):
            continue
        ports.monitor.bind(incident_id=incident.incident_id, correlation_id=incident.correlation_id)
        try:
            outcome = _sweep(incident, status, ports, now=now)
        except Exception:  # noqa: BLE001 - the next scan tries again; the others are swept now
            logger.exception("sweeping an incident failed", extra={"incident_id": incident.incident_id})
            outcome = {"action": "failed", "incident_id": incident.incident_id}
        if outcome["action"] != "stale":
            ports.monitor.record_sweep(outcome["action"])
            outcomes.append(outcome)
    return outcomes


def _since(incident: Incident) -> datetime:
    """When the incident entered its status, or when its step was last re-driven."""
    entered = incident.status_history[-1]["at"] if incident.status_history else incident.updated_at
    latest = max(entered, incident.redriven_at or "") if incident.redrive_of == _step(incident) else entered
    return datetime.fromisoformat(latest)


def _step(incident: Incident) -> str:
    return f"{incident.status}#{incident.attempts}"


def _sweep(incident: Incident, status: Status, ports: logic.ManagerPorts, *, now: datetime) -> dict[str, Any]:
    overdue = f"{incident.status} at attempt {incident.attempts} since {_since(incident).isoformat(timespec='seconds')}"
    done = incident.redrives if incident.redrive_of == _step(incident) else 0
    if status not in STEP_OWNER:
        return _escalate(incident, status, ports, f"stuck in {overdue}: no step moves an incident on from {status}")
    if done >= MAX_REDRIVES:
        return _escalate(incident, status, ports, f"stuck in {overdue} after {done} re-drives")
    claimed = ports.incidents.record(
        incident.incident_id,
        statuses=frozenset({status}),
        require={"attempts": incident.attempts, "redriven_at": incident.redriven_at},
        values={"redrive_of": _step(incident), "redrives": done + 1, "redriven_at": now.isoformat(timespec="seconds")},
    )
    if claimed is None:  # it moved on since the scan read it, or another scan re-drove it
        return {"action": "stale", "incident_id": incident.incident_id}
    owner = STEP_OWNER[status]
    ports.monitor.record_decision(
        "redrive",
        [
            logic.step(
                f"The incident is overdue: {overdue}",
                f"re-drive the {owner}'s step ({done + 1} of {MAX_REDRIVES})",
                "the step finishes from its stored outcome; nothing is asked twice",
            )
        ],
        {"status": incident.status, "attempt": incident.attempts, "allowance_s": allowance(status).total_seconds()},
        {"redrive": done + 1, "owner": owner},
        0.8,
        once=f"redrive#{_step(incident)}#{done + 1}",
    )
    if status is Status.DETECTED:  # the Manager's own step: triage and investigation are recorded once
        issue = IssueReportedV1.model_validate(incident.issue)
        intake = Intake(
            issue=issue,
            fingerprint=incident.fingerprint,
            origin=incident.origin,
            # What the first delivery investigated; an incident stored without it has no target.
            alarm_function=incident.alarm_function,
        )
        logic.open_detected(intake, claimed, ports)
    else:
        metadata = Metadata(
            incident_id=incident.incident_id,
            correlation_id=incident.correlation_id,
            producer=logic.AGENT,
            attempt=incident.attempts,
        )
        request = logic.request_again(incident, ports, resumed=resumed_of(incident))
        ports.messenger.send(
            DetailType.REMEDIATION_REQUESTED, metadata, request.model_copy(update={"redrive": done + 1})
        )
    return {"action": "redriven", "incident_id": incident.incident_id, "status": incident.status, "redrive": done + 1}


def _escalate(incident: Incident, status: Status, ports: logic.ManagerPorts, reason: str) -> dict[str, Any]:
    escalated = ports.incidents.transition(
        incident.incident_id,
        Status.ESCALATED,
        reason=reason,
        allowed_from=frozenset({status}),
        expected_attempt=incident.attempts,
    )
    if escalated is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    ports.monitor.record_decision(
        "sweep_escalate",
        [logic.step("The incident is stuck", "escalate to a person with the reason", reason)],
        {"status": incident.status, "attempt": incident.attempts},
        {"status": Status.ESCALATED.value},
        0.9,
        once=f"sweep_escalate#{_step(incident)}",
    )
    logic.announce(ports, escalated, DetailType.INCIDENT_ESCALATED, reason)
    return {"action": "escalated", "incident_id": incident.incident_id, "reason": reason}


def resumed_of(incident: Incident) -> int:
    """The `resumed` count of the current attempt's request (the Engineer stored its proposal under it)."""
    history = [h.get("status") for h in incident.status_history]
    if Status.REMEDIATING.value not in history:
        return 0
    last = len(history) - 1 - history[::-1].index(Status.REMEDIATING.value)
    after_pause = last > 0 and history[last - 1] in (Status.BUDGET_PAUSED.value, Status.RETRY_WAIT.value)
    return logic.times_paused(incident) if after_pause else 0
