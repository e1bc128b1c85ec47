"""Routing: every detail-type has a rule; every target has a retry policy and a dead-letter queue."""

from __future__ import annotations

from collections.abc import Mapping

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces.aws_events import IRuleRef
from constructs import Construct

from selfheal_core.catalog import (
    AGENT_ROUTES,
    NOTIFY_DETAIL_TYPES,
    NOTIFY_SOURCES,
    PIPELINE_SOURCE_PREFIX,
    PRODUCER_DETAIL_TYPES,
    UNROUTED_RULE_ID,
)

from .. import constants
from .agent_function import dead_letter_queue

# The route table (AGENT_ROUTES) is data shared with the agents (recipients, contract sources): it lives
# in the catalog; this construct turns it into rules.


@jsii.implements(events.IRuleTarget)
class LogGroupTarget:
    """Log group target with retry policy and DLQ, without the L2 target's custom resource."""

    def __init__(self, log_group: logs.ILogGroup, dead_letter_queue: sqs.IQueue) -> None:
        self.log_group = log_group
        self.dead_letter_queue = dead_letter_queue

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:  # noqa: ARG002 - events.IRuleTarget's signature
        self.dead_letter_queue.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.dead_letter_queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": rule.rule_ref.rule_arn}},
            )
        )
        return events.RuleTargetConfig(
            arn=self.log_group.log_group_arn,
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
            retry_policy=events.CfnRule.RetryPolicyProperty(
                maximum_retry_attempts=constants.TARGET_RETRY_ATTEMPTS,
                maximum_event_age_in_seconds=int(constants.TARGET_MAX_EVENT_AGE.to_seconds()),
            ),
        )


@jsii.implements(events.IRuleTarget)
class SnsTopicTarget:
    """SNS target whose topic and key policies were granted in the data stack with
    aws:SourceAccount / aws:SourceArn conditions (the L2 target adds an unconditioned grant)."""

    def __init__(self, topic: sns.ITopic, message: events.RuleTargetInput, dead_letter_queue: sqs.IQueue) -> None:
        self.topic = topic
        self.message = message
        self.dead_letter_queue = dead_letter_queue

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:  # noqa: ARG002 - events.IRuleTarget's signature
        self.dead_letter_queue.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.dead_letter_queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": rule.rule_ref.rule_arn}},
            )
        )
        return events.RuleTargetConfig(
            arn=self.topic.topic_arn,
            input=self.message,
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
            retry_policy=events.CfnRule.RetryPolicyProperty(
                maximum_retry_attempts=constants.TARGET_RETRY_ATTEMPTS,
                maximum_event_age_in_seconds=int(constants.TARGET_MAX_EVENT_AGE.to_seconds()),
            ),
        )


class EventRoutes(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        bus: events.EventBus,
        functions: Mapping[str, lambda_.IFunction],
        alerts_topic: sns.ITopic,
        archive_retention_days: int = 30,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rules: list[events.Rule] = []
        self.dead_letter_queues: dict[str, sqs.Queue] = {
            agent: dead_letter_queue(self, f"{agent.title()}TargetDlq", f"selfheal-{env_name}-{agent}-events-dlq")
            for agent in functions
        }
        self.dead_letter_queues["notifications"] = dead_letter_queue(
            self, "NotificationsDlq", f"selfheal-{env_name}-notifications-dlq"
        )

        for route in AGENT_ROUTES:
            pattern = events.EventPattern(
                detail_type=list(route.detail_types), source=list(route.sources) if route.sources else None
            )
            self._rule(route.rule_id, route.description, bus, pattern, self._lambda_target(functions, route.agent))

        # A producer's event no route above takes would vanish: the Manager refuses it with the reason.
        self._rule(
            UNROUTED_RULE_ID,
            "Producer events no route takes, to the Manager, which refuses them with the reason",
            bus,
            events.EventPattern(
                detail_type=events.Match.anything_but(*PRODUCER_DETAIL_TYPES),
                source=events.Match.anything_but_prefix(PIPELINE_SOURCE_PREFIX),
            ),
            self._lambda_target(functions, "manager"),
        )

        self._rule(
            "AlarmStateChange",
            "Forwards this account's CloudWatch alarm state changes (not Selfheal's own alarms) to the Manager",
            events.EventBus.from_event_bus_name(self, "DefaultBus", "default"),
            # Only this account and Region: a default bus that receives an organisation's events
            # carries alarms on functions of other accounts, often with the same names as ours.
            events.EventPattern(
                account=[Stack.of(self).account],
                region=[Stack.of(self).region],
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={"alarmName": [{"anything-but": {"prefix": constants.ALARM_PREFIX}}]},
            ),
            self._lambda_target(functions, "manager"),
        )
        # Every bus event is archived, so a run can be replayed (`selfheal replay`). Replays are
        # safe by design (idempotent steps, conditional transitions); people are not paged twice.
        self.archive = bus.archive(
            "Archive",
            archive_name=constants.archive_name(env_name),
            description="Every event on the agents bus, for replay",
            event_pattern=events.EventPattern(account=[Stack.of(self).account]),
            retention=Duration.days(archive_retention_days),
        )
        notify = self._rule(
            "Notify",
            "Approval requests and escalations to the alerts topic",
            bus,
            events.EventPattern(detail_type=list(NOTIFY_DETAIL_TYPES), source=list(NOTIFY_SOURCES)),
            SnsTopicTarget(
                alerts_topic,
                events.RuleTargetInput.from_text(
                    f"Selfheal {events.EventField.detail_type}: {events.EventField.from_path('$.detail.data.summary')} "
                    f"(incident {events.EventField.from_path('$.detail.metadata.incident_id')})"
                ),
                self.dead_letter_queues["notifications"],
            ),
        )
        # Replayed events carry "replay-name": a replay must not page anyone again.
        notify_rule = notify.node.default_child
        assert isinstance(notify_rule, events.CfnRule)
        notify_rule.add_property_override("EventPattern.replay-name", [{"exists": False}])
        self.audit_log = logs.LogGroup(
            self,
            "AuditLog",
            log_group_name=constants.audit_log_group_name(env_name),
            retention=constants.LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self._rule(
            "Audit",
            "Every agent event, including informational ones, to the audit log",
            bus,
            events.EventPattern(source=events.Match.prefix(constants.PIPELINE_SOURCE_PREFIX)),
            LogGroupTarget(self.audit_log, self.dead_letter_queues["notifications"]),
        )
        # A native resource policy instead of the target's custom resource (no extra Lambda).
        logs.ResourcePolicy(
            self,
            "AuditLogPolicy",
            resource_policy_name=f"selfheal-{env_name}-audit-events",
            policy_statements=[
                iam.PolicyStatement(
                    principals=[
                        iam.ServicePrincipal("events.amazonaws.com"),
                        iam.ServicePrincipal("delivery.logs.amazonaws.com"),
                    ],
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.audit_log.log_group_arn],
                )
            ],
        )
        self._rule(
            "MetricScan",
            "Scheduled metric scan by the Manager",
            None,
            None,
            self._lambda_target(functions, "manager"),
            schedule=events.Schedule.rate(constants.SCAN_RATE),
        )

    def _lambda_target(self, functions: Mapping[str, lambda_.IFunction], agent: str) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            functions[agent],
            dead_letter_queue=self.dead_letter_queues[agent],
            retry_attempts=constants.TARGET_RETRY_ATTEMPTS,
            max_event_age=constants.TARGET_MAX_EVENT_AGE,
        )

    def _rule(
        self,
        rule_id: str,
        description: str,
        bus: events.IEventBus | None,
        pattern: events.EventPattern | None,
        target: events.IRuleTarget,
        schedule: events.Schedule | None = None,
    ) -> events.Rule:
        rule = events.Rule(
            self,
            rule_id,
            description=description,
            event_bus=bus,
            event_pattern=pattern,
            schedule=schedule,
            targets=[target],
        )
        self.rules.append(rule)
        return rule
