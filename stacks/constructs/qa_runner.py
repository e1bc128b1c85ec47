"""The QA runner: the one function that executes untrusted code (a fix, its tests).

It can do nothing but run the tests: its role may only write its own logs (plus the network
interface permissions Lambda needs to place it in a VPC), it sits in a VPC with isolated
subnets only (no NAT, no internet gateway, no endpoints: no route out, not even to AWS APIs),
and each run gets its own execution environment (tenant isolation, a fresh tenant id per run).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from .. import constants
from ..nag import acknowledge
from .agent_function import agent_code, log_streams_ref

RUNNER = "qa-runner"
PACKAGE = "qa_runner"


class QaRunner(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        layers: list[lambda_.ILayerVersion],
        vpc_id: str = "",
        subnet_ids: tuple[str, ...] = (),
        allow_unisolated: bool = False,
        timeout_s: int = 90,
        memory_size: int = 1024,
    ) -> None:
        super().__init__(scope, construct_id)
        name = constants.function_name(env_name, RUNNER)
        self.vpc, subnets = self._network(vpc_id, subnet_ids)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="QA runner: no inbound, no outbound",
        )
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
            description="QA runner: writes its own logs, nothing else",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:*"],
            )
        )
        # What Lambda itself does with the function's role to attach it to the VPC (the actions of
        # AWSLambdaVPCAccessExecutionRole without its account-wide log permissions). From inside the
        # VPC these credentials reach no AWS endpoint.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                resources=["*"],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=name,
            description="Runs a fix's tests in a sandbox: no permissions, no network, one environment per run",
            runtime=constants.RUNTIME,
            architecture=constants.ARCHITECTURE,
            handler=f"{PACKAGE}.handler.handler",
            code=agent_code(PACKAGE, bundle=Stack.of(self).bundling_required),
            layers=layers,  # core + pytest
            role=self.role,
            timeout=Duration.seconds(timeout_s),
            memory_size=memory_size,
            log_group=self.log_group,
            tracing=lambda_.Tracing.DISABLED,  # X-Ray would need a permission and a route out
            vpc=self.vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            tenancy_config=lambda_.TenancyConfig.PER_TENANT,
            environment={
                "POWERTOOLS_SERVICE_NAME": RUNNER,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "SELFHEAL_ALLOW_UNISOLATED_QA": "true" if allow_unisolated else "false",
                **constants.CORE_ENVIRONMENT,  # every run is a cold start (one tenant per run)
            },
        )
        self._acknowledge()

    def _network(self, vpc_id: str, subnet_ids: tuple[str, ...]) -> tuple[ec2.IVpc, ec2.SubnetSelection]:
        if vpc_id:
            # An existing VPC named by context: its operator answers for its routes.
            vpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=vpc_id,
                availability_zones=Stack.of(self).availability_zones[: len(subnet_ids)],
                isolated_subnet_ids=list(subnet_ids),
            )
            return vpc, ec2.SubnetSelection(
                subnets=[ec2.Subnet.from_subnet_id(self, f"Subnet{i}", s) for i, s in enumerate(subnet_ids)]
            )
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24)
            ],
            restrict_default_security_group=False,  # would add a custom-resource Lambda; nothing uses the default group
        )
        acknowledge(
            vpc,
            "AwsSolutions-VPC7",
            reason="The QA runner's VPC has no route out (isolated subnets, no NAT, IGW or endpoints); flow logs would "
            "only record rejected attempts, and the runner's own logs record every run.",
        )
        return vpc, ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

    def _acknowledge(self) -> None:
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            reason="Lambda creates, describes and deletes the function's network interfaces with its role; these EC2 "
            "actions take no resource scoping that fits ENIs created at run time, and the VPC has no route to AWS.",
        )
        log_streams = log_streams_ref(self.log_group)
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{log_streams}]",
            reason="Log streams are created at run time inside this function's own log group.",
        )
        for rule in ("Serverless-LambdaDLQ", "Serverless-LambdaAsyncFailureDestination"):
            acknowledge(
                self.function,
                rule,
                reason="The runner is only invoked synchronously by QA, which receives every error and decides.",
            )
        acknowledge(
            self.function,
            "Serverless-LambdaTracing",
            reason="X-Ray needs the daemon to reach AWS; the runner has no route out by design.",
        )
