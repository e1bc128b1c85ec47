"""Runs the real handlers as a chain under moto.

Routes are the rules of the synthesized CDK app (tests/support/template.py); moto's EventBridge
matches their patterns and delivers to one SQS queue per agent, and `run()` pumps those queues
into the handlers until the chain is quiet. Nothing is short-circuited: every hop is a real
PutEvents, a real pattern match and a real handler invocation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import boto3

from selfheal_core import aws
from selfheal_core.catalog import AGENTS
from selfheal_core.config import PARAMETER_NAMES
from tests.support.context import FakeLambdaContext
from tests.support.tables import create_tables
from tests.support.template import lambda_routes


@dataclass
class Delivery:
    agent: str
    event: dict[str, Any]
    result: Any = None
    error: str | None = None


@dataclass
class Pipeline:
    parameters: dict[str, str] = field(default_factory=dict)
    secret: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    # Lambda functions to heal: name -> create_function keyword overrides (see create_function).
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        aws.reset_clients()
        # moto cannot run Lambda functions: QA reaches the runner in-process, through the same
        # JSON contract (in the local runtime and in AWS it is a real lambda:Invoke).
        import lambdas.qa.handler as qa_handler
        from tests.support.qa_runner import InProcessRunner

        qa_handler.make_runner = InProcessRunner  # type: ignore[assignment]
        self.env = os.environ
        self.events = boto3.client("events")
        self.sqs = boto3.client("sqs")
        self.queues: dict[str, str] = {}
        self._provision()

    # ------------------------------------------------------------------ set-up
    def _provision(self) -> None:
        env = self.env
        create_tables(env["DECISIONS_TABLE_NAME"], env["MONITORING_TABLE_NAME"], env["IDEMPOTENCY_TABLE_NAME"])
        boto3.client("s3").create_bucket(Bucket=env["ARTIFACTS_BUCKET"])
        topic_arn = boto3.client("sns").create_topic(Name=env["ALERTS_TOPIC_ARN"].rsplit(":", 1)[-1])["TopicArn"]
        self.notifications_queue = self._queue("notifications")
        boto3.client("sns").subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=self._queue_arn(self.notifications_queue),
            Attributes={"RawMessageDelivery": "true"},
        )
        ssm = boto3.client("ssm")
        defaults = {
            "automation-level": "full_auto",
            "max-fix-attempts": "3",
            "daily-llm-budget-usd": "5",
            "engineer-provider": "runbook",
        }
        for name, value in {**defaults, **self.parameters}.items():
            assert name in PARAMETER_NAMES, name
            ssm.put_parameter(Name=f"{env['PARAMETER_PREFIX']}{name}", Value=value, Type="String", Overwrite=True)
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name=env["SECRET_NAME"], SecretString="{}")
        secrets.create_secret(Name=env["ANTHROPIC_SECRET_NAME"], SecretString=json.dumps(self.secret))
        self.events.create_event_bus(Name=env["EVENT_BUS_NAME"])
        for agent in AGENTS:
            self.queues[agent] = self._queue(agent)
        for route in lambda_routes():
            bus = "default" if route.on_default_bus else env["EVENT_BUS_NAME"]
            self._rule(route.rule, bus, route.pattern, self.queues[route.agent])

        for name, spec in self.functions.items():
            self.create_function(name, **spec)

    def create_function(
        self,
        name: str,
        *,
        timeout: int = 3,
        memory: int = 128,
        managed: bool = True,
        reserved: int | None = None,
        max_retries: int | None = None,
    ) -> str:
        """A function in moto's Lambda backend (configuration calls need no Docker); returns its ARN."""
        import io
        import zipfile

        iam = boto3.client("iam")
        try:
            role = iam.get_role(RoleName="heal-target")["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role = iam.create_role(RoleName="heal-target", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("app.py", "def handler(event, context):\n    return event\n")
        lam = boto3.client("lambda")
        tags = {"selfheal:managed": "true"} if managed else {"team": "orders"}
        arn = lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": code.getvalue()},
            Timeout=timeout,
            MemorySize=memory,
            Tags=tags,
        )["FunctionArn"]
        if reserved is not None:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)
        if max_retries is not None:
            lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=max_retries)
        return str(arn)

    def function_config(self, name: str) -> dict[str, Any]:
        lam = boto3.client("lambda")
        config = lam.get_function_configuration(FunctionName=name)
        reserved = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        return {
            "timeout_s": config["Timeout"],
            "memory_mb": config["MemorySize"],
            "reserved_concurrency": reserved,
            "revision_id": config["RevisionId"],
        }

    def schedules(self) -> list[dict[str, Any]]:
        """The one-time schedules the Manager created, in full (moto does not fire them)."""
        scheduler = boto3.client("scheduler")
        names = [s["Name"] for s in scheduler.list_schedules().get("Schedules", [])]
        return [scheduler.get_schedule(Name=n) for n in names]

    def fire_schedules(self, kind: str | None = None) -> list[str]:
        """Do what EventBridge Scheduler does at each schedule's time: put its event on the bus, then
        delete it (ActionAfterCompletion=DELETE). `kind` picks 'apply' or 'verify' schedules."""
        scheduler = boto3.client("scheduler")
        fired = []
        for schedule in self.schedules():
            if kind and f"-{kind}-" not in schedule["Name"]:
                continue
            target = schedule["Target"]
            params = target["EventBridgeParameters"]
            self.put(
                params["DetailType"],
                json.loads(target["Input"]),
                source=params["Source"],
                bus=target["Arn"].rsplit("/", 1)[-1],
            )
            scheduler.delete_schedule(Name=schedule["Name"])
            fired.append(schedule["Name"])
        return fired

    def fire_due(self, kind: str | None = None, *, after_seconds: int = 2 * 86_400) -> list[Delivery]:
        """Move the heal loop's clock past every due time, fire the schedules, run the chain."""
        from datetime import timedelta

        from lambdas.manager import heal

        original = heal.now
        heal.now = lambda: original() + timedelta(seconds=after_seconds)  # type: ignore[assignment]
        try:
            self.fire_schedules(kind)
            return self.run()
        finally:
            heal.now = original  # type: ignore[assignment]

    def _queue(self, name: str) -> str:
        return self.sqs.create_queue(QueueName=f"test-{name}")["QueueUrl"]

    def _queue_arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def _rule(self, name: str, bus: str, pattern: dict[str, Any], queue_url: str) -> None:
        self.events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern), State="ENABLED")
        self.events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "q", "Arn": self._queue_arn(queue_url)}])

    # ------------------------------------------------------------------ driving
    def put(
        self, detail_type: str, detail: dict[str, Any], *, source: str = "acme.monitoring", bus: str | None = None
    ) -> None:
        response = self.events.put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "EventBusName": bus or self.env["EVENT_BUS_NAME"],
                }
            ]
        )
        assert response["FailedEntryCount"] == 0, response

    def put_raw_event(self, event: dict[str, Any]) -> None:
        """A full EventBridge event as AWS would deliver it (e.g. tests/events/*.json)."""
        bus = "default" if event.get("source", "").startswith("aws.") else self.env["EVENT_BUS_NAME"]
        self.put(event["detail-type"], event["detail"], source=event["source"], bus=bus)

    def run(self, max_deliveries: int = 500) -> list[Delivery]:
        """Deliver queued events to their handlers until every queue is empty."""
        handled: list[Delivery] = []
        while len(handled) < max_deliveries:
            batch = self._receive()
            if not batch:
                break
            for agent, event in batch:
                handled.append(self.invoke(agent, event))
        self.deliveries.extend(handled)
        return handled

    def invoke(self, agent: str, event: dict[str, Any]) -> Delivery:
        delivery = Delivery(agent, event)
        try:
            delivery.result = handler_of(agent)(event, FakeLambdaContext(function_name=f"selfheal-test-{agent}"))
        except Exception as exc:  # noqa: BLE001 - recorded; in AWS the retry policy then the DLQ take over
            delivery.error = f"{type(exc).__name__}: {exc}"
        return delivery

    def _receive(self) -> list[tuple[str, dict[str, Any]]]:
        batch = []
        for agent, url in self.queues.items():
            messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            for message in messages:
                batch.append((agent, json.loads(message["Body"])))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return batch

    def notifications(self) -> list[str]:
        found = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.notifications_queue, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return found
            for message in messages:
                found.append(message["Body"])
                self.sqs.delete_message(QueueUrl=self.notifications_queue, ReceiptHandle=message["ReceiptHandle"])

    # ------------------------------------------------------------------ reading state
    def decisions(self, incident_id: str) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        table = boto3.resource("dynamodb").Table(self.env["DECISIONS_TABLE_NAME"])
        items = table.query(
            KeyConditionExpression=Key("pk").eq(f"INCIDENT#{incident_id}") & Key("sk").begins_with("DECISION#")
        )["Items"]
        return items

    def incidents(self) -> list[Any]:
        from selfheal_core.incidents import IncidentStore

        return IncidentStore(self.env["DECISIONS_TABLE_NAME"]).list_recent(days=1, limit=1000)


def handler_of(agent: str) -> Any:
    module = __import__(f"lambdas.{agent}.handler", fromlist=["handler"])
    return module.handler


def throttling_runbook_asking(monkeypatch, factor: float) -> None:
    """The throttling runbook asking for x`factor` of the reservation read: for `factor` above 4,
    steps QA's blast-radius policy refuses (the shipped runbooks stay inside it), each retry
    halfway back to the value read."""
    import dataclasses

    from lambdas.engineer.providers.runbook import RUNBOOKS

    monkeypatch.setitem(
        RUNBOOKS, "throttling", dataclasses.replace(RUNBOOKS["throttling"], compute=lambda cur: cur * factor)
    )
