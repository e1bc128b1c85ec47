"""Lambda cost from the bill: each agent's REPORT lines go to a small cost reconciler.

A subscription filter on every agent's log group matches the platform's `REPORT RequestId`
lines; the reconciler prices `Billed Duration` x `Memory Size` and replaces the in-handler
estimate of that request (agentops_monitoring/billing.py). It may read and update the two
tables and read the price override under the parameter prefix, nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as log_destinations
from constructs import Construct

from .. import constants
from .agent_function import AgentFunction

REPORT_FILTER = '"REPORT RequestId"'


def agent_log_group_name(env_name: str, agent: str) -> str:
    return f"/aws/lambda/{constants.function_name(env_name, agent)}"


class BilledLambdaCost(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        agents: Iterable[str],
        layer: lambda_.ILayerVersion,
        decisions_table: dynamodb.ITable,
        monitoring_table: dynamodb.ITable,
        parameter_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        log_groups = {agent_log_group_name(env_name, agent): agent for agent in agents}
        self.reconciler = AgentFunction(
            self,
            "Reconciler",
            env_name=env_name,
            agent="billing",
            layers=[layer],
            environment={
                "ENVIRONMENT": env_name,
                "MONITORING_TABLE_NAME": monitoring_table.table_name,
                "DECISIONS_TABLE_NAME": decisions_table.table_name,
                "PARAMETER_PREFIX": parameter_prefix,
                "AGENT_LOG_GROUPS": json.dumps(log_groups, sort_keys=True),
                "AGENT_ARCHITECTURE": constants.ARCHITECTURE.name,
            },
            timeout=Duration.seconds(60),
            memory_size=256,
            description="Billed Lambda cost of the agents, from their REPORT log lines",
        )
        role = self.reconciler.role
        role.add_to_policy(
            iam.PolicyStatement(
                # BatchGetItem: the invocation links of a delivery's REPORT lines in one read.
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:ConditionCheckItem",
                ],
                resources=[monitoring_table.table_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"],
                resources=[decisions_table.table_arn],
            )
        )
        # The price override (prices-override) is read by path, like the agents read their parameters.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParametersByPath"],
                resources=[
                    Stack.of(self).format_arn(
                        service="ssm", resource="parameter", resource_name=parameter_prefix.strip("/")
                    )
                ],
            )
        )
        destination = log_destinations.LambdaDestination(self.reconciler.function)
        self.filters = [
            logs.SubscriptionFilter(
                self,
                f"{agent.title()}Reports",
                log_group=logs.LogGroup.from_log_group_name(self, f"{agent.title()}LogGroup", name),
                destination=destination,
                filter_pattern=logs.FilterPattern.literal(REPORT_FILTER),
                filter_name=f"selfheal-{env_name}-billed-cost",
            )
            for name, agent in sorted(log_groups.items())
        ]
