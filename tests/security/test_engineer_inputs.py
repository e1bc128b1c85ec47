"""What the Engineer's event carries besides its fix is a copy, and a compromised Engineer can
change it: QA judges a change against the Manager's own reading (and the Manager applies only a
change made from that reading: test_heal_units)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto import mock_aws

from tests.support.pipeline import Pipeline


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    with mock_aws():
        yield Pipeline(parameters={"automation-level": "semi_auto"})


def run_with(pipeline: Pipeline, tamper: Callable[[dict[str, Any]], None]) -> None:
    """Run the chain, changing every FixProposed in flight (the Engineer's event as QA receives it)."""
    while batch := pipeline._receive():
        for agent, event in batch:
            if agent == "qa" and event["detail-type"] == "FixProposed":
                tamper(event["detail"]["data"])
            pipeline.invoke(agent, event)


def throttled(pipeline: Pipeline) -> None:
    pipeline.create_function("orders-api", timeout=3, reserved=100)
    pipeline.put(
        "IssueReported",
        {
            "service": "orders-api",
            "issue_type": "throttling",
            "severity": "high",
            "summary": "throttled",
            "signals": {"throttles": 50.0},
        },
    )


def test_a_forged_reading_cannot_pass_a_limit_cut_off_as_a_low_risk_raise(pipeline: Pipeline) -> None:
    # Given a function with 100 reserved executions, throttled
    throttled(pipeline)

    # When the Engineer's event carries a reading of 1 and proposes 2 (x2: low risk, were it true)
    def forged_reading(data: dict[str, Any]) -> None:
        data["investigation"]["values"]["reserved_concurrency"] = 1.0
        data["fix"]["changes"] = [{"setting": "reserved_concurrency", "target": "orders-api", "proposed": 2.0}]
        data["fix"]["risk_level"] = "low"

    run_with(pipeline, forged_reading)

    # Then the limit was not cut: QA judged the change against the Manager's reading of 100
    [incident] = pipeline.incidents()
    assert incident.status == "FAILED"
    assert "100 -> 2 is a x0.02 step" in incident.last_reason
    assert pipeline.function_config("orders-api")["reserved_concurrency"] == 100
