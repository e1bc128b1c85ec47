"""Dashboards, alarms to the alerts topic, and the hourly analyzer (docs/architecture.md, "Monitoring and cost")."""

from __future__ import annotations

import re
from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from agentops_monitoring import names as n

from . import constants
from .constructs.agent_function import AgentFunction, dead_letter_queue
from .constructs.billed_cost import BilledLambdaCost
from .dashboards import collaboration, cost, main
from .dashboards.common import FIVE_MINUTES, ONE_DAY, ONE_HOUR, failed_invocations, metric

ANALYZER_RATE = Duration.hours(1)
TEST_FAILURES_IN_5_MIN = 5
MIN_SUCCESS_RATE_PCT = 80


class MonitoringStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        functions: dict[str, lambda_.IFunction],
        helper_functions: dict[str, lambda_.IFunction],
        dead_letter_queues: list[sqs.IQueue],
        event_bus: events.IEventBus,
        rules: list[events.IRule],
        alerts_topic: sns.ITopic,
        cost_alert_threshold: float,
        layer: lambda_.ILayerVersion,
        analyzer_environment: dict[str, str],
        decisions_table: dynamodb.ITable,
        monitoring_table: dynamodb.ITable,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.env_name = env_name
        self.alerts_topic = alerts_topic
        self.analyzer = self._build_analyzer(layer, analyzer_environment, decisions_table, monitoring_table)
        self.schedule_dlq = dead_letter_queue(self, "AnalyzerScheduleDlq", f"selfheal-{env_name}-analyzer-schedule-dlq")
        self.schedule = self._build_schedule()

        self.billed_cost = BilledLambdaCost(
            self,
            "BilledLambdaCost",
            env_name=env_name,
            agents=sorted(functions),
            layer=layer,
            decisions_table=decisions_table,
            monitoring_table=monitoring_table,
            parameter_prefix=constants.parameter_prefix(env_name),
        )

        # Our own resources are watched like the agents' ones.
        all_functions = {
            **functions,
            **helper_functions,
            "analyzer": self.analyzer.function,
            "billing": self.billed_cost.reconciler.function,
        }
        all_queues = [
            *dead_letter_queues,
            self.schedule_dlq,
            self.analyzer.failures,
            self.billed_cost.reconciler.failures,
        ]
        all_rules = [*rules, self.schedule]
        self.dashboards = {
            "Monitoring": main.build(
                self,
                "MainDashboard",
                env_name=env_name,
                functions=all_functions,
                dead_letter_queues=all_queues,
                rules=all_rules,
                event_bus=event_bus,
            ),
            "Cost": cost.build(self, "CostDashboard", env_name=env_name, cost_alert_threshold=cost_alert_threshold),
            "Collaboration": collaboration.build(self, "CollaborationDashboard", env_name=env_name),
        }
        self.alarms: list[cw.Alarm] = []
        self._build_pipeline_alarms(cost_alert_threshold)
        self._build_operational_alarms(all_functions, all_queues, all_rules, event_bus)
        for key, dashboard in self.dashboards.items():
            CfnOutput(
                self,
                f"{key}DashboardUrl",
                value=(
                    f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
                    f"#dashboards/dashboard/{dashboard.dashboard_name}"
                ),
            )

    # ------------------------------------------------------------------ analyzer
    def _build_analyzer(
        self,
        layer: lambda_.ILayerVersion,
        environment: dict[str, str],
        decisions_table: dynamodb.ITable,
        monitoring_table: dynamodb.ITable,
    ) -> AgentFunction:
        analyzer = AgentFunction(
            self,
            "Analyzer",
            env_name=self.env_name,
            agent="analyzer",
            layers=[layer],
            environment=environment,
            timeout=Duration.minutes(2),
            memory_size=512,
            description="Hourly: collaboration anomalies, open incidents, optimization opportunities",
        )
        # Read-only, and only the two tables and their indexes: Query (GSIs) and BatchGetItem (incident items).
        for table in (decisions_table, monitoring_table):
            analyzer.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["dynamodb:Query", "dynamodb:BatchGetItem"],
                    resources=[table.table_arn, f"{table.table_arn}/index/gsi1", f"{table.table_arn}/index/gsi2"],
                )
            )
        return analyzer

    def _build_schedule(self) -> events.Rule:
        return events.Rule(
            self,
            "AnalyzerSchedule",
            description="Runs the AgentOps analyzer every hour",
            schedule=events.Schedule.rate(ANALYZER_RATE),
            targets=[
                targets.LambdaFunction(
                    self.analyzer.function,
                    dead_letter_queue=self.schedule_dlq,
                    retry_attempts=constants.TARGET_RETRY_ATTEMPTS,
                    max_event_age=constants.TARGET_MAX_EVENT_AGE,
                )
            ],
        )

    # ------------------------------------------------------------------ alarms
    def _alarm(
        self,
        name: str,
        description: str,
        metric_: cw.IMetric,
        *,
        threshold: float,
        comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
    ) -> cw.Alarm:
        # The prefix keeps the Manager from treating our own alarms as incidents (no feedback loop).
        alarm = cw.Alarm(
            self,
            f"{re.sub(r'[^A-Za-z0-9]', '', name.title())}Alarm",
            alarm_name=f"{constants.ALARM_PREFIX}{self.env_name}-{name}"[:255],
            alarm_description=description,
            metric=metric_,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=comparison,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(self.alerts_topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms.append(alarm)
        return alarm

    def _build_pipeline_alarms(self, cost_alert_threshold: float) -> None:
        env = {n.ENVIRONMENT: self.env_name}
        qa = {**env, n.AGENT: "qa"}
        self._alarm(
            "total-cost",
            f"Selfheal spent more than ${cost_alert_threshold:g} today (LLM + Lambda + requests).",
            metric(n.COSTS, n.TOTAL_COST, env, period=ONE_DAY),
            threshold=cost_alert_threshold,
        )
        self._alarm(
            "test-failures",
            f"More than {TEST_FAILURES_IN_5_MIN} fixes failed QA within 5 minutes.",
            metric(n.EVENTS, n.TEST_FAILED, qa, period=FIVE_MINUTES),
            threshold=TEST_FAILURES_IN_5_MIN,
        )
        self._alarm(
            "success-rate",
            f"Fewer than {MIN_SUCCESS_RATE_PCT} % of the fixes tested in the last hour passed QA.",
            main.success_rate(self.env_name),
            threshold=MIN_SUCCESS_RATE_PCT,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
        )
        anomalies = cw.MathExpression(
            expression="FILL(flows, 0) + FILL(loops, 0)",
            using_metrics={
                "flows": metric(n.ANOMALIES_COLLABORATION, n.FLOW_ANOMALIES, env, statistic="Maximum", period=ONE_HOUR),
                "loops": metric(
                    n.ANOMALIES_COLLABORATION, n.REJECTION_LOOPS, env, statistic="Maximum", period=ONE_HOUR
                ),
            },
            label="collaboration anomalies",
            period=ONE_HOUR,
        )
        self._alarm(
            "collaboration-anomalies",
            "The analyzer found a message-flow spike against its baseline, or an incident rejected again and again.",
            anomalies,
            threshold=1,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )

    def _build_operational_alarms(
        self,
        functions: dict[str, lambda_.IFunction],
        queues: list[sqs.IQueue],
        rules: list[events.IRule],
        event_bus: events.IEventBus,
    ) -> None:
        for agent, function in functions.items():
            self._alarm(
                f"{agent}-errors",
                f"The {agent} function failed (see its log group).",
                function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                threshold=0,
            )
        for queue in queues:
            self._alarm(
                f"dlq-{_slug(queue)}",
                "Messages are waiting in a dead-letter queue: read and redrive them.",
                queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
                threshold=0,
            )
        for rule in rules:
            self._alarm(
                f"failed-invocations-{_slug(rule)}",
                "EventBridge could not deliver events to a target.",
                failed_invocations(rule, event_bus),
                threshold=0,
            )


def _slug(construct: IConstruct) -> str:
    """A stable, readable alarm-name part from the construct path below its stack."""
    parts = construct.node.path.split("/")[1:]
    return "-".join(p for p in parts if p not in ("Resource", "Default")).lower()
