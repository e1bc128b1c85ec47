"""The hourly analysis: anomaly and incident gauges as EMF, opportunities in the log."""

from __future__ import annotations

from typing import Any

from agentops_monitoring import names
from agentops_monitoring.analyzer import AgentOpsAnalyzer
from agentops_monitoring.emf import MetricSink

# Opportunities need a longer history than one hour to mean anything.
OPPORTUNITY_WINDOW_HOURS = 7 * 24


def run_hourly(analyzer: AgentOpsAnalyzer, sink: MetricSink, environment: str) -> dict[str, Any]:
    collaboration = analyzer.analyze_collaboration_patterns(time_window_hours=1)
    storms = analyzer.duplicate_storms(time_window_hours=24)
    open_by_status = analyzer.open_incidents_by_status()
    opportunities = analyzer.identify_optimization_opportunities(OPPORTUNITY_WINDOW_HOURS)

    env = {names.ENVIRONMENT: environment}
    # Zeros are published too: alarms and dashboards then see "nothing wrong", not "no data".
    sink.add(names.ANOMALIES_COLLABORATION, names.FLOW_ANOMALIES, len(collaboration["anomalies"]), dimensions=[env])
    sink.add(
        names.ANOMALIES_COLLABORATION, names.REJECTION_LOOPS, len(collaboration["rejection_loops"]), dimensions=[env]
    )
    sink.add(names.ANOMALIES_INCIDENTS, names.DUPLICATE_STORMS, len(storms), dimensions=[env])
    for status, count in open_by_status.items():
        sink.add(names.EVENTS, names.OPEN_INCIDENTS, count, dimensions=[{**env, names.STATUS: status}])
    sink.flush()
    return {
        "flow_anomalies": collaboration["anomalies"],
        "rejection_loops": collaboration["rejection_loops"],
        "most_active_flow": collaboration["most_active_flow"],
        "duplicate_storms": [s["incident_id"] for s in storms],
        "open_incidents": open_by_status,
        "opportunities": opportunities,
    }
