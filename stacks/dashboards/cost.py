"""AgentOps-Monitoring-Cost: cost by agent, model and kind, per resolved incident, and the LLM budget."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from agentops_monitoring import names as n

from .common import ONE_DAY, ONE_HOUR, dashboard_name, graph, heading, metric, search

BASE_NAME = "AgentOps-Monitoring-Cost"
AGENT_DIMS = [n.AGENT, n.ENVIRONMENT]


def total_cost(env_name: str, period=ONE_DAY) -> cw.Metric:
    return metric(n.COSTS, n.TOTAL_COST, {n.ENVIRONMENT: env_name}, period=period, label="total (USD)")


def build(scope: Construct, construct_id: str, *, env_name: str, cost_alert_threshold: float) -> cw.Dashboard:
    env = {n.ENVIRONMENT: env_name}
    dashboard = cw.Dashboard(scope, construct_id, dashboard_name=dashboard_name(BASE_NAME, env_name))
    dashboard.add_widgets(
        heading(
            f"# Selfheal `{env_name}`: what it costs\n"
            "Our own figures (AgentOps/Costs, priced from prices.json incl. prompt-cache tokens) drive these widgets, "
            "the cost alarm and the LLM budget. Lambda cost is estimated in the handler, then replaced by the billed "
            "figure from each invocation's REPORT line (Billed Duration x Memory Size, init phase included)."
        )
    )
    dashboard.add_widgets(
        cw.SingleValueWidget(
            title="Cost today (USD)", metrics=[total_cost(env_name)], width=6, height=4, full_precision=True
        ),
        cw.SingleValueWidget(
            title="LLM budget used today (%)",
            width=6,
            height=4,
            metrics=[metric(n.COSTS, n.BUDGET_USED_PERCENT, env, statistic="Maximum", period=ONE_DAY)],
        ),
        cw.SingleValueWidget(
            title="Mean cost per resolved incident (USD)",
            width=6,
            height=4,
            full_precision=True,
            metrics=[metric(n.COSTS, n.RESOLVED_INCIDENT_COST, env, statistic="Average", period=ONE_DAY)],
        ),
        cw.SingleValueWidget(
            title="LLM calls refused by the budget today",
            width=6,
            height=4,
            metrics=[metric(n.COSTS, n.BUDGET_REFUSALS, env, period=ONE_DAY)],
        ),
    )
    dashboard.add_widgets(
        graph(
            "Daily cost vs alert threshold (USD)",
            [total_cost(env_name)],
            left_label="USD",
            left_annotations=[cw.HorizontalAnnotation(value=cost_alert_threshold, label="costAlertThreshold")],
        ),
        graph(
            "Cost by agent (USD/hour)",
            [search(n.COSTS, AGENT_DIMS, n.TOTAL_COST, env_name, period=ONE_HOUR)],
            stacked=True,
            left_label="USD",
        ),
        graph(
            "LLM cost by model (USD/hour)",
            [search(n.COSTS, [n.MODEL, n.ENVIRONMENT], n.LLM_COST, env_name, period=ONE_HOUR)],
            stacked=True,
            left_label="USD",
        ),
    )
    by_kind = [
        cw.MathExpression(
            expression=f"SUM({search(n.COSTS, AGENT_DIMS, name, env_name, period=ONE_HOUR).expression})",
            using_metrics={},
            label=label,
            period=ONE_HOUR,
        )
        for name, label in ((n.LLM_COST, "LLM"), (n.LAMBDA_COST, "Lambda"), (n.EVENT_COST, "events & requests"))
    ]
    dashboard.add_widgets(
        graph("Cost by kind (USD/hour)", by_kind, stacked=True, left_label="USD"),
        graph(
            "Cost per resolved incident (USD)",
            [
                metric(n.COSTS, n.RESOLVED_INCIDENT_COST, env, statistic="Average", period=ONE_HOUR, label="mean"),
                metric(n.COSTS, n.RESOLVED_INCIDENT_COST, env, statistic="Maximum", period=ONE_HOUR, label="max"),
            ],
            left_label="USD",
        ),
        graph(
            "LLM budget",
            [metric(n.COSTS, n.BUDGET_USED_PERCENT, env, statistic="Maximum", label="used %")],
            right=[metric(n.COSTS, n.BUDGET_REFUSALS, env, label="refused calls")],
            left_annotations=[cw.HorizontalAnnotation(value=100, label="daily limit")],
        ),
    )
    # The in-handler estimate misses the init phase; the billed figure comes from the REPORT lines.
    lambda_cost = [
        cw.MathExpression(
            expression=f"SUM({search(n.COSTS, AGENT_DIMS, name, env_name, period=ONE_HOUR).expression})",
            using_metrics={},
            label=label,
            period=ONE_HOUR,
        )
        for name, label in (
            (n.LAMBDA_COST, "estimated in the handler"),
            (n.BILLED_LAMBDA_COST, "billed (REPORT lines)"),
        )
    ]
    dashboard.add_widgets(
        graph("Lambda cost: estimated vs billed (USD/hour)", lambda_cost, left_label="USD", width=12),
        graph(
            "REPORT lines reconciled, by outcome",
            [search(n.COSTS, [n.OUTCOME, n.ENVIRONMENT], n.BILLING_REPORTS, env_name, period=ONE_HOUR)],
            stacked=True,
            width=12,
        ),
    )
    dashboard.add_widgets(
        graph(
            "Tokens by model and type (prompt caching share)",
            [search(n.COSTS, [n.MODEL, n.TOKEN_TYPE, n.ENVIRONMENT], n.LLM_TOKENS, env_name, period=ONE_HOUR)],
            stacked=True,
            width=16,
        ),
        graph(
            "Calls priced by the fallback rule (unknown model)",
            [search(n.COSTS, AGENT_DIMS, n.UNPRICED_MODEL_CALLS, env_name)],
        ),
    )
    return dashboard
