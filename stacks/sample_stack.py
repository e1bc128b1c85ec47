"""A real workload for Selfheal to heal (context key `sampleWorkload`, on in `make demo`).

`sample-orders-<env>`: a small Python function (3 s, 128 MB) tagged `selfheal:managed=true`,
so the Manager may change its configuration, and the alarm `sample-orders-errors-<env>`
(`AWS/Lambda` `Errors` >= 1 in one minute, missing data not breaching). The alarm has no
actions: its state changes reach the Manager as "CloudWatch Alarm State Change" events on
the default bus, like any application alarm whose name does not start with `selfheal-`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from selfheal_core import catalog

from . import constants
from .nag import acknowledge

WORKLOAD_DIR = Path(__file__).resolve().parents[1] / "workloads" / "sample_orders"
MANAGED_TAG = ("selfheal:managed", "true")
SAMPLE_TIMEOUT = Duration.seconds(3)
SAMPLE_MEMORY_MB = 128


class SampleWorkloadStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, env_name: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        name = catalog.sample_function_name(env_name)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{name}",
            retention=constants.LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Sample workload: writes its own logs, nothing else",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:*"],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=name,
            description="Sample orders service: sleeps sleep_s, raises when fail is true (Selfheal demo target)",
            runtime=constants.RUNTIME,
            architecture=constants.ARCHITECTURE,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(WORKLOAD_DIR), exclude=["**/__pycache__", "*.pyc", "__init__.py"]),
            role=self.role,
            timeout=SAMPLE_TIMEOUT,
            memory_size=SAMPLE_MEMORY_MB,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            # Demo traffic is not retried: one request, one outcome, one data point.
            retry_attempts=0,
        )
        Tags.of(self.function).add(*MANAGED_TAG)
        self.alarm = cloudwatch.Alarm(
            self,
            "ErrorsAlarm",
            alarm_name=catalog.sample_alarm_name(env_name),
            alarm_description=f"{name} failed at least once in a minute (errors and timeouts)",
            metric=self.function.metric_errors(period=Duration.minutes(1), statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        acknowledge(
            self.function,
            "Serverless-LambdaDLQ",
            reason="Demo traffic only: a failed request is meant to surface as the Errors metric the alarm watches, "
            "not to be kept for redrive.",
        )
        acknowledge(
            self.function.node.find_child("EventInvokeConfig"),
            "Serverless-LambdaAsyncFailureDestination",
            reason="Demo traffic only: an asynchronous request that failed is meant to surface as the Errors metric "
            "the alarm watches; there is nothing to redrive.",
        )
        log_streams = f"<{self.get_logical_id(self.log_group.node.default_child)}.Arn>:*"  # type: ignore[arg-type]
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{log_streams}]",
            reason="Log streams are created at run time inside this function's own log group.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            reason="X-Ray PutTraceSegments/PutTelemetryRecords support no resource scoping.",
        )
