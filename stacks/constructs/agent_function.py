"""One agent = one function with its own role, explicit log group and on-failure queue."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .. import constants
from ..nag import acknowledge
from .common_layer import compile_bytecode

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"


@jsii.implements(ILocalBundling)
class AgentCodeBundling:
    """The agent's package alone, with its bytecode (see common_layer.compile_bytecode)."""

    def __init__(self, package: str) -> None:
        self.package = package

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:  # noqa: ARG002
        target = Path(output_dir) / self.package
        shutil.copytree(LAMBDAS_DIR / self.package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        compile_bytecode(target)
        return True


def agent_code(package: str, *, bundle: bool = True) -> lambda_.Code:
    """Ship only this agent's package (handler `<package>.handler.handler`), bundled with its bytecode.

    Where bundling is skipped (tests, the local runtime) the asset is lambdas/ without the other
    packages, so a function can import only its own code there too.
    """
    if not bundle:
        others = sorted(p.name for p in LAMBDAS_DIR.iterdir() if p.name not in (package, "__pycache__"))
        return lambda_.Code.from_asset(str(LAMBDAS_DIR), exclude=["**/__pycache__", "*.pyc", *others])
    return lambda_.Code.from_asset(
        str(LAMBDAS_DIR),
        exclude=["**/__pycache__", "*.pyc"],
        bundling=BundlingOptions(
            image=constants.RUNTIME.bundling_image,  # only if local bundling could not run
            local=AgentCodeBundling(package),
            command=["bash", "-c", f"cp -r {package} /asset-output/"],
        ),
    )


def dead_letter_queue(scope: Construct, construct_id: str, name: str) -> sqs.Queue:
    """A terminal queue for failed deliveries; operators read and redrive it by hand."""
    queue = sqs.Queue(
        scope,
        construct_id,
        queue_name=name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    reason = "This queue is itself the dead-letter queue: a DLQ of a DLQ would only hide failures further away."
    for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
        acknowledge(queue, rule, reason)
    return queue


class AgentFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        agent: str,
        layers: Sequence[lambda_.ILayerVersion],
        environment: dict[str, str],
        timeout: Duration,
        memory_size: int = 256,
        description: str,
    ) -> None:
        super().__init__(scope, construct_id)
        name = constants.function_name(env_name, agent)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{name}",
            retention=constants.LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # No managed policy: log permissions are scoped to this function's own log group.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Least-privilege role of the {agent} agent",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:*"],
            )
        )
        self.failures = dead_letter_queue(self, "OnFailure", f"{name}-failures")
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=name,
            description=description,
            runtime=constants.RUNTIME,
            architecture=constants.ARCHITECTURE,
            handler=f"{agent}.handler.handler",
            code=agent_code(agent, bundle=Stack.of(self).bundling_required),
            layers=list(layers),
            role=self.role,
            timeout=timeout,
            memory_size=memory_size,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                "POWERTOOLS_SERVICE_NAME": agent,
                "POWERTOOLS_METRICS_NAMESPACE": "AgentOps/Events",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "AGENT_NAME": agent,
                "SELFHEAL_XRAY_SDK": "false",
                **constants.CORE_ENVIRONMENT,
                **environment,
            },
            retry_attempts=constants.ASYNC_RETRY_ATTEMPTS,
            max_event_age=constants.TARGET_MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(self.failures),
        )
        acknowledge(
            self.function,
            "Serverless-LambdaDLQ",
            reason="Async failures go to an SQS on-failure destination, which records the error as well as the event.",
        )
        log_streams = log_streams_ref(self.log_group)
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{log_streams}]",
            reason="Log streams are created at run time inside this function's own log group.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            reason="X-Ray PutTraceSegments/PutTelemetryRecords, CloudWatch GetMetricData and CloudTrail LookupEvents support no resource scoping.",
        )


def log_streams_ref(log_group: logs.LogGroup) -> str:
    """The log group's streams as cdk-nag names them in an IAM5 finding: "<LogicalId.Arn>:*"."""
    resource = log_group.node.default_child
    assert isinstance(resource, logs.CfnLogGroup)
    return f"<{Stack.of(log_group).get_logical_id(resource)}.Arn>:*"
