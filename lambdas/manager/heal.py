"""After approval: apply the validated change, verify recovery, keep it or roll it back.

Config fixes change the target Lambda function through its API, only when it is tagged
`selfheal:managed=true`, in its service's low-traffic window (critical and high severity
at once). Each step is a conditional write on the incident that records the change id, so a
replayed or duplicated event never applies or rolls back twice, and a Lambda retry after a
crash finishes the step it interrupted. Code fixes are not deployed: the validated patch is
kept as a `git am`-able artifact (`selfheal patch INCIDENT`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError

from selfheal_core import aws
from selfheal_core.artifacts import ArtifactStore, too_large
from selfheal_core.catalog import AGENT_SOURCES
from selfheal_core.config import RuntimeParameters
from selfheal_core.events import (
    ArtifactRef,
    ConfigChange,
    DetailType,
    DueV1,
    Fix,
    FixAppliedV1,
    FixRolledBackV1,
    FixValidatedV1,
    FixVerifiedV1,
    InfoV1,
    Investigation,
    IssueReportedV1,
    Metadata,
    RiskLevel,
    SettingChange,
    is_breaking,
    setting_named,
)
from selfheal_core.incidents import (
    ROLLED_BACK_PHASES,
    Incident,
    IncidentStore,
    Status,
    TargetCoolingDown,
    TargetHeld,
)
from selfheal_core.messaging import Messenger
from selfheal_core.observability import logger
from selfheal_core.ports import Monitor

from .investigate import MANAGED_TAG, CloudPort

AGENT = "manager"
SOURCE = AGENT_SOURCES[AGENT]
APPLICABLE = ("memory_mb", "timeout_s", "reserved_concurrency", "max_retries")
URGENT = frozenset({"critical", "high"})
# A schedule may fire a little early or late; a due event earlier than this is not honoured.
DUE_SLACK = timedelta(seconds=60)
EVIDENCE_EXCERPT_LINES = 10


def now() -> datetime:
    """The heal loop's clock (tests move it to a window's start or a verification's end)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ScheduleTarget:
    """Where one-time schedules deliver: the agents bus, through the scheduler role."""

    env: str
    bus_arn: str
    role_arn: str


class HealPorts(Protocol):
    """The Manager's ports this module uses (logic.ManagerPorts provides them)."""

    incidents: IncidentStore
    monitor: Monitor
    messenger: Messenger
    params: RuntimeParameters
    artifacts: ArtifactStore
    cloud: CloudPort
    schedules: ScheduleTarget


class HealAbort(RuntimeError):
    """The change cannot be made safely; `reason` is what a person must know."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SetBySomeoneElse(HealAbort):
    """`_write`: the target already holds the values to write, and not by a write of this step's:
    someone else set them (`detail`: when, or which setting)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.detail = detail


class FunctionGone(HealAbort):
    """The target function no longer exists (deleted since it was read): nothing to change or restore."""

    def __init__(self, target: str) -> None:
        super().__init__(f"the function {target} no longer exists")
        self.target = target


def _raise_transient(exc: Exception) -> None:
    """Raise a throttle or an AWS hiccup as it is: the Lambda retry redoes the step (and then the
    DLQ keeps it), where treating it as an answer would decide on no reading."""
    if isinstance(exc, ClientError) and aws.is_transient(exc):
        raise exc


def _lambda_error(exc: ClientError, target: str) -> None:
    """Raise what a Lambda API error means for a heal step whatever the call: a transient one as it
    is (the Lambda retry redoes the step, which is guarded to be redone), a deleted function as
    FunctionGone. Returns for any other error, which the caller turns into its own HealAbort."""
    _raise_transient(exc)
    if aws.error_code(exc) == "ResourceNotFoundException":
        raise FunctionGone(target) from exc


def step(thought: str, action: str, observation: str) -> dict[str, str]:
    return {"thought": thought, "action": action, "observation": observation[:1000]}


def change_id_of(incident: Incident) -> str:
    return "chg-" + hashlib.sha256(f"{incident.incident_id}|{incident.attempts}".encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------ the validated fix


def validated_record(
    incident: Incident, data: FixValidatedV1, ports: HealPorts, fix: Fix | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What QA validated, and what the incident keeps of it (`validated_fix`, written with the
    next status): approval may come much later, from another event. `fix`: the event's fix
    already read from its claim check.

    A small configuration fix stays on the incident item (no S3 round trip); code fixes and
    large records go to the artifacts store (claim check) and the item keeps the reference."""
    if fix is None:
        fix = data.fix if data.fix.artifact is None else Fix.model_validate(ports.artifacts.get_json(data.fix.artifact))
    record = {
        "attempt": incident.attempts,
        "fix": fix.model_dump(mode="json", exclude_none=True),
        "evidence": [e.model_dump(mode="json", exclude_none=True) for e in data.evidence],
        "evidence_artifact": data.evidence_artifact.model_dump(mode="json") if data.evidence_artifact else None,
    }
    if fix.kind == "config" and not too_large(record):
        return record, {"record": record}
    ref = ports.artifacts.put_json(f"incidents/{incident.incident_id}/validated-{incident.attempts}.json", record)
    return record, ref.model_dump(mode="json")


def planned_on_approval(incident: Incident, record: dict[str, Any] | None, ports: HealPorts) -> dict[str, Any]:
    """Attributes the APPROVED write sets with it: the planned configuration change, already
    claimed for applying when no window holds it back. One write instead of three; a fix that
    cannot be planned gets nothing here, and `after_approval` escalates it with the reason."""
    # A record kept in the artifacts store is not fetched here: planned after the approval instead.
    record = record or (incident.validated_fix or {}).get("record")
    if record is None:
        return {}
    fix = Fix.model_validate(record["fix"])
    if fix.kind != "config":
        return {}
    try:
        change = plan_change(incident, fix)
    except HealAbort:
        return {}
    held_back = next_window(now(), incident.service, incident.severity, ports.params.apply_windows) is not None
    return {"change_id": change["change_id"], "change": change, "heal_phase": "planned" if held_back else "applying"}


def _validated(incident: Incident, ports: HealPorts) -> dict[str, Any] | None:
    if not incident.validated_fix:
        return None
    if "record" in incident.validated_fix:
        inline: dict[str, Any] = incident.validated_fix["record"]
        return inline
    record: dict[str, Any] = ports.artifacts.get_json(ArtifactRef.model_validate(incident.validated_fix))
    return record


# ------------------------------------------------------------------------------ after approval


def after_approval(incident: Incident, ports: HealPorts, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """APPROVED: keep a code patch, or plan the config change and apply it now or in its window.
    `record`: the validated fix when this invocation has just kept it (not read back)."""
    record = record or _validated(incident, ports)
    if record is None:
        return _escalate(
            incident,
            ports,
            "approved, but the validated fix was not recorded; nothing was changed",
            frozenset({Status.APPROVED}),
        )
    fix = Fix.model_validate(record["fix"])
    if fix.kind == "code":
        return _patch_ready(incident, fix, record, ports)
    try:
        change = plan_change(incident, fix)
    except HealAbort as exc:
        return _escalate(incident, ports, exc.reason, frozenset({Status.APPROVED}))
    # Planned with the APPROVED write (`planned_on_approval`), or here on a path that was not.
    planned = (
        incident
        if incident.change_id is not None
        else ports.incidents.record(
            incident.incident_id,
            statuses=frozenset({Status.APPROVED}),
            require={"change_id": None},
            values={"change_id": change["change_id"], "change": change, "heal_phase": "planned"},
        )
        or ports.incidents.get(incident.incident_id)
    )
    if planned is None or planned.change_id != change["change_id"]:
        return {"action": "stale", "incident_id": incident.incident_id}
    if planned.status != Status.APPROVED.value:
        return {"action": "stale", "incident_id": incident.incident_id}
    if planned.heal_phase == "applying":  # claimed with the approval, or a retry after a crash inside the apply
        return apply_change(planned, ports)
    due = next_window(now(), planned.service, planned.severity, ports.params.apply_windows)
    if due is None:
        return apply_change(planned, ports)
    return _schedule_apply(planned, due, ports)


def plan_change(incident: Incident, fix: Fix) -> dict[str, Any]:
    """The exact change: only settings that were read, on the function that was read."""
    inv = Investigation.model_validate(incident.investigation) if incident.investigation else None
    by_hand = _by_hand(inv.target if inv and inv.target else incident.service, fix)
    if inv is None or inv.target is None:
        raise HealAbort(f"the target was never investigated; make the change by hand: {by_hand}")
    if inv.managed is not True:
        why = "target not managed" if inv.managed is False else "target not managed (its tags could not be read)"
        raise HealAbort(f"{why}: {inv.target} lacks {MANAGED_TAG}=true; make the change by hand: {by_hand}")
    previous: dict[str, float] = {}
    proposed: dict[str, float] = {}
    for c in fix.changes:
        _check_change(c, inv, by_hand)
        previous[c.setting] = inv.values[c.setting]
        proposed[c.setting] = float(c.proposed)
    if not proposed:
        raise HealAbort("the validated fix changes nothing")
    if ("memory_mb" in proposed or "timeout_s" in proposed) and not inv.revision_id:
        raise HealAbort(
            f"no RevisionId was read for {inv.target}, so a concurrent change could not be detected; "
            f"make the change by hand: {by_hand}"
        )
    return {
        "change_id": change_id_of(incident),
        "target": inv.target,
        "target_arn": inv.target_arn,
        "revision_id": inv.revision_id,
        "previous": previous,
        "proposed": proposed,
    }


def _check_change(c: ConfigChange, inv: Investigation, by_hand: str) -> None:
    """HealAbort unless `c` changes a setting that was read, on the function that was read, from
    the value read, to a whole number."""
    if c.target != inv.target:
        raise HealAbort(f"the change targets {c.target!r} but {inv.target!r} was investigated; nothing was changed")
    if c.setting not in APPLICABLE:
        raise HealAbort(
            f"{c.setting} cannot be applied through the Lambda API here; make the change by hand: {by_hand}"
        )
    if c.setting not in inv.values:
        raise HealAbort(f"no change relative to a value nobody read: {inv.gap_for(c.setting)}")
    if c.contradicts(inv.values[c.setting]):
        # Judged from another reading (stale or forged): its risk was not this change's.
        raise HealAbort(
            f"the fix changes {c.setting} from {c.current:g}, but the investigation read "
            f"{inv.values[c.setting]:g}; nothing was changed"
        )
    if not float(c.proposed).is_integer():
        # Lambda takes whole seconds and megabytes: truncating would apply what nobody validated.
        raise HealAbort(f"{c.setting}={c.proposed:g} is not a whole number; nothing was changed")


def _by_hand(target: str, fix: Fix) -> str:
    parts = []
    config = {"memory_mb": "--memory-size", "timeout_s": "--timeout"}
    flags = [f"{config[c.setting]} {c.proposed:g}" for c in fix.changes if c.setting in config]
    if flags:
        parts.append(f"aws lambda update-function-configuration --function-name {target} {' '.join(flags)}")
    for c in fix.changes:
        if c.setting == "reserved_concurrency":
            parts.append(
                f"aws lambda put-function-concurrency --function-name {target} "
                f"--reserved-concurrent-executions {c.proposed:g}"
            )
        elif c.setting == "max_retries":
            parts.append(
                f"aws lambda put-function-event-invoke-config --function-name {target} "
                f"--maximum-retry-attempts {c.proposed:g}"
            )
        elif c.setting not in config:
            parts.append(f"set {c.setting} of {c.target} to {c.proposed:g}")
    return "; ".join(parts) or "no change proposed"


# ------------------------------------------------------------------------------ windows


def next_window(at: datetime, service: str, severity: str, windows: dict[str, str | list[str]]) -> datetime | None:
    """None = apply now (urgent, "any", or inside a window); else the next window's start (UTC)."""
    if severity in URGENT:
        return None
    spec = windows.get(service, windows.get("*", "any"))
    if spec == "any" or not spec:
        return None
    if isinstance(spec, str):
        spec = [spec]
    starts = []
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    for offset in (-1, 0, 1):
        base = day + timedelta(days=offset)
        for window in spec:
            start, end = _parse_window(window, base)
            if start <= at < end:
                return None
            if start > at:
                starts.append(start)
    return min(starts)


def _parse_window(window: str, base: datetime) -> tuple[datetime, datetime]:
    try:
        first, second = window.split("-")
        sh, sm = (int(x) for x in first.strip().split(":"))
        eh, em = (int(x) for x in second.strip().split(":"))
    except ValueError as exc:
        raise ValueError(f"apply window {window!r} must look like 'HH:MM-HH:MM' (UTC)") from exc
    start = base + timedelta(hours=sh, minutes=sm)
    end = base + timedelta(hours=eh, minutes=em)
    return start, end if end > start else end + timedelta(days=1)


def _schedule_apply(incident: Incident, due: datetime, ports: HealPorts) -> dict[str, Any]:
    change = dict(incident.change or {})
    change["scheduled_for"] = due.isoformat(timespec="seconds")
    return _schedule(
        incident,
        change,
        ports,
        kind="apply",
        reason=f"waiting for the low-traffic window at {change['scheduled_for']}",
        decision=(
            "schedule_apply",
            [
                step(
                    f"{incident.severity} severity; {incident.service} has low-traffic windows",
                    "wait for the next window (one-time schedule ApplyDue)",
                    change["scheduled_for"],
                )
            ],
            {
                "severity": incident.severity,
                "windows": ports.params.apply_windows.get(incident.service, ports.params.apply_windows.get("*", "any")),
            },
        ),
        once=f"schedule_apply#{change['change_id']}",
    )


# A change waits this many times for other incidents' changes on its target, then a person decides.
# (One holder settles within its verify window and VERIFY_EXTENSIONS more.)
TARGET_WAITS = 6
# After the holder's verify deadline, the time its verification takes to settle.
SETTLE = timedelta(minutes=2)


def _repeats(change: dict[str, Any], rolled_back: Incident) -> bool:
    """Does `change` set a setting to the value a rolled-back change set it to (which did not help)?"""
    before = (rolled_back.change or {}).get("proposed") or {}
    return any(k in before and _same(v, float(before[k])) for k, v in change.get("proposed", {}).items())


def _refused_during_cooldown(change: dict[str, Any], cooling: TargetCoolingDown) -> bool:
    """After a failed rollback or an unverified change every change waits for a person; after a
    rollback, the same change does."""
    return cooling.needs_person or _repeats(change, cooling.holder)


def _escalate_repeat(
    incident: Incident, change: dict[str, Any], cooling: TargetCoolingDown, sources: frozenset[Status], ports: HealPorts
) -> dict[str, Any]:
    by_hand = _by_hand_values(change["target"], change["proposed"])
    holder = cooling.holder
    if cooling.needs_person:
        ended = "its rollback failed" if holder.heal_phase == "rollback_failed" else "it was kept unverified"
        reason = (
            f"{change['target']}: Selfheal's last change on it ({holder.change_id} of incident "
            f"{holder.incident_id}) was left to a person ({ended}); Selfheal makes no change on it before "
            f"{cooling.until}, so nothing was changed. Settle incident {holder.incident_id} first; to make "
            f"this change anyway: {by_hand}"
        )
    else:
        reason = (
            f"{change['target']}: the same change ({holder.change_id} of incident "
            f"{holder.incident_id}) was rolled back for no recovery; Selfheal does not make "
            f"it again before {cooling.until}, so nothing was changed. Look at the function; to make "
            f"it anyway: {by_hand}"
        )
    return _escalate(incident, ports, reason, sources, decision="wait_for_target")


def refuse_repeat_before_approval(incident: Incident, fix: Fix, ports: HealPorts) -> dict[str, Any] | None:
    """A change that waits for a person and repeats one rolled back on its target within the
    cool-down, or any change on a target left to a person (a failed rollback, an unverified
    change), is escalated now rather than after the approval (where `apply_change` would refuse
    it): nobody is asked to approve a change that will not be made. None: ask as usual (a fix
    that cannot be planned is escalated after the approval, with the reason)."""
    if fix.kind != "config":
        return None
    try:
        change = plan_change(incident, fix)
    except HealAbort:
        return None
    cooling = ports.incidents.cooling_down(change["target"])
    if cooling is None or not _refused_during_cooldown(change, cooling):
        return None
    return _escalate_repeat(incident, change, cooling, frozenset({Status.VALIDATED}), ports)


def _wait_for_target(incident: Incident, holder: Incident, ports: HealPorts) -> dict[str, Any]:
    """Another incident's change on the same function is in flight: apply after it settles (the
    scheduled-apply path), re-reading the function first; escalate after TARGET_WAITS waits."""
    change = dict(incident.change or {})
    target = change["target"]
    waits = int(change.get("waits", 0)) + 1
    held = f"{target} has change {holder.change_id} of incident {holder.incident_id} in flight ({holder.status}, {holder.heal_phase})"
    if waits > TARGET_WAITS:
        return _escalate(
            incident,
            ports,
            f"{held} after {TARGET_WAITS} waits; nothing was changed. "
            f"Make the change by hand once it settles: {_by_hand_values(target, change['proposed'])}",
            frozenset({Status.APPROVED, Status.SCHEDULED}),
            decision="wait_for_target",
        )
    holder_due = parse_time((holder.change or {}).get("verify_until"))
    due = max(holder_due or now() + timedelta(seconds=ports.params.verify_window_seconds), now()) + SETTLE
    change.update(
        {
            "scheduled_for": due.isoformat(timespec="seconds"),
            "waits": waits,
            "waited_for": holder.incident_id,
            "reread": True,
        }
    )
    return _schedule(
        incident,
        change,
        ports,
        kind=f"apply-wait-{waits}",
        reason=f"waiting for incident {holder.incident_id}'s change on {target} to settle; apply re-checked at {change['scheduled_for']}",
        decision=(
            "wait_for_target",
            [
                step(
                    "Is another change on the target in flight?",
                    f"hold {target} for this change",
                    f"no: {held}",
                ),
                step(
                    "A second change would confound its verification and block its rollback",
                    "wait, then apply after re-reading the function (one-time schedule ApplyDue)",
                    f"{change['scheduled_for']} (wait {waits} of {TARGET_WAITS})",
                ),
            ],
            {"holder": holder.incident_id, "holder_change_id": holder.change_id, "wait": waits},
        ),
        once=f"wait_for_target#{change['change_id']}#{waits}",
    )


def _schedule(
    incident: Incident,
    change: dict[str, Any],
    ports: HealPorts,
    *,
    kind: str,
    reason: str,
    decision: tuple[str, list[dict[str, str]], dict[str, Any]],
    once: str,
) -> dict[str, Any]:
    """SCHEDULED with a one-time ApplyDue at change["scheduled_for"]; the schedule first, so a retry redoes it."""
    create_schedule(ports, kind, incident, DetailType.APPLY_DUE, datetime.fromisoformat(change["scheduled_for"]))
    scheduled = ports.incidents.transition(
        incident.incident_id,
        Status.SCHEDULED,
        reason=reason,
        expected_attempt=incident.attempts,
        redo_from=frozenset({Status.SCHEDULED}),
        require={"change_id": change["change_id"]},
        also_set={"change": change, "heal_phase": "scheduled"},
    )
    if scheduled is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    decision_type, chain, inputs = decision
    ports.monitor.record_decision(
        decision_type,
        chain,
        inputs,
        {"status": Status.SCHEDULED.value, "apply_at": change["scheduled_for"], "change_id": change["change_id"]},
        0.9,
        once=once,
    )
    return _announce_scheduled(scheduled, ports)


def _announce_scheduled(incident: Incident, ports: HealPorts) -> dict[str, Any]:
    change = incident.change or {}
    _announce(
        ports,
        incident,
        DetailType.REMEDIATION_APPROVED,
        f"change {change['change_id']} scheduled for {change['scheduled_for']}",
    )
    return {"action": "scheduled", "incident_id": incident.incident_id, "apply_at": change["scheduled_for"]}


def announce_after_approval(incident: Incident, ports: HealPorts) -> dict[str, Any]:
    """What the approving step sends about the change it applied (VERIFYING) or scheduled, sent
    again: for a retry of that step whose first try died after the write, before its events went
    out. Receivers de-duplicate (events are delivered at least once)."""
    if incident.status == Status.VERIFYING.value:
        return _announce_applied(incident, ports)
    return _announce_scheduled(incident, ports)


def create_schedule(ports: HealPorts, kind: str, incident: Incident, detail_type: DetailType, at: datetime) -> None:
    """A one-time schedule that puts `detail_type` on the bus; creating it twice is a no-op."""
    target = ports.schedules
    if not target.bus_arn or not target.role_arn:
        raise RuntimeError("EVENT_BUS_ARN and SCHEDULER_ROLE_ARN must be set for the Manager to schedule")
    metadata = Metadata(
        incident_id=incident.incident_id,
        correlation_id=incident.correlation_id,
        producer=AGENT,
        attempt=max(incident.attempts, 1),
    )
    due = DueV1(change_id=str(incident.change_id), due_at=at.isoformat(timespec="seconds"))
    try:
        ports.cloud.client("scheduler").create_schedule(
            Name=schedule_name(target.env, kind, incident.incident_id),
            ScheduleExpression=f"at({at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})",
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Description=f"Selfheal {detail_type.value} for {incident.incident_id}",
            Target={
                "Arn": target.bus_arn,
                "RoleArn": target.role_arn,
                "Input": json.dumps(
                    {"metadata": metadata.model_dump(mode="json"), "data": due.model_dump(mode="json")}
                ),
                "EventBridgeParameters": {"DetailType": detail_type.value, "Source": SOURCE},
                "RetryPolicy": {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 86_400},
            },
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConflictException":
            raise


def schedule_name(env: str, kind: str, incident_id: str) -> str:
    return f"selfheal-{env}-{kind}-{incident_id}"[:64]


def handle_apply_due(metadata: Metadata, data: DueV1, ports: HealPorts) -> dict[str, Any]:
    incident = ports.incidents.get(metadata.incident_id)
    if incident is None or incident.change_id != data.change_id:
        return {"action": "stale", "incident_id": metadata.incident_id}
    if incident.status == Status.VERIFYING.value and incident.heal_phase == "applied":
        return _announce_applied(incident, ports)  # the apply finished; only its announcement may be missing
    if incident.status != Status.SCHEDULED.value:
        return {"action": "stale", "incident_id": metadata.incident_id}
    scheduled_for = parse_time((incident.change or {}).get("scheduled_for"))
    if scheduled_for is not None and now() < scheduled_for - DUE_SLACK:
        return {"action": "not_due", "incident_id": incident.incident_id, "apply_at": scheduled_for.isoformat()}
    return apply_change(incident, ports)


# ------------------------------------------------------------------------------ safety net

# A due event may be lost (schedule deleted by hand, delivery retries exhausted); the scheduled
# scan then does the step once it is this late. The steps are the same guarded ones, so a late
# schedule arriving afterwards is stale.
OVERDUE = timedelta(minutes=10)


def sweep_overdue(ports: HealPorts, incidents: list[Incident]) -> list[str]:
    """On the scheduled scan: finish heal steps whose due event never came; one incident's
    failure never stops the others, nor the rest of the scan."""
    swept = []
    late = now() - OVERDUE
    for incident in incidents:
        if incident.status not in (
            Status.APPROVED.value,
            Status.SCHEDULED.value,
            Status.VERIFYING.value,
            Status.ROLLED_BACK.value,
        ):
            continue
        change = incident.change or {}
        due_at = parse_time(
            change.get("verify_until")
            if incident.status in (Status.VERIFYING.value, Status.ROLLED_BACK.value)
            else change.get("scheduled_for")
        ) or parse_time(incident.updated_at)
        if due_at is None or due_at > late:
            continue
        ports.monitor.bind(incident_id=incident.incident_id, correlation_id=incident.correlation_id)
        try:
            if incident.status == Status.APPROVED.value:
                result = after_approval(incident, ports)
            else:
                due = DueV1(change_id=str(incident.change_id), due_at=due_at.isoformat(timespec="seconds"))
                handle = handle_apply_due if incident.status == Status.SCHEDULED.value else handle_verify_due
                result = handle(_metadata(incident), due, ports)
        except Exception:  # noqa: BLE001 - the next scan tries again; the others are finished now
            logger.exception("finishing an overdue heal step failed", extra={"incident_id": incident.incident_id})
            continue
        if result.get("action") not in ("stale", "not_due"):
            swept.append(incident.incident_id)
    return swept


# ------------------------------------------------------------------------------ apply


def apply_change(incident: Incident, ports: HealPorts) -> dict[str, Any]:
    """Make the recorded change; every exit leaves the incident VERIFYING or ESCALATED."""
    change = dict(incident.change or {})
    cid = change["change_id"]
    # When the first write was attempted, first writer wins: a function holding exactly this
    # change's values but changed before then was changed by someone else (`_write`). The claim
    # requires the value read, so an invocation working from an older read (a duplicate, the
    # sweeper) cannot move it past our own write: its claim fails and it is stale.
    attempted_at = incident.attempted_at or datetime.now(UTC).isoformat()
    sources = frozenset({Status.APPROVED, Status.SCHEDULED})
    # The claim marks that the target may be written from now on, and holds the target: another
    # incident's change would confound this one's verification and block its rollback. Claiming
    # again (claimed with the approval, or a retry of the attempt a crash interrupted) is a no-op.
    claim = functools.partial(
        ports.incidents.claim_target,
        incident,
        change["target"],
        statuses=sources,
        require={"change_id": cid, "heal_phase": incident.heal_phase, "attempted_at": incident.attempted_at},
        values={"heal_phase": "applying", "attempted_at": attempted_at},
    )
    try:
        try:
            claimed = claim()
        except TargetCoolingDown as cooling:
            if _refused_during_cooldown(change, cooling):
                return _escalate_repeat(incident, change, cooling, sources, ports)
            claimed = claim(past_cooldown=True)  # another change than the one that did not help
    except TargetHeld as held:
        return _wait_for_target(incident, held.holder, ports)
    if claimed is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    chain = [
        step(
            "The validated change is approved and due",
            f"apply {cid} to {change['target']}",
            _describe(change["previous"], change["proposed"]),
        )
    ]
    try:
        if change.get("reread"):
            change = _reread_after_wait(change, ports.cloud, chain)
            if (
                ports.incidents.record(
                    incident.incident_id,
                    statuses=sources,
                    require={"change_id": cid, "heal_phase": "applying"},
                    values={"change": change},
                )
                is None
            ):
                return {"action": "stale", "incident_id": incident.incident_id}
        _check_still_managed(change, ports.cloud, by_hand=_by_hand_values(change["target"], change["proposed"]))
        written = _write(
            change["target"],
            change["proposed"],
            change["previous"],
            change.get("revision_id"),
            ports.cloud,
            chain=chain,
            ours_since=parse_time(attempted_at),
            first_attempt=incident.attempted_at is None,
        )
    except FunctionGone as exc:
        return _escalate(claimed, ports, f"{exc.reason}: nothing was changed", sources, chain=chain, decision="apply")
    except HealAbort as exc:
        return _escalate(claimed, ports, exc.reason, sources, chain=chain, decision="apply")
    change.update(written)
    applied_at = now()
    verify_until = applied_at + timedelta(seconds=ports.params.verify_window_seconds)
    change.update(
        {
            "applied_at": applied_at.isoformat(timespec="seconds"),
            "verify_until": verify_until.isoformat(timespec="seconds"),
        }
    )
    create_schedule(ports, "verify", claimed, DetailType.VERIFY_DUE, verify_until)
    verifying = ports.incidents.transition(
        incident.incident_id,
        Status.VERIFYING,
        reason=f"{cid} applied; verifying until {change['verify_until']}",
        allowed_from=sources,
        require={"change_id": cid},
        also_set={"change": change, "heal_phase": "applied"},
    )
    if verifying is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    changes = _changes(change["previous"], change["proposed"])
    chain.append(
        step(
            "Does the service recover with the change?",
            f"verify for {ports.params.verify_window_seconds} s",
            f"VerifyDue scheduled at {change['verify_until']}",
        )
    )
    ports.monitor.record_decision(
        "apply",
        chain,
        {"change_id": cid, "target": change["target"], "previous": change["previous"]},
        {
            "status": Status.VERIFYING.value,
            "applied": change["proposed"],
            "breaking_change": is_breaking(changes),
            "revision_after": change.get("revision_after"),
        },
        0.9,
        once=f"apply#{cid}",
    )
    return _announce_applied(verifying, ports)


def _announce_applied(incident: Incident, ports: HealPorts) -> dict[str, Any]:
    change = incident.change or {}
    changes = _changes(change["previous"], change["proposed"])
    # A retry after the VERIFYING write: its first try's `apply` decision died with it unless it
    # settled (a no-op then, and after apply_change's own in this invocation).
    ports.monitor.record_decision(
        "apply",
        [step("A retry finishes the apply step", "record the apply from the incident", incident.last_reason)],
        {"change_id": change["change_id"], "target": change["target"], "previous": change["previous"]},
        {"status": incident.status, "applied": change["proposed"], "breaking_change": is_breaking(changes)},
        0.9,
        once=f"apply#{change['change_id']}",
    )
    _send(
        ports,
        incident,
        DetailType.FIX_APPLIED,
        FixAppliedV1(
            change_id=change["change_id"],
            service=incident.service,
            target=change["target"],
            target_arn=change.get("target_arn"),
            changes=changes,
            breaking_change=is_breaking(changes),
            verify_until=change["verify_until"],
            summary=f"{_describe(change['previous'], change['proposed'])} on {change['target']}; verifying until {change['verify_until']}",
        ),
    )
    return {"action": "applied", "incident_id": incident.incident_id, "change_id": change["change_id"]}


def _write(
    target: str,
    values: dict[str, float],
    base: dict[str, float],
    revision_id: str | None,
    cloud: CloudPort,
    *,
    chain: list[dict[str, str]],
    ours_since: datetime | None = None,
    first_attempt: bool = False,
) -> dict[str, Any]:
    """Move the target from `base` to `values` (the apply, and the rollback back from it).
    Configuration first, guarded by `revision_id`; on a retry of a step whose write already landed,
    the guard fails and the values read back are ours. Settings without a revision are read first:
    one someone moved during verification (a reserved concurrency of 0 as a kill switch) is not
    overwritten by a rollback either. On the step's `first_attempt` nothing of ours can have landed,
    so a setting without a revision that already holds its value was set by someone else."""
    lam = cloud.client("lambda")
    _check_unguarded(lam, target, values, base, first_attempt=first_attempt)
    config = {
        k: v
        for k, v in {"MemorySize": values.get("memory_mb"), "Timeout": values.get("timeout_s")}.items()
        if v is not None
    }
    result: dict[str, Any] = {}
    if config:
        try:
            guard = {"RevisionId": revision_id} if revision_id else {}
            updated = lam.update_function_configuration(
                FunctionName=target, **guard, **{k: int(v) for k, v in config.items()}
            )
            result["revision_after"] = updated.get("RevisionId")
            chain.append(
                step(
                    "Has anyone changed the function since it was read?",
                    f"UpdateFunctionConfiguration with RevisionId {revision_id}",
                    "no: change made",
                )
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            # PreconditionFailed: the revision moved. ResourceConflict: an update is in progress,
            # which a duplicate delivery of this step meets while the other delivery's write runs
            # (Lambda shows the values being written). Either way, only our own values carry on.
            if code not in ("PreconditionFailedException", "ResourceConflictException"):
                _lambda_error(exc, target)
                raise HealAbort(
                    f"UpdateFunctionConfiguration on {target} failed ({code}); nothing was changed"
                ) from exc
            current = lam.get_function_configuration(FunctionName=target)
            landed = {"MemorySize": current.get("MemorySize"), "Timeout": current.get("Timeout")}
            # Values already exactly ours: our own earlier write (a retry, or a duplicate of this step),
            # unless the function was changed before this change's first write was attempted.
            if all(landed[k] == int(v) for k, v in config.items()) and _changed_before(current, ours_since):
                raise SetBySomeoneElse(
                    f"{target} already has these values, set by someone else at {current.get('LastModified')} "
                    "before Selfheal's write: nothing was changed, and Selfheal does not verify or roll back "
                    "a change it did not make",
                    f"its configuration was last changed at {current.get('LastModified')}, before Selfheal's write",
                ) from exc
            if not all(landed[k] == int(v) for k, v in config.items()):
                if code == "ResourceConflictException":
                    # Someone else's update in progress: the retry sees what it left (and fails
                    # safe on the moved revision if it changed the function).
                    raise
                raise HealAbort(
                    f"{target} changed since it was read (RevisionId {revision_id} is stale, now {current.get('RevisionId')}): "
                    f"fail safe, nothing was changed; values now timeout {landed['Timeout']} s, memory {landed['MemorySize']} MB"
                ) from exc
            result["revision_after"] = current.get("RevisionId")
            chain.append(
                step(
                    "The revision moved: is it our own earlier write?",
                    "GetFunctionConfiguration",
                    "yes, the values are exactly this change's (a retry, or a duplicate of this step); carry on",
                )
            )
    done: list[str] = [k for k in ("memory_mb", "timeout_s") if k in values]
    try:
        if "reserved_concurrency" in values:
            lam.put_function_concurrency(
                FunctionName=target, ReservedConcurrentExecutions=int(values["reserved_concurrency"])
            )
            done.append("reserved_concurrency")
        if "max_retries" in values:
            lam.put_function_event_invoke_config(FunctionName=target, MaximumRetryAttempts=int(values["max_retries"]))
            done.append("max_retries")
    except ClientError as exc:
        _lambda_error(exc, target)  # a retry redoes the whole write: what landed is recognised as ours
        code = exc.response.get("Error", {}).get("Code", "")
        undone = _undo(lam, target, done, base, result.get("revision_after"))
        raise HealAbort(
            f"{target}: writing {', '.join(sorted(set(values) - set(done)))} failed ({code}) after "
            f"{', '.join(done) or 'nothing'} was written; {undone}"
        ) from exc
    return result


CLOCK_SLACK = timedelta(milliseconds=50)


def _changed_before(configuration: dict[str, Any], since: datetime | None) -> bool:
    """Was the function last changed before `since`? Our write lands a claim's round trip after
    `since`; 50 ms allow for the two clocks (both synchronised to Amazon Time Sync)."""
    try:
        modified = datetime.fromisoformat(str(configuration.get("LastModified")))  # 2026-11-27T11:43:15.123+0000
    except ValueError:
        return False
    return since is not None and modified.tzinfo is not None and modified < since - CLOCK_SLACK


def _undo(lam: Any, target: str, done: list[str], base: dict[str, float], revision_id: str | None) -> str:
    """Best effort: put back what this step wrote before a later write of the same step failed."""
    if not done:
        return "nothing to put back"
    try:
        config = {k: int(base[s]) for s, k in (("memory_mb", "MemorySize"), ("timeout_s", "Timeout")) if s in done}
        if config:
            lam.update_function_configuration(
                FunctionName=target, **({"RevisionId": revision_id} if revision_id else {}), **config
            )
        if "reserved_concurrency" in done:
            lam.put_function_concurrency(
                FunctionName=target, ReservedConcurrentExecutions=int(base["reserved_concurrency"])
            )
    except ClientError as exc:
        return (
            f"putting back {', '.join(done)} failed too ({exc.response.get('Error', {}).get('Code')}): set by hand to "
            + ", ".join(f"{k}={base[k]:g}" for k in done)
        )
    return "put back " + ", ".join(f"{k}={base[k]:g}" for k in done)


def _reread_after_wait(change: dict[str, Any], cloud: CloudPort, chain: list[dict[str, str]]) -> dict[str, Any]:
    """This change waited for another incident's on the same function, which moved its revision:
    read the function again. The change still applies only to the values it was validated against,
    and is then guarded by the revision read now."""
    target = change["target"]
    try:
        current = cloud.client("lambda").get_function_configuration(FunctionName=target)
    except ClientError as exc:
        _lambda_error(exc, target)
        raise HealAbort(
            f"{target} could not be read again after waiting ({exc.response.get('Error', {}).get('Code')}); nothing was changed"
        ) from exc
    now_values = {"memory_mb": current.get("MemorySize"), "timeout_s": current.get("Timeout")}
    moved = {
        k: now_values[k]
        for k in change["proposed"]
        if k in now_values and not _same(now_values[k], change["previous"][k])
    }
    if moved:
        raise HealAbort(
            f"{target} changed while this change waited for incident {change.get('waited_for')}: "
            + ", ".join(
                f"{k} is now {v}, not the validated {change['previous'][k]:g}" for k, v in sorted(moved.items())
            )
            + "; fail safe, nothing was changed"
        )
    chain.append(
        step(
            f"Waited for incident {change.get('waited_for')}'s change on {target}: are the validated values still there?",
            "GetFunctionConfiguration",
            f"yes; guard the write with RevisionId {current.get('RevisionId')} read now",
        )
    )
    fresh = {k: v for k, v in change.items() if k != "reread"}
    return {**fresh, "revision_id": current.get("RevisionId")}


def _check_still_managed(change: dict[str, Any], cloud: CloudPort, *, by_hand: str) -> None:
    """The opt-in is read again right before the write (a scheduled change may wait a day); the
    IAM condition enforces the same on AWS."""
    try:
        tags = cloud.client("lambda").list_tags(Resource=change.get("target_arn") or change["target"]).get("Tags", {})
    except ClientError as exc:
        _lambda_error(exc, change["target"])
        raise HealAbort(
            f"target not managed (its tags could not be read: {exc.response.get('Error', {}).get('Code')}); "
            f"make the change by hand: {by_hand}"
        ) from exc
    if tags.get(MANAGED_TAG) != "true":
        raise HealAbort(
            f"target not managed: {change['target']} no longer has {MANAGED_TAG}=true; make the change by hand: {by_hand}"
        )


def _by_hand_values(target: str, values: dict[str, float]) -> str:
    return _by_hand(
        target,
        Fix(
            kind="config",
            provider="selfheal",
            rationale="by hand",
            risk_level=RiskLevel.LOW,
            changes=[
                ConfigChange(setting=setting_named(k), target=target, proposed=v) for k, v in sorted(values.items())
            ],
        ),
    )


def _check_unguarded(
    lam: Any, target: str, values: dict[str, float], base: dict[str, float], *, first_attempt: bool = False
) -> None:
    """Concurrency and retries have no RevisionId: read them again and refuse if someone moved them.
    Holding `values` already is a retry of our own write, unless this is the step's first attempt:
    then someone else set them, and Selfheal does not verify or roll back a change it did not make."""
    for key, label in (("reserved_concurrency", "reserved concurrency"), ("max_retries", "max retries")):
        if key not in values:
            continue
        now_value = _unguarded_value(lam, target, key)
        if _same(now_value, values[key]) and not _same(now_value, base[key]) and first_attempt:
            raise SetBySomeoneElse(
                f"{label} of {target} is already {now_value}, the value this change sets, set by someone else "
                "before Selfheal's write: nothing was changed, and Selfheal does not verify or roll back "
                "a change it did not make",
                f"{label} was already {now_value} before Selfheal's first write",
            )
        if not _same(now_value, base[key]) and not _same(now_value, values[key]):
            raise HealAbort(
                f"{label} of {target} is {now_value}, not the {base[key]:g} "
                "Selfheal expected (someone changed it): fail safe, nothing was changed"
            )


def _unguarded_value(lam: Any, target: str, key: str) -> Any:
    try:
        if key == "reserved_concurrency":
            return lam.get_function_concurrency(FunctionName=target).get("ReservedConcurrentExecutions")
        return lam.get_function_event_invoke_config(FunctionName=target).get("MaximumRetryAttempts")
    except ClientError as exc:
        if aws.is_transient(exc):
            raise
        if key == "max_retries":
            return None  # no retry configuration (ResourceNotFound), or not readable: not the value expected
        _lambda_error(exc, target)
        raise HealAbort(
            f"the reserved concurrency of {target} could not be read ({aws.error_code(exc)}); nothing was changed"
        ) from exc


def _same(value: Any, expected: float) -> bool:
    return value is not None and float(value) == float(expected)


# ------------------------------------------------------------------------------ verify


def handle_verify_due(metadata: Metadata, data: DueV1, ports: HealPorts) -> dict[str, Any]:
    incident = ports.incidents.get(metadata.incident_id)
    if incident is None or incident.change_id != data.change_id:
        return {"action": "stale", "incident_id": metadata.incident_id}
    if incident.status in (Status.ROLLED_BACK.value, Status.ESCALATED.value):
        return _rollback_retried(incident, ports)
    if incident.status == Status.RESOLVED.value and incident.last_reason.startswith(RECOVERED):
        return _verify_retried(incident, ports)
    if incident.status != Status.VERIFYING.value or incident.heal_phase not in ("applied", "rolling_back"):
        return {"action": "stale", "incident_id": metadata.incident_id}
    verify_until = parse_time((incident.change or {}).get("verify_until"))
    if verify_until is not None and now() < verify_until - DUE_SLACK:
        return {"action": "not_due", "incident_id": incident.incident_id, "verify_until": verify_until.isoformat()}
    if incident.heal_phase == "rolling_back":
        return rollback(incident, ports, {}, "retry of an interrupted rollback")
    recovered, figures, chain = check_recovery(incident, ports)
    # Judged without the alarm (reconfigured, deleted): the reasons say so.
    note = next((f" ({s['observation']})" for s in chain[:1] if s["thought"] == ALARM_NO_EVIDENCE), "")
    if recovered is None:
        return _no_evidence(incident, ports, figures, chain)
    if recovered:
        resolved = ports.incidents.transition(
            incident.incident_id,
            Status.RESOLVED,
            reason=f"{RECOVERED}{note}",
            allowed_from=frozenset({Status.VERIFYING}),
            require={"change_id": data.change_id},
        )
        if resolved is None:
            return {"action": "stale", "incident_id": incident.incident_id}
        return _verified(resolved, ports, figures, chain)
    return rollback(incident, ports, figures, f"no recovery within the verify window{note}", chain=chain)


# The reason of a RESOLVED written by the verify deadline (a retry of that step is told by it).
RECOVERED = "recovered within the verify window"


def _verify_retried(incident: Incident, ports: HealPorts) -> dict[str, Any]:
    """A VerifyDue after its RESOLVED write. The `verify` decision is held until the step settles,
    after FixVerified and IncidentResolved: without it, the try that wrote RESOLVED died or its
    settle failed before they surely went out, and this retry finishes the step with the figures
    read now (one read of the decision, then the recovery's reads). With it, the delivery is late
    or a duplicate, and stale: nobody is told twice."""
    if ports.monitor.recorded(f"verify#{incident.change_id}"):
        return {"action": "stale", "incident_id": incident.incident_id}
    _, figures, chain = check_recovery(incident, ports)
    retry = step("A retry finishes the verify step that resolved the incident", "record it", incident.last_reason)
    return _verified(incident, ports, figures, [retry, *chain])


def on_alarm_ok(resolved: Incident, alarm_figures: dict[str, float], ports: HealPorts) -> None:
    """The originating alarm is OK while a change was being verified: the change is kept."""
    figures = {**_before_figures(resolved), **{f"after_{k}": v for k, v in alarm_figures.items()}}
    chain = [
        step("The alarm that opened this incident is OK again", "compare before and after", _figures_text(figures))
    ]
    _verified(resolved, ports, figures, chain)


def _verified(
    incident: Incident, ports: HealPorts, figures: dict[str, float], chain: list[dict[str, str]]
) -> dict[str, Any]:
    change = incident.change or {}
    changes = _changes(change["previous"], change["proposed"])
    ports.monitor.record_decision(
        "verify",
        chain,
        {"change_id": change["change_id"], "verify_until": change.get("verify_until")},
        {"status": Status.RESOLVED.value, "recovered": True, "figures": figures},
        0.9,
        once=f"verify#{change['change_id']}",
    )
    _send(
        ports,
        incident,
        DetailType.FIX_VERIFIED,
        FixVerifiedV1(
            change_id=change["change_id"],
            service=incident.service,
            target=change["target"],
            target_arn=change.get("target_arn"),
            changes=changes,
            breaking_change=is_breaking(changes),
            figures=figures,
            summary=f"{change['target']} recovered with {_describe(change['previous'], change['proposed'])}; change kept",
        ),
    )
    _announce(
        ports,
        incident,
        DetailType.INCIDENT_RESOLVED,
        f"recovered after {change['change_id']}: {_figures_text(figures)}",
    )
    if incident.origin == "alarm":  # its alarm is OK: its next ALARM is a new occurrence
        # Released with the step's records when it settles: until then a retry finds the lock.
        ports.monitor.hold(ports.incidents.release_operation(incident.fingerprint, incident.incident_id))
    return {"action": "resolved", "incident_id": incident.incident_id, "figures": figures}


# The window is extended this many times while nothing shows whether the service recovered (no
# traffic: the alarm has INSUFFICIENT_DATA, the metric no datapoint); then a person decides.
VERIFY_EXTENSIONS = 3


def _no_evidence(
    incident: Incident, ports: HealPorts, figures: dict[str, float], chain: list[dict[str, str]]
) -> dict[str, Any]:
    """No traffic since the change: neither recovery (RESOLVED) nor its absence (rollback) is shown.
    Wait one more window; after VERIFY_EXTENSIONS, escalate with the change kept and the command
    that undoes it. The schedule is created before the write, so a crash between them is redone."""
    change = dict(incident.change or {})
    cid = change["change_id"]
    extended = int(change.get("verify_extensions", 0))
    if extended >= VERIFY_EXTENSIONS:
        return _unverified(incident, ports, figures, chain)
    until = now() + timedelta(seconds=ports.params.verify_window_seconds)
    create_schedule(ports, f"verify-{extended + 1}", incident, DetailType.VERIFY_DUE, until)
    updated = ports.incidents.record(
        incident.incident_id,
        statuses=frozenset({Status.VERIFYING}),
        require={"change_id": cid, "heal_phase": "applied"},
        values={
            "change": {
                **change,
                "verify_until": until.isoformat(timespec="seconds"),
                "verify_extensions": extended + 1,
            },
            # What `selfheal incidents` shows: the deadline now, not the first one.
            "last_reason": f"{cid} applied; no traffic since, so verifying until "
            f"{until.isoformat(timespec='seconds')} (extension {extended + 1} of {VERIFY_EXTENSIONS})",
        },
    )
    if updated is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    ports.monitor.record_decision(
        "verify_extend",
        [
            *chain,
            step(
                "Nothing shows whether the service recovered (no traffic since the change)",
                f"keep the change and verify again at {until.isoformat(timespec='seconds')}",
                f"extension {extended + 1} of {VERIFY_EXTENSIONS}",
            ),
        ],
        {"change_id": cid, "figures": figures, "extension": extended + 1},
        {"status": Status.VERIFYING.value, "recovered": None, "verify_until": until.isoformat(timespec="seconds")},
        0.5,
        once=f"verify_extend#{cid}#{extended + 1}",
    )
    return {"action": "verify_extended", "incident_id": incident.incident_id, "verify_until": until.isoformat()}


def _unverified(
    incident: Incident, ports: HealPorts, figures: dict[str, float], chain: list[dict[str, str]]
) -> dict[str, Any]:
    change = incident.change or {}
    undo = _by_hand_values(change["target"], {k: float(v) for k, v in change["previous"].items()})
    reason = (
        f"UNVERIFIED: no traffic on {change['target']} for {VERIFY_EXTENSIONS + 1} verify windows since "
        f"{change['change_id']}; the change is kept. Confirm the service, or undo it: {undo}"
    )
    escalated = ports.incidents.transition(
        incident.incident_id,
        Status.ESCALATED,
        reason=reason,
        allowed_from=frozenset({Status.VERIFYING}),
        require={"change_id": change["change_id"], "heal_phase": "applied"},
        also_set={"heal_phase": "unverified"},
    )
    if escalated is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    ports.monitor.record_decision(
        "verify",
        [*chain, step("Still no traffic to judge the change by", "escalate; the change is kept", reason)],
        {"change_id": change["change_id"], "figures": figures},
        {"status": Status.ESCALATED.value, "recovered": None, "undo_by_hand": change["previous"]},
        0.5,
        once=f"verify#{change['change_id']}",
    )
    _announce(ports, escalated, DetailType.INCIDENT_ESCALATED, reason)
    return {"action": "unverified", "incident_id": incident.incident_id}


def check_recovery(incident: Incident, ports: HealPorts) -> tuple[bool | None, dict[str, float], list[dict[str, str]]]:
    """Alarm incidents: is the alarm OK now? Others, and an alarm that is missing or was
    reconfigured after the incident opened (`alarm_no_evidence`): did the describing metric stay
    under its threshold? None: nothing to judge by (INSUFFICIENT_DATA, or no traffic since the change)."""
    issue = IssueReportedV1.model_validate(incident.issue)
    figures = _before_figures(incident)
    if incident.origin == "alarm" and issue.resource:
        alarm = describe_alarm(issue.resource, ports.cloud)
        if why_not := alarm_no_evidence(alarm, incident):
            # Not the alarm that opened the incident: judge the target's own metrics against the
            # threshold recorded then, as for an issue without an alarm (no traffic: extend).
            recovered, figures, chain = _metric_recovery(incident, issue, figures, ports)
            return (
                recovered,
                figures,
                [
                    step(
                        ALARM_NO_EVIDENCE,
                        f"DescribeAlarms {issue.resource}",
                        f"{why_not}: its state is no evidence either way; judge the target's metrics "
                        "against the threshold recorded when the incident opened",
                    ),
                    *chain,
                ],
            )
        state = alarm if isinstance(alarm, str) else str(alarm.get("StateValue"))
        latest = None if isinstance(alarm, str) else _latest_datapoint(alarm)
        if latest is not None:
            figures["after_latest_datapoint"] = latest
        chain = [
            step(
                "Is the alarm that opened the incident OK now?",
                f"DescribeAlarms {issue.resource}",
                f"state {state}; {_figures_text(figures)}",
            )
        ]
        if state == "INSUFFICIENT_DATA" or isinstance(alarm, str):
            return (None if state == "INSUFFICIENT_DATA" else False), figures, chain
        # Either state proves something only on the service since the change: an ALARM on the
        # period the change landed in, with no traffic since, is no more proof than such an OK.
        change = incident.change or {}
        shown, why = recovery_shown(alarm, evidence_since(incident), change.get("target"), ports.cloud)
        chain.append(
            step(
                f"Does the {state} rest on the service since the change?",
                "the alarm's evaluated datapoints, else the target's invocations since the change",
                why,
            )
        )
        if shown is False:
            return False, figures, chain
        return (state == "OK" if shown else None), figures, chain
    return _metric_recovery(incident, issue, figures, ports)


ALARM_NO_EVIDENCE = "Is the alarm that opened the incident still the one to judge by?"


def alarm_no_evidence(alarm: dict[str, Any] | str, incident: Incident) -> str | None:
    """Why the alarm as read now says nothing about recovery (None: it does): it is missing (deleted
    during verification: no state is no evidence either way), or its configuration was updated
    after the incident opened (a raised threshold turns failing calls OK, a lowered one passing
    calls ALARM), so its state and evaluated datapoints are not about the alarm that opened it."""
    if alarm == "MISSING":
        return "the alarm is MISSING (deleted, or not in this account and Region)"
    if not isinstance(alarm, dict):
        return None
    updated = alarm.get("AlarmConfigurationUpdatedTimestamp")
    if isinstance(updated, str):
        updated = parse_time(updated)
    if isinstance(updated, datetime) and updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    opened = parse_time(incident.created_at)
    if isinstance(updated, datetime) and opened is not None and updated > opened:
        return (
            f"the alarm was reconfigured at {updated.isoformat(timespec='seconds')}, after the incident "
            f"opened at {opened.isoformat(timespec='seconds')}"
        )
    return None


def recovery_shown(
    alarm: dict[str, Any], since: datetime | None, target: str | None, cloud: CloudPort
) -> tuple[bool | None, str]:
    """Whether the alarm's state is about the service since `since` (the change, or the
    incident's opening), and what shows it. True: a datapoint the alarm evaluated whose period
    began after `since`, else an invocation of the target in a minute that began after it
    (DescribeAlarms keeps the reason data of the last state change only, so a later evaluation
    that stayed OK is not in it). None: nothing since (an alarm set by hand, an evaluation that
    has not caught up, missing data): no proof either way. False: an OK contradicted by the
    alarm's own metric, whose latest minute since breaches its threshold (an OK set by hand over
    failing calls)."""
    if since is None:
        return True, "no time of change recorded"
    if (evaluated := _evaluated_since(alarm, since)) is not None:
        return True, f"the alarm evaluated the period of {evaluated.isoformat()}, after the change"
    nothing = "no: no datapoint or invocation since the change (no traffic is no proof)"
    if not target:
        return None, nothing
    first = first_whole_minute(since)
    invocations = {
        "Id": "selfheal_invocations",  # apart from the Ids of a metric-math alarm's own queries
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Lambda",
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "FunctionName", "Value": target}],
            },
            "Period": 60,
            "Stat": "Sum",
        },
    }
    own = _own_metric_queries(alarm)
    if own is None and alarm.get("StateValue") == "OK":
        # An anomaly band or a composite: its OK cannot be held against its own figures here, and
        # invocations alone would take an OK set by hand over failing calls for a recovery.
        return None, (
            "no: the alarm's OK evaluated no period since the change, and its own metric "
            "(an anomaly band, a composite) cannot be checked here"
        )
    queries, own_id = own or ([], "")
    try:
        results = cloud.client("cloudwatch").get_metric_data(
            MetricDataQueries=[invocations, *queries],
            StartTime=first,
            EndTime=max(now(), first + timedelta(minutes=1)),
        )["MetricDataResults"]
    except (ClientError, KeyError) as exc:
        _raise_transient(exc)  # not "no traffic": the Lambda retry reads the figures again
        return None, nothing
    series = {
        r.get("Id"): [
            float(v) for t, v in sorted(zip(r.get("Timestamps", []), r.get("Values", []), strict=False)) if t >= first
        ]
        for r in results
    }
    calls = sum(series.get("selfheal_invocations", []))
    if not calls:
        return None, nothing
    own_values = series.get(own_id) or []
    if not own_values and alarm.get("Metrics") and alarm.get("StateValue") == "OK":
        return None, f"no: the alarm's own series ({own_id}) has no value since the change to hold its OK against"
    latest = own_values[-1] if own_values else None
    if latest is not None and alarm.get("StateValue") == "OK" and _breaches(alarm, latest):
        return False, (
            f"no: the alarm is OK, but its metric's latest minute since the change is {latest:g}, "
            f"breaching its threshold {float(alarm['Threshold']):g} (an OK set by hand?)"
        )
    return True, f"{calls:g} invocation(s) of {target} since {first.isoformat()}"


def _evaluated_since(alarm: dict[str, Any], since: datetime) -> datetime | None:
    """The first period with a value the alarm's last state change evaluated that began at or after `since`."""
    try:
        points = json.loads(alarm.get("StateReasonData") or "{}").get("evaluatedDatapoints") or []
    except (ValueError, AttributeError):
        points = []
    for point in points if isinstance(points, list) else []:
        when = parse_time(point.get("timestamp")) if isinstance(point, dict) and "value" in point else None
        if when is not None and when >= since:  # a missing period (no value) is no evidence
            return when
    return None


# The comparisons a single value can be judged by (anomaly bands need the band's own series).
_COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def _own_metric_queries(alarm: dict[str, Any]) -> tuple[list[dict[str, Any]], str] | None:
    """The GetMetricData queries of the series the alarm compares with its threshold, and that
    series' Id: its single metric, or its metric-math queries (the one returning data is the
    series). None for anomaly bands (compared with a band, not a threshold) and composites."""
    if alarm.get("ComparisonOperator") not in _COMPARE or alarm.get("Threshold") is None:
        return None
    if isinstance(alarm.get("Metrics"), list) and alarm["Metrics"]:
        keys = ("Id", "MetricStat", "Expression", "Label", "ReturnData", "Period")
        queries = [{k: q[k] for k in keys if k in q} for q in alarm["Metrics"] if isinstance(q, dict)]
        returned = [q["Id"] for q in queries if q.get("ReturnData", True) and "Id" in q]
        return (queries, returned[0]) if len(returned) == 1 and len(queries) == len(alarm["Metrics"]) else None
    stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic")
    if not (alarm.get("MetricName") and alarm.get("Namespace") and stat and alarm.get("Period")):
        return None
    metric = {
        "Namespace": alarm["Namespace"],
        "MetricName": alarm["MetricName"],
        "Dimensions": alarm.get("Dimensions") or [],
    }
    return [{"Id": "alarm_metric", "MetricStat": {"Metric": metric, "Period": int(alarm["Period"]), "Stat": stat}}], (
        "alarm_metric"
    )


def _breaches(alarm: dict[str, Any], value: float) -> bool:
    return bool(_COMPARE[alarm["ComparisonOperator"]](value, float(alarm["Threshold"])))


def ok_unproven(incident: Incident, alarm_name: str | None, cloud: CloudPort) -> str | None:
    """Why an OK of the alarm that opened an incident with no change in flight proves no recovery
    (None: it does): the alarm is not OK now, or it is OK on no data since the incident opened
    (traffic stopped: missing data treated as not breaching is no proof either)."""
    alarm = describe_alarm(alarm_name, cloud)
    state = alarm if isinstance(alarm, str) else str(alarm.get("StateValue"))
    if isinstance(alarm, str) or state != "OK":
        return f"alarm is {state} now"
    if why_not := alarm_no_evidence(alarm, incident):
        return f"alarm is OK, but {why_not}: its OK is no proof of recovery"
    target = incident.alarm_function or (incident.investigation or {}).get("target")
    opened = parse_time(incident.created_at)
    # A period that ended after the opening is newer than what raised the ALARM (the OK that
    # follows one evaluation later evaluates the period the incident opened in).
    since = opened - timedelta(seconds=int(alarm.get("Period") or 60)) if opened else None
    shown, why = recovery_shown(alarm, since, target, cloud)
    return None if shown else f"alarm is OK, but {why.removeprefix('no: ')}"


# How long after a change calls that were already running may still end the old way (a call
# started under a 3 s timeout times out 3 s later, after a change to 10 s). Capped: a function
# whose calls run for many minutes would leave no window to verify in.
IN_FLIGHT_CAP_S = 120


def evidence_since(incident: Incident) -> datetime | None:
    """From when the service's figures are about the change: its application, plus the time a
    call already running then could still take (the function's timeout before the change)."""
    change = incident.change or {}
    applied = parse_time(change.get("applied_at"))
    if applied is None:
        return None
    previous = (change.get("previous") or {}).get("timeout_s")
    read = ((incident.investigation or {}).get("values") or {}).get("timeout_s")
    try:
        in_flight = float(previous if previous is not None else read if read is not None else 0)
    except (TypeError, ValueError):
        in_flight = 0.0
    # +1 s: applied_at is kept to the second, rounded down.
    return applied + timedelta(seconds=min(max(in_flight, 0.0), IN_FLIGHT_CAP_S) + 1)


def first_whole_minute(at: datetime) -> datetime:
    """The first minute that began at or after `at`. GetMetricData rounds its StartTime down to the
    minute, so a query from `at` itself would count the minute the change landed in, errors before
    the change included."""
    return at.replace(second=0, microsecond=0) + (timedelta(minutes=1) if at.second or at.microsecond else timedelta())


def ok_since(alarm_name: str | None, cloud: CloudPort) -> datetime | None:
    """When the alarm went OK, if it is OK now; None when it is not, or cannot be read."""
    alarm = describe_alarm(alarm_name, cloud)
    if isinstance(alarm, str) or alarm.get("StateValue") != "OK":
        return None
    since = alarm.get("StateUpdatedTimestamp")
    if isinstance(since, datetime):
        return since if since.tzinfo else since.replace(tzinfo=UTC)
    return None


def describe_alarm(alarm_name: str | None, cloud: CloudPort) -> dict[str, Any] | str:
    """The alarm as DescribeAlarms returns it, or why there is none ("MISSING": no such alarm here,
    deleted or another account's or Region's; "UNREADABLE (code)": DescribeAlarms refused; neither
    is OK). Events about an alarm are not ordered, so this read is the truth. Composite alarms are
    asked for too: DescribeAlarms returns metric alarms only unless told otherwise."""
    if not alarm_name:
        return "MISSING"
    try:
        found = cloud.client("cloudwatch").describe_alarms(
            AlarmNames=[alarm_name], AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        )
        alarms = [*found.get("MetricAlarms", []), *found.get("CompositeAlarms", [])]
    except ClientError as exc:
        _raise_transient(exc)  # a throttle decides nothing: the Lambda retry reads the alarm again
        return f"UNREADABLE ({exc.response.get('Error', {}).get('Code')})"
    if not alarms:
        return "MISSING"
    alarm: dict[str, Any] = alarms[0]
    return alarm


def _latest_datapoint(alarm: dict[str, Any]) -> float | None:
    try:
        points = json.loads(alarm.get("StateReasonData") or "{}").get("recentDatapoints") or []
    except ValueError:
        return None
    return float(points[-1]) if points and isinstance(points[-1], (int, float)) else None


METRICS = {
    "latency": ("Duration", "p95"),
    "throttling": ("Throttles", "Sum"),
}


def _metric_recovery(
    incident: Incident, issue: IssueReportedV1, figures: dict[str, float], ports: HealPorts
) -> tuple[bool | None, dict[str, float], list[dict[str, str]]]:
    """Per minute since the change: Duration p95 or Throttles against their threshold; Errors
    against the issue's threshold when it gave one, else the error rate against the scan's.
    None when there was no traffic (no invocation and no datapoint of the metric)."""
    change = incident.change or {}
    target = change["target"]
    metric, stat = METRICS.get(issue.issue_type, ("Errors", "Sum"))
    thresholds = ports.params.scan_thresholds
    explicit = issue.signals.get("threshold")
    as_rate = metric == "Errors" and explicit is None
    threshold = float(
        explicit
        if explicit is not None
        else {
            "Duration": thresholds.latency_p95_ms,
            "Throttles": thresholds.throttles,
            "Errors": thresholds.error_rate_pct,
        }[metric]
    )
    applied = evidence_since(incident) or now() - timedelta(seconds=ports.params.verify_window_seconds)
    start = first_whole_minute(applied)  # the minute the change landed in holds the errors that reported it
    end = max(now(), start + timedelta(minutes=1))
    dims = [{"Name": "FunctionName", "Value": target}]
    # Invocations too: without them (and without the metric) there was no traffic to judge by.
    queries = [(metric.lower(), metric, stat), ("invocations", "Invocations", "Sum")]
    try:
        results = (
            ports.cloud.client("cloudwatch")
            .get_metric_data(
                MetricDataQueries=[
                    {
                        "Id": qid,
                        "MetricStat": {
                            "Metric": {"Namespace": "AWS/Lambda", "MetricName": name, "Dimensions": dims},
                            "Period": 60,
                            "Stat": st,
                        },
                    }
                    for qid, name, st in queries
                ],
                StartTime=start,
                EndTime=end,
            )
            .get("MetricDataResults", [])
        )
    except ClientError as exc:
        _raise_transient(exc)  # a throttle is no verdict on the change: the Lambda retry reads again
        return (
            False,
            figures,
            [
                step(
                    f"Did {metric} stay under {threshold:g}?",
                    "GetMetricData",
                    f"could not read it ({exc.response.get('Error', {}).get('Code')}): no proof of recovery",
                )
            ],
        )
    series = {r["Id"]: dict(zip(r.get("Timestamps", []), r.get("Values", []), strict=False)) for r in results}
    measured = series.get(metric.lower(), {})
    calls = series.get("invocations", {})
    if as_rate:
        values = [
            100.0 * float(v) / float(calls[t]) if calls.get(t) else (100.0 if v else 0.0) for t, v in measured.items()
        ]
        label = "error rate %"
        figures["after_error_rate_pct_max"] = max(values, default=0.0)
    else:
        values = [float(v) for v in measured.values()]
        label = f"{metric} ({stat})"
        figures[f"after_{metric.lower()}_max"] = max(values, default=0.0)
    worst = max(values, default=0.0)
    invocations = sum(float(v) for v in calls.values())
    figures.update({"threshold": threshold, "after_datapoints": float(len(values)), "after_invocations": invocations})
    recovered = None if not values and not invocations else worst <= threshold
    verdict = {None: "no traffic: nothing to judge by", True: "recovered", False: "not recovered"}[recovered]
    return (
        recovered,
        figures,
        [
            step(
                f"Did {target}'s {label} stay under {threshold:g} for the window?",
                "GetMetricData per minute since the change",
                f"{len(values)} datapoint(s), {invocations:g} invocation(s), worst {worst:g}: {verdict}",
            )
        ],
    )


def _before_figures(incident: Incident) -> dict[str, float]:
    signals = (incident.issue or {}).get("signals") or {}
    return {
        f"before_{k}": float(v)
        for k, v in signals.items()
        if k in ("latest_datapoint", "threshold", "error_rate_pct", "errors", "throttles", "duration", "p95_ms")
    }


# ------------------------------------------------------------------------------ rollback


def rollback(
    incident: Incident, ports: HealPorts, figures: dict[str, float], why: str, chain: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    change = dict(incident.change or {})
    cid = change["change_id"]
    # As for the apply: when the restore was first attempted (kept by retries), so that values put
    # back by hand before then are not taken for Selfheal's own restore.
    attempted = change.get("rollback_attempted_at") or datetime.now(UTC).isoformat()
    claimed = ports.incidents.record(
        incident.incident_id,
        statuses=frozenset({Status.VERIFYING}),
        require={"change_id": cid, "heal_phase": incident.heal_phase},
        values={
            "heal_phase": "rolling_back",
            "change": {
                **change,
                "figures": figures or change.get("figures", {}),
                "rollback_attempted_at": attempted,
            },
        },
    )
    if claimed is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    figures = figures or change.get("figures", {})
    chain = [
        *(chain or []),
        step(
            f"{why}",
            f"restore the previous values of {change['target']}",
            _describe(change["proposed"], change["previous"]),
        ),
    ]
    restore = {k: float(v) for k, v in change["previous"].items()}
    try:
        _write(
            change["target"],
            restore,
            change["proposed"],
            change.get("revision_after"),
            ports.cloud,
            chain=chain,
            ours_since=parse_time(attempted),
            first_attempt=incident.heal_phase != "rolling_back",
        )
    except SetBySomeoneElse as exc:
        return _restored_by_someone_else(claimed, ports, chain, why, exc.detail)
    except FunctionGone as exc:
        return _function_gone(claimed, ports, chain, why, exc)
    except HealAbort as exc:
        return _rollback_failed(claimed, ports, chain, exc.reason)
    rolled = ports.incidents.transition(
        incident.incident_id,
        Status.ROLLED_BACK,
        reason=f"{why}; restored {_describe(change['proposed'], change['previous'])}",
        allowed_from=frozenset({Status.VERIFYING}),
        require={"change_id": cid},
        also_set={"heal_phase": "rolled_back"},
    )
    if rolled is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    return _finish_rollback(rolled, ports, chain)


def _finish_rollback(incident: Incident, ports: HealPorts, chain: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """ROLLED_BACK -> ESCALATED, FixRolledBack and IncidentEscalated, then the `rollback` decision;
    a retry after the restore lands here too (`chain`: None, the decision told from the incident)."""
    change = incident.change or {}
    figures = change.get("figures") or {}
    escalated = ports.incidents.transition(
        incident.incident_id,
        Status.ESCALATED,
        reason=f"rolled back {change['change_id']}: no recovery ({_figures_text(figures)})",
        allowed_from=frozenset({Status.ROLLED_BACK}),
    )
    if escalated is not None:
        _announce_rollback(escalated, ports, escalated.last_reason)
    _record_rollback(incident, ports, chain, {"status": Status.ROLLED_BACK.value, "restored": change["previous"]}, 0.9)
    return {"action": "rolled_back", "incident_id": incident.incident_id, "figures": figures}


# Heal phases a rollback ends ESCALATED in.
ROLLBACK_ENDS = frozenset({"rolled_back", "restored_by_hand", "rollback_failed", "function_gone"})


def _rollback_retried(incident: Incident, ports: HealPorts) -> dict[str, Any]:
    """A VerifyDue after the rollback's restore. ROLLED_BACK: a retry finishes the escalation.
    ESCALATED by the rollback: the step records its `rollback` decision after its announcements, so
    without it the try that wrote ESCALATED died or failed before they surely went out, and this
    retry finishes the step (the releases the closing write makes, FixRolledBack, IncidentEscalated,
    the decision). With it, the delivery is late or a duplicate, and stale: nobody is paged twice."""
    if incident.status == Status.ROLLED_BACK.value:
        return _finish_rollback(incident, ports)
    if incident.heal_phase not in ROLLBACK_ENDS or ports.monitor.recorded(f"rollback#{incident.change_id}"):
        return {"action": "stale", "incident_id": incident.incident_id}
    ports.incidents.release_closed(incident)
    _announce_rollback(incident, ports, incident.last_reason)
    _record_rollback(incident, ports, None, {"status": incident.status, "heal_phase": incident.heal_phase}, 0.9)
    return {"action": "rollback_announced", "incident_id": incident.incident_id}


def _record_rollback(
    incident: Incident,
    ports: HealPorts,
    chain: list[dict[str, str]] | None,
    outputs: dict[str, Any],
    confidence: float,
) -> None:
    """The `rollback` decision, recorded once and after the step's announcements (see
    `_rollback_retried`). `chain`: None for a retry whose first try's chain died with it."""
    change = incident.change or {}
    chain = chain or [
        step("A retry finishes the rollback step", "record the rollback from the incident", incident.last_reason)
    ]
    ports.monitor.record_decision(
        "rollback",
        chain,
        {"change_id": change["change_id"], "figures": change.get("figures") or {}},
        outputs,
        confidence,
        once=f"rollback#{change['change_id']}",
    )


def _announce_rollback(incident: Incident, ports: HealPorts, reason: str) -> None:
    """FixRolledBack (`restored`: the previous values are back, whoever put them there) and
    IncidentEscalated of a rollback that ended ESCALATED, in one PutEvents. `reason`: what the
    person must know (a rollback by Selfheal says it from the change)."""
    change = incident.change or {}
    restored = _changes(change["proposed"], change["previous"])
    figures = change.get("figures") or {}
    summary = escalation = reason
    if incident.heal_phase == "rolled_back":
        summary = f"{change['target']} did not recover; restored {_describe(change['proposed'], change['previous'])}"
        escalation = (
            f"{change['target']} did not recover after {_describe(change['previous'], change['proposed'])}; "
            f"the change was rolled back ({_figures_text(figures)}). A person must investigate."
        )
    with ports.messenger.held():
        _send(
            ports,
            incident,
            DetailType.FIX_ROLLED_BACK,
            FixRolledBackV1(
                change_id=change["change_id"],
                service=incident.service,
                target=change["target"],
                target_arn=change.get("target_arn"),
                changes=restored,
                breaking_change=is_breaking(restored),
                restored=incident.heal_phase in ROLLED_BACK_PHASES,
                figures=figures,
                summary=summary[:2000],
            ),
        )
        _announce(ports, incident, DetailType.INCIDENT_ESCALATED, escalation)


def _restored_by_someone_else(
    incident: Incident, ports: HealPorts, chain: list[dict[str, str]], why: str, detail: str
) -> dict[str, Any]:
    """The previous values were back before Selfheal's restore: a person put them back. Say so,
    rather than report a restore Selfheal did not make."""
    change = incident.change or {}
    target = change["target"]
    reason = (
        f"{why}; {target} already holds the previous values ({_describe(change['proposed'], change['previous'])}), "
        f"restored by someone else, not by Selfheal ({detail}): Selfheal changed nothing"
    )
    chain.append(step("Were the previous values put back by Selfheal?", "escalate; change nothing", reason))
    outputs = {"restored": False, "restored_by": "someone else"}
    # FixRolledBack says restored: the values are back, which dependants need to know.
    if _escalate_after_rollback(incident, ports, "restored_by_hand", reason, chain, outputs, 0.9) is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    return {"action": "restored_by_someone_else", "incident_id": incident.incident_id}


def _function_gone(
    incident: Incident, ports: HealPorts, chain: list[dict[str, str]], why: str, gone: FunctionGone
) -> dict[str, Any]:
    """The function was deleted during verification: there is nothing to restore, and no value for
    a person to put back either (unlike a failed rollback, the function is not held for a person)."""
    reason = f"{why}; {gone.reason}: nothing to roll back"
    chain.append(step("Can the previous values be restored?", "escalate; change nothing", reason))
    outputs = {"restored": False, "function_gone": True}
    if _escalate_after_rollback(incident, ports, "function_gone", reason, chain, outputs, 0.95) is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    return {"action": "function_gone", "incident_id": incident.incident_id}


def _rollback_failed(incident: Incident, ports: HealPorts, chain: list[dict[str, str]], error: str) -> dict[str, Any]:
    change = incident.change or {}
    restore = _changes(change["proposed"], change["previous"])
    by_hand = _by_hand_values(change["target"], {c.setting: c.after for c in restore})
    reason = f"ROLLBACK FAILED ({error}); restore by hand: {by_hand}"
    chain.append(step("The restore did not go through", "escalate with the exact values to restore", reason))
    outputs = {"restored": False, "restore_by_hand": change["previous"]}
    if _escalate_after_rollback(incident, ports, "rollback_failed", reason, chain, outputs, 0.95) is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    return {"action": "rollback_failed", "incident_id": incident.incident_id}


def _escalate_after_rollback(
    incident: Incident,
    ports: HealPorts,
    phase: str,
    reason: str,
    chain: list[dict[str, str]],
    outputs: dict[str, Any],
    confidence: float,
) -> Incident | None:
    """A rollback that leaves the function to a person: ESCALATED from VERIFYING in `phase`,
    FixRolledBack (`restored`: the previous values are back, whoever put them there) and
    IncidentEscalated, then its `rollback` decision. None when the incident moved on (a retry, a duplicate)."""
    change = incident.change or {}
    escalated = ports.incidents.transition(
        incident.incident_id,
        Status.ESCALATED,
        reason=reason,
        allowed_from=frozenset({Status.VERIFYING}),
        require={"change_id": change["change_id"]},
        also_set={"heal_phase": phase},
    )
    if escalated is None:
        return None
    _announce_rollback(escalated, ports, reason)
    _record_rollback(escalated, ports, chain, {"status": Status.ESCALATED.value, **outputs}, confidence)
    return escalated


# ------------------------------------------------------------------------------ code fixes


def _patch_ready(incident: Incident, fix: Fix, record: dict[str, Any], ports: HealPorts) -> dict[str, Any]:
    issue = IssueReportedV1.model_validate(incident.issue)
    originals: dict[str, str] = {}
    if issue.code is not None:
        originals.update(issue.code.files)
        if issue.code.artifact is not None:
            originals.update(ports.artifacts.get_json(issue.code.artifact))
    mbox = format_patch(incident, fix, record, originals, when=now())
    ref = ports.artifacts.put_json(
        f"incidents/{incident.incident_id}/patch.json", {"incident_id": incident.incident_id, "mbox": mbox}
    )
    ready = ports.incidents.transition(
        incident.incident_id,
        Status.PATCH_READY,
        reason="validated patch kept; apply with: selfheal patch " + incident.incident_id,
        expected_attempt=incident.attempts,
        redo_from=frozenset({Status.PATCH_READY}),
        also_set={"patch": ref.model_dump(mode="json")},
    )
    if ready is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    ports.monitor.record_decision(
        "keep_patch",
        [
            step(
                "The validated fix is a code change",
                "keep the patch; code is not deployed by Selfheal",
                f"selfheal patch {incident.incident_id} | git am",
            ),
            step(
                "When is it done?",
                "resolve when the originating alarm returns to OK"
                if incident.origin == "alarm"
                else "no alarm will return to OK: a person merges it; the fingerprint cools down",
                "PATCH_READY",
            ),
        ],
        {"kind": "code", "files": sorted({*fix.files, *fix.tests})},
        {"status": Status.PATCH_READY.value, "patch": ref.key},
        0.9,
        once="keep_patch",
    )
    # A person merges and deploys it: the notification route tells them.
    _announce(
        ports,
        ready,
        DetailType.INCIDENT_ESCALATED,
        f"validated patch ready to merge: selfheal patch {incident.incident_id} | git am",
    )
    return {"action": "patch_ready", "incident_id": incident.incident_id}


def format_patch(
    incident: Incident, fix: Fix, record: dict[str, Any], originals: dict[str, str], *, when: datetime
) -> str:
    """An mbox message `git am` accepts: QA's evidence in the message body, the diff after `---`."""
    diff = _diff(fix, originals)
    lines = [
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001",
        "From: Selfheal <selfheal@localhost>",
        f"Date: {format_datetime(when)}",
        f"Subject: [PATCH] Fix {incident.issue_type} in {incident.service} ({incident.incident_id})",
        "",
        *_indent_safe(fix.rationale),
        "",
        f"QA evidence (attempt {record.get('attempt')}):",
    ]
    for e in record.get("evidence", []):
        status = "PASS" if e.get("passed") else "FAIL"
        exit_code = f", exit {e['exit_code']}" if e.get("exit_code") is not None else ""
        lines.append(f"- {e.get('check')}: {status}{exit_code}" + (f" ({e['command']})" if e.get("command") else ""))
        lines.extend("    " + x for x in str(e.get("excerpt", "")).splitlines()[-EVIDENCE_EXCERPT_LINES:])
    lines += [
        "",
        f"Selfheal-Incident: {incident.incident_id}",
        f"Selfheal-Provider: {fix.provider}" + (f" ({fix.model})" if fix.model else ""),
        "---",
        diff.rstrip("\n"),
        "-- ",
        "selfheal",
        "",
    ]
    return "\n".join(lines)


def _indent_safe(text: str) -> list[str]:
    """Message lines that git mailinfo would take for the start of the diff are indented."""
    out = []
    for line in text.splitlines():
        out.append("  " + line if line.startswith(("---", "diff ", "Index: ", "From ")) else line)
    return out


def _diff(fix: Fix, originals: dict[str, str]) -> str:
    import difflib  # code fixes only: not every Manager cold start

    parts = []
    if fix.patch and not fix.files:
        parts.append(fix.patch if fix.patch.endswith("\n") else fix.patch + "\n")
    for path, new in sorted({**fix.files, **fix.tests}.items()):
        old = originals.get(path)
        if old == new:
            continue
        header = [f"diff --git a/{path} b/{path}"]
        if old is None:
            header.append("new file mode 100644")
        body = difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile="/dev/null" if old is None else f"a/{path}",
            tofile=f"b/{path}",
        )
        text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in body)
        parts.append("\n".join(header) + "\n" + text)
    return "".join(parts)


# ------------------------------------------------------------------------------ shared


def _escalate(
    incident: Incident,
    ports: HealPorts,
    reason: str,
    sources: frozenset[Status],
    chain: list[dict[str, str]] | None = None,
    decision: str = "apply",
) -> dict[str, Any]:
    escalated = ports.incidents.transition(
        incident.incident_id, Status.ESCALATED, reason=reason[:1000], allowed_from=sources
    )
    if escalated is None:
        return {"action": "stale", "incident_id": incident.incident_id}
    ports.monitor.record_decision(
        decision,
        [*(chain or []), step("The change cannot be made safely", "escalate; nothing applied", reason)],
        {"incident_id": incident.incident_id},
        {"status": Status.ESCALATED.value, "reason": reason[:500]},
        0.95,
    )
    _announce(ports, escalated, DetailType.INCIDENT_ESCALATED, reason)
    return {"action": "escalated", "incident_id": incident.incident_id, "reason": reason}


def _changes(before: dict[str, float], after: dict[str, float]) -> list[SettingChange]:
    return [
        SettingChange(setting=setting_named(k), before=float(before[k]), after=float(after[k]))
        for k in sorted(after)
        if k in before
    ]


def _describe(before: dict[str, float], after: dict[str, float]) -> str:
    return ", ".join(f"{k} {float(before.get(k, 0)):g} -> {float(v):g}" for k, v in sorted(after.items()))


def _figures_text(figures: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(figures.items())) or "no figures"


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _metadata(incident: Incident) -> Metadata:
    return Metadata(
        incident_id=incident.incident_id,
        correlation_id=incident.correlation_id,
        producer=AGENT,
        attempt=max(incident.attempts, 1),
    )


def _send(ports: HealPorts, incident: Incident, detail_type: DetailType, data: Any) -> None:
    ports.messenger.send(detail_type, _metadata(incident), data)


def _announce(ports: HealPorts, incident: Incident, detail_type: DetailType, summary: str) -> None:
    ports.messenger.send(
        detail_type,
        _metadata(incident),
        InfoV1(
            status=incident.status,
            summary=summary[:4000],
            service=incident.service,
            issue_type=incident.issue_type,
            severity=incident.severity,
            fingerprint=incident.fingerprint,
            duplicates=incident.duplicates,
        ),
    )
