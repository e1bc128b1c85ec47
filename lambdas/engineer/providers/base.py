"""The Engineer's provider port: every way of writing a fix implements `FixProvider`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from selfheal_core.events import Fix, Investigation, IssueReportedV1


@dataclass(frozen=True)
class FixRequest:
    incident_id: str
    correlation_id: str
    attempt: int
    issue: IssueReportedV1
    # Source under repair, resolved from the claim check when the issue carried code.
    code_files: dict[str, str] = field(default_factory=dict)
    test_command: str | None = None
    # QA evidence from earlier attempts, oldest first (untrusted text).
    feedback: list[str] = field(default_factory=list)
    # What the Manager read about the target (current values, gaps); None when nothing was read.
    investigation: Investigation | None = None


@dataclass(frozen=True)
class LlmUsage:
    """One model call's `usage`, exactly as the API reported it (the reserved worst case when what it reported was implausible)."""

    model: str
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@dataclass
class ProviderResult:
    fix: Fix
    usage: list[LlmUsage] = field(default_factory=list)
    # Steps the decision's reasoning chain should show (thought, action, observation).
    reasoning: list[dict[str, str]] = field(default_factory=list)
    confidence: float = 0.5


class ProviderError(RuntimeError):
    """The provider could not produce a valid fix; `category` matches RemediationFailed."""

    def __init__(self, reason: str, category: str = "provider_error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category


class BudgetRefused(ProviderError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason, category="budget")


class Reservation(Protocol):
    def reconcile(self, actual_cost_usd: float) -> None: ...


class BudgetGuard(Protocol):
    """Reserve a call's maximum cost before it is made; `None` means refused (no call)."""

    def reserve(self, max_cost_usd: float, *, model: str) -> Reservation | None: ...


class FixProvider(Protocol):
    name: str

    def propose(self, request: FixRequest) -> ProviderResult: ...


class ProviderMonitor(Protocol):
    """What choosing a provider takes from the monitor: the day's budget and a call's price."""

    def budget_guard(self) -> BudgetGuard: ...

    def price_call(self, usage: LlmUsage) -> float: ...
