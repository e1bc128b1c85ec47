"""Widget helpers shared by the three dashboards and the alarms.

Metric names, namespaces and dimension names come from agentops_monitoring.names, the
module the runtime code emits with; tests/infrastructure/test_dashboards_metrics.py checks
every reference against real EMF output.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs

from agentops_monitoring import names

DEFAULT_ENVIRONMENT = "dev"
FIVE_MINUTES = Duration.minutes(5)
ONE_HOUR = Duration.hours(1)
ONE_DAY = Duration.days(1)


def dashboard_name(base: str, env_name: str) -> str:
    """The documented names for the default environment; other environments get a suffix (names are per account)."""
    return base if env_name == DEFAULT_ENVIRONMENT else f"{base}-{env_name}"


def metric(
    namespace: str,
    name: str,
    dimensions: dict[str, str],
    *,
    statistic: str = "Sum",
    period: Duration = FIVE_MINUTES,
    label: str | None = None,
) -> cw.Metric:
    return cw.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=period,
        label=label,
    )


def search(
    namespace: str,
    dimension_names: list[str],
    name: str,
    env_name: str,
    *,
    statistic: str = "Sum",
    period: Duration = FIVE_MINUTES,
    label: str = "",
) -> cw.MathExpression:
    """Every series of `name` with exactly these dimensions in this environment (one line per value)."""
    schema = ",".join([namespace, *sorted(dimension_names)])
    query = f'{{{schema}}} MetricName="{name}" {names.ENVIRONMENT}="{env_name}"'
    return cw.MathExpression(
        expression=f"SEARCH('{query}', '{statistic}', {int(period.to_seconds())})",
        using_metrics={},
        label=label,
        period=period,
    )


def graph(
    title: str,
    left: Sequence[cw.IMetric],
    *,
    right: Sequence[cw.IMetric] | None = None,
    width: int = 8,
    stacked: bool = False,
    left_annotations: list[cw.HorizontalAnnotation] | None = None,
    left_label: str | None = None,
) -> cw.GraphWidget:
    return cw.GraphWidget(
        title=title,
        left=left,
        right=right or [],
        width=width,
        height=6,
        stacked=stacked,
        left_annotations=left_annotations,
        left_y_axis=cw.YAxisProps(label=left_label, show_units=False) if left_label else None,
    )


def heading(markdown: str) -> cw.TextWidget:
    return cw.TextWidget(markdown=markdown, width=24, height=2)


def lambda_metrics(
    functions: dict[str, lambda_.IFunction],
    metric_name: str,
    *,
    statistic: str = "Sum",
    period: Duration = FIVE_MINUTES,
) -> list[cw.IMetric]:
    return [fn.metric(metric_name, statistic=statistic, period=period, label=agent) for agent, fn in functions.items()]


def queue_depth(queues: list[sqs.IQueue]) -> list[cw.IMetric]:
    return [
        q.metric_approximate_number_of_messages_visible(statistic="Maximum", period=FIVE_MINUTES, label=queue_label(q))
        for q in queues
    ]


def queue_label(queue: sqs.IQueue) -> str:
    """`ManagerAgent/OnFailure` rather than a bare `OnFailure`: say whose queue it is."""
    parent = queue.node.scope
    return queue.node.id if parent is None or parent.node.id == "Routes" else f"{parent.node.id}/{queue.node.id}"


def failed_invocations(rule: events.IRule, event_bus: events.IEventBus) -> cw.Metric:
    """AWS/Events FailedInvocations of one of our rules.

    Rules on a custom bus are measured with (EventBusName, RuleName); their `Ref` (CDK's
    ruleName) is "<bus>|<rule>", so the rule name is its second half. Default-bus rules: RuleName.
    """
    cfn = rule.node.default_child
    bus = getattr(cfn, "event_bus_name", None)
    if bus in (None, "default"):
        dimensions = {"RuleName": rule.rule_name}
    else:
        dimensions = {
            "EventBusName": event_bus.event_bus_name,
            "RuleName": cdk.Fn.select(1, cdk.Fn.split("|", rule.rule_name)),
        }
    return cw.Metric(
        namespace="AWS/Events",
        metric_name="FailedInvocations",
        dimensions_map=dimensions,
        statistic="Sum",
        period=FIVE_MINUTES,
        label=rule.node.id,
    )
