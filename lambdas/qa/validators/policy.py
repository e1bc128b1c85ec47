"""Configuration remediations are checked against policy bounds and blast radius, never trusted."""

from __future__ import annotations

from dataclasses import dataclass

from selfheal_core.events import MAX_STEP_DOWN, MAX_STEP_UP, ConfigChange, Evidence, Fix, Investigation, IssueReportedV1

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
    max_increase_factor: float = MAX_STEP_UP
    max_decrease_factor: float = MAX_STEP_DOWN


class PolicyValidator:
    """`investigation` is what the Manager read from the target; without it no step can be bounded."""

    def __init__(self, blast_radius: BlastRadius | None = None, investigation: Investigation | None = None) -> None:
        self.blast_radius = blast_radius or BlastRadius()
        self.investigation = investigation

    def validate(self, fix: Fix, issue: IssueReportedV1, code_files: dict[str, str]) -> ValidationResult:  # noqa: ARG002
        evidence = [self._count_check(fix)]
        for change in fix.changes:
            low, high = BOUNDS[change.setting]
            # Every bounded setting is a whole number (seconds, MB, executions, retries, records):
            # a fraction would be truncated on apply, i.e. applied as a value nobody validated.
            evidence.append(
                Evidence(
                    check=f"bounds:{change.setting}",
                    passed=low <= change.proposed <= high and float(change.proposed).is_integer(),
                    excerpt=f"{change.setting}={change.proposed:g} must be a whole number within [{low:g}, {high:g}]",
                )
            )
            scope = self.investigation.target if self.investigation and self.investigation.target else None
            evidence.append(
                Evidence(
                    check=f"scope:{change.setting}",
                    passed=scope is not None and change.target == scope,
                    excerpt=f"target {change.target!r} must be the investigated function {scope!r}"
                    if scope
                    else f"target {change.target!r}: no function was investigated, so no change is in scope",
                )
            )
            evidence.append(self._step_check(change))
        failed = [e for e in evidence if not e.passed]
        reason = "; ".join(e.excerpt for e in failed) if failed else f"{len(fix.changes)} change(s) within policy"
        return ValidationResult(passed=not failed, reason=reason, evidence=evidence)

    def _step_check(self, change: ConfigChange) -> Evidence:
        """The step is measured from the value the investigation read, never from a claim (the
        proposer's `current` or a reporter's signal); with no reading the step cannot be bounded."""
        inv = self.investigation
        current = inv.values.get(change.setting) if inv else None
        if current is None:
            why = inv.gap_for(change.setting) if inv else "the target was not investigated"
            return Evidence(
                check=f"step:{change.setting}",
                passed=False,
                excerpt=f"current {change.setting} unknown ({why}): the size of the change cannot be checked",
            )
        if change.contradicts(current):
            # The Manager applies only a change made from its reading (heal.plan_change): say so now,
            # while the Engineer can still correct it.
            return Evidence(
                check=f"step:{change.setting}",
                passed=False,
                excerpt=f"the fix starts {change.setting} at {change.current:g}, but the function reads {current:g}",
            )
        if current == 0:
            return Evidence(
                check=f"step:{change.setting}",
                passed=change.proposed == 0,
                excerpt=f"{change.setting} is 0: a step from 0 cannot be bounded by a factor; change it by hand",
            )
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
