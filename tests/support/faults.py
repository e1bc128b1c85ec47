"""What tests kill agents with, and the report they drive through the chain."""

from __future__ import annotations

from typing import Any


class Killed(RuntimeError):
    """The function died (a timeout, out of memory, a kill) at this point."""


def latency_issue() -> dict[str, Any]:
    return {
        "service": "orders-api",
        "issue_type": "latency",
        "severity": "high",
        "summary": "p95 is 4 s",
        "signals": {"p95_ms": 4000.0, "timeout_s": 3.0},
    }
