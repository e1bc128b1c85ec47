"""AgentOps-Monitoring-Collaboration: message flows, retries, rejection loops and anomalies."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from agentops_monitoring import names as n

from .common import ONE_HOUR, dashboard_name, graph, heading, metric, search

BASE_NAME = "AgentOps-Monitoring-Collaboration"


def build(scope: Construct, construct_id: str, *, env_name: str) -> cw.Dashboard:
    env = {n.ENVIRONMENT: env_name}
    dashboard = cw.Dashboard(scope, construct_id, dashboard_name=dashboard_name(BASE_NAME, env_name))
    dashboard.add_widgets(
        heading(
            f"# Selfheal `{env_name}`: how the agents work together\n"
            "Messages per flow (from->to) and type; QA rejections are the retry loop; anomalies come from the hourly "
            "analyzer, judged against each flow's own baseline."
        )
    )
    dashboard.add_widgets(
        graph(
            "Message flows (from->to)",
            [search(n.COLLABORATION, [n.FLOW, n.ENVIRONMENT], n.MESSAGE_COUNT, env_name)],
            stacked=True,
            width=12,
        ),
        graph(
            "Messages by type",
            [search(n.COLLABORATION, [n.MESSAGE_TYPE, n.ENVIRONMENT], n.AGENT_COMMUNICATION, env_name)],
            stacked=True,
            width=12,
        ),
    )
    dashboard.add_widgets(
        graph(
            "Retries: QA rejections sent back to the Engineer",
            [
                metric(
                    n.COLLABORATION, n.MESSAGE_COUNT, {**env, n.FLOW: n.flow("qa", "engineer")}, label="qa->engineer"
                ),
                metric(
                    n.COLLABORATION, n.AGENT_COMMUNICATION, {**env, n.MESSAGE_TYPE: "FixRejected"}, label="FixRejected"
                ),
            ],
        ),
        graph(
            "Rejection loops (incidents rejected repeatedly, hourly)",
            [metric(n.ANOMALIES_COLLABORATION, n.REJECTION_LOOPS, env, statistic="Maximum", period=ONE_HOUR)],
        ),
        graph(
            "Anomalies (hourly)",
            [
                metric(
                    n.ANOMALIES_COLLABORATION,
                    n.FLOW_ANOMALIES,
                    env,
                    statistic="Maximum",
                    period=ONE_HOUR,
                    label="flow spikes vs baseline",
                ),
                metric(
                    n.ANOMALIES_INCIDENTS,
                    n.DUPLICATE_STORMS,
                    env,
                    statistic="Maximum",
                    period=ONE_HOUR,
                    label="duplicate storms",
                ),
            ],
        ),
    )
    return dashboard
