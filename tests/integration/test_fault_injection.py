"""Fault injection over the whole chain: 60 incidents under each failing-platform scenario.

Each delivery that fails is retried like Lambda's asynchronous invocation (twice), then lands in
the on-failure queue; after the storm the queue is redriven with the faults gone. Then every
incident must be settled, no step's decision may be written twice, and nothing may be lost or
duplicated. Faults are seeded: a failure reproduces.
"""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.support.faults import expire_in_progress
from tests.support.pipeline import Delivery, Pipeline

INCIDENTS = 60
LAMBDA_ASYNC_RETRIES = 2


class SimulatedCrash(RuntimeError):
    """The function died (timeout, out of memory, a kill) at this point."""


@dataclass
class Faults:
    seed: int
    ddb_throttle: float = 0.0
    put_events_partial: float = 0.0
    crash_before_publish: float = 0.0
    crash_after_publish: float = 0.0
    active: bool = False
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def roll(self, probability: float, kind: str) -> bool:
        hit = self.active and self.rng.random() < probability
        if hit:
            self.injected[kind] += 1
        return hit


def install(monkeypatch: pytest.MonkeyPatch, faults: Faults) -> None:
    from selfheal_core.bus import EventPublisher

    original_call = BaseClient._make_api_call

    def make_api_call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        if service == "dynamodb" and faults.roll(faults.ddb_throttle, "ddb_throttle"):
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}}, operation
            )
        if service == "events" and operation == "PutEvents" and faults.roll(faults.put_events_partial, "partial"):
            entries = params["Entries"]
            sent = (
                original_call(self, operation, {**params, "Entries": entries[:-1]})
                if len(entries) > 1
                else {"Entries": []}
            )
            failed = {"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}
            return {"FailedEntryCount": 1, "Entries": [*sent.get("Entries", []), failed]}
        return original_call(self, operation, params)

    original_publish = EventPublisher.publish

    def publish(self: Any, *messages: Any) -> None:
        if faults.roll(faults.crash_before_publish, "crash_before_publish"):
            raise SimulatedCrash("killed before publishing")
        original_publish(self, *messages)
        if faults.roll(faults.crash_after_publish, "crash_after_publish"):
            raise SimulatedCrash("killed after publishing")

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    monkeypatch.setattr(EventPublisher, "publish", publish)


def drive(pipeline: Pipeline, faults: Faults, max_rounds: int = 200) -> list[Delivery]:
    """Deliver until quiet; failed deliveries are retried like Lambda async, then dead-lettered."""
    dead_letters: list[Delivery] = []
    for _ in range(max_rounds):
        faults.active = False  # the test's own queue reads are not the platform under test
        batch = pipeline._receive()
        if not batch:
            break
        for agent, event in batch:
            for _attempt in range(1 + LAMBDA_ASYNC_RETRIES):
                faults.active = True
                delivery = pipeline.invoke(agent, event)
                faults.active = False
                if delivery.error is None:
                    break
            else:
                dead_letters.append(delivery)
    return dead_letters


def settle(pipeline: Pipeline, faults: Faults) -> list[Delivery]:
    dead = drive(pipeline, faults)
    # The operator redrives the on-failure queues once the platform has recovered.
    faults.active = False
    expire_in_progress(pipeline)
    for delivery in dead:
        redriven = pipeline.invoke(delivery.agent, delivery.event)
        assert redriven.error is None, f"redrive of {delivery.event.get('detail-type')} failed: {redriven.error}"
    return drive(pipeline, Faults(seed=0))


def report(i: int) -> dict[str, Any]:
    return {
        "service": f"svc-{i:03d}",
        "issue_type": "latency",
        "severity": "high",
        "summary": f"p95 of svc-{i:03d} is 4 s",
        "signals": {"p95_ms": 4000.0, "timeout_s": 3.0},
        "resource": f"svc-{i:03d}",
        "idempotency_key": f"fault-{i}-{uuid.uuid4().hex[:6]}",
    }


def duplicate_decisions(pipeline: Pipeline, incident_id: str) -> list[tuple[Any, ...]]:
    seen: Counter[tuple[Any, ...]] = Counter()
    for d in pipeline.decisions(incident_id):
        if d["decision_type"] == "fold_duplicate":
            continue
        inputs = d.get("inputs") if isinstance(d.get("inputs"), dict) else {}
        # A step that may legitimately repeat numbers its repeats (a verify window's extension).
        seen[(d["agent"], d["decision_type"], str(inputs.get("attempt")), str(inputs.get("extension")))] += 1
    return [key for key, count in seen.items() if count > 1]


SCENARIOS = {
    "dynamodb_throttling": {"ddb_throttle": 0.03},
    "partial_put_events": {"put_events_partial": 0.35},
    "kill_before_publish": {"crash_before_publish": 0.2},
    "kill_after_publish": {"crash_after_publish": 0.2},
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_incident_settles_under_faults_with_no_duplicate_decision(monkeypatch, scenario):
    from selfheal_core.catalog import SETTLED

    faults = Faults(seed=sum(map(ord, scenario)), **SCENARIOS[scenario])
    with mock_aws():
        # Real (moto) functions to investigate, change and verify; they are reported as the resource.
        pipeline = Pipeline(
            parameters={"automation-level": "full_auto"},
            functions={f"svc-{i:03d}": {"timeout": 3} for i in range(INCIDENTS)},
        )
        install(monkeypatch, faults)
        for i in range(INCIDENTS):
            pipeline.put("IssueReported", report(i))
        leftover = settle(pipeline, faults)

        assert leftover == [], [d.error for d in leftover]
        assert sum(faults.injected.values()) >= 5, (
            f"the scenario injected too little to mean anything: {faults.injected}"
        )
        incidents = pipeline.incidents()
        assert sorted(i.service for i in incidents) == [f"svc-{i:03d}" for i in range(INCIDENTS)]
        stuck = {i.incident_id: i.status for i in incidents if i.status not in {s.value for s in SETTLED}}
        assert stuck == {}, f"{len(stuck)} incidents not settled ({faults.injected}): {stuck}"
        duplicates = {i.incident_id: duplicate_decisions(pipeline, i.incident_id) for i in incidents}
        assert {k: v for k, v in duplicates.items() if v} == {}


# ---------------------------------------------------------------- the model provider failing

PROVIDER_FAULT = 0.45  # per HTTP request: with the SDK's two retries, ~9 % of calls fail for good
CLIENT_TIMEOUT_S = 0.4  # the SDK's per-request timeout in this run; a "timeout" reply takes longer


def provider_replies(faults: Faults) -> Any:
    """Per request: 429, 529 or no answer before the timeout, else a valid config fix for the
    function the prompt names. Fault replies carry a short retry-after so the SDK's backoff stays
    in milliseconds; the SDK still retries exactly as it does against the real API."""
    from tests.support.anthropic_server import api_error, rate_limited, slow, tool_use

    def reply(request: Any) -> Any:
        if faults.roll(PROVIDER_FAULT, "provider"):
            kind = faults.rng.choice(["429", "529", "timeout"])
            faults.injected[f"provider_{kind}"] += 1
            if kind == "429":
                return rate_limited(0.01)
            if kind == "529":
                return api_error(529, "overloaded_error", "Overloaded", {"retry-after-ms": "10"})
            return slow(tool_use({}), CLIENT_TIMEOUT_S * 3)
        service = re.search(r"svc-\d{3}", request.raw_body)
        assert service, "the prompt names the function"
        return tool_use(
            {
                "changes": [{"setting": "timeout_s", "target": service.group(0), "current": 3, "proposed": 10}],
                "rationale": "p95 of 4 s is above the 3 s timeout",
                "risk_level": "low",
            }
        )

    return reply


def test_provider_429_529_and_timeouts_wait_and_resume_without_extra_model_calls(monkeypatch):
    from lambdas.engineer.providers import claude
    from lambdas.manager import heal
    from selfheal_core.catalog import SETTLED, Status
    from tests.conftest import load_event
    from tests.support.anthropic_server import AnthropicTestServer

    faults = Faults(seed=529)
    answered: Counter[str] = Counter()
    responder = provider_replies(faults)

    def counting(request: Any) -> Any:
        reply = responder(request)
        if reply.status == 200 and not reply.delay_s:
            answered[re.search(r"svc-\d{3}", request.raw_body).group(0)] += 1
        return reply

    monkeypatch.setattr(claude, "CALL_TIMEOUT_CAP_S", CLIENT_TIMEOUT_S)
    with AnthropicTestServer(responder=counting) as server, mock_aws():
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        pipeline = Pipeline(
            parameters={
                "automation-level": "full_auto",
                "engineer-provider": "anthropic",
                "daily-llm-budget-usd": "100",
            },
            secret={"anthropic_api_key": "sk-ant-" + "api03-" + "x" * 40},
            functions={f"svc-{i:03d}": {"timeout": 3} for i in range(INCIDENTS)},
        )
        install(monkeypatch, faults)
        for i in range(INCIDENTS):
            pipeline.put("IssueReported", report(i))
        assert settle(pipeline, faults) == []
        waited = {i.incident_id for i in pipeline.incidents() if i.status == Status.RETRY_WAIT.value}
        # The outage is over: each scheduled scan after the backoff resumes the waiting incidents.
        start = heal.now()
        for n in range(1, 6):
            monkeypatch.setattr(heal, "now", lambda n=n: start + timedelta(hours=n))
            pipeline.invoke("manager", {**load_event("scheduled_event"), "id": f"scan-{n}"})
            assert drive(pipeline, Faults(seed=0)) == []

        incidents = pipeline.incidents()
        assert len(incidents) == INCIDENTS
        assert sum(faults.injected[f"provider_{k}"] for k in ("429", "529", "timeout")) >= 30, faults.injected
        assert len(waited) >= 3, f"too few calls failed for good to test waiting: {faults.injected}"
        left = {
            i.incident_id: i.status
            for i in incidents
            if i.status not in {s.value for s in SETTLED} or i.status == Status.RETRY_WAIT.value
        }
        assert left == {}, f"not settled or still waiting: {left}"
        assert all(i.status != Status.FAILED.value for i in incidents if i.incident_id in waited)
        # Every incident's fix came from exactly one model answer: no attempt asked twice.
        assert answered == Counter({f"svc-{i:03d}": 1 for i in range(INCIDENTS)})
        duplicates = {i.incident_id: duplicate_decisions(pipeline, i.incident_id) for i in incidents}
        assert {k: v for k, v in duplicates.items() if v} == {}
