"""The sweeper's re-drive must do the step it re-drives, not a different one."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from tests.conftest import load_event
from tests.integration.test_heal import only_incident
from tests.support.pipeline import Pipeline

FUNCTION = "orders-api"


def api_gateway_alarm() -> dict:
    """A real-shaped alarm on API Gateway 5XX errors of the API named orders-api (no FunctionName)."""
    event = copy.deepcopy(load_event("alarm_state_change"))
    event["detail"]["alarmName"] = "orders-api-5xx"
    event["detail"]["configuration"]["description"] = "API Gateway orders-api returns 5XX"
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"] = {
        "namespace": "AWS/ApiGateway",
        "name": "5XXError",
        "dimensions": {"ApiName": FUNCTION},
    }
    return event


def test_a_redriven_alarm_incident_investigates_the_same_target_as_the_first_delivery(aws, monkeypatch):
    """Expected: re-driving a DETECTED alarm incident investigates what the alarm names, as the
    first delivery would have: an alarm without a FunctionName dimension has no Lambda target, so
    nothing is changed (the runbook refuses with the gap).

    Why it matters: an alarm on another service (API Gateway, SQS, DynamoDB...) is commonly named
    after the function behind it. When the first triage dies (a time-out, the retries exhausted),
    the sweeper re-drives it and takes the alarm's *service* (the ApiName / QueueName / TableName
    dimension, or the alarm name) as the Lambda function: a managed function that happens to share
    that name is investigated and reconfigured for an alarm that was never about it.

    Actual: `sweep._sweep` builds the Intake with `alarm_function=issue.service if origin ==
    "alarm"`; the first delivery uses the FunctionName dimension only (`intake.parse_alarm`).
    """
    from lambdas.manager import heal, logic

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})

    # Given the API's alarm, whose first triage dies in the investigation (every try)
    def dies(*_args, **_kwargs):
        raise RuntimeError("Task timed out after 30.00 seconds")

    with monkeypatch.context() as m:
        m.setattr(logic, "investigate", dies)
        pipeline.put_raw_event(api_gateway_alarm())
        [first] = pipeline.run()
    assert first.error and only_incident(pipeline).status == "DETECTED"

    # When the scheduled scan finds it overdue and re-drives it
    later = datetime.now(UTC) + timedelta(hours=1)
    monkeypatch.setattr(heal, "now", lambda: later)
    scan = pipeline.invoke("manager", load_event("scheduled_event"))
    assert scan.error is None, scan.error
    pipeline.run()

    # Then it is investigated as the first delivery would have been: no Lambda target, nothing changed
    incident = only_incident(pipeline)
    assert incident.investigation["target"] is None, incident.investigation
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3
