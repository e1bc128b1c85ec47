"""QA's own risk assessment: the risk that drives the approval policy is decided from the change.

The Engineer's `risk_level` is model output: it can raise the recorded risk, never lower it.
QA's floor is medium for a change that lowers a limit (`is_breaking`: memory, timeout,
concurrency), a large step (beyond x2 up or below x0.75 down of the investigated value, or a
step whose size is unknown) and any code fix (QA proves the tests, not everything the code
does); low otherwise. The Manager approves automatically in `semi_auto` only at low.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfheal_core.events import Evidence, Fix, Investigation, RiskLevel, SettingChange, is_breaking

# A step within these factors of the investigated value is small enough to apply unattended.
LOW_RISK_MAX_FACTOR = 2.0
LOW_RISK_MIN_FACTOR = 0.75
_ORDER = [RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH]


@dataclass(frozen=True)
class RiskAssessment:
    level: RiskLevel
    reasons: tuple[str, ...]

    def evidence(self) -> Evidence:
        return Evidence(check="risk", passed=True, excerpt=f"risk {self.level.value}: " + "; ".join(self.reasons))


def _higher(a: RiskLevel, b: RiskLevel) -> RiskLevel:
    return max(a, b, key=_ORDER.index)


def _config_reasons(fix: Fix, investigation: Investigation | None) -> list[str]:
    reasons: list[str] = []
    values = investigation.values if investigation else {}
    for change in fix.changes:
        current = values.get(change.setting)
        if current is None:
            reasons.append(f"{change.setting}: the current value was not read, so the step size is unknown")
            continue
        step = SettingChange(setting=change.setting, before=current, after=float(change.proposed))
        if is_breaking([step]):
            reasons.append(f"{change.setting} {current:g} -> {change.proposed:g} lowers a limit")
        elif current == 0 or not LOW_RISK_MIN_FACTOR <= change.proposed / current <= LOW_RISK_MAX_FACTOR:
            reasons.append(
                f"{change.setting} {current:g} -> {change.proposed:g} is a step beyond "
                f"x{LOW_RISK_MIN_FACTOR:g}..x{LOW_RISK_MAX_FACTOR:g}"
            )
    return reasons


def assess(fix: Fix, investigation: Investigation | None) -> RiskAssessment:
    """max(the proposer's label, QA's own floor), with QA's reasons."""
    if fix.kind == "code":
        reasons = ["a code fix: the tests prove what they check, not everything the change does"]
    else:
        reasons = _config_reasons(fix, investigation)
    own = RiskLevel.MEDIUM if reasons else RiskLevel.LOW
    if not reasons:
        reasons = [f"every step within x{LOW_RISK_MIN_FACTOR:g}..x{LOW_RISK_MAX_FACTOR:g}, no limit lowered"]
    claimed = RiskLevel(fix.risk_level)
    level = _higher(own, claimed)
    reasons.append(f"QA's assessment {own.value}, the proposer's label {claimed.value}: recorded {level.value}")
    return RiskAssessment(level, tuple(reasons))
