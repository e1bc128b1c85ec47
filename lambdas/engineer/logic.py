"""The Engineer's work: turn a remediation request (or QA's rejection) into a proposed fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from selfheal_core.artifacts import ArtifactStore, too_large
from selfheal_core.catalog import AGENT_SOURCES
from selfheal_core.config import RuntimeParameters
from selfheal_core.events import (
    FEEDBACK_ITEM_CHARS,
    DetailType,
    FailureCategory,
    Fix,
    FixProposedV1,
    FixRejectedV1,
    Investigation,
    IssueReportedV1,
    Metadata,
    RemediationFailedV1,
    RemediationRequestedV1,
)
from selfheal_core.incidents import IncidentStore, ItemRefused, Status, count_status
from selfheal_core.messaging import Messenger, follow_up
from selfheal_core.ports import Monitor
from selfheal_core.validations import fix_sha256

from .proposals import ProposalStore
from .providers.base import BudgetRefused, FixProvider, FixRequest, ProviderError, ProviderResult
from .providers.runbook import RunbookProvider

AGENT = "engineer"
SOURCE = AGENT_SOURCES[AGENT]
# The categories a provider's failure may carry (ProviderError.category is stored as plain text).
PROVIDER_FAILURES: tuple[FailureCategory, ...] = ("budget", "provider_error", "invalid_output", "unsupported")
MAX_PROVIDER_WAITS = 5  # provider outages waited out (with backoff) before the incident is FAILED


@dataclass
class EngineerPorts:
    incidents: IncidentStore
    monitor: Monitor
    messenger: Messenger
    params: RuntimeParameters
    artifacts: ArtifactStore
    choose_provider: Callable[[], tuple[FixProvider, str]]
    notify_budget_paused: Callable[[str, str], object]  # (incident_id, reason); what it returns is unused
    proposals: ProposalStore


def handle_remediation_requested(
    metadata: Metadata, data: RemediationRequestedV1, ports: EngineerPorts
) -> dict[str, Any]:
    # The incident and this step's stored answer (if any) in one read.
    incident, stored = ports.proposals.get_with_incident(metadata.incident_id, metadata.attempt, data.resumed)
    # FIX_PROPOSED at this attempt: a retry of this very step, whose event may not have gone out.
    # A re-drive by the sweeper also re-sends the stored proposal of an incident that went further
    # at this attempt (its FixProposed, QA's verdict or the verdict's reader got lost).
    redoable = {Status.REMEDIATING.value, Status.FIX_PROPOSED.value, *(PROPOSED_ALREADY if data.redrive else ())}
    if incident is None or incident.status not in redoable or incident.attempts != metadata.attempt:
        proposed = (
            incident is not None
            and incident.attempts >= metadata.attempt
            and count_status(incident, Status.FIX_PROPOSED)
        )
        if proposed and isinstance(stored, ProviderResult):
            # A retry the next agents overtook: its FixProposed went out, but its decision, held
            # until the step settled, may have died with the first try (recorded once; nothing re-sent).
            _record_proposal(metadata, data.issue, data.feedback, stored, stored.fix, REUSED, ports)
        return {"action": "stale", "incident_id": metadata.incident_id}
    return _remediate(
        metadata,
        data.issue,
        data.fingerprint,
        data.feedback,
        ports,
        data.investigation,
        resumed=data.resumed,
        redrive=data.redrive,
        proposed_already=incident.status in PROPOSED_ALREADY,
        stored=(stored,),
    )


def handle_fix_rejected(metadata: Metadata, data: FixRejectedV1, ports: EngineerPorts) -> dict[str, Any]:
    feedback = [*data.feedback, rejection_feedback(metadata.attempt, data)]
    incident = ports.incidents.get(metadata.incident_id)
    # Only a rejection QA really recorded for this attempt counts (and REMEDIATING/FIX_PROPOSED at the
    # next attempt is a retry of this step): an event alone cannot make the Engineer give up.
    rejected_here = (
        incident is not None and incident.status == Status.REJECTED.value and incident.attempts == metadata.attempt
    )
    retry_in_flight = (
        incident is not None
        and incident.attempts == metadata.attempt + 1
        and incident.status in (Status.REMEDIATING.value, Status.FIX_PROPOSED.value)
    )
    if not (rejected_here or retry_in_flight):
        return {"action": "stale", "incident_id": metadata.incident_id}
    if metadata.attempt >= ports.params.max_fix_attempts:
        ports.monitor.record_decision(
            "give_up",
            [
                {
                    "thought": f"QA rejected attempt {metadata.attempt} of {ports.params.max_fix_attempts}",
                    "action": "stop retrying",
                    "observation": data.reason[:300],
                }
            ],
            {"attempt": metadata.attempt},
            {"next": "RemediationFailed"},
            0.9,
            once=f"give_up#{metadata.attempt}",
        )
        ports.messenger.send(
            DetailType.REMEDIATION_FAILED,
            follow_up(metadata, AGENT),
            RemediationFailedV1(
                reason=f"QA rejected {metadata.attempt} attempts; last: {data.reason}"[:4000],
                category="max_attempts",
                fingerprint=data.fingerprint,
            ),
        )
        return {"action": "gave_up", "incident_id": metadata.incident_id}
    next_attempt = metadata.attempt + 1
    moved = ports.incidents.transition(
        metadata.incident_id,
        Status.REMEDIATING,
        reason=f"retry {next_attempt} with QA feedback",
        expected_attempt=metadata.attempt,
        new_attempt=next_attempt,
        allowed_from=frozenset({Status.REJECTED}),
        redo_from=frozenset({Status.REMEDIATING, Status.FIX_PROPOSED}),
    )
    if moved is None:
        return {"action": "stale", "incident_id": metadata.incident_id}
    return _remediate(
        follow_up(metadata, AGENT, attempt=next_attempt),
        data.issue,
        data.fingerprint,
        feedback,
        ports,
        data.investigation,
    )


def rejection_feedback(attempt: int, data: FixRejectedV1) -> str:
    failed = [e for e in data.evidence if not e.passed]
    lines = [f"attempt {attempt} rejected: {data.reason}"]
    lines += [f"- {e.check} (exit {e.exit_code}): {e.excerpt[-400:]}" for e in failed[:4]]
    return "\n".join(lines)[:FEEDBACK_ITEM_CHARS]


# How a step that reuses its stored answer names its provider in the decision.
REUSED = ("stored", "reused the answer stored for this attempt (no new model call)")

# Statuses past this attempt's proposal: a re-drive re-sends it and never moves the incident back.
PROPOSED_ALREADY = frozenset({Status.VALIDATING.value, Status.VALIDATED.value, Status.REJECTED.value})


def _remediate(
    metadata: Metadata,
    issue: IssueReportedV1,
    fingerprint: str,
    feedback: list[str],
    ports: EngineerPorts,
    investigation: Investigation | None = None,
    *,
    resumed: int = 0,
    redrive: int = 0,
    proposed_already: bool = False,
    stored: tuple[ProviderResult | ProviderError | None] | None = None,
) -> dict[str, Any]:
    """`stored`: this step's stored answer when the caller has read it already (None: read it here)."""
    code_files, test_command = _code_of(issue, ports.artifacts)
    request = FixRequest(
        incident_id=metadata.incident_id,
        correlation_id=metadata.correlation_id,
        attempt=metadata.attempt,
        issue=issue,
        code_files=code_files,
        test_command=test_command,
        feedback=feedback,
        investigation=investigation,
    )
    answer = ports.proposals.get(metadata.incident_id, metadata.attempt, resumed) if stored is None else stored[0]
    if answer is None and proposed_already:  # nothing to re-send, and the model is not asked again
        return {"action": "stale", "incident_id": metadata.incident_id}
    fresh = None  # a new answer not stored yet: the runbook's, stored with its status in one write
    if answer is not None:  # a retry or replay of this step: the model is not asked twice
        (provider_name, why), outcome = REUSED, answer
    else:
        outcome, provider_name, why = _ask(request, ports, resumed=resumed)
        if provider_name == RunbookProvider.name and isinstance(outcome, ProviderResult):
            fresh = outcome
    if isinstance(outcome, BudgetRefused):
        return _pause_for_budget(metadata, outcome.reason, ports)
    if isinstance(outcome, ProviderError):
        if outcome.category == "provider_error":
            return _wait_for_provider(metadata, fingerprint, outcome, why, ports)
        return _fail(metadata, fingerprint, outcome, why, ports)
    result = outcome

    fix = _claim_checked(result.fix, metadata, ports.artifacts)
    if not proposed_already:
        try:
            moved = _mark_proposed(metadata, fix, fresh, resumed, ports)
        except ItemRefused:  # another delivery stored its answer first: that answer goes on
            first = ports.proposals.get(metadata.incident_id, metadata.attempt, resumed)
            return _remediate(
                metadata,
                issue,
                fingerprint,
                feedback,
                ports,
                investigation,
                resumed=resumed,
                redrive=redrive,
                stored=(first,),
            )
        if not moved:
            return {"action": "stale", "incident_id": metadata.incident_id}
    ports.monitor.record_event(
        "code_generated", {"kind": fix.kind, "provider": fix.provider, "risk_level": fix.risk_level}
    )
    _record_proposal(metadata, issue, feedback, result, fix, (provider_name, why), ports)
    ports.messenger.send(
        DetailType.FIX_PROPOSED,
        follow_up(metadata, AGENT),
        FixProposedV1(
            issue=issue,
            fix=fix,
            fingerprint=fingerprint,
            feedback=feedback,
            investigation=investigation,
            redrive=redrive,
        ),
    )
    return {"action": "proposed", "incident_id": metadata.incident_id, "provider": fix.provider}


def _record_proposal(
    metadata: Metadata,
    issue: IssueReportedV1,
    feedback: list[str],
    result: ProviderResult,
    fix: Fix,
    chosen: tuple[str, str],
    ports: EngineerPorts,
) -> None:
    """The `propose_fix` decision, once per attempt. `chosen`: the provider's name and why it
    was chosen (REUSED for a stored answer)."""
    provider_name, why = chosen
    chain = [
        {
            "thought": f"Attempt {metadata.attempt}: fix {issue.issue_type} on {issue.service}",
            "action": f"choose provider: {provider_name}",
            "observation": why,
        },
        *result.reasoning,
    ]
    if feedback:
        chain.append(
            {
                "thought": "Earlier attempts were rejected by QA",
                "action": "include QA evidence in the request",
                "observation": f"{len(feedback)} feedback item(s) considered",
            }
        )
    ports.monitor.record_decision(
        "propose_fix",
        chain,
        {"issue_type": issue.issue_type, "attempt": metadata.attempt, "feedback_items": len(feedback)},
        {
            "kind": fix.kind,
            "provider": fix.provider,
            "risk_level": fix.risk_level,
            "rationale": fix.rationale[:500],
            "changes": [c.model_dump() for c in fix.changes],
        },
        result.confidence,
        model=fix.model,
        once=f"propose_fix#{metadata.attempt}",
    )


def _claim_checked(fix: Fix, metadata: Metadata, artifacts: ArtifactStore) -> Fix:
    """A fix too large for an event travels as a reference to the artifacts store."""
    if not too_large(fix.model_dump(mode="json")):
        return fix
    # Named by its hash: a racing delivery's fix never overwrites the one that was stored first.
    key = f"incidents/{metadata.incident_id}/fix-{metadata.attempt}-{fix_sha256(fix)[:16]}.json"
    ref = artifacts.put_json(key, fix.model_dump(mode="json"))
    return fix.model_copy(update={"patch": None, "files": {}, "tests": {}, "artifact": ref})


def _mark_proposed(
    metadata: Metadata, fix: Fix, new_answer: ProviderResult | None, resumed: int, ports: EngineerPorts
) -> bool:
    """FIX_PROPOSED at this attempt (False: the incident may not move). `new_answer` (the
    runbook's, not stored yet) is stored in the same write; ItemRefused when another delivery
    stored one first."""
    reason = f"{fix.kind} fix by {fix.provider}"
    if new_answer is not None:
        try:
            return ports.proposals.put_proposed(
                ports.incidents, metadata.incident_id, metadata.attempt, new_answer, resumed, reason
            )
        except ClientError:
            # The transaction kept failing (conflicts, throttling): keep the answer on its own, so
            # the Lambda retry moves the incident with the answer already given.
            ports.proposals.put(metadata.incident_id, metadata.attempt, new_answer, resumed)
            raise
    moved = ports.incidents.transition(
        metadata.incident_id,
        Status.FIX_PROPOSED,
        reason=reason,
        expected_attempt=metadata.attempt,
        redo_from=frozenset({Status.FIX_PROPOSED}),
    )
    return moved is not None


def _ask(
    request: FixRequest, ports: EngineerPorts, *, resumed: int
) -> tuple[ProviderResult | ProviderError | BudgetRefused, str, str]:
    """This attempt's answer, the provider's name and why it was chosen; BudgetRefused when the
    budget refused the model and no runbook can stand in. A refusal and the model's fix are
    stored here, before anything else: a retry after a death at the status write reuses them
    instead of paying for a second call. The runbook's fix (free, deterministic) is stored with
    its FIX_PROPOSED status in one write (`ProposalStore.put_proposed`)."""
    provider, why = ports.choose_provider()
    provider_name = provider.name
    outcome: ProviderResult | ProviderError
    try:
        outcome = _propose(provider, request, ports)
    except BudgetRefused as exc:
        if not RunbookProvider().supports(request.issue):
            return exc, provider_name, why
        # Not paused: the runbook carries on, the decision says why, and the cost dashboard counts refusals.
        why = f"budget guard refused the LLM call ({exc.reason}); runbook fallback"
        provider_name = RunbookProvider.name
        outcome = _propose_or_error(RunbookProvider(), request, ports)
    except ProviderError as exc:
        outcome = exc
    if isinstance(outcome, ProviderError) or provider_name != RunbookProvider.name:
        outcome = ports.proposals.put(request.incident_id, request.attempt, outcome, resumed)  # first writer wins
    return outcome, provider_name, why


def _propose_or_error(
    provider: FixProvider, request: FixRequest, ports: EngineerPorts
) -> ProviderResult | ProviderError:
    try:
        return _propose(provider, request, ports)
    except ProviderError as exc:
        return exc


def _propose(provider: FixProvider, request: FixRequest, ports: EngineerPorts) -> ProviderResult:
    try:
        result = provider.propose(request)
    except ProviderError as exc:
        _track_usage(getattr(exc, "usage", []), ports)
        raise
    _track_usage(result.usage, ports)
    return result


def _track_usage(usage: list[Any], ports: EngineerPorts) -> None:
    for u in usage:
        ports.monitor.track_llm_usage(
            u.model,
            u.input_tokens,
            u.output_tokens,
            cache_creation_input_tokens=u.cache_creation_input_tokens,
            cache_read_input_tokens=u.cache_read_input_tokens,
        )


def _pause_for_budget(metadata: Metadata, reason: str, ports: EngineerPorts) -> dict[str, Any]:
    paused = ports.incidents.transition(
        metadata.incident_id, Status.BUDGET_PAUSED, reason=reason, expected_attempt=metadata.attempt
    )
    if paused is None:
        return {"action": "stale", "incident_id": metadata.incident_id}
    ports.monitor.record_decision(
        "budget_pause",
        [
            {
                "thought": "The daily LLM budget cannot cover this call",
                "action": "pause the incident; no call made",
                "observation": reason[:300],
            }
        ],
        {"attempt": metadata.attempt},
        {"status": Status.BUDGET_PAUSED.value},
        1.0,
        once=f"budget_pause#{metadata.attempt}#{count_status(paused, Status.BUDGET_PAUSED)}",
    )
    ports.notify_budget_paused(metadata.incident_id, reason)
    return {"action": "budget_paused", "incident_id": metadata.incident_id}


def _wait_for_provider(
    metadata: Metadata, fingerprint: str, exc: ProviderError, why: str, ports: EngineerPorts
) -> dict[str, Any]:
    """An outage waits (the scheduled scan resumes it with backoff); only after MAX_PROVIDER_WAITS it fails."""
    incident = ports.incidents.get(metadata.incident_id)
    waits = count_status(incident, Status.RETRY_WAIT) if incident else 0
    if waits >= MAX_PROVIDER_WAITS:
        return _fail(metadata, fingerprint, exc, f"{why}; the provider failed after {waits} waits", ports)
    waiting = ports.incidents.transition(
        metadata.incident_id,
        Status.RETRY_WAIT,
        reason=f"provider unavailable: {exc.reason[:300]}",
        expected_attempt=metadata.attempt,
    )
    if waiting is None:
        return {"action": "stale", "incident_id": metadata.incident_id}
    ports.monitor.record_decision(
        "wait_for_provider",
        [
            {
                "thought": "The model provider failed after the client's own retries",
                "action": f"wait; the scheduled scan resumes this attempt (wait {waits + 1} of {MAX_PROVIDER_WAITS})",
                "observation": exc.reason[:300],
            }
        ],
        {"attempt": metadata.attempt},
        {"status": Status.RETRY_WAIT.value},
        0.9,
        once=f"wait_for_provider#{metadata.attempt}#{waits + 1}",
    )
    return {"action": "retry_wait", "incident_id": metadata.incident_id}


def _fail(metadata: Metadata, fingerprint: str, exc: ProviderError, why: str, ports: EngineerPorts) -> dict[str, Any]:
    ports.monitor.record_decision(
        "remediation_failed",
        [{"thought": "The provider could not produce a valid fix", "action": why, "observation": exc.reason[:300]}],
        {"attempt": metadata.attempt},
        {"category": exc.category},
        0.9,
        once=f"remediation_failed#{metadata.attempt}",
    )
    category: FailureCategory = next((c for c in PROVIDER_FAILURES if c == exc.category), "provider_error")
    ports.messenger.send(
        DetailType.REMEDIATION_FAILED,
        follow_up(metadata, AGENT),
        RemediationFailedV1(reason=exc.reason[:4000], category=category, fingerprint=fingerprint),
    )
    return {"action": "failed", "incident_id": metadata.incident_id, "category": category}


def _code_of(issue: IssueReportedV1, artifacts: ArtifactStore) -> tuple[dict[str, str], str | None]:
    if issue.code is None:
        return {}, None
    files = dict(issue.code.files)
    if issue.code.artifact is not None:
        files.update(artifacts.get_json(issue.code.artifact))
    return files, issue.code.test_command
