"""Authenticated approvals: a function URL with AWS_IAM auth, and the managed policy that grants it."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from .. import constants
from .agent_function import AgentFunction


def approver_policy_name(env_name: str) -> str:
    return f"selfheal-{env_name}-approver"


class Approvals(Construct):
    """`selfheal-<env>-approvals` behind a function URL; only its role may send `agentops.operator`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        layer: lambda_.ILayerVersion,
        bus: events.IEventBus,
        decisions_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        self.agent = AgentFunction(
            self,
            "Function",
            env_name=env_name,
            agent="approvals",
            layers=[layer],
            environment={
                "ENVIRONMENT": env_name,
                "EVENT_BUS_NAME": bus.event_bus_name,
                "DECISIONS_TABLE_NAME": decisions_table.table_name,
            },
            timeout=Duration.seconds(10),
            memory_size=256,
            description="Records a human approval or denial; the approver is the caller's IAM principal",
        )
        self.function = self.agent.function
        self.role = self.agent.role
        # Reads the incident (exists, awaits approval); writes nothing but the event.
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[decisions_table.table_arn])
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[bus.event_bus_arn],
                conditions={"StringEquals": {"events:source": constants.AGENT_SOURCES["operator"]}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"])
        )
        # AWS_IAM: Lambda authenticates the SigV4 signature and puts the caller's ARN in the event.
        self.url = self.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        # How an account grants the right to approve: attach this policy to a user, group or role.
        self.approver_policy = iam.ManagedPolicy(
            self,
            "ApproverPolicy",
            managed_policy_name=approver_policy_name(env_name),
            description=f"May approve or reject Selfheal ({env_name}) fixes through the approvals function URL",
            statements=[
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunctionUrl"],
                    resources=[self.function.function_arn],
                    conditions={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
                ),
                # Function URLs created since October 2025 also need InvokeFunction; only through
                # the URL, since a direct Invoke could carry a made-up request context.
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"],
                    resources=[self.function.function_arn],
                    conditions={"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
                ),
            ],
        )
        CfnOutput(scope, "ApprovalsUrl", value=self.url.url)
        CfnOutput(scope, "ApprovalsFunctionName", value=self.function.function_name)
        CfnOutput(scope, "ApproverPolicyArn", value=self.approver_policy.managed_policy_arn)


def restrict_agent_sources(bus: events.EventBus, senders: dict[str, iam.IRole | list[iam.IRole]]) -> None:
    """Bus resource policy: each `agentops.*` source may be sent only by the role that owns it.

    Explicit Deny statements hold whatever identity policies other principals in the account
    have (an administrator's `events:*` included); other sources (IssueReported producers)
    stay open to whoever IAM allows.
    """
    for agent, sender in senders.items():
        roles = sender if isinstance(sender, list) else [sender]
        source = constants.AGENT_SOURCES[agent]
        bus.add_to_resource_policy(
            iam.PolicyStatement(
                sid=f"OnlyThe{agent.title()}RoleSends{source.split('.')[-1].title()}Events",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["events:PutEvents"],
                resources=[bus.event_bus_arn],
                conditions={
                    "StringEquals": {"events:source": source},
                    # Several roles: denied unless the principal is one of them.
                    "ArnNotEquals": {
                        "aws:PrincipalArn": roles[0].role_arn if len(roles) == 1 else [r.role_arn for r in roles]
                    },
                },
            )
        )
    # Any other `agentops.` source is a look-alike ("agentops.manager" + a zero-width space, a
    # Cyrillic letter, "agentops.operator.x"): no one sends it, and the audit log would show it.
    bus.add_to_resource_policy(
        iam.PolicyStatement(
            sid="NoOneSendsLookAlikeAgentSources",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["events:PutEvents"],
            resources=[bus.event_bus_arn],
            conditions={
                "StringLike": {"events:source": f"{constants.PIPELINE_SOURCE_PREFIX}*"},
                "StringNotEquals": {"events:source": sorted(set(constants.AGENT_SOURCES.values()))},
            },
        )
    )
