"""The event contract (docs/architecture.md, "Event contract"): one envelope, one versioned pydantic model per detail-type.

`detail = {"metadata": {...}, "data": {...}}`. Unknown detail-types or versions are rejected
with a reason by `parse_detail`; nothing here touches AWS.
"""

# No `from __future__ import annotations` here: pydantic would compile and evaluate every field's
# annotation string when a model class is created, i.e. at every cold start.

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from .catalog import CONTRACT_SOURCES
from .diffs import path_problem
from .qa_run import MAX_FILES
from .redact import scrub

EVENT_VERSION: Literal["1"] = "1"
MAX_SUMMARY_CHARS = 2_000
MAX_EVIDENCE_ITEMS = 200


class DetailType(StrEnum):
    ISSUE_REPORTED = "IssueReported"
    ISSUE_DETECTED = "IssueDetected"
    REMEDIATION_REQUESTED = "RemediationRequested"
    FIX_PROPOSED = "FixProposed"
    REMEDIATION_FAILED = "RemediationFailed"
    FIX_VALIDATED = "FixValidated"
    FIX_REJECTED = "FixRejected"
    REMEDIATION_APPROVED = "RemediationApproved"
    APPROVAL_REQUESTED = "ApprovalRequested"
    INCIDENT_ESCALATED = "IncidentEscalated"
    INCIDENT_RESOLVED = "IncidentResolved"
    APPROVAL_GRANTED = "ApprovalGranted"
    APPROVAL_DENIED = "ApprovalDenied"
    FIX_APPLIED = "FixApplied"
    FIX_VERIFIED = "FixVerified"
    FIX_ROLLED_BACK = "FixRolledBack"
    APPLY_DUE = "ApplyDue"
    VERIFY_DUE = "VerifyDue"


class IssueType(StrEnum):
    HIGH_ERROR_RATE = "high_error_rate"
    LATENCY = "latency"
    EXCEPTION = "exception"
    THROTTLING = "throttling"
    MEMORY = "memory"
    UNKNOWN = "unknown"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# DynamoDB stores numbers with magnitudes from 1e-130 to below 1e126; NaN and infinity not at all.
DYNAMODB_MAX_MAGNITUDE = 1e126
DYNAMODB_MIN_MAGNITUDE = 1e-130


def storable_number(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value != 0 and not DYNAMODB_MIN_MAGNITUDE <= abs(value) < DYNAMODB_MAX_MAGNITUDE:
        raise ValueError("is outside the storable range (magnitude 1e-130 to 1e126, or 0)")
    return value


def numeric(value: Any) -> Any:
    """A number as JSON has it: `true` is not 1 and `"1e3"` is not 1000 (pydantic's lax mode would
    take both); stored numbers read back (Decimal) are numbers."""
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"must be a JSON number, not {type(value).__name__}")
    return value


Number = Annotated[float, BeforeValidator(numeric), AfterValidator(storable_number)]
SignalName = Annotated[str, Field(min_length=1, max_length=128)]
MAX_SIGNALS = 64


class _Model(BaseModel):
    # defer_build: a model's validator is built when first used, so an agent pays only for the
    # models it parses or sends (building all of them cost ~150 ms of every cold start).
    model_config = ConfigDict(extra="forbid", use_enum_values=True, defer_build=True)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Metadata(_Model):
    incident_id: str = Field(min_length=1, max_length=64)
    correlation_id: str = Field(min_length=1, max_length=128)
    event_version: Literal["1"] = EVENT_VERSION
    attempt: int = Field(default=1, ge=1, le=20)
    created_at: str = Field(default_factory=utc_now)
    producer: str = Field(min_length=1, max_length=64)


# ---------------------------------------------------------------------------------- payloads


class ArtifactRef(_Model):
    """Claim check: content too large for an event lives in the artifacts store."""

    bucket: str
    key: str
    size_bytes: int = Field(ge=0)
    sha256: str | None = None


class CodeBundle(_Model):
    """Source under repair: small files inline, otherwise an artifact reference."""

    # Room is left in the runner's bundle (qa_run.MAX_FILES) for the fix's files and its tests.
    files: dict[str, str] = Field(default_factory=dict, max_length=MAX_FILES // 2)
    test_command: str = Field(default="python -m pytest -q", max_length=1_000)
    artifact: ArtifactRef | None = None

    @field_validator("files")
    @classmethod
    def _relative_paths_only(cls, files: dict[str, str]) -> dict[str, str]:
        for path in files:
            if problem := path_problem(path):
                raise ValueError(f"file {problem}")
        return files


class IssueReportedV1(_Model):
    service: str = Field(min_length=1, max_length=128)
    issue_type: IssueType
    severity: Severity = Severity.MEDIUM
    summary: str = Field(min_length=1, max_length=MAX_SUMMARY_CHARS)
    signals: dict[SignalName, Number] = Field(default_factory=dict, max_length=MAX_SIGNALS)
    evidence: list[str] = Field(default_factory=list, max_length=MAX_EVIDENCE_ITEMS)
    code: CodeBundle | None = None
    idempotency_key: str | None = Field(default=None, max_length=256)
    resource: str | None = Field(default=None, max_length=512, description="alarm name, function …")
    evidence_artifact: ArtifactRef | None = Field(
        default=None, description="all evidence lines, when long (set by Selfheal)"
    )


# Settings a configuration remediation may change; the first three are limits (lowering one breaks callers).
Setting = Literal["memory_mb", "timeout_s", "reserved_concurrency", "max_retries", "batch_size"]
SETTINGS: tuple[Setting, ...] = get_args(Setting)
LIMIT_SETTINGS = frozenset({"memory_mb", "timeout_s", "reserved_concurrency"})
MAX_INVESTIGATION_LINES = 20
FixKind = Literal["config", "code"]
FailureCategory = Literal["max_attempts", "budget", "provider_error", "invalid_output", "unsupported"]


def setting_named(name: str) -> Setting:
    """`name` as a Setting (names read back from stored changes are plain strings)."""
    for setting in SETTINGS:
        if setting == name:
            return setting
    raise ValueError(f"not a setting a remediation may change: {name!r}")


class Investigation(_Model):
    """What the Manager read about the target before asking for a fix. Only read values, never assumed.

    `values` holds settings that were read and are set; `unset` those read and found not
    configured (no reservation, no async invoke config); `gaps` what could not be read and why.
    """

    target: str | None = Field(default=None, max_length=256, description="function name")
    target_arn: str | None = Field(default=None, max_length=512)
    revision_id: str | None = Field(default=None, max_length=128)
    values: dict[str, float] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    managed: bool | None = Field(default=None, description="tag selfheal:managed=true; None when unreadable")
    error_lines: list[str] = Field(default_factory=list, max_length=MAX_INVESTIGATION_LINES)
    recent_changes: list[str] = Field(default_factory=list, max_length=MAX_INVESTIGATION_LINES)
    gaps: list[str] = Field(default_factory=list, max_length=MAX_INVESTIGATION_LINES)
    read_at: str = Field(default_factory=utc_now)

    def gap_for(self, setting: str) -> str:
        """Why there is no value for `setting` (for refusals that name the gap)."""
        if setting in self.unset:
            return f"{setting} of {self.target} is not configured, so there is no current value to change"
        related = "; ".join(self.gaps) or "not read"
        return f"{setting} of {self.target or 'the target'} was not read ({related})"


# One QA feedback item as the Engineer passes it on (reason and failing checks).
FEEDBACK_ITEM_CHARS = 1_500
REDRIVE_HELP = "n-th time the sweeper re-drove this step (0 = the first run); carried to the step's outcome"


class RemediationRequestedV1(_Model):
    issue: IssueReportedV1
    feedback: list[str] = Field(default_factory=list, description="QA evidence from earlier attempts")
    fingerprint: str
    resumed: int = Field(default=0, ge=0, description="times this attempt was resumed after a budget pause")
    investigation: Investigation | None = Field(default=None, description="what the Manager read about the target")
    redrive: int = Field(default=0, ge=0, le=100, description=REDRIVE_HELP)


# How far one configuration change may move a setting (QA's blast radius; the runbooks stay inside it).
MAX_STEP_UP = 4.0  # at most quadruple
MAX_STEP_DOWN = 0.5  # or halve


class ConfigChange(_Model):
    setting: Setting
    target: str = Field(min_length=1, max_length=256, description="function or resource to change")
    current: Number | None = None
    proposed: Number

    def contradicts(self, reading: float | None) -> bool:
        """The change claims to start from another value than the one read (a stale or forged
        reading: its step, and so its risk, are not this change's). Refused by the Engineer's
        answer check, QA's policy and the Manager's plan alike."""
        return self.current is not None and reading is not None and float(self.current) != float(reading)


class Fix(_Model):
    kind: FixKind
    provider: str
    model: str | None = None
    rationale: str = Field(max_length=8_000)
    risk_level: RiskLevel
    changes: list[ConfigChange] = Field(default_factory=list)
    patch: str | None = Field(default=None, description="unified diff, inline when small")
    files: dict[str, str] = Field(default_factory=dict, description="whole files, when not a diff")
    tests: dict[str, str] = Field(default_factory=dict, description="new test files")
    artifact: ArtifactRef | None = Field(default=None, description="claim check for a large fix")


class FixProposedV1(_Model):
    issue: IssueReportedV1
    fix: Fix
    fingerprint: str
    feedback: list[str] = Field(default_factory=list, description="QA evidence from earlier attempts")
    investigation: Investigation | None = None
    redrive: int = Field(default=0, ge=0, le=100, description=REDRIVE_HELP)


def _scrubbed(value: str) -> str:
    return scrub(value)


class RemediationFailedV1(_Model):
    reason: str = Field(max_length=4_000)
    category: FailureCategory
    fingerprint: str | None = None

    _scrub_reason = field_validator("reason")(_scrubbed)


class Evidence(_Model):
    check: str
    passed: bool
    command: str | None = None
    exit_code: int | None = None
    duration_ms: Number | None = None
    excerpt: str = Field(default="", max_length=4_000)
    # How the QA runner isolated this run: "namespaces", "microvm" or "none" (None: nothing ran).
    isolation: str | None = None

    # Every path that carries test output (events, artifacts, decisions) builds this model.
    _scrub_excerpt = field_validator("excerpt")(_scrubbed)


class FixValidatedV1(_Model):
    issue: IssueReportedV1
    fix: Fix
    evidence: list[Evidence]
    fingerprint: str
    evidence_artifact: ArtifactRef | None = None
    feedback: list[str] = Field(default_factory=list, description="QA evidence from earlier attempts")
    investigation: Investigation | None = None
    redrive: int = Field(default=0, ge=0, le=100, description=REDRIVE_HELP)


class FixRejectedV1(FixValidatedV1):
    reason: str = Field(max_length=4_000)
    weak_evidence: bool = False

    _scrub_reason = field_validator("reason")(_scrubbed)


class ApprovalV1(_Model):
    """ApprovalGranted / ApprovalDenied from the operator CLI."""

    approver: str = Field(min_length=1, max_length=256)
    comment: str = Field(default="", max_length=2_000)

    _scrub_comment = field_validator("comment")(_scrubbed)


class InfoV1(_Model):
    """Informational events (IssueDetected, ApprovalRequested, …) for people and the audit log."""

    status: str
    summary: str = Field(max_length=4_000)

    # The notification text: people read it in email, so nothing secret goes out in it.
    _scrub_summary = field_validator("summary")(_scrubbed)
    service: str | None = None
    issue_type: str | None = None
    severity: str | None = None
    risk_level: str | None = None
    fingerprint: str | None = None
    duplicates: int | None = None


class SettingChange(_Model):
    setting: Setting
    before: float
    after: float

    @property
    def lowers_limit(self) -> bool:
        return self.setting in LIMIT_SETTINGS and self.after < self.before


def is_breaking(changes: list[SettingChange]) -> bool:
    """A change that lowers a limit (memory, timeout, concurrency) can break the target's callers."""
    return any(c.lowers_limit for c in changes)


class _FixLifecycle(_Model):
    change_id: str = Field(min_length=1, max_length=64)
    service: str
    target: str = Field(description="function name")
    target_arn: str | None = None
    changes: list[SettingChange] = Field(description="before -> after of this event's own change")
    breaking_change: bool
    summary: str = Field(max_length=2_000)
    figures: dict[str, float] = Field(default_factory=dict, description="metric figures behind the decision")


class FixAppliedV1(_FixLifecycle):
    """The validated change was made on the target; verification runs until `verify_until`."""

    verify_until: str


class FixVerifiedV1(_FixLifecycle):
    """The target recovered after the change; the change is kept."""


class FixRolledBackV1(_FixLifecycle):
    """The target did not recover: `changes` restore the previous values (or list them, when `restored` is false)."""

    restored: bool


class DueV1(_Model):
    """ApplyDue / VerifyDue: sent by a one-time EventBridge Scheduler schedule the Manager created."""

    change_id: str = Field(min_length=1, max_length=64)
    due_at: str


DATA_MODELS: dict[str, dict[str, type[_Model]]] = {
    DetailType.ISSUE_REPORTED.value: {"1": IssueReportedV1},
    DetailType.REMEDIATION_REQUESTED.value: {"1": RemediationRequestedV1},
    DetailType.FIX_PROPOSED.value: {"1": FixProposedV1},
    DetailType.REMEDIATION_FAILED.value: {"1": RemediationFailedV1},
    DetailType.FIX_VALIDATED.value: {"1": FixValidatedV1},
    DetailType.FIX_REJECTED.value: {"1": FixRejectedV1},
    DetailType.APPROVAL_GRANTED.value: {"1": ApprovalV1},
    DetailType.APPROVAL_DENIED.value: {"1": ApprovalV1},
    DetailType.FIX_APPLIED.value: {"1": FixAppliedV1},
    DetailType.FIX_VERIFIED.value: {"1": FixVerifiedV1},
    DetailType.FIX_ROLLED_BACK.value: {"1": FixRolledBackV1},
    DetailType.APPLY_DUE.value: {"1": DueV1},
    DetailType.VERIFY_DUE.value: {"1": DueV1},
    **{
        t.value: {"1": InfoV1}
        for t in (
            DetailType.ISSUE_DETECTED,
            DetailType.REMEDIATION_APPROVED,
            DetailType.APPROVAL_REQUESTED,
            DetailType.INCIDENT_ESCALATED,
            DetailType.INCIDENT_RESOLVED,
        )
    },
}


class InvalidEvent(ValueError):
    """An event that cannot be processed; `reason` is safe to show an operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        # Field names come from the sender: capped, so a huge key cannot bloat the stored answer.
        loc = ".".join(str(p)[:64] for p in err["loc"])[:200] or "<root>"
        parts.append(f"{loc}: {err['msg'][:200]}")
    return "; ".join(parts)


class Envelope(BaseModel):
    """A parsed agent-to-agent event."""

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    detail_type: str
    source: str
    event_id: str | None = None
    metadata: Metadata
    data: Any


def parse_detail(detail_type: str, detail: Any, source: str = "", event_id: str | None = None) -> Envelope:
    """Validate an envelope detail; raise InvalidEvent with a readable reason."""
    versions = DATA_MODELS.get(detail_type)
    if versions is None:
        raise InvalidEvent(f"unknown detail-type {detail_type[:100]!r}")
    allowed = CONTRACT_SOURCES.get(detail_type)
    if allowed is not None and source not in allowed:
        raise InvalidEvent(f"{detail_type} must come from {sorted(allowed)}, not {source[:100]!r}")
    if not isinstance(detail, dict) or "metadata" not in detail or "data" not in detail:
        raise InvalidEvent("detail must be an object with 'metadata' and 'data'")
    raw_meta = detail["metadata"]
    version = str(raw_meta.get("event_version", EVENT_VERSION)) if isinstance(raw_meta, dict) else ""
    model = versions.get(version)
    if model is None:
        raise InvalidEvent(f"unsupported event_version {version!r} for {detail_type}; supported: {sorted(versions)}")
    try:
        metadata = Metadata.model_validate(raw_meta)
        data = model.model_validate(detail["data"])
    except ValidationError as exc:
        raise InvalidEvent(f"{detail_type} v{version} is invalid: {describe_validation_error(exc)}") from exc
    return Envelope(detail_type=detail_type, source=source, event_id=event_id, metadata=metadata, data=data)


def parse_producer_issue(detail: dict[str, Any]) -> IssueReportedV1:
    """An IssueReported from any producer: the fields are the whole detail, or the `data` of an
    envelope. Raises InvalidEvent with the reason.

    Of the envelope's metadata only `event_version` is read (default "1"): a producer's other
    fields (its own ids, timestamps, names) are ignored, since Selfheal assigns incident and
    correlation ids itself."""
    if "data" in detail or "metadata" in detail:
        raw_meta = detail.get("metadata")
        if not isinstance(raw_meta, dict) or "data" not in detail:
            raise InvalidEvent("an IssueReported envelope needs a metadata object and data")
        extra = sorted(str(k)[:64] for k in detail if k not in ("metadata", "data"))
        if extra:
            raise InvalidEvent(f"an IssueReported envelope has only metadata and data, not {extra[:5]}")
        # As for every event, a missing version is the first one; "1" or 1: producers are not all typed alike.
        version = str(raw_meta.get("event_version", EVENT_VERSION))[:16]
        model = DATA_MODELS[DetailType.ISSUE_REPORTED.value].get(version)
        if model is None:
            raise InvalidEvent(
                f"unsupported event_version {version[:16]!r} for IssueReported; supported: "
                f"{sorted(DATA_MODELS[DetailType.ISSUE_REPORTED.value])}"
            )
        fields, where = detail["data"], f"IssueReported v{version}"
    else:
        model, fields, where = IssueReportedV1, detail, "IssueReported"
    try:
        issue = model.model_validate(fields)
    except ValidationError as exc:
        raise InvalidEvent(f"{where} is invalid: {describe_validation_error(exc)}") from exc
    assert isinstance(issue, IssueReportedV1)
    return issue


def build_detail(metadata: Metadata, data: BaseModel) -> dict[str, Any]:
    return {"metadata": metadata.model_dump(mode="json"), "data": data.model_dump(mode="json", exclude_none=True)}
