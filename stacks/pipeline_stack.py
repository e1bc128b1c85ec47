"""The agents: bus, shared layer, Manager / Engineer / QA functions, routes and their permissions."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from selfheal_core.catalog import AGENT_TIMEOUT_S, OWN_FUNCTION_PREFIX
from selfheal_core.config import bedrock_model_id

from . import constants
from .constructs.agent_function import AgentFunction
from .constructs.approvals import Approvals, restrict_agent_sources
from .constructs.bedrock_access import grant_bedrock_invoke
from .constructs.common_layer import FunctionLayers
from .constructs.event_routes import EventRoutes
from .constructs.qa_runner import QaRunner
from .data_stack import DataStack
from .nag import acknowledge
from .settings import DeploySettings

AGENTS = {
    # agent: (timeout, memory MB, description)
    "manager": (
        Duration.seconds(AGENT_TIMEOUT_S["manager"]),
        256,
        "Detects, triages and folds issues; decides and closes incidents",
    ),
    "engineer": (
        Duration.seconds(AGENT_TIMEOUT_S["engineer"]),
        512,
        "Writes fixes with Claude or deterministic runbooks",
    ),
    "qa": (
        Duration.seconds(AGENT_TIMEOUT_S["qa"]),
        512,
        "Proves or disproves fixes: policy checks, and code runs in the QA runner",
    ),
}


VERDICT_ACTIONS = {
    "qa": ["dynamodb:GetItem", "dynamodb:PutItem"],
    "manager": ["dynamodb:GetItem", "dynamodb:BatchGetItem"],
}


class PipelineStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: DeploySettings, data: DataStack, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        env_name = settings.env_name
        self.bus = events.EventBus(self, "AgentsBus", event_bus_name=constants.bus_name(env_name))
        self.layers = FunctionLayers(self, "CommonLayer")
        self.layer = self.layers.core  # what the monitoring stack's functions carry
        self.agent_environment = {
            "ENVIRONMENT": env_name,
            "EVENT_BUS_NAME": self.bus.event_bus_name,
            "DECISIONS_TABLE_NAME": data.decisions_table.table_name,
            "MONITORING_TABLE_NAME": data.monitoring_table.table_name,
            "IDEMPOTENCY_TABLE_NAME": data.idempotency_table.table_name,
            "ARTIFACTS_BUCKET": data.artifacts_bucket.bucket_name,
            "ALERTS_TOPIC_ARN": data.alerts_topic.topic_arn,
            "SECRET_NAME": constants.secret_name(env_name),
            "PARAMETER_PREFIX": data.parameter_prefix,
        }
        self.scheduler_role = self._scheduler_role()
        # The one function that executes fix code; QA reaches it by lambda:Invoke only.
        self.qa_runner = QaRunner(
            self,
            "QaRunner",
            env_name=env_name,
            layers=self.layers.for_function("qa_runner"),
            vpc_id=settings.qa_runner_vpc_id,
            subnet_ids=settings.qa_runner_subnet_ids,
            allow_unisolated=settings.allow_unisolated_qa,
        )
        # Only the Engineer learns where the Anthropic key is (and only it may read it, see _grant);
        # on Bedrock it signs with its role and has no key at all. Only the Manager schedules
        # ApplyDue / VerifyDue through the scheduler role.
        # QA reads no secret at all (so no AgentOps key: its AgentOps traces are off; metrics and
        # records are unaffected) and learns only the runner's name.
        self.uses_anthropic_key = settings.engineer_provider != "bedrock"
        anthropic = (
            {"ANTHROPIC_SECRET_NAME": constants.anthropic_secret_name(env_name)} if self.uses_anthropic_key else {}
        )
        per_agent: dict[str, dict[str, str]] = {
            "engineer": {**self.agent_environment, **anthropic},
            "qa": {
                **{k: v for k, v in self.agent_environment.items() if k != "SECRET_NAME"},
                "QA_RUNNER_FUNCTION_NAME": self.qa_runner.function.function_name,
                "VALIDATIONS_TABLE_NAME": data.validations_table.table_name,
            },
            "manager": {
                **self.agent_environment,
                "VALIDATIONS_TABLE_NAME": data.validations_table.table_name,
                "EVENT_BUS_ARN": self.bus.event_bus_arn,
                "SCHEDULER_ROLE_ARN": self.scheduler_role.role_arn,
            },
        }
        self.agents = {
            agent: AgentFunction(
                self,
                f"{agent.title()}Agent",
                env_name=env_name,
                agent=agent,
                layers=self.layers.for_function(agent),
                environment=per_agent.get(agent, self.agent_environment),
                timeout=timeout,
                memory_size=memory,
                description=description,
            )
            for agent, (timeout, memory, description) in AGENTS.items()
        }
        self.functions = {agent: a.function for agent, a in self.agents.items()}
        self.routes = EventRoutes(
            self,
            "Routes",
            env_name=env_name,
            bus=self.bus,
            functions=self.functions,
            alerts_topic=data.alerts_topic,
            archive_retention_days=settings.archive_retention_days,
        )
        self._grant(data)
        self._grant_heal(env_name)
        self.approvals = Approvals(
            self,
            "Approvals",
            env_name=env_name,
            layer=self.layers.core,
            bus=self.bus,
            decisions_table=data.decisions_table,
        )
        # The scheduler role puts the Manager's ApplyDue / VerifyDue, so it may send as the Manager too.
        senders: dict[str, iam.IRole | list[iam.IRole]] = {a: c.role for a, c in self.agents.items()}
        senders["manager"] = [self.agents["manager"].role, self.scheduler_role]
        restrict_agent_sources(self.bus, {**senders, "operator": self.approvals.role})
        if settings.engineer_provider == "bedrock":
            grant_bedrock_invoke(self.agents["engineer"].role, bedrock_model_id(settings.engineer_model))
        CfnOutput(self, "EventBusName", value=self.bus.event_bus_name)
        CfnOutput(self, "ArchiveArn", value=self.routes.archive.archive_arn)
        CfnOutput(self, "AuditLogGroupArn", value=self.routes.audit_log.log_group_arn)
        for agent, function in self.functions.items():
            CfnOutput(self, f"{agent.title()}FunctionName", value=function.function_name)
        CfnOutput(self, "QaRunnerFunctionName", value=self.qa_runner.function.function_name)

    def _grant(self, data: DataStack) -> None:
        """Least privilege per agent: inline, resource-scoped statements with no wildcards but log streams."""
        read_write = [
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",  # an incident and its step's record in one read
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "dynamodb:ConditionCheckItem",
        ]
        tables = {"decisions": data.decisions_table, "monitoring": data.monitoring_table}
        prefix = data.parameter_prefix.strip("/")
        artifacts = f"arn:{Aws.PARTITION}:s3:::{constants.artifacts_bucket_name(data.env_name)}"
        for agent, construct in self.agents.items():
            role = construct.role
            for kind, table in tables.items():
                actions = (
                    [*read_write, "dynamodb:DeleteItem"] if (agent, kind) == ("manager", "decisions") else read_write
                )
                role.add_to_policy(
                    iam.PolicyStatement(
                        actions=actions,
                        resources=[table.table_arn, f"{table.table_arn}/index/gsi1", f"{table.table_arn}/index/gsi2"],
                    )
                )
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                    resources=[data.idempotency_table.table_arn],
                )
            )
            # QA's verdicts: QA writes them (with the status move, one transaction), the Manager
            # reads them; the Engineer, which handles model output, has no access at all.
            verdict_actions = VERDICT_ACTIONS.get(agent)
            if verdict_actions:
                role.add_to_policy(
                    iam.PolicyStatement(actions=verdict_actions, resources=[data.validations_table.table_arn])
                )
            # Each agent may only publish events under its own source.
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["events:PutEvents"],
                    resources=[self.bus.event_bus_arn],
                    conditions={"StringEquals": {"events:source": constants.AGENT_SOURCES[agent]}},
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["ssm:GetParametersByPath"],
                    resources=[self.format_arn(service="ssm", resource="parameter", resource_name=prefix)],
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["ssm:GetParameter", "ssm:GetParameters"],
                    resources=[p.parameter_arn for p in data.parameters],
                )
            )
            engineer_secrets = [data.secret, data.anthropic_secret] if self.uses_anthropic_key else [data.secret]
            secrets = {"engineer": engineer_secrets, "qa": []}.get(agent, [data.secret])
            if secrets:
                role.add_to_policy(
                    iam.PolicyStatement(
                        actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                        resources=[s.secret_arn for s in secrets],
                    )
                )
            role.add_to_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=[data.alerts_topic.topic_arn]))
            role.add_to_policy(
                iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[data.alerts_key.key_arn])
            )
            role.add_to_policy(
                iam.PolicyStatement(actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"])
            )
            # Every agent writes claim checks (the Manager: source code, validated fixes, patches).
            role.add_to_policy(
                iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject"], resources=[f"{artifacts}/*"])
            )
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::selfheal-{data.env_name}-artifacts-<AWS::AccountId>-<AWS::Region>/*]",
                reason="Artifact keys are per incident (claim checks) and created at run time; access is limited to this one bucket.",
            )
        # QA may invoke the runner and no other function.
        self.agents["qa"].role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[self.qa_runner.function.function_arn],
            )
        )
        # The metric scan reads CloudWatch metrics; GetMetricData has no resource-level scoping.
        self.agents["manager"].role.add_to_policy(
            iam.PolicyStatement(actions=["cloudwatch:GetMetricData", "cloudwatch:ListMetrics"], resources=["*"])
        )

    def _scheduler_role(self) -> iam.Role:
        """EventBridge Scheduler's role for the Manager's one-time schedules: it may put exactly
        ApplyDue and VerifyDue, as the Manager, on the agents bus, and nothing else."""
        role = iam.Role(
            self,
            "HealSchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            ),
            description="Delivers the Manager's ApplyDue / VerifyDue schedules to the agents bus",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[self.bus.event_bus_arn],
                conditions={
                    "StringEquals": {
                        "events:source": constants.AGENT_SOURCES["manager"],
                        "events:detail-type": ["ApplyDue", "VerifyDue"],
                    }
                },
            )
        )
        return role

    def _grant_heal(self, env_name: str) -> None:
        """The Manager investigates any function, and changes only those tagged selfheal:managed=true."""
        role = self.agents["manager"].role
        functions = self.format_arn(
            service="lambda", resource="function", resource_name="*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="InvestigateFunctions",
                # GetFunction: configuration, concurrency and (with ListTags allowed) tags in one
                # read; GetFunctionConfiguration/Concurrency: the apply step's fresh reads.
                actions=[
                    "lambda:GetFunction",
                    "lambda:GetFunctionConfiguration",
                    "lambda:GetFunctionConcurrency",
                    "lambda:GetFunctionEventInvokeConfig",
                    "lambda:ListTags",
                ],
                resources=[functions],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ChangeManagedFunctionsOnly",
                actions=[
                    "lambda:UpdateFunctionConfiguration",
                    "lambda:PutFunctionConcurrency",
                    "lambda:PutFunctionEventInvokeConfig",
                ],
                resources=[functions],
                conditions={"StringEquals": {"aws:ResourceTag/selfheal:managed": "true"}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                # Selfheal never changes itself (any environment's agents), whatever tags an
                # account-wide automation puts on them; the Manager refuses such a target first.
                sid="NeverChangeSelfheal",
                effect=iam.Effect.DENY,
                actions=[
                    "lambda:UpdateFunctionConfiguration",
                    "lambda:PutFunctionConcurrency",
                    "lambda:PutFunctionEventInvokeConfig",
                ],
                resources=[
                    self.format_arn(
                        service="lambda",
                        resource="function",
                        resource_name=f"{OWN_FUNCTION_PREFIX}*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadFunctionErrorLines",
                actions=["logs:FilterLogEvents"],
                resources=[
                    self.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/lambda/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(sid="RecentChanges", actions=["cloudtrail:LookupEvents"], resources=["*"])
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="VerifyAgainstTheAlarm",
                actions=["cloudwatch:DescribeAlarms"],
                resources=[
                    self.format_arn(
                        service="cloudwatch",
                        resource="alarm",
                        resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="OneTimeSchedules",
                actions=["scheduler:CreateSchedule"],
                resources=[
                    self.format_arn(
                        service="scheduler", resource="schedule", resource_name=f"default/selfheal-{env_name}-*"
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PassOnlyTheSchedulerRole",
                actions=["iam:PassRole"],
                resources=[self.scheduler_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:lambda:<AWS::Region>:<AWS::AccountId>:function:*]",
            reason="The functions to heal are the account's, named by alarms at run time. Reads cover any function so an "
            "unmanaged target can be reported with its values; writes are conditioned on aws:ResourceTag/selfheal:managed=true.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/lambda/*]",
            reason="FilterLogEvents reads the error lines of the function under investigation, whose name is known only at run time; "
            "limited to Lambda log groups.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:*]",
            reason="DescribeAlarms reads the state of the alarm that opened the incident, named at run time (read only).",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/default/selfheal-{env_name}-*]",
            reason="One-time schedules are named per incident at run time; only names under this environment's prefix.",
        )
