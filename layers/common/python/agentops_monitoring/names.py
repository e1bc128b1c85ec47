"""Every metric the code emits: namespaces, metric names and dimension names in one place.

Dashboards and alarms import these names; tests/infrastructure/test_dashboards_metrics.py
proves that every metric they reference is really emitted with the same namespace, name
and dimension names. Dimensions stay few and low-cardinality: never an incident id.
"""

from __future__ import annotations

# Namespaces
EVENTS = "AgentOps/Events"
COSTS = "AgentOps/Costs"
COLLABORATION = "AgentOps/Collaboration"
ANOMALIES_COLLABORATION = "AgentOps/Anomalies/Collaboration"
ANOMALIES_INCIDENTS = "AgentOps/Anomalies/Incidents"

# Dimension names
AGENT = "agent"
ENVIRONMENT = "environment"
FLOW = "flow"  # "manager->engineer"
MODEL = "model"
STATUS = "status"
MESSAGE_TYPE = "message_type"
TOKEN_TYPE = "token_type"  # noqa: S105 - input | output | cache_write | cache_read
ISOLATION_MODE = "isolation_mode"  # namespaces | microvm | none (the QA runner's)
OUTCOME = "outcome"  # billed | unlinked | duplicate | implausible | not_a_report; redriven | escalated | failed

# AgentOps/Events: one count per event type (the AgentEventType values), dims (agent, environment)
ISSUE_DETECTED = "issue_detected"
CODE_GENERATED = "code_generated"
TEST_PASSED = "test_passed"
TEST_FAILED = "test_failed"
DECISION_MADE = "decision_made"
EVENT_REJECTED = "event_rejected"
# AgentOps/Events, dims (environment, status)
INCIDENT_TRANSITIONS = "IncidentTransitions"  # agents: monitor.record_status() after each transition
OPEN_INCIDENTS = "OpenIncidents"  # gauge, published hourly by the analyzer
# AgentOps/Events, dims (environment, isolation_mode): one per QA runner invocation
QA_RUNS = "QaRunnerRuns"
# AgentOps/Events, dims (environment, outcome): incidents the sweeper re-drove, escalated or failed on
SWEPT_INCIDENTS = "SweptIncidents"

# AgentOps/Costs (USD, unit None)
LLM_COST = "LLMCost"  # dims (environment, agent) and (environment, model)
LAMBDA_COST = "LambdaExecutionCost"  # (environment, agent): the in-handler estimate (no init phase)
BILLED_LAMBDA_COST = "BilledLambdaCost"  # (environment, agent): from the platform's REPORT lines (billing.py)
BILLING_REPORTS = "BillingReports"  # (environment, outcome): REPORT lines the cost reconciler handled
EVENT_COST = "EventCost"  # (environment, agent): EventBridge, DynamoDB, SNS requests
TOTAL_COST = "TotalCost"  # (environment, agent) and (environment)
LLM_TOKENS = "LLMTokens"  # (environment, model, token_type)
UNPRICED_MODEL_CALLS = "UnpricedModelCalls"  # (environment, agent): priced by the fallback rule
RESOLVED_INCIDENT_COST = "ResolvedIncidentCost"  # (environment): one sample per resolved incident
BUDGET_USED_PERCENT = "LLMBudgetUsedPercent"  # (environment)
BUDGET_REFUSALS = "LLMBudgetRefusals"  # (environment)

# AgentOps/Collaboration
MESSAGE_COUNT = "MessageCount"  # (environment, flow)
AGENT_COMMUNICATION = "AgentCommunication"  # (environment, message_type)

# AgentOps/Anomalies/* (published hourly by the analyzer, dims (environment))
FLOW_ANOMALIES = "FlowAnomalies"
REJECTION_LOOPS = "RejectionLoops"
DUPLICATE_STORMS = "DuplicateStorms"


def flow(from_agent: str, to_agent: str) -> str:
    return f"{from_agent}->{to_agent}"
