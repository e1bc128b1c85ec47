"""Durable state: decision log, monitoring records, idempotency, artifacts, alerts, secret, parameters."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from selfheal_core import catalog

from . import constants
from .constructs.agent_function import dead_letter_queue
from .nag import acknowledge
from .settings import DeploySettings


def service_publishers(env_name: str) -> dict[str, str]:
    """Service principal -> the only source ARNs it may act for: our alarms, our bus's rules."""
    region_account = f"{Aws.REGION}:{Aws.ACCOUNT_ID}"
    return {
        "cloudwatch.amazonaws.com": f"arn:{Aws.PARTITION}:cloudwatch:{region_account}:alarm:{constants.ALARM_PREFIX}{env_name}-*",
        "events.amazonaws.com": f"arn:{Aws.PARTITION}:events:{region_account}:rule/{constants.bus_name(env_name)}/*",
    }


def source_conditions(source_arn: str) -> dict[str, dict[str, str]]:
    return {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}, "ArnLike": {"aws:SourceArn": source_arn}}


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        env_name = self.env_name = settings.env_name
        self.decisions_table = self._build_table("DecisionsTable", constants.decisions_table_name(env_name))
        self.monitoring_table = self._build_table("MonitoringTable", constants.monitoring_table_name(env_name))
        # QA's verdicts in a table of their own: IAM has no condition on a sort key, so only a
        # table lets "QA's role alone writes verdicts" be a policy rather than a convention.
        self.validations_table = dynamodb.TableV2(
            self,
            "ValidationsTable",
            table_name=constants.validations_table_name(env_name),
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.idempotency_table = dynamodb.TableV2(
            self,
            "IdempotencyTable",
            table_name=constants.idempotency_table_name(env_name),
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute="expiration",
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.artifacts_bucket = self._build_artifacts_bucket()
        self.alerts_topic = self._build_alerts_topic(settings)
        # Two secrets so that only the Engineer can read the Anthropic key (QA runs untrusted code).
        self.secret = self._build_secret(
            "AgentOpsKey", constants.secret_name(env_name), "AgentOps API key: {agentops_api_key}"
        )
        self.anthropic_secret = self._build_secret(
            "AnthropicKey", constants.anthropic_secret_name(env_name), "Anthropic API key: {anthropic_api_key}"
        )
        self.parameter_prefix = constants.parameter_prefix(env_name)
        self.parameters = self._build_parameters(settings)

        for name, value in {
            "DecisionsTableName": self.decisions_table.table_name,
            "MonitoringTableName": self.monitoring_table.table_name,
            "ValidationsTableName": self.validations_table.table_name,
            "AlertsTopicArn": self.alerts_topic.topic_arn,
            "ArtifactsBucketName": self.artifacts_bucket.bucket_name,
            "AgentOpsSecretName": constants.secret_name(env_name),
            "AnthropicSecretName": constants.anthropic_secret_name(env_name),
        }.items():
            CfnOutput(self, name, value=value)

    def _build_secret(self, construct_id: str, name: str, description: str) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            construct_id,
            secret_name=name,
            description=description,
            # Placeholder JSON; operators set the real key with `aws secretsmanager put-secret-value`.
            secret_object_value={},
        )
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            "Third-party API keys are issued by their vendors; a rotation Lambda here cannot rotate them.",
        )
        return secret

    def _build_table(self, construct_id: str, name: str) -> dynamodb.TableV2:
        # pk/sk plus two overloaded GSIs serve the six access patterns (see selfheal_core/keys.py).
        return dynamodb.TableV2(
            self,
            construct_id,
            table_name=name,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute="ttl",
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=index,
                    partition_key=dynamodb.Attribute(name=f"{index}pk", type=dynamodb.AttributeType.STRING),
                    sort_key=dynamodb.Attribute(name=f"{index}sk", type=dynamodb.AttributeType.STRING),
                    projection_type=dynamodb.ProjectionType.ALL,
                )
                for index in ("gsi1", "gsi2")
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_artifacts_bucket(self) -> s3.Bucket:
        access_logs = s3.Bucket(
            self,
            "ArtifactsAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(access_logs, "AwsSolutions-S1", "This is the access-log bucket itself; logging it would recurse.")
        return s3.Bucket(
            self,
            "Artifacts",
            bucket_name=constants.artifacts_bucket_name(self.env_name),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(30))],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_alerts_topic(self, settings: DeploySettings) -> sns.Topic:
        key = self.alerts_key = kms.Key(
            self, "AlertsKey", enable_key_rotation=True, description="Encrypts the Selfheal alerts topic"
        )
        # Our alarms and our bus's rules publish to the encrypted topic; the service principals act
        # only on behalf of this account's Selfheal resources (no confused deputy).
        publishers = service_publishers(settings.env_name)
        for service, source_arn in publishers.items():
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    principals=[iam.ServicePrincipal(service)],
                    resources=["*"],
                    conditions=source_conditions(source_arn),
                )
            )
        topic = sns.Topic(
            self,
            "Alerts",
            topic_name=constants.alerts_topic_name(settings.env_name),
            display_name="Selfheal alerts",
            master_key=key,
            enforce_ssl=True,
        )
        for service, source_arn in publishers.items():
            topic.add_to_resource_policy(
                iam.PolicyStatement(
                    actions=["sns:Publish"],
                    principals=[iam.ServicePrincipal(service)],
                    resources=[topic.topic_arn],
                    conditions=source_conditions(source_arn),
                )
            )
        if settings.alert_email:
            # Undeliverable emails are kept, not dropped.
            undelivered = dead_letter_queue(self, "AlertsEmailDlq", f"selfheal-{settings.env_name}-alerts-email-dlq")
            topic.add_subscription(subs.EmailSubscription(settings.alert_email, dead_letter_queue=undelivered))
        return topic

    def _build_parameters(self, settings: DeploySettings) -> list[ssm.StringParameter]:
        values = {
            "automation-level": settings.automation_level,
            "max-fix-attempts": str(settings.max_fix_attempts),
            "daily-llm-budget-usd": str(settings.daily_llm_budget_usd),
            "engineer-provider": settings.engineer_provider,
            "engineer-model": settings.engineer_model,
            "manager-model": settings.manager_model,
            "scan-thresholds": json.dumps(catalog.DEFAULT_SCAN_THRESHOLDS),
            "apply-windows": json.dumps(catalog.DEFAULT_APPLY_WINDOWS),
            "verify-window-seconds": str(settings.verify_window_seconds),
        }
        if settings.anthropic_base_url:  # SSM has no empty values: absent means the SDK's default endpoint
            values["anthropic-base-url"] = settings.anthropic_base_url
        return [
            ssm.StringParameter(
                self,
                f"Param{name.title().replace('-', '')}",
                parameter_name=f"{self.parameter_prefix}{name}",
                string_value=value,
                description=f"Selfheal hot-reloadable setting '{name}' (read every 60 s)",
            )
            for name, value in values.items()
        ]
