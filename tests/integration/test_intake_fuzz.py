"""Property: every shape a producer can deliver to the Manager is refused with a recorded reason,
or opens or folds an incident. Never a crash, never a silent drop."""

from __future__ import annotations

import copy
import json
import os
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from tests.conftest import load_event
from tests.support.pipeline import Pipeline

EXAMPLES = int(
    os.environ.get("FUZZ_EXAMPLES", "1000")
)  # the issue asks 1,000 shapes per run; fewer for a quick local look
# "unconfirmed": an OK whose alarm is not OK now (events are not ordered); the incident goes on.
ACTIONS = {"rejected", "opened", "folded", "stale", "ignored", "resolved", "unconfirmed"}

SPECIAL_NUMBERS = st.sampled_from(["NaN", "inf", "-inf", "1e999", 1e300, -1e200, 1e-200, 0, -0.0, 2**70, "12", ""])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | SPECIAL_NUMBERS
)
JSON = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
ISSUE_KEYS = [
    "service",
    "issue_type",
    "severity",
    "summary",
    "signals",
    "evidence",
    "code",
    "idempotency_key",
    "resource",
    "metadata",
    "data",
    "evidence_artifact",
    "extra",
]


def _valid_issue() -> dict[str, Any]:
    return {
        "service": "fuzz-api",
        "issue_type": "latency",
        "severity": "high",
        "summary": "p95 is 4 s",
        "signals": {"p95_ms": 4000.0},
        "evidence": ["line"],
    }


@st.composite
def issue_reported(draw: Any) -> dict[str, Any]:
    detail: Any = _valid_issue()
    for key in draw(st.lists(st.sampled_from(ISSUE_KEYS), max_size=4)):
        if draw(st.booleans()):
            detail.pop(key, None)
        else:
            detail[key] = draw(JSON)
    if draw(st.integers(0, 9)) == 0:
        detail = draw(JSON)  # not even an object, sometimes
    if draw(st.booleans()) and isinstance(detail, dict):  # the envelope form
        detail = {
            "metadata": draw(st.one_of(JSON, st.just({"incident_id": "1", "correlation_id": "c", "producer": "acme"}))),
            "data": detail,
        }
    return _event("IssueReported", draw(st.sampled_from(["acme.orders", "agentops.qa", ""])), detail)


@st.composite
def alarm_change(draw: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event(draw(st.sampled_from(["alarm_state_change", "alarm_state_change_metric_math"]))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(
            st.sampled_from(
                [
                    ("state", "value"),
                    ("state", "reasonData"),
                    ("state",),
                    ("alarmName",),
                    ("configuration", "metrics"),
                    ("configuration",),
                    ("previousState",),
                ]
            )
        )
        node = event["detail"]
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[path[-1]] = draw(JSON | st.sampled_from(["ALARM", "OK", "INSUFFICIENT_DATA", "BROKEN"]))
    return {**event, "id": str(uuid.uuid4())}


@st.composite
def step_event(draw: Any) -> dict[str, Any]:
    detail_type = draw(
        st.sampled_from(
            ["FixValidated", "RemediationFailed", "ApprovalGranted", "ApprovalDenied", "Unknown", "FixProposed"]
        )
    )
    source = draw(st.sampled_from(["agentops.qa", "agentops.engineer", "agentops.operator", "evil"]))
    return _event(detail_type, source, {"metadata": draw(JSON), "data": draw(JSON)})


def _event(detail_type: str, source: str, detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-11-27T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


RECORDED: list[str] = []


@pytest.fixture(scope="module")
def pipeline():
    from selfheal_core.rejections import RejectionLog

    original = RejectionLog.record

    def counted(self: Any, **kwargs: Any) -> Any:
        item = original(self, **kwargs)  # really stored; counted here to keep each example O(1)
        RECORDED.append(item["reason"])
        return item

    RejectionLog.record = counted  # type: ignore[method-assign]
    try:
        with mock_aws():
            yield Pipeline(parameters={"automation-level": "manual"})
    finally:
        RejectionLog.record = original  # type: ignore[method-assign]


def _rejections(pipeline: Pipeline) -> int:
    return len(RECORDED)


@pytest.mark.timeout(1_800)  # about 45 s for 1,000 shapes on 2 cores; generous for a loaded machine
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(event=st.one_of(issue_reported(), alarm_change(), step_event()))
def test_every_intake_shape_is_refused_with_a_reason_or_becomes_an_incident(pipeline: Pipeline, event: Any) -> None:
    from selfheal_core.incidents import IncidentStore

    event = json.loads(json.dumps(event))  # what EventBridge can deliver is JSON
    before = _rejections(pipeline)
    delivery = pipeline.invoke("manager", event)
    assert delivery.error is None, delivery.error
    action = delivery.result["action"]
    assert action in ACTIONS, delivery.result
    if action == "rejected":
        assert _rejections(pipeline) == before + 1 and delivery.result["reason"]
    if action in ("opened", "folded"):
        assert IncidentStore(pipeline.env["DECISIONS_TABLE_NAME"]).get(delivery.result["incident_id"]) is not None
