"""Configuration remediations are checked against policy bounds and blast radius, never trusted."""

from __future__ import annotations

from dataclasses import dataclass

from selfheal_core.events import ConfigChange, Evidence, Fix, IssueReportedV1

from .base import ValidationResult

# setting -> (minimum, maximum) that a remediation may set
BOUNDS: dict[str, tuple[float, float]] = {
    "memory_mb": (128, 10_240),
    "timeout_s": (1, 900),
    "reserved_concurrency": (1, 1_000),
    "max_retries": (0, 2),
    "batch_size": (1, 10_000),
}


@dataclass(frozen=True)
class BlastRadius:
    max_changes: int = 3
    max_increase_factor: float = 4.0  # one step may at most quadruple a setting
    max_decrease_factor: float = 0.5  # or halve it


class PolicyValidator:
    def __init__(self, blast_radius: BlastRadius | None = None) -> None:
        self.blast_radius = blast_radius or BlastRadius()

    def validate(self, fix: Fix, issue: IssueReportedV1, code_files: dict[str, str]) -> ValidationResult:  # noqa: ARG002
        evidence = [self._count_check(fix)]
        for change in fix.changes:
            low, high = BOUNDS[change.setting]
            evidence.append(Evidence(
                check=f"bounds:{change.setting}",
                passed=low <= change.proposed <= high,
                excerpt=f"{change.setting}={change.proposed:g} must be within [{low:g}, {high:g}]",
            ))
            evidence.append(Evidence(
                check=f"scope:{change.setting}",
                passed=change.target == issue.service,
                excerpt=f"target {change.target!r} must be the incident's service {issue.service!r}",
            ))
            evidence.append(self._step_check(change, issue))
        failed = [e for e in evidence if not e.passed]
        reason = "; ".join(e.excerpt for e in failed) if failed else f"{len(fix.changes)} change(s) within policy"
        return ValidationResult(passed=not failed, reason=reason, evidence=evidence)

    def _step_check(self, change: ConfigChange, issue: IssueReportedV1) -> Evidence:
        """The step is measured from the observed value (signals) when there is one, never from
        a claim alone; with no known current value the step cannot be bounded, so it fails."""
        current = issue.signals.get(change.setting, change.current)
        if not current:
            return Evidence(check=f"step:{change.setting}", passed=False,
                            excerpt=f"current {change.setting} unknown: the size of the change cannot be checked")
        factor = change.proposed / current
        low, high = self.blast_radius.max_decrease_factor, self.blast_radius.max_increase_factor
        return Evidence(
            check=f"step:{change.setting}",
            passed=low <= factor <= high,
            excerpt=f"{current:g} -> {change.proposed:g} is a x{factor:.2f} step (allowed x{low:g}..x{high:g})",
        )

    def _count_check(self, fix: Fix) -> Evidence:
        n = len(fix.changes)
        return Evidence(
            check="blast_radius:changes",
            passed=1 <= n <= self.blast_radius.max_changes,
            excerpt=f"{n} change(s); a config fix must change 1..{self.blast_radius.max_changes} settings",
        )
