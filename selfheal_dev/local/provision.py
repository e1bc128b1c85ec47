"""Creates the template's resources in the emulator, in deployment order, through its API.

Supported: DynamoDB tables (keys, GSIs/LSIs, TTL, PITR), SQS queues (attributes, redrive),
SNS topics and subscriptions, EventBridge buses and rules (pattern, schedule, state, every
target as written), Secrets Manager secrets, SSM parameters, S3 buckets, log groups,
CloudWatch alarms (single metric, metric math, composite) and dashboards. Lambda functions
become worker pools (see functions.py); subscription filters are delivered by the runtime
(see subscriptions.py). Everything else (IAM, KMS, policies, Lambda
permissions, ...) has no local behaviour and is listed as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .assembly import Assembly, Resource

# Types the runtime implements itself rather than provisioning in moto.
# Served or enforced by the runtime itself (function URLs, the bus resource policy, log subscriptions).
HANDLED_ELSEWHERE = {
    "AWS::Lambda::Function",
    "AWS::Lambda::LayerVersion",
    "AWS::Lambda::Url",
    "AWS::Events::EventBusPolicy",
    "AWS::Logs::SubscriptionFilter",
}


@dataclass
class ProvisionReport:
    created: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        by_type: dict[str, int] = {}
        for item in self.created:
            by_type[item["type"]] = by_type.get(item["type"], 0) + 1
        return {"created": self.created, "created_by_type": by_type, "skipped": self.skipped, "failed": self.failed}


class Provisioner:
    def __init__(self, session: Any, endpoint: str) -> None:
        self.session = session
        self.endpoint = endpoint
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint)
        return self._clients[service]

    def provision(self, assembly: Assembly) -> ProvisionReport:
        report = ProvisionReport()
        handlers: dict[str, Callable[[Resource], None]] = {
            "AWS::DynamoDB::Table": self._table,
            "AWS::DynamoDB::GlobalTable": self._table,
            "AWS::SQS::Queue": self._queue,
            "AWS::SNS::Topic": self._topic,
            "AWS::SNS::Subscription": self._subscription,
            "AWS::Events::EventBus": self._bus,
            "AWS::Events::Rule": self._rule,
            "AWS::Events::Archive": self._archive,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::SSM::Parameter": self._parameter,
            "AWS::S3::Bucket": self._bucket,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::CloudWatch::Dashboard": self._dashboard,
        }
        for res in assembly.resources:
            entry = {"type": res.type, "logical_id": res.key, "physical_id": res.physical_id}
            handler = handlers.get(res.type)
            if handler is None:
                if res.type not in HANDLED_ELSEWHERE:
                    report.skipped.append(entry)
                continue
            try:
                handler(res)
                report.created.append(entry)
            except Exception as exc:  # noqa: BLE001 - report every failure, keep going
                report.failed.append({**entry, "error": f"{type(exc).__name__}: {exc}"[:500]})
        return report

    # ------------------------------------------------------------------ handlers
    def _table(self, res: Resource) -> None:
        p = res.properties
        ddb = self.client("dynamodb")
        kwargs: dict[str, Any] = {
            "TableName": res.physical_id,
            "KeySchema": p["KeySchema"],
            "AttributeDefinitions": p["AttributeDefinitions"],
            "BillingMode": p.get("BillingMode")
            or ("PROVISIONED" if "ProvisionedThroughput" in p else "PAY_PER_REQUEST"),
        }
        if kwargs["BillingMode"] == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = p.get("ProvisionedThroughput") or {
                "ReadCapacityUnits": 5,
                "WriteCapacityUnits": 5,
            }
        gsis = []
        for g in p.get("GlobalSecondaryIndexes", []):
            index = {
                "IndexName": g["IndexName"],
                "KeySchema": g["KeySchema"],
                "Projection": g.get("Projection", {"ProjectionType": "ALL"}),
            }
            if kwargs["BillingMode"] == "PROVISIONED":
                index["ProvisionedThroughput"] = g.get("ProvisionedThroughput") or {
                    "ReadCapacityUnits": 5,
                    "WriteCapacityUnits": 5,
                }
            gsis.append(index)
        if gsis:
            kwargs["GlobalSecondaryIndexes"] = gsis
        if p.get("LocalSecondaryIndexes"):
            kwargs["LocalSecondaryIndexes"] = p["LocalSecondaryIndexes"]
        if p.get("StreamSpecification", {}).get("StreamViewType"):
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": p["StreamSpecification"]["StreamViewType"],
            }
        ddb.create_table(**kwargs)
        ttl = p.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=res.physical_id,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        pitr = p.get("PointInTimeRecoverySpecification") or next(
            (
                r.get("PointInTimeRecoverySpecification")
                for r in p.get("Replicas", [])
                if r.get("PointInTimeRecoverySpecification")
            ),
            None,
        )
        if pitr and pitr.get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(
                TableName=res.physical_id, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )

    def _queue(self, res: Resource) -> None:
        p = res.properties
        attributes: dict[str, str] = {}
        for key in (
            "DelaySeconds",
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "VisibilityTimeout",
            "FifoQueue",
            "ContentBasedDeduplication",
            "KmsMasterKeyId",
            "SqsManagedSseEnabled",
        ):
            if key in p:
                value = p[key]
                attributes[key] = str(value).lower() if isinstance(value, bool) else str(value)
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in p:
                attributes[key] = json.dumps(p[key]) if not isinstance(p[key], str) else p[key]
        self.client("sqs").create_queue(QueueName=res.attributes["QueueName"], Attributes=attributes)

    def _topic(self, res: Resource) -> None:
        p = res.properties
        attributes: dict[str, str] = {k: str(p[k]) for k in ("DisplayName", "KmsMasterKeyId") if k in p}
        if p.get("FifoTopic"):
            attributes["FifoTopic"] = "true"
        sns = self.client("sns")
        sns.create_topic(Name=res.attributes["TopicName"], Attributes=attributes)
        for sub in p.get("Subscription", []):
            sns.subscribe(TopicArn=res.physical_id, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])

    def _subscription(self, res: Resource) -> None:
        p = res.properties
        attributes = {}
        for key in ("RawMessageDelivery", "FilterPolicy", "RedrivePolicy", "FilterPolicyScope"):
            if key in p:
                value = p[key]
                attributes[key] = (
                    json.dumps(value)
                    if isinstance(value, dict)
                    else str(value).lower()
                    if isinstance(value, bool)
                    else str(value)
                )
        self.client("sns").subscribe(
            TopicArn=p["TopicArn"], Protocol=p["Protocol"], Endpoint=p["Endpoint"], Attributes=attributes
        )

    def _bus(self, res: Resource) -> None:
        self.client("events").create_event_bus(Name=res.physical_id)

    def _rule(self, res: Resource) -> None:
        p = res.properties
        bus = str(p.get("EventBusName") or "default").rsplit("/", 1)[-1]
        name = res.attributes.get("RuleName", res.physical_id)
        kwargs: dict[str, Any] = {"Name": name, "State": p.get("State", "ENABLED"), "EventBusName": bus}
        if "EventPattern" in p:
            pattern = p["EventPattern"]
            kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if "ScheduleExpression" in p:
            kwargs["ScheduleExpression"] = p["ScheduleExpression"]
        if p.get("Description"):
            kwargs["Description"] = p["Description"]
        events = self.client("events")
        events.put_rule(**kwargs)
        targets = []
        for t in p.get("Targets", []):
            target = {
                k: v
                for k, v in t.items()
                if k
                in (
                    "Id",
                    "Arn",
                    "Input",
                    "InputPath",
                    "InputTransformer",
                    "RetryPolicy",
                    "DeadLetterConfig",
                    "RoleArn",
                    "SqsParameters",
                )
            }
            if "InputTransformer" in target and isinstance(target["InputTransformer"].get("InputPathsMap"), dict):
                target["InputTransformer"] = {**target["InputTransformer"]}
            targets.append(target)
        if targets:
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)

    def _archive(self, res: Resource) -> None:
        p = res.properties
        kwargs: dict[str, Any] = {
            "ArchiveName": res.physical_id,
            "EventSourceArn": p["SourceArn"],
            "RetentionDays": int(p.get("RetentionDays", 0)),
        }
        if "EventPattern" in p:
            pattern = p["EventPattern"]
            kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if p.get("Description"):
            kwargs["Description"] = p["Description"]
        self.client("events").create_archive(**kwargs)

    def _secret(self, res: Resource) -> None:
        p = res.properties
        if "SecretString" not in p:  # the template sets every secret's value; nothing generates one
            raise ValueError("GenerateSecretString is not emulated locally: give the secret a SecretString")
        kwargs = {"Name": res.attributes["Name"], "SecretString": p["SecretString"]}
        if p.get("Description"):
            kwargs["Description"] = p["Description"]
        self.client("secretsmanager").create_secret(**kwargs)

    def _parameter(self, res: Resource) -> None:
        p = res.properties
        kwargs = {"Name": res.physical_id, "Value": str(p["Value"]), "Type": p.get("Type", "String"), "Overwrite": True}
        if p.get("Description"):
            kwargs["Description"] = p["Description"]
        self.client("ssm").put_parameter(**kwargs)

    def _bucket(self, res: Resource) -> None:
        self.client("s3").create_bucket(Bucket=res.physical_id)

    def _log_group(self, res: Resource) -> None:
        logs = self.client("logs")
        logs.create_log_group(logGroupName=res.physical_id)
        if res.properties.get("RetentionInDays"):
            logs.put_retention_policy(
                logGroupName=res.physical_id, retentionInDays=int(res.properties["RetentionInDays"])
            )

    def _alarm(self, res: Resource) -> None:
        p = dict(res.properties)
        keys = (
            "AlarmDescription",
            "ActionsEnabled",
            "OKActions",
            "AlarmActions",
            "InsufficientDataActions",
            "MetricName",
            "Namespace",
            "Statistic",
            "ExtendedStatistic",
            "Dimensions",
            "Period",
            "Unit",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
            "EvaluateLowSampleCountPercentile",
            "Metrics",
            "ThresholdMetricId",
        )
        kwargs = {k: p[k] for k in keys if k in p}
        for num in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if num in kwargs:
                kwargs[num] = int(kwargs[num])
        if "Threshold" in kwargs:
            kwargs["Threshold"] = float(kwargs["Threshold"])
        cw = self.client("cloudwatch")
        cw.put_metric_alarm(AlarmName=res.physical_id, **kwargs)
        cw.set_alarm_state(
            AlarmName=res.physical_id, StateValue="INSUFFICIENT_DATA", StateReason="Unchecked: Initial alarm creation"
        )

    def _dashboard(self, res: Resource) -> None:
        body = res.properties.get("DashboardBody", "{}")
        self.client("cloudwatch").put_dashboard(
            DashboardName=res.physical_id, DashboardBody=body if isinstance(body, str) else json.dumps(body)
        )
