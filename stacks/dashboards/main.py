"""AgentOps-Monitoring: health, activity, effectiveness, errors, DLQ depth, incidents by status."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from agentops_monitoring import names as n

from .common import (
    ONE_HOUR,
    dashboard_name,
    failed_invocations,
    graph,
    heading,
    lambda_metrics,
    metric,
    queue_depth,
    search,
)

BASE_NAME = "AgentOps-Monitoring"
AGENT_DIMS = [n.AGENT, n.ENVIRONMENT]


def success_rate(env_name: str, *, period=ONE_HOUR) -> cw.MathExpression:
    """QA pass rate in %, 100 when nothing was tested (so "no tests" never reads as "all failed")."""
    qa = {n.AGENT: "qa", n.ENVIRONMENT: env_name}
    return cw.MathExpression(
        expression="100 * (1 - FILL(failed, 0) / (FILL(passed, 0) + FILL(failed, 0) + 0.000001))",
        using_metrics={
            "passed": metric(n.EVENTS, n.TEST_PASSED, qa, period=period),
            "failed": metric(n.EVENTS, n.TEST_FAILED, qa, period=period),
        },
        label="Fix success rate (%)",
        period=period,
    )


def build(
    scope: Construct,
    construct_id: str,
    *,
    env_name: str,
    functions: dict[str, lambda_.IFunction],
    dead_letter_queues: list[sqs.IQueue],
    rules: list[events.IRule],
    event_bus: events.IEventBus,
) -> cw.Dashboard:
    qa = {n.AGENT: "qa", n.ENVIRONMENT: env_name}
    dashboard = cw.Dashboard(scope, construct_id, dashboard_name=dashboard_name(BASE_NAME, env_name))
    dashboard.add_widgets(
        heading(
            f"# Selfheal `{env_name}`: health and effectiveness\n"
            "Agents (Lambda), what they do (AgentOps/Events), whether fixes pass QA, and where work is stuck."
        )
    )
    dashboard.add_widgets(
        graph("Health: invocations", lambda_metrics(functions, "Invocations")),
        graph("Health: errors", lambda_metrics(functions, "Errors")),
        graph("Health: duration p95 (ms)", lambda_metrics(functions, "Duration", statistic="p95")),
    )
    dashboard.add_widgets(
        graph(
            "Activity: issues, fixes and decisions by agent",
            [
                search(n.EVENTS, AGENT_DIMS, n.ISSUE_DETECTED, env_name, label="issues detected"),
                search(n.EVENTS, AGENT_DIMS, n.CODE_GENERATED, env_name, label="fixes generated"),
                search(n.EVENTS, AGENT_DIMS, n.DECISION_MADE, env_name, label="decisions"),
            ],
            width=12,
        ),
        graph("Activity: throttles", lambda_metrics(functions, "Throttles"), width=12),
    )
    dashboard.add_widgets(
        graph(
            "Effectiveness: QA verdicts",
            [
                metric(n.EVENTS, n.TEST_PASSED, qa, label="passed"),
                metric(n.EVENTS, n.TEST_FAILED, qa, label="failed"),
            ],
            stacked=True,
        ),
        graph(
            "Effectiveness: fix success rate (%)",
            [success_rate(env_name)],
            left_annotations=[cw.HorizontalAnnotation(value=80, label="alarm below 80 %")],
        ),
        graph(
            "Incident status transitions",
            [search(n.EVENTS, [n.STATUS, n.ENVIRONMENT], n.INCIDENT_TRANSITIONS, env_name)],
            stacked=True,
        ),
    )
    dashboard.add_widgets(
        graph(
            "Open incidents by status (hourly)",
            [
                search(
                    n.EVENTS,
                    [n.STATUS, n.ENVIRONMENT],
                    n.OPEN_INCIDENTS,
                    env_name,
                    statistic="Maximum",
                    period=ONE_HOUR,
                )
            ],
            stacked=True,
            width=12,
        ),
        graph("Errors: rejected events", [search(n.EVENTS, AGENT_DIMS, n.EVENT_REJECTED, env_name)], width=12),
    )
    dashboard.add_widgets(
        graph("Errors: EventBridge failed invocations", [failed_invocations(r, event_bus) for r in rules], width=12),
        graph("Dead-letter queue depth", queue_depth(dead_letter_queues), width=12),
    )
    return dashboard
