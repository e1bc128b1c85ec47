"""Deterministic remediations for known failure signatures: the offline default and budget fallback.

Each issue type maps to a configuration change with its rationale and risk level. The
current value is the one the Manager's investigation read from the target function; with no
such reading the runbook proposes nothing and says which reading is missing (a change relative
to an assumed value could shrink a limit it meant to raise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from selfheal_core.events import MAX_STEP_UP, ConfigChange, Fix, IssueReportedV1, IssueType, RiskLevel, Setting

from .base import FixRequest, ProviderError, ProviderResult

MEMORY_CEILING_MB = 3008.0


@dataclass(frozen=True)
class Runbook:
    setting: Setting
    compute: Callable[[float], float]
    risk: RiskLevel
    rationale: str


# A floor (10 s, 10 executions) lifts small values faster, never past one step QA allows.
RUNBOOKS: dict[str, Runbook] = {
    IssueType.HIGH_ERROR_RATE.value: Runbook(
        "timeout_s",
        lambda cur: min(max(cur * 2, 10.0), cur * MAX_STEP_UP, 900.0),
        RiskLevel.LOW,
        "Error bursts on Lambda are most often time-outs under load; doubling the timeout (at least 10 s) "
        "lets slow dependencies finish instead of failing the invocation.",
    ),
    IssueType.LATENCY.value: Runbook(
        "memory_mb",
        lambda cur: min(cur * 2, MEMORY_CEILING_MB),
        RiskLevel.MEDIUM,
        "Lambda CPU scales with memory; doubling memory cuts compute-bound latency roughly in half.",
    ),
    IssueType.THROTTLING.value: Runbook(
        "reserved_concurrency",
        lambda cur: min(max(cur * 2, 10.0), cur * MAX_STEP_UP, 1000.0),
        RiskLevel.MEDIUM,
        "Throttles mean demand exceeds reserved concurrency; doubling the reservation absorbs the burst.",
    ),
    IssueType.MEMORY.value: Runbook(
        "memory_mb",
        lambda cur: min(cur * 2, MEMORY_CEILING_MB),
        RiskLevel.LOW,
        "Memory pressure (near the limit or out-of-memory kills) is relieved by doubling the memory size.",
    ),
}


class RunbookProvider:
    name = "runbook"

    def supports(self, issue: IssueReportedV1) -> bool:
        return issue.code is None and issue.issue_type in RUNBOOKS

    def propose(self, request: FixRequest) -> ProviderResult:
        issue = request.issue
        if issue.code is not None:
            raise ProviderError(
                "the runbook provider writes configuration changes only; code fixes need the anthropic provider",
                "unsupported",
            )
        runbook = RUNBOOKS.get(issue.issue_type)
        if runbook is None:
            raise ProviderError(f"no runbook for issue type {issue.issue_type!r}", "unsupported")
        inv = request.investigation
        if inv is None or inv.target is None:
            why = "; ".join(inv.gaps) if inv else "the Manager did not investigate the target"
            raise ProviderError(f"no {runbook.setting} change without reading the target first: {why}", "unsupported")
        if runbook.setting not in inv.values:
            raise ProviderError(f"no {runbook.setting} change: {inv.gap_for(runbook.setting)}", "unsupported")
        current = float(inv.values[runbook.setting])
        # Each retry after a QA rejection takes a more conservative step (halfway to the proposal).
        proposed = runbook.compute(current)
        for _ in range(request.attempt - 1):
            proposed = round(current + (proposed - current) / 2, 0)
        change = ConfigChange(setting=runbook.setting, target=inv.target, current=current, proposed=proposed)
        rationale = runbook.rationale + f" Current value {current:g}, read from {inv.target} at {inv.read_at}."
        fix = Fix(kind="config", provider=self.name, rationale=rationale, risk_level=runbook.risk, changes=[change])
        reasoning = [
            {
                "thought": f"Known signature: {issue.issue_type} on {issue.service} (function {inv.target})",
                "action": f"apply runbook: {runbook.setting} {current:g} -> {proposed:g}",
                "observation": f"risk {runbook.risk.value}; attempt {request.attempt}",
            }
        ]
        return ProviderResult(fix=fix, reasoning=reasoning, confidence=0.8 if runbook.risk is RiskLevel.LOW else 0.65)
