"""QA's work: run the proposed fix through a validator and report evidence, not a verdict alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from selfheal_core.artifacts import ArtifactStore
from selfheal_core.catalog import AGENT_SOURCES
from selfheal_core.events import (
    ArtifactRef,
    DetailType,
    Evidence,
    Fix,
    FixProposedV1,
    FixRejectedV1,
    FixValidatedV1,
    Investigation,
    IssueReportedV1,
    Metadata,
)
from selfheal_core.incidents import Incident, IncidentStore, Status
from selfheal_core.messaging import Messenger, follow_up
from selfheal_core.ports import Monitor
from selfheal_core.redact import scrub
from selfheal_core.validations import ValidationConflict, ValidationRecord, ValidationStore, fix_sha256

from .risk import assess
from .validators.base import ValidationResult, Validator

AGENT = "qa"
SOURCE = AGENT_SOURCES[AGENT]
MAX_EVIDENCE_IN_EVENT = 12


@dataclass
class QaPorts:
    incidents: IncidentStore
    monitor: Monitor
    messenger: Messenger
    artifacts: ArtifactStore
    validator_for: Callable[[Fix, Investigation | None], Validator]
    # QA's verdicts: a table of their own, which only QA's role may write.
    verdicts: ValidationStore


def handle_fix_proposed(metadata: Metadata, data: FixProposedV1, ports: QaPorts) -> dict[str, Any]:
    fix = _resolve_fix(data.fix, ports.artifacts)
    # A verdict lands with the status it leads to, so an incident still FIX_PROPOSED (or VALIDATING:
    # a retry) at this attempt has none yet, and only a refused start needs to read one.
    validating = ports.incidents.transition(
        metadata.incident_id,
        Status.VALIDATING,
        reason="QA started",
        expected_attempt=metadata.attempt,
        redo_from=frozenset({Status.VALIDATING}),
    )
    if validating is None:
        return _after_verdict(metadata, data, fix, ports)
    issue, investigation = _as_the_manager_stored(validating, data)
    code_files = dict(issue.code.files) if issue.code else {}
    if issue.code and issue.code.artifact:
        code_files.update(ports.artifacts.get_json(issue.code.artifact))

    result = _scrubbed(ports.validator_for(fix, investigation).validate(fix, issue, code_files))
    # The risk that decides on approval is QA's, from the change itself; the label is only a floor.
    risk = assess(fix, investigation)
    result = dataclasses.replace(result, evidence=[risk.evidence(), *result.evidence])
    evidence_ref = ports.artifacts.put_json(
        f"incidents/{metadata.incident_id}/qa-evidence-{metadata.attempt}.json",
        {
            "passed": result.passed,
            "reason": result.reason,
            "weak_evidence": result.weak_evidence,
            "evidence": [e.model_dump(mode="json") for e in result.evidence],
        },
    )
    passed = result.passed and not result.weak_evidence
    try:
        # The Manager reads the fix and its risk from here, never from the event: written with
        # the status, before the event goes out.
        recorded = ports.verdicts.put(
            ports.incidents,
            incident_id=metadata.incident_id,
            attempt=metadata.attempt,
            fix=fix,
            original_fix=data.fix,
            passed=passed,
            reason=result.reason,
            evidence_artifact=evidence_ref,
            risk_level=risk.level.value,
        )
    except ValidationConflict as conflict:
        return _settle_to_record(metadata, conflict.existing, ports)
    if recorded is None:
        return {"action": "stale", "incident_id": metadata.incident_id}
    return _conclude(metadata, data, fix, result, evidence_ref, ports, moved=True)


def _as_the_manager_stored(incident: Incident, data: FixProposedV1) -> tuple[IssueReportedV1, Investigation | None]:
    """The code under test and the readings a change is judged against, as the Manager stored them
    on the incident (returned by the VALIDATING write, no extra read), never the copies in the
    Engineer's event: a compromised Engineer could report a limit of 1 to pass a cut from 100 to 2
    off as a x2 raise, or swap the tree the tests run on."""
    stored = IssueReportedV1.model_validate(incident.issue)
    investigation = Investigation.model_validate(incident.investigation) if incident.investigation else None
    return data.issue.model_copy(update={"code": stored.code}), investigation


def _after_verdict(metadata: Metadata, data: FixProposedV1, fix: Fix, ports: QaPorts) -> dict[str, Any]:
    """The incident is past VALIDATING: a retry or replay of a step whose verdict is recorded
    finishes from the record, and never runs the validation again nor moves the incident back."""
    recorded = ports.verdicts.get(metadata.incident_id, metadata.attempt)
    if recorded is None:
        return {"action": "stale", "incident_id": metadata.incident_id}
    if recorded.fix_sha256 != fix_sha256(fix):
        # Another fix already holds this attempt's verdict (a second proposal at the same
        # attempt): keep that verdict and leave the incident alone.
        ports.monitor.record_event(
            "duplicate_proposal_ignored", {"attempt": metadata.attempt, "validated_fix": recorded.fix_sha256[:12]}
        )
        return {"action": "stale", "incident_id": metadata.incident_id}
    return _finish_from_record(metadata, data, recorded, ports)


def _finish_from_record(
    metadata: Metadata, data: FixProposedV1, recorded: ValidationRecord, ports: QaPorts
) -> dict[str, Any]:
    fix = _resolve_fix(data.fix, ports.artifacts)
    stored: dict[str, Any] = {}
    ref = ArtifactRef.model_validate(recorded.evidence_artifact) if recorded.evidence_artifact else None
    if ref is not None:
        stored = ports.artifacts.get_json(ref)
    evidence = [Evidence.model_validate(e) for e in stored.get("evidence", [])]
    result = ValidationResult(
        passed=recorded.passed,
        reason=recorded.reason,
        evidence=evidence,
        weak_evidence=bool(stored.get("weak_evidence", False)) and not recorded.passed,
    )
    return _conclude(metadata, data, fix, result, ref, ports, moved=False)


def _conclude(
    metadata: Metadata,
    data: FixProposedV1,
    fix: Fix,
    result: ValidationResult,
    evidence_ref: ArtifactRef | None,
    ports: QaPorts,
    *,
    moved: bool,
) -> dict[str, Any]:
    """Status, decision, event: each redoable at this attempt, so a retry finishes the step.
    `moved`: the status landed with the verdict already (False: a retry finishing from the record)."""
    passed = result.passed and not result.weak_evidence
    landing = Status.VALIDATED if passed else Status.REJECTED
    if not moved and not ports.incidents.transition(
        metadata.incident_id,
        landing,
        reason=result.reason,
        expected_attempt=metadata.attempt,
        redo_from=frozenset({landing}),
    ):
        # The Manager moved the incident on: the verdict went out, but its decision, held until
        # the step settled, may have died with the first try (recorded once; nothing re-sent).
        _record(metadata, fix, result, passed, ports)
        return {"action": "stale", "incident_id": metadata.incident_id}
    ports.monitor.record_event(
        "test_passed" if passed else "test_failed", {"kind": fix.kind, "attempt": metadata.attempt}
    )
    _record(metadata, fix, result, passed, ports)
    evidence = result.evidence[:MAX_EVIDENCE_IN_EVENT]
    common: dict[str, Any] = {
        "issue": data.issue,
        "fix": data.fix,
        "evidence": evidence,
        "fingerprint": data.fingerprint,
        "evidence_artifact": evidence_ref,
        "feedback": data.feedback,
        "investigation": data.investigation,
        "redrive": data.redrive,
    }
    if passed:
        ports.messenger.send(DetailType.FIX_VALIDATED, follow_up(metadata, AGENT), FixValidatedV1(**common))
        return {"action": "validated", "incident_id": metadata.incident_id}
    ports.messenger.send(
        DetailType.FIX_REJECTED,
        follow_up(metadata, AGENT),
        FixRejectedV1(**common, reason=result.reason[:4000], weak_evidence=result.weak_evidence),
    )
    return {"action": "rejected", "incident_id": metadata.incident_id, "weak_evidence": result.weak_evidence}


def _record(metadata: Metadata, fix: Fix, result: ValidationResult, passed: bool, ports: QaPorts) -> None:
    """The `validate_fix` decision, once per attempt."""
    checks = ", ".join(f"{e.check}={'ok' if e.passed else 'FAIL'}" for e in result.evidence[:10])
    verdict = "weak evidence: the tests also pass without the fix" if result.weak_evidence else result.reason
    ports.monitor.record_decision(
        "validate_fix",
        [
            {
                "thought": f"The Engineer proposes a {fix.kind} fix (labelled {fix.risk_level} risk); its claim proves nothing",
                "action": "validate it independently",
                "observation": checks[:1000],
            },
            {
                "thought": "Does the evidence support the fix?",
                "action": "accept" if passed else "reject with feedback",
                "observation": verdict[:500],
            },
        ],
        {"kind": fix.kind, "attempt": metadata.attempt, "provider": fix.provider},
        {
            "passed": passed,
            "weak_evidence": result.weak_evidence,
            "reason": result.reason[:500],
            "evidence": [e.model_dump(mode="json") for e in result.evidence[:MAX_EVIDENCE_IN_EVENT]],
        },
        0.95 if passed else 0.9,
        once=f"validate_fix#{metadata.attempt}",
    )


def _scrubbed(result: ValidationResult) -> ValidationResult:
    """Evidence excerpts and the reason carry test output: no secret leaves in them."""
    evidence = [
        Evidence.model_validate(
            {**e.model_dump(), "excerpt": scrub(e.excerpt), "command": scrub(e.command) if e.command else e.command}
        )
        for e in result.evidence
    ]
    return dataclasses.replace(result, reason=scrub(result.reason), evidence=evidence)


def _settle_to_record(metadata: Metadata, recorded: ValidationRecord, ports: QaPorts) -> dict[str, Any]:
    """Another fix's verdict was recorded while this one was validated (two proposals at the same
    attempt racing): put the incident where that verdict leads (never stuck in VALIDATING) and
    publish nothing for this one."""
    target = Status.VALIDATED if recorded.passed else Status.REJECTED
    settled: Incident | None = ports.incidents.transition(
        metadata.incident_id,
        target,
        reason=f"attempt {metadata.attempt} was already validated for another fix",
        expected_attempt=metadata.attempt,
    )
    ports.monitor.record_event(
        "duplicate_proposal_ignored", {"attempt": metadata.attempt, "validated_fix": recorded.fix_sha256[:12]}
    )
    return {"action": "stale", "incident_id": metadata.incident_id, "settled": settled is not None}


def _resolve_fix(fix: Fix, artifacts: ArtifactStore) -> Fix:
    if fix.artifact is None:
        return fix
    return Fix.model_validate(artifacts.get_json(fix.artifact))
