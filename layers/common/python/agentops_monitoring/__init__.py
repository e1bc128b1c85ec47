"""AgentOps-style monitoring for the Selfheal agents: records, costs, budget, EMF metrics, traces.

Importing this package never imports the `agentops` SDK; see tracing.py.
"""

from .budget import BudgetGuard, BudgetStatus, Reservation, notify_budget_paused
from .costs import LlmCost, PriceTable, load_price_table
from .monitor import AgentEventType, AgentOpsMonitor
from .store import timeline

__all__ = [
    "AgentEventType",
    "AgentOpsMonitor",
    "BudgetGuard",
    "BudgetStatus",
    "LlmCost",
    "PriceTable",
    "Reservation",
    "load_price_table",
    "notify_budget_paused",
    "timeline",
]
