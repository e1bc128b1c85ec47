"""CDK apps for the end-to-end tests.

`build_app_with_monitoring` is the real app. While the monitoring stack is not part of it
(stacks/monitoring_stack.py), it adds a minimal stand-in with the same kinds of resources the
local runtime must handle: a cost alarm on `TotalCost` (threshold from the
`costAlertThreshold` context) and a metric-math alarm notifying the alerts topic, and a
dashboard with graph, single-value, text and alarm-status widgets.
"""

from __future__ import annotations

from typing import Any

STANDIN_DASHBOARD = "Selfheal-LocalTest"


def build_app_with_monitoring(app: Any) -> dict[str, Any]:
    from stacks.app_builder import build_app

    stacks = build_app(app)
    if "monitoring" not in stacks:
        stacks["monitoring"] = _standin(app, stacks)
    return stacks


def _standin(app: Any, stacks: dict[str, Any]) -> Any:
    import aws_cdk as cdk
    from aws_cdk import Duration
    from aws_cdk import aws_cloudwatch as cw
    from aws_cdk import aws_cloudwatch_actions as actions

    from stacks.settings import DeploySettings

    settings = DeploySettings.from_context(app.node)
    env = settings.env_name
    data, pipeline = stacks["data"], stacks["pipeline"]
    stack = cdk.Stack(app, f"Selfheal-{env}-LocalMonitoringStandin")
    total_cost = cw.Metric(
        namespace="AgentOps/Costs",
        metric_name="TotalCost",
        dimensions_map={"environment": env},
        statistic="Sum",
        period=Duration.minutes(5),
        label="Total cost (USD)",
    )
    cost_alarm = cw.Alarm(
        stack,
        "CostAlarm",
        alarm_name=f"selfheal-{env}-total-cost",
        metric=total_cost,
        threshold=settings.cost_alert_threshold,
        evaluation_periods=1,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        alarm_description="Total agent cost over the threshold",
    )
    manager = pipeline.functions["manager"]
    error_rate = cw.MathExpression(
        expression="100 * errors / invocations",
        label="Manager error rate (%)",
        period=Duration.minutes(1),
        using_metrics={
            "errors": manager.metric_errors(statistic="Sum"),
            "invocations": manager.metric_invocations(statistic="Sum"),
        },
    )
    rate_alarm = cw.Alarm(
        stack,
        "ManagerErrorRate",
        alarm_name=f"selfheal-{env}-manager-error-rate",
        metric=error_rate,
        threshold=20,
        evaluation_periods=1,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
    )
    for alarm in (cost_alarm, rate_alarm):
        alarm.add_alarm_action(actions.SnsAction(data.alerts_topic))
    dashboard = cw.Dashboard(stack, "Dashboard", dashboard_name=STANDIN_DASHBOARD)
    dashboard.add_widgets(
        cw.TextWidget(markdown="# Selfheal local test\nCosts and errors of the agents.", width=24, height=2),
        cw.GraphWidget(
            title="Cost by agent",
            left=[
                cw.Metric(
                    namespace="AgentOps/Costs",
                    metric_name="TotalCost",
                    dimensions_map={"environment": env, "agent": a},
                    statistic="Sum",
                    period=Duration.minutes(1),
                    label=a,
                )
                for a in ("manager", "engineer", "qa")
            ],
            left_y_axis=cw.YAxisProps(label="USD", min=0),
            width=12,
            height=6,
        ),
        cw.GraphWidget(title="Manager error rate", left=[error_rate], width=12, height=6),
        cw.SingleValueWidget(
            title="Invocations",
            metrics=[f.metric_invocations(statistic="Sum") for f in pipeline.functions.values()],
            width=12,
            height=4,
        ),
        cw.AlarmStatusWidget(title="Alarms", alarms=[cost_alarm, rate_alarm], width=12, height=4),
    )
    return stack
