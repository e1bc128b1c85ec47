"""The QA validator port: each kind of fix has a validator that returns evidence, not a claim."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from selfheal_core.events import Evidence, Fix, IssueReportedV1


@dataclass
class ValidationResult:
    passed: bool
    reason: str
    evidence: list[Evidence] = field(default_factory=list)
    # Tests that also pass on the unpatched code prove nothing about the fix.
    weak_evidence: bool = False


class Validator(Protocol):
    def validate(self, fix: Fix, issue: IssueReportedV1, code_files: dict[str, str]) -> ValidationResult: ...
