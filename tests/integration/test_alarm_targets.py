"""Alarms on an alias or a version: the change must reach what the alias runs, or not be made."""

from __future__ import annotations

import boto3
import pytest

from tests.integration.test_heal import FUNCTION, alarm_event, only_incident
from tests.support.pipeline import Pipeline


def alias_alarm(alias: str) -> dict:
    """The alias's Errors alarm as AWS/Lambda publishes it: FunctionName plus Resource name:alias."""
    event = alarm_event()
    [metric] = event["detail"]["configuration"]["metrics"]
    metric["metricStat"]["metric"]["dimensions"] = {"FunctionName": FUNCTION, "Resource": f"{FUNCTION}:{alias}"}
    return event


@pytest.fixture
def aliased(aws):
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    lam = boto3.client("lambda")
    version = lam.publish_version(FunctionName=FUNCTION)["Version"]
    lam.create_alias(FunctionName=FUNCTION, Name="prod", FunctionVersion=version)
    lam.create_alias(FunctionName=FUNCTION, Name="canary", FunctionVersion="$LATEST")
    return pipeline


def test_an_alias_on_a_published_version_is_not_changed_through_the_function(aliased):
    # Given an Errors alarm on the alias prod, which runs published version 1
    aliased.put_raw_event(alias_alarm("prod"))

    # When the pipeline runs
    aliased.run()

    # Then no change is made to the function (it would not reach version 1), and the gap says why
    incident = only_incident(aliased)
    assert incident.status == "FAILED" and "published version 1" in incident.last_reason
    assert aliased.function_config(FUNCTION)["timeout_s"] == 3
    assert incident.investigation["target"] == FUNCTION
    assert "timeout_s" not in incident.investigation["values"]
    assert any(f"{FUNCTION}:prod runs published version 1" in gap for gap in incident.investigation["gaps"])


def test_an_alias_on_latest_is_healed_through_the_function(aliased):
    aliased.put_raw_event(alias_alarm("canary"))

    aliased.run()

    incident = only_incident(aliased)
    assert incident.status == "VERIFYING"
    assert aliased.function_config(FUNCTION)["timeout_s"] == 10
    assert incident.change["target"] == FUNCTION


def test_an_alias_that_does_not_exist_is_a_gap_not_the_function(aliased):
    aliased.put_raw_event(alias_alarm("gone"))

    aliased.run()

    incident = only_incident(aliased)
    assert incident.status == "FAILED"
    assert aliased.function_config(FUNCTION)["timeout_s"] == 3
    assert any(f"GetFunction {FUNCTION}:gone: not found" in gap for gap in incident.investigation["gaps"])
