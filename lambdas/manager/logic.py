"""The Manager's decisions: open or fold incidents, triage, and close per automation level.

Plain Python over ports (incident store, monitor, messenger); no boto3 here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from selfheal_core.artifacts import ArtifactStore
from selfheal_core.catalog import AGENT_SOURCES, TERMINAL
from selfheal_core.config import RuntimeParameters
from selfheal_core.events import (
    FEEDBACK_ITEM_CHARS,
    ApprovalV1,
    CodeBundle,
    DetailType,
    Fix,
    FixValidatedV1,
    InfoV1,
    Investigation,
    IssueReportedV1,
    IssueType,
    Metadata,
    RemediationFailedV1,
    RemediationRequestedV1,
    RiskLevel,
)
from selfheal_core.incidents import Incident, IncidentStore, Status, count_status
from selfheal_core.messaging import Messenger, follow_up
from selfheal_core.observability import logger
from selfheal_core.ports import Monitor
from selfheal_core.redact import scrub
from selfheal_core.validations import ValidationRecord, ValidationStore, fix_sha256

from . import heal
from .home import Home
from .intake import Intake, legacy_fingerprint
from .investigate import CloudPort, enrich, investigate, target_of

AGENT = "manager"
SOURCE = AGENT_SOURCES[AGENT]


@dataclass
class ManagerPorts:
    incidents: IncidentStore
    monitor: Monitor
    messenger: Messenger
    params: RuntimeParameters
    artifacts: ArtifactStore
    # QA's verdicts: a table of their own, which only QA's role may write.
    verdicts: ValidationStore
    cloud: CloudPort = field(default_factory=CloudPort)
    schedules: heal.ScheduleTarget = field(default_factory=lambda: heal.ScheduleTarget("", "", ""))
    # The account and Region whose functions this Manager may change (unknown: none by ARN).
    home: Home = field(default_factory=lambda: Home("", ""))


def step(thought: str, action: str, observation: str) -> dict[str, str]:
    return {"thought": thought, "action": action, "observation": observation}


# ------------------------------------------------------------------------------ intake


def _incident_id(intake: Intake, delivery: str) -> str:
    """Derived from the delivery (its event id), so a retry of this invocation reopens the same
    incident, while the same producer key reported again later is a new delivery."""
    return "inc-" + hashlib.sha256(f"{delivery}|{intake.fingerprint}".encode()).hexdigest()[:12]


def _twin(delivery: str, correlation_id: str) -> str:
    """The fold key of a report identical to the one that opened `delivery` (same source, time and
    detail) but sent as another event: counted once per event, however often it is retried."""
    return f"{delivery}|{correlation_id}"


def fold_duplicate(
    intake: Intake,
    ports: ManagerPorts,
    *,
    context: Any,
    correlation_id: str,
    delivery_id: str | None = None,
    replayed: bool = False,
) -> dict[str, Any] | None:
    """A report of an incident that is open, counted and recorded in 2 API calls; None when it is not one.

    Runs before idempotency (see selfheal_core/agent.py): the lock is read, then one transaction
    writes the count, the fold's decision keyed by the delivery (so it succeeds once per
    delivery) and the invocation's cost (`context`: the Lambda context it is priced by). A
    delivery counted before settles its cost as usual (a third call). Anything else (the report
    that opens the incident and its retries, a lock whose incident is gone, a replay, an OK
    alarm) goes the idempotent way through `handle_intake`. So does a report under a producer's
    `idempotency_key`: sent again, it is that report (answered as it was, or refused when the key
    names another issue), not a duplicate to count.
    """
    if replayed or intake.issue.idempotency_key or (intake.origin == "alarm" and intake.alarm_state != "ALARM"):
        return None
    delivery = _incident_id(intake, delivery_id or correlation_id)
    lock = ports.incidents.live_lock(intake.fingerprint)
    if lock is None or (lock[0] == delivery and lock[1] == correlation_id):
        return None  # none open, or this very delivery again (a Lambda retry): the open path finishes it
    incident_id, incident_correlation_id = lock
    if incident_id == delivery:
        delivery = _twin(delivery, correlation_id)
    ports.monitor.bind(incident_id=incident_id, correlation_id=incident_correlation_id)
    record = _fold_record(intake, incident_id, ports, delivery=delivery)
    cost_records, cost_usd = ports.monitor.held_for(context)
    counted = ports.incidents.fold(incident_id, record=record, cost_usd=cost_usd, also=cost_records)
    if counted is None:
        return None  # the lock's incident is gone: the open path removes the lock and opens one
    if counted:
        ports.monitor.settled()
        ports.monitor.count_decision()
    return {"action": "folded", "incident_id": incident_id}


def handle_intake(
    intake: Intake, ports: ManagerPorts, *, correlation_id: str, delivery_id: str | None = None, replayed: bool = False
) -> dict[str, Any]:
    if intake.origin == "alarm" and intake.alarm_state != "ALARM":
        return (
            _alarm_recovered(intake, ports)
            if intake.alarm_state == "OK"
            else {"action": "ignored", "reason": intake.alarm_state}
        )
    late = _late_alarm(intake, ports)
    if late is not None:
        logger.warning("late ALARM ignored", extra={"reason": late, "fingerprint": intake.fingerprint})
        return {"action": "ignored", "reason": late}

    incident_id = _incident_id(intake, delivery_id or correlation_id)
    # Source code lives in the artifacts store from the start: the incident item stays small and
    # a paused incident can be resumed from the item alone.
    issue = _claim_check(intake.issue, incident_id, ports.artifacts)
    incident, is_new = ports.incidents.open_or_fold(
        incident_id=incident_id,
        fingerprint=intake.fingerprint,
        correlation_id=correlation_id,
        issue=issue.model_dump(mode="json", exclude_none=True),
        origin=intake.origin,
        alarm_function=intake.alarm_function,  # a re-drive investigates what this delivery does
        count_duplicate=not replayed,  # a replay was counted the first time it arrived
        fold_record=lambda into: _fold_record(intake, into, ports, delivery=incident_id),
    )
    ports.monitor.bind(incident_id=incident.incident_id, correlation_id=incident.correlation_id)
    if incident.incident_id == incident_id and incident.correlation_id != correlation_id and not replayed:
        # The same report sent again at the same second under another event id (`inject --count 5`,
        # a producer's double send) names the same incident as the one that opened it: a duplicate.
        record = _fold_record(intake, incident_id, ports, delivery=_twin(incident_id, correlation_id))
        ports.incidents.fold(incident_id, record=record)
        return {"action": "folded", "incident_id": incident_id}
    if not is_new and incident.incident_id == incident_id:
        return {"action": "stale", "incident_id": incident_id}  # this very report, delivered again; it is closed
    if not is_new:
        return {"action": "folded", "incident_id": incident.incident_id, "duplicates": incident.duplicates}
    return open_detected(
        Intake(issue=issue, fingerprint=intake.fingerprint, origin=intake.origin, alarm_function=intake.alarm_function),
        incident,
        ports,
    )


def _late_alarm(intake: Intake, ports: ManagerPorts) -> str | None:
    """Why an ALARM is not to be acted on: the alarm has been OK since after it entered ALARM (a
    delivery retried or delayed past its own OK, which found no incident to resolve). Opening an
    incident for it would change a function that has recovered. None otherwise: an alarm not
    readable here, or with no time to compare, is taken at its word."""
    if intake.origin != "alarm":
        return None
    raised = heal.parse_time(intake.alarm_since)
    since = heal.ok_since(intake.issue.resource, ports.cloud) if raised is not None else None
    if since is None or raised is None or since <= raised:
        return None
    return (
        f"late ALARM: alarm {intake.issue.resource} entered ALARM at {raised.isoformat()} and has been OK "
        f"since {since.isoformat(timespec='seconds')}; nothing to heal"
    )


def _fold_record(intake: Intake, incident_id: str, ports: ManagerPorts, *, delivery: str) -> dict[str, Any]:
    """The fold's decision, keyed by the delivery: written with the count, once (IncidentStore.fold)."""
    ports.monitor.bind(incident_id=incident_id)
    return ports.monitor.decision_item(
        "fold_duplicate",
        [
            step(
                f"{intake.origin} report for {intake.issue.service} ({intake.issue.issue_type})",
                f"look up the open incident for fingerprint {intake.fingerprint}",
                f"{incident_id} is open; counted as a duplicate",
            ),
            step(
                "A second run would spend tokens on a problem already being handled",
                "fold, do not start a run",
                "no event emitted",
            ),
        ],
        {"fingerprint": intake.fingerprint, "origin": intake.origin},
        {"incident_id": incident_id},
        0.99,
        once=f"fold#{delivery}",
    )


def open_detected(intake: Intake, incident: Incident, ports: ManagerPorts) -> dict[str, Any]:
    """Triage, investigate and request a fix; redoable (the sweeper re-drives a DETECTED incident here)."""
    issue = intake.issue
    chain, confidence = triage(intake, ports.params)
    ports.monitor.record_event(
        "issue_detected",
        {"service": issue.service, "issue_type": issue.issue_type, "severity": issue.severity, "origin": intake.origin},
    )
    ports.monitor.record_decision(
        "triage",
        chain,
        {"origin": intake.origin, "summary": issue.summary, "signals": issue.signals},
        {
            "incident_id": incident.incident_id,
            "issue_type": issue.issue_type,
            "severity": issue.severity,
            "next": "RemediationRequested",
        },
        confidence,
        once="triage",
    )
    investigation = _investigate(intake, incident, ports)
    # The investigation is stored with the status it leads to (one write): the apply step reads it.
    remediating = ports.incidents.transition(
        incident.incident_id,
        Status.REMEDIATING,
        reason="triaged; fix requested",
        new_attempt=1,
        redo_from=frozenset({Status.REMEDIATING}),
        also_set={"investigation": investigation.model_dump(mode="json", exclude_none=True)},
    )
    if remediating is None:  # someone else already moved it on: nothing to do twice
        return {"action": "stale", "incident_id": incident.incident_id}
    metadata = Metadata(
        incident_id=incident.incident_id, correlation_id=incident.correlation_id, producer=AGENT, attempt=1
    )
    with ports.messenger.held():  # both in one PutEvents
        ports.messenger.send(DetailType.ISSUE_DETECTED, metadata, _info(remediating, issue.summary))
        ports.messenger.send(
            DetailType.REMEDIATION_REQUESTED,
            metadata,
            RemediationRequestedV1(
                issue=enrich(issue, investigation), fingerprint=intake.fingerprint, investigation=investigation
            ),
        )
    return {"action": "opened", "incident_id": incident.incident_id}


def _investigate(intake: Intake, incident: Incident, ports: ManagerPorts) -> Investigation:
    """Read the target before anyone proposes a change to it (stored by the transition that follows)."""
    target, how = target_of(intake.issue, intake.origin, intake.alarm_function, ports.home)
    if incident.investigation:
        # A retry or replay of this step: read once. Its decision is recorded again (once): held
        # until the step settled, it may have died with the try that stored the investigation.
        inv = Investigation.model_validate(incident.investigation)
        chain = [step("Which function does this incident concern?", f"target from {how}", "read by an earlier try")]
    else:
        inv, chain = investigate(target, how, around=datetime.now(UTC), cloud=ports.cloud)
    gaps = "; ".join(inv.gaps)
    chain.append(
        step(
            "What is known, and what is not?",
            "list the readings and the gaps",
            f"read {sorted(inv.values)}; unset {inv.unset}; gaps: {gaps or 'none'}",
        )
    )
    ports.monitor.record_decision(
        "investigate",
        chain,
        {"target": target, "origin": intake.origin},
        {
            "values": inv.values,
            "managed": inv.managed,
            "revision_id": inv.revision_id,
            "gaps": inv.gaps,
            "error_lines": len(inv.error_lines),
            "recent_changes": inv.recent_changes[:5],
        },
        0.9 if not inv.gaps else 0.6,
        once="investigate",
    )
    return inv


def triage(intake: Intake, params: RuntimeParameters) -> tuple[list[dict[str, str]], float]:
    """Reasoning chain and confidence for a new incident."""
    issue = intake.issue
    known_type = issue.issue_type != IssueType.UNKNOWN.value
    has_code = issue.code is not None
    plan = "a code patch with tests" if has_code else "a configuration remediation"
    chain = [
        step(
            f"New {intake.origin} report: {issue.summary[:200]}",
            f"fingerprint service/type/resource -> {intake.fingerprint}",
            "no open incident with this fingerprint; opened a new one",
        ),
        step(
            "What kind of problem is this, and how bad?",
            "classify from metric names, signals and evidence",
            f"type={issue.issue_type}, severity={issue.severity}, signals={sorted(issue.signals)[:6]}",
        ),
        step(
            "Which remediation fits?",
            f"ask the Engineer for {plan}",
            f"automation={params.automation_level}, up to {params.max_fix_attempts} attempts",
        ),
    ]
    confidence = (
        0.55
        + (0.2 if known_type else 0.0)
        + (0.1 if issue.signals else 0.0)
        + (0.1 if issue.evidence or has_code else 0.0)
    )
    return chain, round(min(confidence, 0.95), 2)


# Heal phases with a change to the target in flight: the apply ends VERIFYING with FixApplied, the
# rollback ESCALATED with FixRolledBack; an OK meanwhile must not close the incident under them.
CHANGE_IN_FLIGHT = frozenset({"applying", "rolling_back"})


def _incident_of_alarm(intake: Intake, ports: ManagerPorts) -> tuple[str, str | None]:
    """(fingerprint, incident) the alarm's lock names; failing that, under its pre-upgrade fingerprint."""
    issue = intake.issue
    for fingerprint in (intake.fingerprint, legacy_fingerprint(issue.service, issue.issue_type, issue.resource)):
        incident_id = ports.incidents.open_incident_for(fingerprint)
        if incident_id is not None:
            return fingerprint, incident_id
    return intake.fingerprint, None


def _alarm_recovered(intake: Intake, ports: ManagerPorts) -> dict[str, Any]:
    fingerprint, incident_id = _incident_of_alarm(intake, ports)
    if incident_id is None:
        return {"action": "ignored", "reason": "alarm OK with no open incident"}
    before = ports.incidents.get(incident_id)
    reason = f"alarm {intake.issue.resource} returned to OK"
    if before is not None and before.status == Status.RESOLVED.value and before.last_reason == scrub(reason)[:1000]:
        return _finish_recovery(before, intake, ports)  # a retry after the RESOLVED write: finish the step
    if before is None or Status(before.status) in TERMINAL:
        # Closed already: an OK the service's figures bear out makes the alarm's next ALARM a new
        # occurrence. An OK they do not (set by hand over failing calls, a flapping alarm after a
        # rollback) keeps the fingerprint, so its next ALARM folds into the closed incident for
        # the cool-down instead of opening one more incident (and one more page) per flap.
        if before is not None and (unproven := heal.ok_unproven(before, intake.issue.resource, ports.cloud)):
            return {"action": "stale", "incident_id": incident_id, "reason": f"fingerprint kept: {unproven}"}
        ports.incidents.release_now(fingerprint, incident_id)
        return {"action": "stale", "incident_id": incident_id}
    # Alarm events are not ordered (a retried OK may predate the ALARM that opened the incident):
    # only the alarm's state now proves recovery. Otherwise the incident goes on; a VERIFYING one is
    # decided by its verify deadline (heal.check_recovery reads the alarm again).
    if before.status == Status.VERIFYING.value and before.change and before.heal_phase == "applied":
        # A change is being verified: an OK on data from before it (an alarm set by hand, a lagging
        # evaluation) is no proof; the verify deadline reads the alarm and the traffic again.
        recovered, _, chain = heal.check_recovery(before, ports)
        if chain[0]["thought"] == heal.ALARM_NO_EVIDENCE:  # reconfigured or deleted: the deadline decides
            return {"action": "unconfirmed", "incident_id": incident_id, "reason": chain[0]["observation"]}
        if not recovered:
            return {"action": "unconfirmed", "incident_id": incident_id, "reason": chain[-1]["observation"]}
    elif unproven := heal.ok_unproven(before, intake.issue.resource, ports.cloud):
        return {"action": "unconfirmed", "incident_id": incident_id, "reason": unproven}
    # As read: a change that landed since (a scheduled apply) is verified on its own evidence.
    incident = ports.incidents.transition(
        incident_id,
        Status.RESOLVED,
        reason=reason,
        forbid={"heal_phase": CHANGE_IN_FLIGHT},
        require={"heal_phase": before.heal_phase},
    )
    if incident is None:
        # Refused (a change in flight, a rollback to finish): the incident keeps its fingerprint so
        # the alarm's next ALARM folds into it rather than starting a second heal loop on the target.
        return {"action": "stale", "incident_id": incident_id}
    return _finish_recovery(incident, intake, ports)


def _finish_recovery(incident: Incident, intake: Intake, ports: ManagerPorts) -> dict[str, Any]:
    """Record and announce a resolution by the alarm's OK, then release the fingerprint. The
    release is written with the step's records when it settles: until then (a death, a throttled
    settle) a retry finds the lock and finishes (records are once-only, an announcement may
    repeat), and afterwards the next ALARM is a new occurrence."""
    ports.monitor.bind(incident_id=incident.incident_id, correlation_id=incident.correlation_id)
    ports.monitor.record_decision(
        "resolve_on_recovery",
        [step("The alarm that opened this incident is OK again", "resolve the incident", "fingerprint released")],
        {"alarm": intake.issue.resource},
        {"status": Status.RESOLVED.value},
        0.9,
        once="resolve_on_recovery",
    )
    # What the write resolved, from its own history: a read taken before it may predate a
    # scheduled apply that landed while CloudWatch was being asked.
    history = [h.get("status") for h in incident.status_history]
    came_from = history[-2] if len(history) > 1 else None
    if came_from == Status.VERIFYING.value and incident.change:
        heal.on_alarm_ok(incident, intake.issue.signals, ports)  # verify decision, FixVerified, IncidentResolved
    else:
        announce(ports, incident, DetailType.INCIDENT_RESOLVED, "alarm returned to OK")
    ports.monitor.hold(ports.incidents.release_operation(incident.fingerprint, incident.incident_id))
    return {"action": "resolved", "incident_id": incident.incident_id}


# A paused incident resumes only when one worst-case Engineer call fits in what is left of today's
# budget; otherwise every scan would resume it and the Engineer would pause it again.
RESUME_INPUT_TOKENS, RESUME_OUTPUT_TOKENS = 30_000, 4_096


def resumable_budget_usd(ports: ManagerPorts) -> float:
    """What is left of today's LLM budget, or 0 when one worst-case Engineer call would not fit."""
    one_call = ports.monitor.price_call(
        SimpleNamespace(
            model=ports.params.engineer_model, input_tokens=RESUME_INPUT_TOKENS, output_tokens=RESUME_OUTPUT_TOKENS
        )
    )
    remaining = ports.monitor.budget_guard().budget_status().remaining_usd
    return remaining if remaining >= one_call else 0.0


def resume_budget_paused(ports: ManagerPorts, incidents: list[Incident], *, budget_remaining_usd: float) -> list[str]:
    """On the scheduled scan: paused incidents go back to the Engineer once budget is available."""
    if budget_remaining_usd <= 0:
        return []
    resumed = []
    for incident in incidents:
        if incident.status != Status.BUDGET_PAUSED.value:
            continue
        moved = ports.incidents.transition(
            incident.incident_id,
            Status.REMEDIATING,
            reason=f"budget available (${budget_remaining_usd:.2f} left)",
            expected_attempt=incident.attempts,
        )
        if moved is None:
            continue
        ports.monitor.bind(incident_id=incident.incident_id, correlation_id=incident.correlation_id)
        ports.monitor.record_decision(
            "resume_after_budget_pause",
            [
                step(
                    "The LLM budget has room again",
                    "resume the paused incident",
                    f"${budget_remaining_usd:.2f} left today",
                )
            ],
            {"attempt": incident.attempts},
            {"status": Status.REMEDIATING.value},
            0.9,
            once=f"resume_after_budget_pause#{incident.attempts}#{times_paused(moved)}",
        )
        _send_again(ports, incident, moved)
        resumed.append(incident.incident_id)
    return resumed


def times_paused(incident: Incident) -> int:
    """Resumes so far (budget pauses and provider waits): each resumed request is a new step."""
    return count_status(incident, Status.BUDGET_PAUSED) + count_status(incident, Status.RETRY_WAIT)


# Wait n (1-based) of an incident whose model provider was unreachable ends after this long.
PROVIDER_BACKOFF_S = (60, 300, 900, 1_800, 3_600)


def _send_again(ports: ManagerPorts, incident: Incident, moved: Incident) -> None:
    """RemediationRequested for a resumed incident, at its attempt, as a new step (`resumed`)."""
    metadata = Metadata(
        incident_id=incident.incident_id,
        correlation_id=incident.correlation_id,
        producer=AGENT,
        attempt=incident.attempts,
    )
    ports.messenger.send(
        DetailType.REMEDIATION_REQUESTED, metadata, request_again(incident, ports, resumed=times_paused(moved))
    )


def request_again(incident: Incident, ports: ManagerPorts, *, resumed: int) -> RemediationRequestedV1:
    """The request for a resumed or re-driven incident: its stored issue, what the investigation
    read, and QA's reasons for rejecting the earlier attempts (from QA's own records)."""
    investigation = Investigation.model_validate(incident.investigation) if incident.investigation else None
    feedback = []
    for attempt in range(1, incident.attempts):
        verdict = ports.verdicts.get(incident.incident_id, attempt)
        if verdict is not None and not verdict.passed:
            feedback.append(f"attempt {attempt} rejected: {verdict.reason}"[:FEEDBACK_ITEM_CHARS])
    return RemediationRequestedV1(
        issue=enrich(IssueReportedV1.model_validate(incident.issue), investigation),
        fingerprint=incident.fingerprint,
        resumed=resumed,
        investigation=investigation,
        feedback=feedback,
    )


def resume_after_provider_wait(ports: ManagerPorts, incidents: list[Incident], *, now: datetime) -> list[str]:
    """On the scheduled scan: incidents waiting out a provider outage go back to the Engineer."""
    resumed = []
    for incident in incidents:
        if incident.status != Status.RETRY_WAIT.value:
            continue
        waits = count_status(incident, Status.RETRY_WAIT)
        entered = datetime.fromisoformat(incident.status_history[-1]["at"]) if incident.status_history else now
        backoff = PROVIDER_BACKOFF_S[min(waits, len(PROVIDER_BACKOFF_S)) - 1]
        if now < entered + timedelta(seconds=backoff):
            continue
        moved = ports.incidents.transition(
            incident.incident_id,
            Status.REMEDIATING,
            reason=f"provider wait {waits} over ({backoff}s); retrying",
            expected_attempt=incident.attempts,
        )
        if moved is None:
            continue
        ports.monitor.bind(incident_id=incident.incident_id, correlation_id=incident.correlation_id)
        ports.monitor.record_decision(
            "resume_after_provider_wait",
            [step("The model provider was unreachable", "ask the Engineer again", f"after wait {waits} of {backoff}s")],
            {"attempt": incident.attempts, "waits": waits},
            {"status": Status.REMEDIATING.value},
            0.8,
            once=f"resume_after_provider_wait#{incident.attempts}#{waits}",
        )
        _send_again(ports, incident, moved)
        resumed.append(incident.incident_id)
    return resumed


# ------------------------------------------------------------------------------ outcomes


def handle_fix_validated(
    metadata: Metadata, data: FixValidatedV1, ports: ManagerPorts, *, replayed: bool = False
) -> dict[str, Any]:
    # The incident and QA's record for this attempt in one read.
    incident, record = ports.verdicts.get_with_incident(metadata.incident_id, metadata.attempt)
    # A retry after the status write finishes the step: APPROVED or AWAITING_APPROVAL at this
    # attempt, or this attempt's change applied or scheduled (its events may never have gone out).
    # An archive replay never re-asks a person nor announces again (the first delivery completed).
    finishing = (Status.APPROVED.value,) if replayed else (Status.APPROVED.value, Status.AWAITING_APPROVAL.value)
    if (
        incident is None
        or (incident.status not in (Status.VALIDATED.value, *finishing) and (replayed or not _changed_here(incident)))
        or incident.attempts != metadata.attempt
    ):
        return {"action": "stale", "incident_id": metadata.incident_id}
    refusal, fix = _refusal(record, data, ports)
    if refusal is not None or record is None or fix is None:
        return _refuse_validation(metadata, refusal or "no validation record", ports)
    level = ports.params.automation_level
    risk = record.risk_level  # QA's record, never the event
    unproven = _alarm_without_data(incident)
    auto = (level == "full_auto" or (level == "semi_auto" and risk == RiskLevel.LOW.value)) and unproven is None
    approved_reason = f"auto-approved ({level}, risk {risk})"
    if incident.status not in (Status.VALIDATED.value, Status.AWAITING_APPROVAL.value):  # approved already
        if not auto:  # by a person: their ApprovalGranted step announces it
            return (
                heal.after_approval(incident, ports) if incident.status == Status.APPROVED.value else _stale(incident)
            )
        # By this step, whose first try died after the APPROVED write: its decision and
        # announcements may be lost (recorded once; receivers de-duplicate what is sent twice).
        _record_close(metadata, record, level, risk, auto, unproven, ports)
        return _announce_approval(incident, ports, approved_reason)
    validated, kept = heal.validated_record(incident, data, ports, fix)
    if not auto and incident.status == Status.VALIDATED.value:
        refused = heal.refuse_repeat_before_approval(incident, fix, ports)
        if refused is not None:
            return refused  # nobody is asked to approve a change that would not be made
    _record_close(metadata, record, level, risk, auto, unproven, ports)
    if auto and incident.status == Status.VALIDATED.value:
        return _approve_and_resolve(incident, ports, reason=approved_reason, record=validated, kept=kept)
    waiting = ports.incidents.transition(
        incident.incident_id,
        Status.AWAITING_APPROVAL,
        reason="human approval required",
        expected_attempt=metadata.attempt,
        redo_from=frozenset({Status.AWAITING_APPROVAL}),
        also_set={"validated_fix": kept},
    )
    if waiting is None:
        return _stale(incident)
    announce(
        ports, waiting, DetailType.APPROVAL_REQUESTED, f"approve with: selfheal approve {incident.incident_id}", risk
    )
    return {"action": "awaiting_approval", "incident_id": incident.incident_id}


def _stale(incident: Incident) -> dict[str, Any]:
    return {"action": "stale", "incident_id": incident.incident_id}


def _changed_here(incident: Incident) -> bool:
    """Is the incident's change the one planned for its current attempt, applied or scheduled?"""
    return incident.change_id == heal.change_id_of(incident) and (incident.status, incident.heal_phase) in (
        (Status.VERIFYING.value, "applied"),
        (Status.SCHEDULED.value, "scheduled"),
    )


def _record_close(
    metadata: Metadata,
    record: ValidationRecord,
    level: str,
    risk: str,
    auto: bool,
    unproven: str | None,
    ports: ManagerPorts,
) -> None:
    """The `close_incident` decision of this attempt: approve automatically, or ask a person."""
    chain = [
        step(
            "QA validated the fix with evidence",
            "read QA's validation record; compare the fix hash",
            f"record for attempt {metadata.attempt} passed; fix {record.fix_sha256[:12]} matches the event",
        ),
        step(
            f"Automation level is {level}; fix risk is {risk}" + (f"; but {unproven}" if unproven else ""),
            "approve automatically" if auto else "ask a human to approve",
            "RemediationApproved" if auto else "ApprovalRequested sent to the alerts topic",
        ),
    ]
    ports.monitor.record_decision(
        "close_incident",
        chain,
        {"automation_level": level, "risk_level": risk, "attempt": metadata.attempt},
        {"decision": "auto_approve" if auto else "await_approval"},
        0.9 if auto else 0.75,
        once=f"close_incident#{metadata.attempt}",
    )


def _alarm_without_data(incident: Incident) -> str | None:
    """Why the ALARM that opened the incident shows no breach (None when it does). CloudWatch's
    own evaluation sends the datapoints it judged; an ALARM set by hand (`set-alarm-state`, an
    operator testing the pager) carries none, and no change is made on it without a person."""
    if incident.origin != "alarm" or "latest_datapoint" in (incident.issue.get("signals") or {}):
        return None
    return "the ALARM carried no evaluated datapoint (set by hand?), so a person decides"


def _refusal(
    record: ValidationRecord | None, data: FixValidatedV1, ports: ManagerPorts
) -> tuple[str | None, Fix | None]:
    """Why a FixValidated event cannot be acted on (None when QA's record backs it), and the
    event's fix as read (from its claim check once, for the steps after)."""
    if record is None:
        return "no validation record from QA for this attempt", None
    if not record.passed:
        return f"QA's record for attempt {record.attempt} is not a pass", None
    try:
        fix = data.fix if data.fix.artifact is None else Fix.model_validate(ports.artifacts.get_json(data.fix.artifact))
    except Exception as exc:  # noqa: BLE001 - an unreadable claim check is a refusal, not a crash loop
        return f"the event's fix cannot be read: {type(exc).__name__}", None
    if fix_sha256(fix) != record.fix_sha256:
        return (
            f"the event's fix (sha256 {fix_sha256(fix)[:12]}) is not the fix QA validated ({record.fix_sha256[:12]})",
            None,
        )
    return None, fix


def _refuse_validation(metadata: Metadata, reason: str, ports: ManagerPorts) -> dict[str, Any]:
    """Record why, change nothing: a forged event must neither approve nor close the incident
    (the genuine FixValidated for this attempt may still arrive and is handled normally)."""
    ports.monitor.record_decision(
        "refuse_validation",
        [
            step("A FixValidated event arrived", "compare it with QA's stored validation record", reason),
            step("The event is not backed by QA's record", "refuse: no approval, no status change", "nothing emitted"),
        ],
        {"attempt": metadata.attempt, "producer": metadata.producer},
        {"decision": "refused", "reason": reason},
        0.99,
        once=f"refuse_validation#{metadata.attempt}#{hashlib.sha256(reason.encode()).hexdigest()[:12]}",
    )
    return {"action": "refused", "incident_id": metadata.incident_id, "reason": reason}


def handle_approval(
    metadata: Metadata, data: ApprovalV1, granted: bool, ports: ManagerPorts, *, replayed: bool = False
) -> dict[str, Any]:
    """`data.approver` is believed only because the bus policy lets no principal but the approvals
    function send `agentops.operator`, and that function sets it from the SigV4-authenticated caller.

    A decision moves the incident only from AWAITING_APPROVAL at the attempt it was asked for, and
    is recorded only once its write won: of an approval and a denial handled concurrently, the
    loser is stale (a late denial must not close a change already live, before it is verified)."""
    incident = ports.incidents.get(metadata.incident_id)
    if incident is None or incident.attempts != metadata.attempt:
        return {"action": "stale", "incident_id": metadata.incident_id}
    ports.monitor.bind(incident_id=incident.incident_id, correlation_id=incident.correlation_id)
    reason = f"{'approved' if granted else 'denied'} by {data.approver}"
    if incident.status != Status.AWAITING_APPROVAL.value:
        # A retry after the status write finishes the step; only this decision's own write counts,
        # not another approver's. A replayed denial tells nobody twice (heal guards a replayed approval).
        finishing = Status.APPROVED if granted else Status.ESCALATED
        if incident.status != finishing.value or (replayed and not granted):
            return {"action": "stale", "incident_id": metadata.incident_id}
        if granted:  # heal's steps are guarded by the incident's change id and phase
            if _decided_here(incident, reason):
                _record_human_decision(incident, data, granted, ports)
            return heal.after_approval(incident, ports)
        if not _decided_here(incident, reason):
            return {"action": "stale", "incident_id": metadata.incident_id}
        return _announce_denial(incident, data, ports)
    if granted:
        return _approve_and_resolve(
            incident, ports, reason=reason, decided=lambda: _record_human_decision(incident, data, granted, ports)
        )
    escalated = ports.incidents.transition(
        incident.incident_id,
        Status.ESCALATED,
        reason=reason,
        expected_attempt=metadata.attempt,
        allowed_from=frozenset({Status.AWAITING_APPROVAL}),
    )
    if escalated is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    return _announce_denial(escalated, data, ports)


def _decided_here(incident: Incident, reason: str) -> bool:
    """The incident's status was written by this decision (the store scrubs and caps reasons)."""
    return incident.last_reason == scrub(reason)[:1000]


def _record_human_decision(incident: Incident, data: ApprovalV1, granted: bool, ports: ManagerPorts) -> None:
    ports.monitor.record_decision(
        "human_approval",
        [
            step(
                f"{data.approver} {'approved' if granted else 'denied'} the fix",
                "apply the human decision",
                data.comment or "no comment",
            )
        ],
        {"approver": data.approver, "attempt": incident.attempts},
        {"granted": granted},
        1.0,
        once=f"human_approval#{incident.attempts}",
    )


def _announce_denial(incident: Incident, data: ApprovalV1, ports: ManagerPorts) -> dict[str, Any]:
    _record_human_decision(incident, data, False, ports)
    announce(ports, incident, DetailType.INCIDENT_ESCALATED, f"fix denied by {data.approver}: {data.comment}")
    return {"action": "escalated", "incident_id": incident.incident_id}


def handle_remediation_failed(
    metadata: Metadata, data: RemediationFailedV1, ports: ManagerPorts, *, replayed: bool = False
) -> dict[str, Any]:
    # Only at the attempt it reports on: a late failure of an earlier attempt must not end a newer one.
    failed = ports.incidents.transition(
        metadata.incident_id,
        Status.FAILED,
        reason=f"{data.category}: {data.reason}",
        expected_attempt=metadata.attempt,
    )
    if failed is None:
        # A retry after the status write: FAILED at this attempt still owes its escalation
        # (not an archive replay: nobody is paged twice).
        current = ports.incidents.get(metadata.incident_id)
        if replayed or current is None or current.status != Status.FAILED.value or current.attempts != metadata.attempt:
            return {"action": "stale", "incident_id": metadata.incident_id}
        failed = current
    ports.monitor.record_decision(
        "fail_incident",
        [
            step(
                "The Engineer could not produce a fix that QA accepts",
                f"mark FAILED ({data.category})",
                data.reason[:300],
            ),
            step("A person must take over", "escalate by notification", "IncidentEscalated sent"),
        ],
        {"category": data.category, "attempt": metadata.attempt},
        {"status": Status.FAILED.value},
        0.95,
        once=f"fail_incident#{metadata.attempt}",
    )
    announce(ports, failed, DetailType.INCIDENT_ESCALATED, f"remediation failed ({data.category}): {data.reason[:300]}")
    return {"action": "failed", "incident_id": metadata.incident_id}


def _approve_and_resolve(
    incident: Incident,
    ports: ManagerPorts,
    *,
    reason: str,
    record: dict[str, Any] | None = None,
    kept: dict[str, Any] | None = None,
    decided: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """`record`: the validated fix when this invocation has just read it, and `kept`: what the
    incident keeps of it, written with APPROVED (absent when it was kept at AWAITING_APPROVAL).
    `decided`: records who decided, once the APPROVED write has won."""
    also = {"validated_fix": kept} if kept is not None else {}
    approved = ports.incidents.transition(
        incident.incident_id,
        Status.APPROVED,
        reason=reason,
        also_set={**also, **heal.planned_on_approval(incident, record, ports)},
    )
    if approved is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    if decided is not None:
        decided()
    return _announce_approval(approved, ports, reason, record)


def _announce_approval(
    approved: Incident, ports: ManagerPorts, reason: str, record: dict[str, Any] | None = None
) -> dict[str, Any]:
    """RemediationApproved with what the apply step sends (FixApplied, the schedule, or the
    escalation): one PutEvents, and still sent if the step raises. A retry that finds the change
    applied or scheduled already sends what that step sent again."""
    with ports.messenger.held():
        announce(ports, approved, DetailType.REMEDIATION_APPROVED, reason)
        if approved.status != Status.APPROVED.value:
            return heal.announce_after_approval(approved, ports)
        # Approval changes nothing by itself: the fix is applied, verified and kept or rolled back (heal.py).
        return heal.after_approval(approved, ports, record)


def _info(incident: Incident, summary: str, risk: str | None = None) -> InfoV1:
    return InfoV1(
        status=incident.status,
        summary=summary[:4000],
        service=incident.service,
        issue_type=incident.issue_type,
        severity=incident.severity,
        risk_level=risk,
        fingerprint=incident.fingerprint,
        duplicates=incident.duplicates,
    )


def announce(
    ports: ManagerPorts, incident: Incident, detail_type: DetailType, summary: str, risk: str | None = None
) -> None:
    metadata = Metadata(
        incident_id=incident.incident_id,
        correlation_id=incident.correlation_id,
        producer=AGENT,
        attempt=max(incident.attempts, 1),
    )
    ports.messenger.send(detail_type, follow_up(metadata, AGENT), _info(incident, summary, risk))


# Evidence kept inline on the incident and in every event; the model sees at most 8,000 characters.
EVIDENCE_INLINE_CHARS = 16_000


def _claim_check(issue: IssueReportedV1, incident_id: str, artifacts: ArtifactStore) -> IssueReportedV1:
    """Source code and long evidence go to the artifacts store, so every event stays far below
    EventBridge's 256 KB however large a valid report was (it grows with each agent's additions)."""
    update: dict[str, Any] = {}
    if issue.code is not None and issue.code.files:
        ref = artifacts.put_json(f"incidents/{incident_id}/code.json", issue.code.files)
        update["code"] = CodeBundle(files={}, test_command=issue.code.test_command, artifact=ref)
    if sum(len(line) for line in issue.evidence) > EVIDENCE_INLINE_CHARS:
        update["evidence_artifact"] = artifacts.put_json(f"incidents/{incident_id}/evidence.json", issue.evidence)
        inline, used = [], 0
        for line in issue.evidence:
            room = EVIDENCE_INLINE_CHARS - used
            if room <= 0:
                break
            inline.append(line[:room])
            used += len(inline[-1])
        update["evidence"] = inline
    return issue.model_copy(update=update) if update else issue
