"""QA's validation record: the one place the Manager learns which fix passed, and at what risk (QA's).

A `FixValidated` event says "look at attempt N"; it is not believed for the fix or its risk.
QA writes the record (validations table, `INCIDENT#<id>` / `VALIDATION#<attempt>`) with the
status it leads to, before it publishes; the Manager reads it and compares the event's fix hash
with the validated one. The table is its own so that IAM, not only the code, says who writes a
verdict: QA's role alone may (docs/decision_log.md, "Verdicts in a table only QA writes").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import aws, keys
from .ddb import from_item, read_items, to_item
from .events import ArtifactRef, Fix, utc_now
from .incidents import Incident, IncidentStore, ItemRefused, Status


def canonical_fix_json(fix: Fix) -> str:
    """One byte string per fix: sorted keys, no whitespace, no unset optionals."""
    return json.dumps(
        fix.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )


def fix_sha256(fix: Fix) -> str:
    return hashlib.sha256(canonical_fix_json(fix).encode()).hexdigest()


@dataclass(frozen=True)
class ValidationRecord:
    incident_id: str
    attempt: int
    passed: bool
    fix_sha256: str
    risk_level: str
    kind: str
    reason: str
    fix: dict[str, Any] | None
    fix_artifact: dict[str, Any] | None
    evidence_artifact: dict[str, Any] | None
    validated_at: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ValidationRecord:
        plain: dict[str, Any] = from_item(item)
        fields: dict[str, Any] = {name: plain.get(name) for name in cls.__dataclass_fields__}
        return cls(**fields)


class ValidationConflict(RuntimeError):
    """A different fix is already recorded for this incident and attempt."""

    def __init__(self, existing: ValidationRecord) -> None:
        super().__init__(f"attempt {existing.attempt} already validated fix {existing.fix_sha256[:12]}")
        self.existing = existing


class ValidationStore:
    """QA's verdicts (`table_name`) beside the incidents they move (`incidents_table`)."""

    def __init__(self, table_name: str, incidents_table: str) -> None:
        if not table_name:
            raise ValueError("VALIDATIONS_TABLE_NAME is not set: QA and the Manager need the validations table")
        self.table_name = table_name
        self.incidents_table = incidents_table

    @property
    def _table(self) -> Any:
        return aws.table(self.table_name)

    def put(
        self,
        incidents: IncidentStore,
        *,
        incident_id: str,
        attempt: int,
        fix: Fix,
        original_fix: Fix,
        passed: bool,
        reason: str,
        evidence_artifact: ArtifactRef | None,
        risk_level: str,
    ) -> ValidationRecord | None:
        """Record QA's verdict and move the incident from VALIDATING to where it leads (VALIDATED or
        REJECTED) in one transaction. None: the incident is not VALIDATING at this attempt, and
        nothing was written. A retry of QA at the same attempt may rewrite the verdict for the same
        fix (same hash); a different fix at the same attempt raises ValidationConflict.
        `risk_level` is QA's assessment (lambdas/qa/risk.py), never the fix's own label."""
        digest = fix_sha256(fix)
        item = {
            "pk": keys.incident_pk(incident_id),
            "sk": keys.validation_sk(attempt),
            "record_type": "validation",
            "incident_id": incident_id,
            "attempt": attempt,
            "passed": passed,
            "fix_sha256": digest,
            "risk_level": risk_level,
            "kind": fix.kind,
            "reason": reason[:2_000],
            # A claim-checked fix stays in the artifacts store; the hash pins its content.
            "fix": None if original_fix.artifact else fix.model_dump(mode="json", exclude_none=True),
            "fix_artifact": original_fix.artifact.model_dump(mode="json") if original_fix.artifact else None,
            "evidence_artifact": evidence_artifact.model_dump(mode="json") if evidence_artifact else None,
            "validated_at": utc_now(),
        }
        landing = Status.VALIDATED if passed else Status.REJECTED
        try:
            moved = incidents.transition_and_put(
                incident_id,
                landing,
                put={
                    "TableName": self.table_name,
                    "Item": to_item({k: v for k, v in item.items() if v is not None}),
                    "ConditionExpression": "attribute_not_exists(pk) OR fix_sha256 = :digest",
                    "ExpressionAttributeValues": {":digest": digest},
                },
                reason=reason,
                expected_attempt=attempt,
                redo_from=frozenset({landing}),
            )
        except ItemRefused as refused:
            existing = self.get(incident_id, attempt)
            if existing is None:  # deleted in between (never by the agents): the Lambda retry writes it
                raise
            raise ValidationConflict(existing) from refused
        return ValidationRecord.from_item(item) if moved else None

    def get(self, incident_id: str, attempt: int) -> ValidationRecord | None:
        item = self._table.get_item(
            Key={"pk": keys.incident_pk(incident_id), "sk": keys.validation_sk(attempt)}, ConsistentRead=True
        ).get("Item")
        return ValidationRecord.from_item(item) if item else None

    def get_with_incident(self, incident_id: str, attempt: int) -> tuple[Incident | None, ValidationRecord | None]:
        """The incident and QA's verdict on `attempt`, in one read (one BatchGetItem over both tables)."""
        pk = keys.incident_pk(incident_id)
        found = read_items(
            {
                self.incidents_table: [{"pk": pk, "sk": keys.META}],
                self.table_name: [{"pk": pk, "sk": keys.validation_sk(attempt)}],
            }
        )
        incident = found.get((self.incidents_table, pk, keys.META))
        verdict = found.get((self.table_name, pk, keys.validation_sk(attempt)))
        return (
            Incident.from_item(incident) if incident else None,
            ValidationRecord.from_item(verdict) if verdict else None,
        )
