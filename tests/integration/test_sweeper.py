"""The sweeper: an incident whose step died with all its retries is re-driven, then escalated.

Each test kills a step on every delivery it gets (its retries too: the event ends in the DLQ),
then runs the scheduled scan before and after the step's allowance.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import timedelta

import boto3

from lambdas.engineer.providers.runbook import RunbookProvider
from lambdas.manager import heal, logic, sweep
from selfheal_core.bus import EventPublisher
from selfheal_core.catalog import AGENT_TIMEOUT_S
from selfheal_core.incidents import Status
from tests.conftest import load_event
from tests.support.faults import Killed, latency_issue
from tests.support.pipeline import Pipeline


def manual_pipeline() -> Pipeline:
    return Pipeline(parameters={"automation-level": "manual"}, functions={"orders-api": {"timeout": 3}})


SENT: list[str] = []  # detail-types really published while a kill is in place
ORIGINAL_PUBLISH = EventPublisher.publish


def kill(monkeypatch, source: str, detail_type: str, *, times: int = 1_000) -> list[str]:
    """Every publish of `detail_type` by `source` dies (up to `times`), before it goes out."""
    original = EventPublisher.publish
    killed: list[str] = []
    SENT.clear()

    def publish(self, *messages):
        if self.source == source and any(m.detail_type == detail_type for m in messages) and len(killed) < times:
            killed.append(detail_type)
            raise Killed(f"killed before publishing {detail_type}")
        original(self, *messages)
        SENT.extend(m.detail_type for m in messages)

    monkeypatch.setattr(EventPublisher, "publish", publish)
    return killed


def count_proposals(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = RunbookProvider.propose

    def propose(self, request):
        calls.append(request.incident_id)
        return original(self, request)

    monkeypatch.setattr(RunbookProvider, "propose", propose)
    return calls


def scan(pipeline: Pipeline, monkeypatch, *, after: timedelta) -> dict:
    """The scheduled scan at `after` from now, then whatever it sent runs to the end."""
    start = heal.now()
    monkeypatch.setattr(heal, "now", lambda: start + after)
    scanned = pipeline.invoke("manager", {**load_event("scheduled_event"), "id": str(uuid.uuid4())})
    assert scanned.error is None, scanned.error
    pipeline.run()
    return scanned.result


def decisions_of(pipeline: Pipeline, incident_id: str, kind: str) -> list[dict]:
    return [d for d in pipeline.decisions(incident_id) if d["decision_type"] == kind]


def statuses(incident) -> list[str]:
    return [h["status"] for h in incident.status_history]


def test_a_lost_verdict_is_redriven_from_the_stored_proposal_and_qas_record(aws, monkeypatch):
    # Given QA's FixValidated never goes out (every try dies after VALIDATED was written)
    pipeline = manual_pipeline()
    proposals = count_proposals(monkeypatch)
    kill(monkeypatch, "agentops.qa", "FixValidated")
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.status == Status.VALIDATED.value
    # When the scan runs inside the step's allowance, nothing is touched
    assert scan(pipeline, monkeypatch, after=timedelta(minutes=5))["stuck"] == []
    # And when it runs after the allowance (the publisher works again)
    monkeypatch.undo()
    proposals = count_proposals(monkeypatch)
    result = scan(pipeline, monkeypatch, after=sweep.allowance(Status.VALIDATED) + timedelta(seconds=1))
    # Then the step was re-driven and the incident finished it: approval is asked for
    assert result["stuck"] == [f"{incident.incident_id} redriven"]
    [after] = pipeline.incidents()
    assert after.status == Status.AWAITING_APPROVAL.value
    # without a new model call, a second validation, or the incident moving back
    assert proposals == []
    assert len(decisions_of(pipeline, incident.incident_id, "validate_fix")) == 1
    assert len(decisions_of(pipeline, incident.incident_id, "propose_fix")) == 1
    history = statuses(after)
    assert history[history.index("VALIDATED") :] == ["VALIDATED", "VALIDATED", "AWAITING_APPROVAL"], history
    assert len(decisions_of(pipeline, incident.incident_id, "redrive")) == 1


def test_a_request_that_never_reached_the_engineer_is_redriven_once(aws, monkeypatch):
    # Given the Manager's RemediationRequested never goes out (REMEDIATING, no proposal stored)
    pipeline = manual_pipeline()
    kill(monkeypatch, "agentops.manager", "RemediationRequested")
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.status == Status.REMEDIATING.value
    monkeypatch.undo()
    proposals = count_proposals(monkeypatch)
    # When the scan runs after the Engineer's allowance, twice (the second finds nothing overdue)
    first = scan(pipeline, monkeypatch, after=sweep.allowance(Status.REMEDIATING) + timedelta(seconds=1))
    second = scan(pipeline, monkeypatch, after=2 * sweep.allowance(Status.REMEDIATING))
    # Then the Engineer was asked once, and the incident went on to ask for approval
    assert first["stuck"] == [f"{incident.incident_id} redriven"] and second["stuck"] == []
    assert proposals == [incident.incident_id]
    [after] = pipeline.incidents()
    assert after.status == Status.AWAITING_APPROVAL.value
    assert len(decisions_of(pipeline, incident.incident_id, "redrive")) == 1


def test_a_heal_step_failing_on_the_scan_does_not_stop_the_sweep_of_the_other_incidents(aws, monkeypatch):
    # Given an applied change whose VerifyDue was lost and whose verification fails (a bug we do not
    # know yet, an error on every try), and another incident whose request never reached the Engineer
    pipeline = Pipeline(functions={"orders-api": {"timeout": 3}, "billing-api": {"timeout": 3}})
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    [verifying] = pipeline.incidents()
    assert verifying.status == Status.VERIFYING.value
    for schedule in pipeline.schedules():
        boto3.client("scheduler").delete_schedule(Name=schedule["Name"])

    def broken(incident, ports):
        raise RuntimeError("verification failed")

    monkeypatch.setattr(heal, "check_recovery", broken)
    kill(monkeypatch, "agentops.manager", "RemediationRequested")
    pipeline.put("IssueReported", {**latency_issue(), "service": "billing-api", "resource": "billing-api"})
    pipeline.run()
    stuck = next(i for i in pipeline.incidents() if i.service == "billing-api")
    assert stuck.status == Status.REMEDIATING.value
    monkeypatch.setattr(EventPublisher, "publish", ORIGINAL_PUBLISH)

    # When the scan runs well past both deadlines
    result = scan(pipeline, monkeypatch, after=timedelta(days=1))

    # Then the scan completed: the other incident was re-driven, the failing one is left to the next scan
    assert result["swept"] == []
    assert result["stuck"] == [f"{stuck.incident_id} redriven"]
    assert next(i for i in pipeline.incidents() if i.service == "orders-api").status == Status.VERIFYING.value


def test_an_incident_left_detected_is_triaged_again_by_the_sweeper(aws, monkeypatch):
    # Given the Manager dies after opening the incident, before triage finished (every try)
    pipeline = manual_pipeline()
    original = logic.open_detected

    def die(*args, **kwargs):
        raise Killed("killed while triaging")

    monkeypatch.setattr(logic, "open_detected", die)
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.status == Status.DETECTED.value
    monkeypatch.setattr(logic, "open_detected", original)
    # When the scan runs after the Manager's allowance
    scan(pipeline, monkeypatch, after=sweep.allowance(Status.DETECTED) + timedelta(seconds=1))
    # Then the incident is triaged once and goes through the whole chain
    [after] = pipeline.incidents()
    assert after.status == Status.AWAITING_APPROVAL.value
    assert len(decisions_of(pipeline, incident.incident_id, "triage")) == 1


def test_a_step_that_keeps_dying_is_escalated_with_the_reason_after_its_redrives(aws, monkeypatch):
    # Given the Engineer dies on every delivery, re-drives included
    pipeline = manual_pipeline()
    kill(monkeypatch, "agentops.engineer", "FixProposed")
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    [incident] = pipeline.incidents()
    allowance = sweep.allowance(Status.FIX_PROPOSED) + timedelta(seconds=1)
    # When the scan runs after each allowance
    outcomes = [scan(pipeline, monkeypatch, after=allowance * n)["stuck"] for n in range(1, 5)]
    # Then it was re-driven twice, then escalated once, then left alone
    assert outcomes == [
        [f"{incident.incident_id} redriven"],
        [f"{incident.incident_id} redriven"],
        [f"{incident.incident_id} escalated"],
        [],
    ]
    [after] = pipeline.incidents()
    assert after.status == Status.ESCALATED.value
    assert "FIX_PROPOSED at attempt 1" in after.last_reason and "after 2 re-drives" in after.last_reason
    assert len(decisions_of(pipeline, incident.incident_id, "sweep_escalate")) == 1
    assert SENT.count("IncidentEscalated") == 1


def test_a_status_no_step_owns_is_escalated_not_left_forever(aws, monkeypatch):
    # Given an incident in a working status the sweeper knows no step for (a bug we do not know yet)
    pipeline = manual_pipeline()
    kill(monkeypatch, "agentops.engineer", "FixProposed")
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    monkeypatch.setattr(
        sweep, "STEP_OWNER", {k: v for k, v in sweep.STEP_OWNER.items() if k is not Status.FIX_PROPOSED}
    )
    # When the scan runs after the longest allowance
    result = scan(pipeline, monkeypatch, after=timedelta(hours=1))
    # Then it is escalated with the reason
    [after] = pipeline.incidents()
    assert result["stuck"] == [f"{after.incident_id} escalated"]
    assert "no step moves an incident on from FIX_PROPOSED" in after.last_reason


def test_waiting_for_a_person_is_never_swept(aws, monkeypatch):
    pipeline = manual_pipeline()
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.status == Status.AWAITING_APPROVAL.value
    assert scan(pipeline, monkeypatch, after=timedelta(days=3))["stuck"] == []
    assert pipeline.incidents()[0].status == Status.AWAITING_APPROVAL.value


def test_the_sweep_emits_a_metric_per_swept_incident(aws, monkeypatch, capsys):
    from agentops_monitoring import names

    pipeline = manual_pipeline()
    kill(monkeypatch, "agentops.manager", "RemediationRequested", times=1)
    pipeline.put("IssueReported", latency_issue())
    pipeline.run()
    capsys.readouterr()
    scan(pipeline, monkeypatch, after=sweep.allowance(Status.REMEDIATING) + timedelta(seconds=1))
    docs = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and names.SWEPT_INCIDENTS in line
    ]
    assert [(d[names.SWEPT_INCIDENTS], d[names.OUTCOME]) for d in docs] == [([1.0], "redriven")]


def test_the_allowances_follow_the_deployed_timeouts():
    from stacks.pipeline_stack import AGENTS

    assert {agent: int(spec[0].to_seconds()) for agent, spec in AGENTS.items()} == AGENT_TIMEOUT_S


def api_gateway_alarm() -> dict:
    """A real-shaped alarm on API Gateway 5XX errors of the API named orders-api (no FunctionName)."""
    event = copy.deepcopy(load_event("alarm_state_change"))
    event["detail"]["alarmName"] = "orders-api-5xx"
    event["detail"]["configuration"]["description"] = "API Gateway orders-api returns 5XX"
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"] = {
        "namespace": "AWS/ApiGateway",
        "name": "5XXError",
        "dimensions": {"ApiName": "orders-api"},
    }
    return event


def test_a_redriven_alarm_incident_investigates_the_same_target_as_the_first_delivery(aws, monkeypatch):
    """An alarm on another service is often named after the function behind it: the re-drive must
    not take the alarm's ApiName (its `service`) for a Lambda function the first delivery never named."""
    pipeline = Pipeline(functions={"orders-api": {"timeout": 3, "memory": 512}})

    # Given the API's alarm, whose first triage dies in the investigation (every try)
    def dies(*_args, **_kwargs):
        raise Killed("Task timed out after 30.00 seconds")

    with monkeypatch.context() as m:
        m.setattr(logic, "investigate", dies)
        pipeline.put_raw_event(api_gateway_alarm())
        [first] = pipeline.run()
    [incident] = pipeline.incidents()
    assert first.error and incident.status == Status.DETECTED.value and incident.alarm_function is None

    # When the scheduled scan finds it overdue and re-drives it
    scan(pipeline, monkeypatch, after=sweep.allowance(Status.DETECTED) + timedelta(seconds=1))

    # Then it is investigated as the first delivery would have been: no Lambda target, nothing changed
    [after] = pipeline.incidents()
    assert after.investigation.get("target") is None, after.investigation
    assert any("name no single function" in gap for gap in after.investigation["gaps"]), after.investigation
    assert pipeline.function_config("orders-api")["timeout_s"] == 3


def test_a_redriven_alarm_incident_investigates_the_function_its_alarm_names(aws, monkeypatch):
    """The FunctionName the first delivery read is kept on the incident, so the re-drive reads it too."""
    pipeline = Pipeline(functions={"orders-api": {"timeout": 3}, "orders-worker": {"timeout": 3}})
    alarm = copy.deepcopy(load_event("alarm_state_change"))
    alarm["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {
        "FunctionName": "orders-worker"
    }

    def dies(*_args, **_kwargs):
        raise Killed("Task timed out after 30.00 seconds")

    with monkeypatch.context() as m:
        m.setattr(logic, "investigate", dies)
        pipeline.put_raw_event(alarm)
        pipeline.run()
    [incident] = pipeline.incidents()
    assert incident.status == Status.DETECTED.value and incident.alarm_function == "orders-worker"

    scan(pipeline, monkeypatch, after=sweep.allowance(Status.DETECTED) + timedelta(seconds=1))

    [after] = pipeline.incidents()
    assert after.investigation["target"] == "orders-worker", after.investigation
