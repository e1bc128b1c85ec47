"""What the agents' logic calls on the monitor, as Protocols.

agentops_monitoring.AgentOpsMonitor provides them. They live here, not beside the monitor,
because agentops_monitoring imports selfheal_core (the other way round would be a circle),
and so logic.py and the edge depend on the calls they make, not on the class.
"""

from __future__ import annotations

from typing import Any, Protocol


class EventRecorder(Protocol):
    """What the edge needs to count a refused event."""

    def record_event(self, event_type: str, data: dict[str, Any] | None = None) -> dict[str, Any]: ...


class Monitor(EventRecorder, Protocol):
    """An agent's record of what it decided and what it spent, attributed to the bound incident."""

    def bind(self, *, incident_id: str | None = None, correlation_id: str | None = None) -> None: ...

    def record_decision(
        self,
        decision_type: str,
        reasoning_chain: list[dict[str, Any]],
        inputs: Any,
        outputs: Any,
        confidence_score: float,
        *,
        model: str | None = None,
        cost_usd: float | None = None,
        once: str | None = None,
    ) -> dict[str, Any]: ...

    def decision_item(
        self,
        decision_type: str,
        reasoning_chain: list[dict[str, Any]],
        inputs: Any,
        outputs: Any,
        confidence_score: float,
        *,
        once: str | None = None,
    ) -> dict[str, Any]: ...

    def recorded(self, once: str) -> bool: ...

    def count_decision(self) -> None: ...

    def held_for(self, context: Any) -> tuple[list[dict[str, Any]], float]: ...

    def settled(self) -> None: ...

    def hold(self, operation: dict[str, Any]) -> None: ...

    def track_llm_usage(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_creation_input_tokens: int = 0,
        cache_read_input_tokens: int = 0,
    ) -> float: ...

    def record_sweep(self, outcome: str) -> None: ...

    def price_call(self, usage: Any) -> float: ...

    def budget_guard(self) -> Any: ...
