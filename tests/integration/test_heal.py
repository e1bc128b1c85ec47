"""Heal for real under moto: investigate the function, apply the approved change, verify, roll back.

The functions live in moto's Lambda backend (configuration calls need no Docker), with a
RevisionId that UpdateFunctionConfiguration checks (selfheal_dev/local/lambda_revisions.py).
Schedules are created in moto's EventBridge Scheduler and fired by the test the way the
service would: their event put on the bus at their time.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.cloudwatch.models import cloudwatch_backends
from moto.core import DEFAULT_ACCOUNT_ID as ACCOUNT_ID

from lambdas.manager.heal import evidence_since, first_whole_minute
from tests.conftest import load_event
from tests.support.pipeline import Pipeline

FUNCTION = "orders-api"
ALARM = "orders-api-Errors"


class Dependant:
    """Another team's subscription: a rule on the agents bus for the Fix* events, into a queue."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.sqs = boto3.client("sqs")
        self.url = self.sqs.create_queue(QueueName="dependant")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events")
        bus = pipeline.env["EVENT_BUS_NAME"]
        events.put_rule(
            Name="dependant",
            EventBusName=bus,
            State="ENABLED",
            EventPattern=json.dumps(
                {"source": ["agentops.manager"], "detail-type": ["FixApplied", "FixVerified", "FixRolledBack"]}
            ),
        )
        events.put_targets(Rule="dependant", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        self.seen: list[dict] = []

    def events(self) -> list[dict]:
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return self.seen
            for m in messages:
                body = json.loads(m["Body"])
                self.seen.append({"type": body["detail-type"], **body["detail"]["data"]})
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])


def alarm_in_state(state: str, datapoint: float) -> None:
    """The originating alarm as CloudWatch holds it (DescribeAlarms is read at the verify deadline)."""
    cw = boto3.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName=ALARM,
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": FUNCTION}],
    )
    configured_before_the_incident(ALARM)
    cw.set_alarm_state(
        AlarmName=ALARM,
        StateValue=state,
        StateReason="test",
        StateReasonData=json.dumps(
            {
                "recentDatapoints": [datapoint],
                "threshold": 5.0,
                # the period evaluated: a minute from now (after the change, and after any call
                # in flight at the change could still end, when the test applied one first)
                "evaluatedDatapoints": [
                    {"timestamp": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(), "value": datapoint}
                ],
            }
        ),
    )


def configured_before_the_incident(name: str) -> None:
    """An alarm exists, as configured, before it opens an incident: moto stamps its configuration
    when the test creates it (after the incident), so the stamp is moved back an hour."""
    alarm = cloudwatch_backends[ACCOUNT_ID]["us-east-1"].alarms[name]
    alarm.configuration_updated_timestamp -= timedelta(hours=1)


def alarm_event(state: str = "ALARM", datapoint: float = 37.0) -> dict:
    event = load_event("alarm_state_change")
    if state != "ALARM":
        event = copy.deepcopy(event)
        event["detail"]["state"] = {
            "value": state,
            "reason": "Threshold no longer crossed",
            "timestamp": "2025-11-20T17:20:00.000+0000",
            "reasonData": json.dumps({"recentDatapoints": [datapoint], "threshold": 5.0}),
        }
    return event


def alarm_transition(state: str, at: str, datapoint: float) -> dict:
    """The alarm's state-change event as CloudWatch sends it, stamped with when the state changed."""
    event = copy.deepcopy(alarm_event(state, datapoint=datapoint))
    event["detail"]["state"]["timestamp"] = at
    return event


def traffic_after_the_change(pipeline: Pipeline, **metrics: float) -> None:
    """The target's AWS/Lambda metrics 90 s after the change, in a minute that began after it (one datapoint each)."""
    at = datetime.fromisoformat(only_incident(pipeline).change["applied_at"]) + timedelta(seconds=90)
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": "FunctionName", "Value": FUNCTION}],
                "Timestamp": at,
                "Value": v,
            }
            for name, v in metrics.items()
        ],
    )


def invoked_in_a_minute_after(applied: datetime, invocations: float) -> None:
    """Invocations of the target 90 s after the change: in a minute that began after it."""
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "FunctionName", "Value": FUNCTION}],
                "Timestamp": applied + timedelta(seconds=90),
                "Value": invocations,
            }
        ],
    )


def decisions_of(pipeline: Pipeline, incident_id: str, kind: str) -> list[dict]:
    return [d for d in pipeline.decisions(incident_id) if d["decision_type"] == kind]


def only_incident(pipeline: Pipeline):
    [incident] = pipeline.incidents()
    return incident


# ------------------------------------------------------------------------------ investigation


def test_investigation_reads_the_real_values_and_the_engineer_uses_them(aws):
    # Given orders-api with timeout 30 s (not the 3 s Lambda default), 256 MB, 7 reserved, 1 retry,
    # and an error line in its log group that carries a secret
    pipeline = Pipeline(
        parameters={"automation-level": "manual"},
        functions={FUNCTION: {"timeout": 30, "memory": 256, "reserved": 7, "max_retries": 1}},
    )
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=f"/aws/lambda/{FUNCTION}")
    logs.create_log_stream(logGroupName=f"/aws/lambda/{FUNCTION}", logStreamName="s")
    now_ms = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=f"/aws/lambda/{FUNCTION}",
        logStreamName="s",
        logEvents=[
            {"timestamp": now_ms, "message": "ERROR Task timed out after 30.00 seconds db_password=hunter2hunter2"},
            {"timestamp": now_ms, "message": "INFO request served"},
        ],
    )

    # When its error alarm fires
    pipeline.put_raw_event(alarm_event())
    pipeline.run()

    # Then the investigation recorded what was read, the secret scrubbed, and the runbook doubled the real 30 s
    incident = only_incident(pipeline)
    inv = incident.investigation
    assert inv["values"] == {"timeout_s": 30, "memory_mb": 256, "reserved_concurrency": 7, "max_retries": 1}
    assert inv["managed"] is True and inv["revision_id"] and inv["target"] == FUNCTION
    assert (
        len(inv["error_lines"]) == 1
        and "hunter2" not in inv["error_lines"][0]
        and "Task timed out" in inv["error_lines"][0]
    )
    assert any("CloudTrail" in gap for gap in inv["gaps"])  # moto has no LookupEvents: a gap, not an error
    [investigate] = decisions_of(pipeline, incident.incident_id, "investigate")
    assert any("GetFunction: Configuration" in s["action"] for s in investigate["reasoning_chain"])
    [proposal] = decisions_of(pipeline, incident.incident_id, "propose_fix")
    assert proposal["outputs"]["changes"] == [
        {"setting": "timeout_s", "target": FUNCTION, "current": 30, "proposed": 60}
    ]


def test_one_investigation_reads_the_function_with_one_get_function_and_its_retries(aws):
    # Given orders-api with a reservation, a managed tag and async retries
    from lambdas.manager.investigate import CloudPort, investigate

    Pipeline(functions={FUNCTION: {"timeout": 30, "memory": 256, "reserved": 7, "max_retries": 1}})
    lam = boto3.client("lambda")
    calls: list[str] = []
    lam.meta.events.register("before-call.lambda", lambda model, **_: calls.append(model.name))

    # When the Manager investigates it
    inv, _ = investigate(FUNCTION, "test", around=datetime.now(UTC), cloud=CloudPort(overrides={"lambda": lam}))

    # Then configuration, tags and concurrency come from one GetFunction (no ListTags, no separate reads)
    assert calls == ["GetFunction", "GetFunctionEventInvokeConfig"]
    assert inv.values == {"timeout_s": 30, "memory_mb": 256, "reserved_concurrency": 7, "max_retries": 1}
    assert inv.managed is True and inv.revision_id and inv.target_arn.endswith(f":function:{FUNCTION}")


class Denying:
    """A Lambda client whose named operations fail with AccessDeniedException (a narrower role)."""

    def __init__(self, real, denied: set[str]) -> None:
        self.real, self.denied = real, denied

    def __getattr__(self, name):
        if name in self.denied:

            def deny(**_kwargs):
                raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, name)

            return deny
        return getattr(self.real, name)


def test_an_unreadable_value_is_a_gap_and_no_change_is_proposed_relative_to_it(aws, monkeypatch):
    # Given a Manager role that may not call GetFunction on the throttled function
    from lambdas.manager.investigate import CloudPort

    pipeline = Pipeline(functions={FUNCTION: {"reserved": 5}})
    real_client = CloudPort.client
    monkeypatch.setattr(
        CloudPort,
        "client",
        lambda self, service: (
            Denying(real_client(self, service), {"get_function"}) if service == "lambda" else real_client(self, service)
        ),
    )

    # When a throttling issue is reported (with a reporter's figure for the reservation)
    pipeline.put(
        "IssueReported",
        {
            "service": FUNCTION,
            "issue_type": "throttling",
            "summary": "throttled",
            "signals": {"reserved_concurrency": 5.0, "throttles": 40.0},
        },
    )
    pipeline.run()

    # Then the unread value is a gap, nothing is assumed, and the incident fails naming the gap
    incident = only_incident(pipeline)
    assert f"GetFunction {FUNCTION}: permission denied" in incident.investigation["gaps"]
    assert "reserved_concurrency" not in incident.investigation["values"]
    assert incident.status == "FAILED"
    assert "reserved_concurrency" in incident.last_reason and "permission denied" in incident.last_reason
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 5


def test_a_function_that_does_not_exist_is_a_gap_not_a_guess(aws):
    pipeline = Pipeline()
    pipeline.put(
        "IssueReported",
        {"service": "ghost-api", "issue_type": "latency", "summary": "slow", "signals": {"memory_mb": 128.0}},
    )
    pipeline.run()

    incident = only_incident(pipeline)
    assert incident.investigation["gaps"] == ["GetFunction ghost-api: not found"]
    assert incident.status == "FAILED" and "not read" in incident.last_reason


# ------------------------------------------------------------------------------ apply


def test_a_stale_revision_fails_safe_and_escalates_without_changing_anything(aws):
    # Given an incident awaiting approval, investigated at 512 MB
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={FUNCTION: {"memory": 512}})
    pipeline.put("IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "high"})
    pipeline.run()
    incident = only_incident(pipeline)
    assert incident.status == "AWAITING_APPROVAL"

    # When someone else changes the function before the approval arrives
    boto3.client("lambda").update_function_configuration(FunctionName=FUNCTION, Timeout=7)
    approve(pipeline, incident)

    # Then the guarded write fails, nothing of ours is applied, and a person is told why
    after = only_incident(pipeline)
    assert after.status == "ESCALATED"
    assert "changed since it was read" in after.last_reason
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 512
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 7


def test_a_persons_identical_change_made_before_the_approval_is_not_taken_for_ours(aws):
    """The revision moved and the function holds exactly the change's values: a retry of our own
    landed write looks like that, but this write was set before our first attempt. Adopting it
    would make the rollback undo a change Selfheal never made."""
    # Given an incident awaiting approval of memory 512 -> 1024
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={FUNCTION: {"memory": 512}})
    pipeline.put("IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "high"})
    pipeline.run()
    incident = only_incident(pipeline)
    assert incident.status == "AWAITING_APPROVAL"

    # When a person sets 1024 themselves, and the approval comes after it
    boto3.client("lambda").update_function_configuration(FunctionName=FUNCTION, MemorySize=1024)
    time.sleep(0.2)  # the approval after the person's change, beyond the clocks' slack
    approve(pipeline, incident)

    # Then Selfheal changes nothing, keeps no change to verify or roll back, and says why
    after = only_incident(pipeline)
    assert after.status == "ESCALATED", after.last_reason
    assert "set by someone else" in after.last_reason and after.heal_phase != "applied"
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 1024


def test_a_reserved_concurrency_set_by_hand_to_the_proposed_value_before_the_approval_is_not_taken_for_ours(aws):
    """Reserved concurrency has no RevisionId: on the apply's first attempt nothing of Selfheal's can
    have landed, so a value already equal to the proposal was set by someone else. Adopting it would
    make the rollback restore the old value over the operator's."""
    # Given an incident awaiting approval of reserved concurrency 10 -> 20
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={FUNCTION: {"reserved": 10}})
    report_throttling(pipeline)
    incident = only_incident(pipeline)
    assert incident.status == "AWAITING_APPROVAL", incident.last_reason

    # When an operator sets 20 by hand, and the approval comes after it
    boto3.client("lambda").put_function_concurrency(FunctionName=FUNCTION, ReservedConcurrentExecutions=20)
    approve(pipeline, incident)

    # Then Selfheal changes nothing, keeps no change to verify or roll back, and says why
    after = only_incident(pipeline)
    assert after.status == "ESCALATED", after.last_reason
    assert "set by someone else" in after.last_reason and after.heal_phase != "applied"
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 20
    assert pipeline.schedules() == []  # no verification to come, so no rollback either


def approve(pipeline: Pipeline, incident) -> None:
    pipeline.put(
        "ApprovalGranted",
        {
            "metadata": {
                "incident_id": incident.incident_id,
                "correlation_id": incident.correlation_id,
                "producer": "operator",
                "attempt": incident.attempts,
            },
            "data": {"approver": "alice@example.com"},
        },
        source="agentops.operator",
    )
    pipeline.run()


def test_an_untagged_target_is_refused_with_the_change_to_make_by_hand(aws):
    # Given a function without selfheal:managed=true
    pipeline = Pipeline(functions={FUNCTION: {"memory": 512, "managed": False}})

    # When its latency issue is validated and auto-approved
    pipeline.put("IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "high"})
    pipeline.run()

    # Then it is escalated as not managed, with the exact command, and the function is untouched
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED"
    assert "target not managed" in incident.last_reason
    assert (
        f"aws lambda update-function-configuration --function-name {FUNCTION} --memory-size 1024"
        in incident.last_reason
    )
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 512
    assert pipeline.schedules() == []


def test_a_medium_issue_waits_for_its_window_and_a_forged_early_due_event_changes_nothing(aws, monkeypatch):
    # Given a low-traffic window 02:00-03:00 UTC for orders-api, and the clock at 10:00 UTC
    from lambdas.manager import heal

    ten = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(heal, "now", lambda: ten)
    pipeline = Pipeline(
        parameters={"apply-windows": json.dumps({FUNCTION: ["02:00-03:00"], "*": "any"})},
        functions={FUNCTION: {"memory": 512}},
    )

    # When a medium-severity latency issue is validated and approved
    pipeline.put(
        "IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "medium"}
    )
    pipeline.run()

    # Then it is SCHEDULED for tomorrow 02:00 through a one-time schedule, and nothing changed yet
    incident = only_incident(pipeline)
    assert incident.status == "SCHEDULED"
    [schedule] = pipeline.schedules()
    tomorrow_two = (ten + timedelta(days=1)).replace(hour=2)
    assert schedule["ScheduleExpression"] == f"at({tomorrow_two.strftime('%Y-%m-%dT%H:%M:%S')})"
    assert schedule["Target"]["EventBridgeParameters"] == {"DetailType": "ApplyDue", "Source": "agentops.manager"}
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 512

    # When the due event arrives early (forged, or a clock skew), it is not honoured
    pipeline.put("ApplyDue", json.loads(schedule["Target"]["Input"]), source="agentops.manager")
    [early] = pipeline.run()
    assert early.result["action"] == "not_due"
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 512

    # When the window opens and the schedule fires, the change is applied and verified
    monkeypatch.setattr(heal, "now", lambda: tomorrow_two + timedelta(seconds=5))
    pipeline.fire_schedules("apply")
    [due] = pipeline.run()
    assert due.result["action"] == "applied", (due.result, due.error)
    assert only_incident(pipeline).status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 1024


def test_a_scheduled_change_is_refused_when_the_tag_was_removed_while_it_waited(aws, monkeypatch):
    # Given a change SCHEDULED for the 02:00 window on a managed function
    from lambdas.manager import heal

    ten = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(heal, "now", lambda: ten)
    pipeline = Pipeline(
        parameters={"apply-windows": json.dumps({FUNCTION: ["02:00-03:00"]})}, functions={FUNCTION: {"memory": 512}}
    )
    pipeline.put(
        "IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "medium"}
    )
    pipeline.run()
    assert only_incident(pipeline).status == "SCHEDULED"

    # When the owner opts out before the window opens
    lam = boto3.client("lambda")
    lam.untag_resource(
        Resource=lam.get_function(FunctionName=FUNCTION)["Configuration"]["FunctionArn"], TagKeys=["selfheal:managed"]
    )
    monkeypatch.setattr(heal, "now", lambda: ten + timedelta(days=1))
    pipeline.fire_schedules("apply")
    pipeline.run()

    # Then nothing is changed and a person gets the exact command
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED" and "no longer has selfheal:managed=true" in incident.last_reason
    assert "--memory-size 1024" in incident.last_reason
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 512


def test_critical_and_high_severity_do_not_wait_for_a_window(aws, monkeypatch):
    from lambdas.manager import heal

    monkeypatch.setattr(heal, "now", lambda: datetime.now(UTC).replace(hour=10))
    pipeline = Pipeline(
        parameters={"apply-windows": json.dumps({"*": ["02:00-03:00"]})}, functions={FUNCTION: {"memory": 512}}
    )
    pipeline.put(
        "IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "critical"}
    )
    pipeline.run()

    assert only_incident(pipeline).status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 1024


def test_an_auto_approved_config_fix_is_kept_on_the_incident_and_applied_without_an_s3_round_trip(aws, monkeypatch):
    # Given a latency issue on a managed function, auto-approved (full_auto)
    from botocore.client import BaseClient

    s3_calls: list[str] = []
    original = BaseClient._make_api_call

    def counting(self, operation, params):
        if self.meta.service_model.service_name == "s3":
            s3_calls.append(f"{operation} {params.get('Key', '')}")
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    pipeline = Pipeline(functions={FUNCTION: {"memory": 512}})
    pipeline.put(
        "IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "critical"}
    )

    # When the pipeline runs it to the apply
    pipeline.run()

    # Then the validated fix is kept on the incident item (no validated-N.json written, none read back)
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING" and pipeline.function_config(FUNCTION)["memory_mb"] == 1024
    assert incident.validated_fix["record"]["fix"]["changes"][0]["proposed"] == 1024
    # (QA's evidence is the only object written; nothing is read back)
    assert [c for c in s3_calls if "Object" in c] == [f"PutObject incidents/{incident.incident_id}/qa-evidence-1.json"]


# ------------------------------------------------------------------------------ verify, roll back


def test_alarm_back_to_ok_while_verifying_resolves_with_before_and_after_figures(aws):
    # Given an alarm incident whose timeout fix (3 -> 10 s) was applied
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    dependant = Dependant(pipeline)
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    assert only_incident(pipeline).status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10

    # When the alarm returns to OK
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()

    # Then the incident is RESOLVED, with a verify decision holding before and after, and FixVerified sent
    incident = only_incident(pipeline)
    assert incident.status == "RESOLVED"
    [verify] = decisions_of(pipeline, incident.incident_id, "verify")
    assert verify["outputs"]["figures"]["before_latest_datapoint"] == 37
    assert verify["outputs"]["figures"]["after_latest_datapoint"] == 0
    kinds = [e["type"] for e in dependant.events()]
    assert kinds == ["FixApplied", "FixVerified"]
    applied = dependant.seen[0]
    assert applied["changes"] == [{"setting": "timeout_s", "before": 3.0, "after": 10.0}]
    assert applied["breaking_change"] is False
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10  # the change is kept


def test_an_ok_on_data_from_before_the_change_resolves_nothing_until_traffic_since_shows_recovery(aws):
    """`set-alarm-state ALARM` on a quiet function: the next evaluation is OK on the datapoint from
    before the change. That OK is no proof; traffic in a minute after the change is."""
    # Given an applied fix, and the alarm OK on a period that began before the change
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    applied = datetime.fromisoformat(only_incident(pipeline).change["applied_at"])
    alarm_in_state("OK", 0.0)
    earlier = (applied - timedelta(minutes=2)).isoformat()
    boto3.client("cloudwatch").set_alarm_state(
        AlarmName=ALARM,
        StateValue="OK",
        StateReason="Threshold Crossed: 1 datapoint [0.0] was not greater than or equal to the threshold (5.0).",
        StateReasonData=json.dumps(
            {"recentDatapoints": [0.0], "evaluatedDatapoints": [{"timestamp": earlier, "value": 0.0}]}
        ),
    )

    # When its OK event arrives, and the verify deadline passes with no invocation since the change
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()
    assert only_incident(pipeline).status == "VERIFYING"
    fire_verify(pipeline, 0)

    # Then nothing is resolved: the window is extended, the change kept
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING" and incident.change["verify_extensions"] == 1
    [extend] = decisions_of(pipeline, incident.incident_id, "verify_extend")
    assert "no traffic is no proof" in json.dumps(extend["reasoning_chain"])

    # When the function is invoked in a minute after the change, and the alarm is still OK at the next deadline
    invoked_in_a_minute_after(applied, 25.0)
    fire_verify(pipeline, 1)

    # Then it is RESOLVED on that evidence
    incident = only_incident(pipeline)
    assert incident.status == "RESOLVED"
    [verify] = decisions_of(pipeline, incident.incident_id, "verify")
    assert "invocation(s) of" in json.dumps(verify["reasoning_chain"])


def ok_on_a_period_before(at: datetime) -> None:
    """The alarm set OK by hand (`set-alarm-state`): its reason data is about a period before `at`."""
    alarm_in_state("OK", 0.0)
    boto3.client("cloudwatch").set_alarm_state(
        AlarmName=ALARM,
        StateValue="OK",
        StateReason="manual: testing alarm actions",
        StateReasonData=json.dumps(
            {
                "recentDatapoints": [0.0],
                "evaluatedDatapoints": [{"timestamp": (at - timedelta(minutes=2)).isoformat(), "value": 0.0}],
            }
        ),
    )


def test_an_ok_set_by_hand_over_failing_calls_since_the_change_resolves_nothing(aws):
    """Calls after the change are evidence only if the alarm's own metric did not breach in those
    minutes: an OK set by hand while the function still fails is no recovery."""
    # Given an applied fix, calls after it that still fail (Errors 9 >= the alarm's 5), and the alarm set OK by hand
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    applied = datetime.fromisoformat(only_incident(pipeline).change["applied_at"])
    traffic_after_the_change(pipeline, Invocations=25.0, Errors=9.0)
    ok_on_a_period_before(applied)

    # When its OK event arrives, and the verify deadline passes
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()
    assert only_incident(pipeline).status == "VERIFYING"
    fire_verify(pipeline, 0)

    # Then the change did not help: it is rolled back, with the reason
    incident = only_incident(pipeline)
    assert (incident.status, incident.heal_phase) == ("ESCALATED", "rolled_back"), incident.last_reason
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3
    [rollback] = decisions_of(pipeline, incident.incident_id, "rollback")
    assert "breaching its threshold" in json.dumps(rollback["reasoning_chain"])


def threshold_raised_and_evaluated(threshold: float, datapoint: float) -> None:
    """`aws cloudwatch put-metric-alarm --threshold <threshold>`, everything else unchanged, and the
    alarm's next evaluation: OK on a period now (after the change), holding `datapoint`."""
    cw = boto3.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName=ALARM,
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": FUNCTION}],
    )
    cw.set_alarm_state(
        AlarmName=ALARM,
        StateValue="OK",
        StateReason=f"Threshold Crossed: 1 datapoint [{datapoint}] was not greater than or equal to the threshold",
        StateReasonData=json.dumps(
            {
                "recentDatapoints": [datapoint],
                "threshold": threshold,
                "evaluatedDatapoints": [{"timestamp": datetime.now(UTC).isoformat(), "value": datapoint}],
            }
        ),
    )


def test_an_alarm_whose_threshold_was_raised_during_verification_is_no_proof_of_recovery(aws):
    """Raising the threshold turns failing calls OK: the alarm reconfigured after the incident
    opened is not the alarm that opened it, so the change is judged on the target's metrics
    against the threshold recorded then (5 errors a minute)."""
    # Given an applied fix, with every call after it still failing (23 errors a minute)
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 37.0)
    traffic_after_the_change(pipeline, Invocations=23.0, Errors=23.0)
    # And someone raises the alarm's threshold to 1000, so it evaluates OK on a period after the change
    threshold_raised_and_evaluated(1000.0, 23.0)

    # When its OK event arrives, and the verify deadline passes
    pipeline.put_raw_event(alarm_event("OK", datapoint=23.0))
    pipeline.run()
    assert only_incident(pipeline).status == "VERIFYING"
    fire_verify(pipeline, 0)

    # Then it is not RESOLVED: the errors since the change breach the threshold recorded at open,
    # so the change is rolled back, and the reasons say the alarm was reconfigured
    incident = only_incident(pipeline)
    assert (incident.status, incident.heal_phase) == ("ESCALATED", "rolled_back"), incident.last_reason
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3
    [rollback] = decisions_of(pipeline, incident.incident_id, "rollback")
    chain = json.dumps(rollback["reasoning_chain"])
    assert "the alarm was reconfigured" in chain and "worst 23" in chain
    rolled = next(h for h in incident.status_history if h["status"] == "ROLLED_BACK")
    assert "the alarm was reconfigured" in rolled["reason"]


def test_a_reconfigured_alarm_and_no_traffic_since_the_change_end_unverified_never_resolved(aws, monkeypatch):
    """The reconfigured alarm's OK is no evidence, and neither is no traffic: the window is
    extended, then a person decides with the change kept."""
    # Given an applied fix, and the alarm's threshold raised during verification, with no call since the change
    monkeypatch.setattr("lambdas.manager.heal.VERIFY_EXTENSIONS", 1)
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 37.0)
    threshold_raised_and_evaluated(1000.0, 0.0)

    # When the verify deadline passes, twice
    fire_verify(pipeline, 0)
    assert only_incident(pipeline).status == "VERIFYING"
    fire_verify(pipeline, 1)

    # Then it ends UNVERIFIED, the change kept
    incident = only_incident(pipeline)
    assert (incident.status, incident.heal_phase) == ("ESCALATED", "unverified"), incident.last_reason
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    [extend] = decisions_of(pipeline, incident.incident_id, "verify_extend")
    assert "the alarm was reconfigured" in json.dumps(extend["reasoning_chain"])


def test_an_ok_after_the_threshold_was_raised_before_any_change_resolves_nothing(aws):
    # Given an incident waiting for approval, calls since it opened, and its alarm's threshold raised to 1000
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={FUNCTION: {"timeout": 3}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    opened = datetime.fromisoformat(only_incident(pipeline).created_at)
    alarm_in_state("ALARM", 37.0)
    invoked_in_a_minute_after(opened - timedelta(seconds=90), 25.0)
    threshold_raised_and_evaluated(1000.0, 23.0)

    # When the alarm's OK arrives
    pipeline.put_raw_event(alarm_event("OK", datapoint=23.0))
    [delivery] = pipeline.run()

    # Then the incident waits on: the reconfigured alarm's OK proves nothing
    assert delivery.result["action"] == "unconfirmed" and "reconfigured" in delivery.result["reason"]
    assert only_incident(pipeline).status == "AWAITING_APPROVAL"


def test_an_alarm_deleted_during_verification_is_no_reason_to_roll_back_a_change_that_works(aws):
    """A missing alarm is no evidence either way: the change is judged on the target's metrics, as
    for an issue without an alarm, and the reasons say the alarm is missing."""
    # Given an applied fix, calls since it that succeed, and the alarm deleted during verification
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    traffic_after_the_change(pipeline, Invocations=25.0, Errors=0.0)
    alarm_in_state("OK", 0.0)
    boto3.client("cloudwatch").delete_alarms(AlarmNames=[ALARM])

    # When its OK event arrives (it resolves nothing), and the verify deadline passes
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    [delivery] = pipeline.run()
    assert delivery.result["action"] == "unconfirmed" and "MISSING" in delivery.result["reason"]
    fire_verify(pipeline, 0)

    # Then the change is kept and the incident RESOLVED on the function's own metrics, saying the alarm is missing
    incident = only_incident(pipeline)
    assert incident.status == "RESOLVED", incident.last_reason
    assert "the alarm is MISSING" in incident.last_reason
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    [verify] = decisions_of(pipeline, incident.incident_id, "verify")
    assert "the alarm is MISSING" in json.dumps(verify["reasoning_chain"])


def test_an_alarm_deleted_during_verification_with_no_traffic_since_extends_the_window(aws):
    # Given an applied fix, no call since, and the alarm deleted
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 37.0)
    boto3.client("cloudwatch").delete_alarms(AlarmNames=[ALARM])

    # When the verify deadline passes
    fire_verify(pipeline, 0)

    # Then the change is kept and the window extended, naming the missing alarm
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING" and incident.change["verify_extensions"] == 1
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    [extend] = decisions_of(pipeline, incident.incident_id, "verify_extend")
    assert "the alarm is MISSING" in json.dumps(extend["reasoning_chain"])


def test_an_ok_on_no_data_since_the_incident_opened_resolves_nothing(aws):
    """No change made yet, traffic stopped: an OK on missing data is not a recovery. An OK with
    calls since the incident opened, and the alarm's metric under its threshold, is."""
    # Given an incident waiting for approval, and its alarm OK on a period before it opened
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={FUNCTION: {"timeout": 3}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    incident = only_incident(pipeline)
    assert incident.status == "AWAITING_APPROVAL"
    opened = datetime.fromisoformat(incident.created_at)
    ok_on_a_period_before(opened)

    # When the OK arrives
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    [delivery] = pipeline.run()

    # Then the incident waits on
    assert delivery.result["action"] == "unconfirmed" and "no traffic is no proof" in delivery.result["reason"]
    assert only_incident(pipeline).status == "AWAITING_APPROVAL"

    # And once calls since it opened succeed, the next OK resolves it
    invoked_in_a_minute_after(opened - timedelta(seconds=90), 25.0)  # as it opened: never after now
    pipeline.put_raw_event({**alarm_event("OK", datapoint=0.0), "id": "ok-2"})
    pipeline.run()
    assert only_incident(pipeline).status == "RESOLVED"


def test_an_ok_on_the_period_the_incident_opened_in_resolves_it(aws):
    """ALARM at 12:05:30 on 12:04's period, incident at 12:05:31, OK at 12:06:30 on 12:05's period:
    that period began before the opening but is newer than what raised the ALARM."""
    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={FUNCTION: {"timeout": 3}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    opened = datetime.fromisoformat(only_incident(pipeline).created_at)
    alarm_in_state("OK", 0.0)
    boto3.client("cloudwatch").set_alarm_state(
        AlarmName=ALARM,
        StateValue="OK",
        StateReason="Threshold Crossed: 1 datapoint [0.0] was not greater than or equal to the threshold (5.0).",
        StateReasonData=json.dumps(
            {
                "recentDatapoints": [0.0],
                "evaluatedDatapoints": [
                    {"timestamp": opened.replace(second=0, microsecond=0).isoformat(), "value": 0.0}
                ],
            }
        ),
    )

    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()

    assert only_incident(pipeline).status == "RESOLVED"


def test_an_alarm_still_in_alarm_on_the_period_before_the_change_is_no_reason_to_roll_back(aws):
    """Errors stop as the change lands: the alarm stays ALARM on the period the change landed in.
    With no traffic since, that is no proof the change failed; with traffic since, it is."""
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    applied = datetime.fromisoformat(only_incident(pipeline).change["applied_at"])
    alarm_in_state("ALARM", 41.0)
    before_the_change = (applied - timedelta(seconds=30)).isoformat()  # the minute it landed in
    boto3.client("cloudwatch").set_alarm_state(
        AlarmName=ALARM,
        StateValue="ALARM",
        StateReason="Threshold Crossed",
        StateReasonData=json.dumps(
            {"recentDatapoints": [41.0], "evaluatedDatapoints": [{"timestamp": before_the_change, "value": 41.0}]}
        ),
    )

    # When the deadline passes with no invocation since the change
    fire_verify(pipeline, 0)

    # Then the change is kept and the window extended, not rolled back
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING" and incident.change["verify_extensions"] == 1
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10

    # When it is invoked after the change and the alarm is still ALARM at the next deadline
    invoked_in_a_minute_after(applied, 12.0)
    fire_verify(pipeline, 1)

    # Then the change did not help: rolled back
    incident = only_incident(pipeline)
    assert (incident.status, incident.heal_phase) == ("ESCALATED", "rolled_back")
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3


def test_no_recovery_rolls_back_the_exact_previous_values_then_escalates(aws):
    # Given an alarm incident whose fix was applied, and the alarm still in ALARM at the deadline
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    dependant = Dependant(pipeline)
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)

    # When the verify window ends
    pipeline.fire_due("verify")

    # Then the previous timeout is restored exactly, and the incident went ROLLED_BACK then ESCALATED
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED"
    assert [h["status"] for h in incident.status_history][-3:] == ["VERIFYING", "ROLLED_BACK", "ESCALATED"]
    config = pipeline.function_config(FUNCTION)
    assert (config["timeout_s"], config["memory_mb"]) == (3, 512)
    [rollback] = decisions_of(pipeline, incident.incident_id, "rollback")
    assert rollback["outputs"]["restored"] == {"timeout_s": 3}
    assert rollback["inputs"]["figures"]["before_latest_datapoint"] == 37
    assert rollback["inputs"]["figures"]["after_latest_datapoint"] == 41
    rolled = next(e for e in dependant.events() if e["type"] == "FixRolledBack")
    assert rolled["restored"] is True
    assert rolled["changes"] == [{"setting": "timeout_s", "before": 10.0, "after": 3.0}]
    assert rolled["breaking_change"] is True  # going back from 10 s to 3 s lowers a limit


def test_a_failed_rollback_escalates_with_the_exact_values_to_restore(aws):
    # Given an applied fix, and someone else changing the function during verification
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    boto3.client("lambda").update_function_configuration(FunctionName=FUNCTION, MemorySize=768)

    # When the verify window ends without recovery
    pipeline.fire_due("verify")

    # Then our rollback does not clobber their change; a person gets the exact values to restore
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED"
    assert "ROLLBACK FAILED" in incident.last_reason
    assert f"aws lambda update-function-configuration --function-name {FUNCTION} --timeout 3" in incident.last_reason
    config = pipeline.function_config(FUNCTION)
    assert (config["timeout_s"], config["memory_mb"]) == (10, 768)
    assert incident.heal_phase == "rollback_failed"


def test_a_rollback_does_not_overwrite_a_concurrency_someone_set_during_verification(aws):
    """Reserved concurrency has no RevisionId: 0 set by hand (a kill switch) while the change was
    verified must survive the rollback, which escalates with the values to restore instead."""
    # Given a throttling fix (reserved concurrency 10 -> 20) under verification, still throttled
    pipeline = Pipeline(functions={FUNCTION: {"reserved": 10}})
    throttling_fix_applied(pipeline)
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 20
    traffic_after_the_change(pipeline, Throttles=12.0, Invocations=40.0)
    # And someone switches the function off by hand
    boto3.client("lambda").put_function_concurrency(FunctionName=FUNCTION, ReservedConcurrentExecutions=0)

    # When the verify window ends without recovery
    pipeline.fire_due("verify", after_seconds=1000)

    # Then their 0 stays, and a person gets the values to restore
    incident = only_incident(pipeline)
    assert (incident.status, incident.heal_phase) == ("ESCALATED", "rollback_failed"), incident.last_reason
    assert "ROLLBACK FAILED" in incident.last_reason and "someone changed it" in incident.last_reason
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 0


def test_a_timeout_put_back_by_hand_during_verification_is_not_reported_as_selfheals_restore(aws):
    """The rollback's write fails on its stale RevisionId and finds the previous values: that is how
    a retry of its own restore looks, but nothing of Selfheal's restore had been attempted before."""
    # Given the alarm's timeout fix (3 -> 10 s) under verification, still failing after the change
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    dependant = Dependant(pipeline)
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    # And an operator puts the timeout back to 3 s by hand
    boto3.client("lambda").update_function_configuration(FunctionName=FUNCTION, Timeout=3)
    time.sleep(0.2)  # the rollback after the person's change, beyond the clocks' slack

    # When the verify window ends without recovery
    pipeline.fire_due("verify")

    # Then Selfheal reports that someone else restored it: no restore of its own, no ROLLED_BACK
    incident = only_incident(pipeline)
    assert (incident.status, incident.heal_phase) == ("ESCALATED", "restored_by_hand"), incident.last_reason
    assert "restored by someone else, not by Selfheal" in incident.last_reason
    assert "ROLLED_BACK" not in [h["status"] for h in incident.status_history]
    [rollback] = decisions_of(pipeline, incident.incident_id, "rollback")
    assert rollback["outputs"]["restored"] is False and rollback["outputs"]["restored_by"] == "someone else"
    rolled = next(e for e in dependant.events() if e["type"] == "FixRolledBack")
    assert "restored by someone else" in rolled["summary"]
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3


def test_a_concurrency_put_back_by_hand_during_verification_is_not_reported_as_selfheals_restore(aws):
    # Given a throttling fix (reserved concurrency 10 -> 20) under verification, still throttled
    pipeline = Pipeline(functions={FUNCTION: {"reserved": 10}})
    throttling_fix_applied(pipeline)
    traffic_after_the_change(pipeline, Throttles=12.0, Invocations=40.0)
    # And an operator puts 10 back by hand
    boto3.client("lambda").put_function_concurrency(FunctionName=FUNCTION, ReservedConcurrentExecutions=10)

    # When the verify window ends without recovery
    pipeline.fire_due("verify", after_seconds=1000)

    # Then Selfheal reports that someone else restored it
    incident = only_incident(pipeline)
    assert (incident.status, incident.heal_phase) == ("ESCALATED", "restored_by_hand"), incident.last_reason
    assert "reserved concurrency was already 10" in incident.last_reason
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 10


def test_an_issue_without_an_alarm_is_verified_on_its_metric(aws):
    # Given a reported throttling issue (no alarm), applied (reserved concurrency 10 -> 20),
    # and Throttles above the reporter's threshold after the change
    pipeline = Pipeline(functions={FUNCTION: {"reserved": 10}})
    report_throttling(pipeline, throttles=40.0)
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING" and pipeline.function_config(FUNCTION)["reserved_concurrency"] == 20
    applied_at = datetime.fromisoformat(incident.change["applied_at"])
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Throttles",
                "Dimensions": [{"Name": "FunctionName", "Value": FUNCTION}],
                "Timestamp": applied_at + timedelta(seconds=90),
                "Value": 12.0,
                "Unit": "Count",
            }
        ],
    )

    # When the verify window ends
    pipeline.fire_due("verify", after_seconds=1000)

    # Then the metric did not stay under its threshold: the reservation is back at 10
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED"
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 10
    [rollback] = decisions_of(pipeline, incident.incident_id, "rollback")
    figures = rollback["inputs"]["figures"]
    assert (figures["before_throttles"], figures["after_throttles_max"], figures["threshold"]) == (40, 12, 5)


def test_an_issue_without_an_alarm_resolves_when_its_metric_stays_under_the_threshold(aws):
    pipeline = Pipeline(functions={FUNCTION: {"reserved": 10}})
    dependant = Dependant(pipeline)
    report_throttling(pipeline)
    incident = only_incident(pipeline)
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Throttles",
                "Dimensions": [{"Name": "FunctionName", "Value": FUNCTION}],
                "Timestamp": datetime.fromisoformat(incident.change["applied_at"]) + timedelta(seconds=90),
                "Value": 2.0,
            }
        ],
    )

    pipeline.fire_due("verify", after_seconds=1000)

    assert only_incident(pipeline).status == "RESOLVED"
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 20
    assert [e["type"] for e in dependant.events()] == ["FixApplied", "FixVerified"]


@pytest.mark.parametrize("errors, final, timeout_after", [(3.0, "RESOLVED", 10), (20.0, "ESCALATED", 3)])
def test_an_error_issue_without_a_threshold_is_verified_on_the_scan_error_rate(aws, errors, final, timeout_after):
    # Given a reported error-rate issue (no alarm, no threshold) whose timeout fix 3 -> 10 s was applied
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    pipeline.put(
        "IssueReported", {"service": FUNCTION, "issue_type": "high_error_rate", "summary": "errors", "severity": "high"}
    )
    pipeline.run()
    at = datetime.fromisoformat(only_incident(pipeline).change["applied_at"]) + timedelta(seconds=90)
    dims = [{"Name": "FunctionName", "Value": FUNCTION}]
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {"MetricName": "Errors", "Dimensions": dims, "Timestamp": at, "Value": errors},
            {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": at, "Value": 100.0},
        ],
    )

    # When the window ends: 3 % stays under the scan's 5 %, 20 % does not
    pipeline.fire_due("verify", after_seconds=1000)

    incident = only_incident(pipeline)
    assert incident.status == final
    assert pipeline.function_config(FUNCTION)["timeout_s"] == timeout_after


def report_throttling(pipeline: Pipeline, **signals: float) -> None:
    """A high-severity throttling issue reported (no alarm) with the reporter's threshold of 5, run through."""
    pipeline.put(
        "IssueReported",
        {
            "service": FUNCTION,
            "issue_type": "throttling",
            "summary": "throttled",
            "severity": "high",
            "signals": {"threshold": 5.0, **signals},
        },
    )
    pipeline.run()


def throttling_fix_applied(pipeline: Pipeline, dependant: Dependant | None = None) -> None:
    report_throttling(pipeline)
    assert only_incident(pipeline).status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 20


def fire_verify(pipeline: Pipeline, window: int) -> None:
    """The next VerifyDue, `window` verify windows after the first deadline."""
    pipeline.fire_due("verify", after_seconds=2 * 86_400 + window * 1000)


def test_no_traffic_is_no_proof_the_window_is_extended_then_a_person_decides_with_the_change_kept(aws, monkeypatch):
    # Given an applied throttling fix (reserved concurrency 10 -> 20) and no traffic at all since
    from lambdas.manager import heal

    pipeline = Pipeline(functions={FUNCTION: {"reserved": 10}})
    dependant = Dependant(pipeline)
    throttling_fix_applied(pipeline)
    first_until = only_incident(pipeline).change["verify_until"]
    [first] = pipeline.schedules()

    # When the deadline comes with nothing to judge by
    fire_verify(pipeline, 0)

    # Then it is not RESOLVED (nothing shows recovery) nor rolled back (nothing shows harm): it waits a window more
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING" and incident.change["verify_extensions"] == 1
    assert incident.change["verify_until"] > first_until
    assert incident.last_reason.endswith(f"verifying until {incident.change['verify_until']} (extension 1 of 3)")
    assert [s["Name"] for s in pipeline.schedules()] == [f"selfheal-test-verify-1-{incident.incident_id}"]
    [extended] = decisions_of(pipeline, incident.incident_id, "verify_extend")
    assert extended["outputs"]["recovered"] is None and extended["inputs"]["figures"]["after_invocations"] == 0

    # When the first deadline's event is delivered again, between the two deadlines, nothing more happens
    params = first["Target"]["EventBridgeParameters"]
    monkeypatch.setattr(heal, "now", lambda: datetime.fromisoformat(first_until) + timedelta(seconds=60))
    pipeline.put(params["DetailType"], json.loads(first["Target"]["Input"]), source=params["Source"])
    pipeline.run()
    monkeypatch.undo()
    assert only_incident(pipeline).change["verify_extensions"] == 1

    # When every extension passes without traffic
    for window in (1, 2, 3):
        fire_verify(pipeline, window)

    # Then a person decides: ESCALATED as unverified, the change kept, the undo command given; never RESOLVED
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED" and incident.heal_phase == "unverified"
    assert "RESOLVED" not in [h["status"] for h in incident.status_history]
    assert incident.last_reason.startswith("UNVERIFIED")
    assert f"--function-name {FUNCTION}" in incident.last_reason and "10" in incident.last_reason
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 20
    assert pipeline.schedules() == []
    assert sorted(d["inputs"]["extension"] for d in decisions_of(pipeline, incident.incident_id, "verify_extend")) == [
        1,
        2,
        3,
    ]
    [verify] = decisions_of(pipeline, incident.incident_id, "verify")
    assert verify["outputs"]["status"] == "ESCALATED" and verify["outputs"]["recovered"] is None
    assert [e["type"] for e in dependant.events()] == ["FixApplied"]  # neither verified nor rolled back


def test_traffic_arriving_during_an_extension_decides_the_change(aws):
    # Given an applied fix whose first deadline saw no traffic
    pipeline = Pipeline(functions={FUNCTION: {"reserved": 10}})
    throttling_fix_applied(pipeline)
    fire_verify(pipeline, 0)
    assert only_incident(pipeline).status == "VERIFYING"

    # When traffic comes, throttled above the threshold, before the extended deadline
    traffic_after_the_change(pipeline, Throttles=12.0, Invocations=80.0)
    fire_verify(pipeline, 1)

    # Then it is judged on it: rolled back and escalated
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED" and incident.heal_phase == "rolled_back"
    assert pipeline.function_config(FUNCTION)["reserved_concurrency"] == 10


def test_an_alarm_with_insufficient_data_at_the_deadline_waits_and_its_ok_then_resolves(aws):
    # Given an applied alarm fix, and the alarm in INSUFFICIENT_DATA at the deadline (no traffic)
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("INSUFFICIENT_DATA", 0.0)
    fire_verify(pipeline, 0)
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING" and incident.change["verify_extensions"] == 1
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10  # not rolled back on no evidence

    # When the alarm goes OK during the extension
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()

    # Then the incident is RESOLVED and the change kept
    assert only_incident(pipeline).status == "RESOLVED"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10


# ------------------------------------------------------------------------------ replays and crashes


def test_replayed_and_duplicated_events_never_apply_or_roll_back_twice(aws):
    # Given a fix that was applied (512 -> 1024 MB) and then rolled back
    pipeline = Pipeline(functions={FUNCTION: {"memory": 512}})
    pipeline.put_raw_event(alarm_event())
    first = pipeline.run()
    alarm_in_state("ALARM", 41.0)
    schedule = pipeline.schedules()[0]
    verify_due = json.loads(schedule["Target"]["Input"])
    later = pipeline.fire_due("verify")
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED"
    boto3.client("lambda").update_function_configuration(FunctionName=FUNCTION, Timeout=5)  # a person's own fix

    # When every event is delivered again: same ids (replay) and fresh ids (at-least-once duplicates)
    import uuid

    for delivery in [*first, *later]:
        pipeline.invoke(delivery.agent, delivery.event)
        pipeline.invoke(delivery.agent, {**delivery.event, "id": str(uuid.uuid4())})
    pipeline.put("VerifyDue", verify_due, source="agentops.manager")
    pipeline.fire_due()
    pipeline.run()

    # Then nothing was applied or restored again: the person's change stands, one apply, one rollback
    config = pipeline.function_config(FUNCTION)
    assert (config["timeout_s"], config["memory_mb"]) == (5, 512)
    assert len(decisions_of(pipeline, incident.incident_id, "apply")) == 1
    assert len(decisions_of(pipeline, incident.incident_id, "rollback")) == 1
    assert only_incident(pipeline).status == "ESCALATED"


def test_a_crash_between_the_lambda_write_and_the_status_write_is_finished_by_the_retry(aws, monkeypatch):
    # Given the Manager crashes right after changing the function, before recording VERIFYING
    from selfheal_core.incidents import IncidentStore, Status

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    original = IncidentStore.transition
    crashed = []

    def crash_once(self, incident_id, to, **kwargs):
        if to is Status.VERIFYING and not crashed:
            crashed.append(to)
            raise RuntimeError("Lambda timed out")
        return original(self, incident_id, to, **kwargs)

    monkeypatch.setattr(IncidentStore, "transition", crash_once)
    pipeline.put_raw_event(alarm_event())
    deliveries = pipeline.run()
    [broken] = [d for d in deliveries if d.error]
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10  # the write landed
    assert only_incident(pipeline).status == "APPROVED"

    # When Lambda retries the same event
    retried = pipeline.invoke(broken.agent, broken.event)

    # Then the step finishes (the guarded write is recognised as ours), nothing is applied twice
    assert retried.error is None and retried.result["action"] == "applied", retried.result
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    assert incident.change["previous"] == {"timeout_s": 3}


def died_after_approval(monkeypatch):
    """An alarm whose apply step dies once right after the APPROVED write, before it touches the
    function: the pipeline, the failed delivery and the change id it had claimed."""
    from lambdas.manager import heal

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    original = heal._check_still_managed
    crashed = []

    def crash_once(change, cloud, *, by_hand):
        if not crashed:
            crashed.append(change["change_id"])
            raise RuntimeError("Lambda timed out")
        return original(change, cloud, by_hand=by_hand)

    monkeypatch.setattr(heal, "_check_still_managed", crash_once)
    pipeline.put_raw_event(alarm_event())
    [broken] = [d for d in pipeline.run() if d.error]
    return pipeline, broken, crashed[0]


def test_the_approval_write_plans_and_claims_the_change_and_a_crash_after_it_is_finished_by_the_retry(aws, monkeypatch):
    # Given the Manager crashes after the APPROVED write, before it touches the function
    pipeline, broken, change_id = died_after_approval(monkeypatch)

    # Then that one write left the incident APPROVED with its change planned and claimed, the function untouched
    incident = only_incident(pipeline)
    assert incident.status == "APPROVED" and incident.heal_phase == "applying"
    assert incident.change_id == change_id and incident.change["proposed"] == {"timeout_s": 10}
    assert incident.validated_fix["record"]["attempt"] == 1
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3

    # When Lambda retries the same event, the step finishes: applied once, verifying
    retried = pipeline.invoke(broken.agent, broken.event)
    assert retried.error is None and retried.result["action"] == "applied", retried.result
    assert only_incident(pipeline).status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    assert len(decisions_of(pipeline, incident.incident_id, "apply")) == 1


class WinnerWritesFirst:
    """A Lambda client for the delivery that loses the race: the other delivery of the same step
    writes the change first and is still updating, so Lambda answers ResourceConflictException."""

    def __init__(self, real, winner_values: dict | None) -> None:
        self.real, self.winner_values = real, winner_values

    def __getattr__(self, name):
        return getattr(self.real, name)

    def update_function_configuration(self, **kwargs):
        if self.winner_values is not None:
            boto3.client("lambda").update_function_configuration(
                FunctionName=kwargs["FunctionName"], **self.winner_values
            )
        raise ClientError(
            {"Error": {"Code": "ResourceConflictException", "Message": "An update is in progress for resource"}},
            "UpdateFunctionConfiguration",
        )


@pytest.mark.parametrize(
    ("winner_values", "status", "timeout_s"),
    [
        ({"Timeout": 10}, "VERIFYING", 10),  # the other delivery of this step is writing our change
        ({"MemorySize": 1024}, "ESCALATED", 3),  # someone else's update is in progress: retried, then fail safe
    ],
)
def test_a_duplicate_apply_that_meets_the_other_deliverys_update_in_progress_carries_on(
    aws, monkeypatch, winner_values, status, timeout_s
):
    # Given an incident APPROVED and claimed for its change (the first delivery died after the approval write)
    from lambdas.manager.investigate import CloudPort

    pipeline, broken, _ = died_after_approval(monkeypatch)

    # When a delivery of the step writes while another update of the function is in progress
    real_client = CloudPort.client
    monkeypatch.setattr(
        CloudPort,
        "client",
        lambda self, service: (
            WinnerWritesFirst(real_client(self, service), winner_values)
            if service == "lambda"
            else real_client(self, service)
        ),
    )
    retried = pipeline.invoke(broken.agent, broken.event)
    if status == "ESCALATED":
        # Someone else's update in progress is transient: the step raises and Lambda retries it
        # once that update is done, which then finds the revision moved.
        assert "ResourceConflictException" in str(retried.error)
        assert only_incident(pipeline).status == "APPROVED"
        monkeypatch.setattr(CloudPort, "client", real_client)
        retried = pipeline.invoke(broken.agent, broken.event)

    # Then our own values in progress are recognised and the step finishes; anyone else's fail safe
    incident = only_incident(pipeline)
    assert incident.status == status, (incident.status, incident.last_reason, retried.result)
    assert pipeline.function_config(FUNCTION)["timeout_s"] == timeout_s
    if status == "ESCALATED":
        assert "changed since it was read" in incident.last_reason
        assert "nothing was changed" in incident.last_reason
    else:
        assert retried.result["action"] == "applied"
        assert len(decisions_of(pipeline, incident.incident_id, "apply")) == 1


def test_a_crash_inside_the_rollback_is_finished_by_the_retry_and_an_ok_meanwhile_does_not_resolve(aws, monkeypatch):
    # Given an applied fix with no recovery, and the Manager crashing right after it claimed the rollback
    from lambdas.manager import heal

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    original = heal._write
    crashed = []

    def crash_once(*args, **kwargs):
        if not crashed:
            crashed.append(True)
            raise RuntimeError("Lambda timed out")
        return original(*args, **kwargs)

    monkeypatch.setattr(heal, "_write", crash_once)
    [broken] = pipeline.fire_due("verify")
    assert broken.error and only_incident(pipeline).heal_phase == "rolling_back"

    # When the alarm's OK arrives in between (it may be the restore's own doing), then Lambda retries
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    [ok] = pipeline.run()
    assert ok.result["action"] == "stale"
    later = datetime.now(UTC) + timedelta(days=2)
    monkeypatch.setattr(heal, "now", lambda: later)  # the retry comes after the deadline, like the schedule did
    retried = pipeline.invoke(broken.agent, broken.event)
    pipeline.run()

    # Then the rollback finishes once: values restored, ROLLED_BACK then ESCALATED
    assert retried.error is None and retried.result["action"] == "rolled_back", retried.result
    incident = only_incident(pipeline)
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3
    assert incident.status == "ESCALATED"
    assert [h["status"] for h in incident.status_history][-2:] == ["ROLLED_BACK", "ESCALATED"]
    assert len(decisions_of(pipeline, incident.incident_id, "rollback")) == 1


def test_a_late_ok_older_than_the_alarm_that_opened_the_incident_does_not_resolve_it(aws):
    """Expected: an OK transition that happened *before* the ALARM transition that opened the
    incident (EventBridge does not order deliveries; an async retry of the earlier OK can arrive
    minutes later) must not resolve the incident nor keep its change: the alarm is in ALARM now.

    Why it matters: the alarm stays in ALARM and will emit no further event, so nothing ever
    re-checks it: the incident is RESOLVED (FixVerified, "change kept") while the service is still
    failing, and the verify-window rollback is skipped for good.
    """
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    dependant = Dependant(pipeline)
    # The alarm went OK at 16:59 and ALARM at 17:04 (tests/events/alarm_state_change.json); the ALARM
    # is delivered first and its change applied.
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    assert only_incident(pipeline).status == "VERIFYING"
    alarm_in_state("ALARM", 41.0)  # what CloudWatch holds now: still failing

    # When the earlier OK (16:59:40, before the ALARM at 17:04:40) is delivered late
    pipeline.put_raw_event(alarm_transition("OK", "2025-11-20T16:59:40.987+0000", 0.0))
    pipeline.run()

    # Then the incident is still being verified, and no FixVerified claims a recovery
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING", (incident.status, incident.last_reason)
    assert "FixVerified" not in [e["type"] for e in dependant.events()]

    # And at the deadline the change is rolled back, as for any change with no recovery
    pipeline.fire_due("verify")
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3


def test_an_ok_for_an_alarm_that_cannot_be_read_here_resolves_nothing(aws):
    # Given an applied change being verified, and no such alarm in this account and Region
    # (deleted, or another account's): DescribeAlarms finds nothing
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()

    # When an OK for it arrives
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    [ok] = pipeline.run()

    # Then nothing is resolved and the fingerprint still folds the alarm's reports into the incident
    assert ok.error is None and ok.result["action"] == "unconfirmed", ok.result
    assert "MISSING" in ok.result["reason"]
    incident = only_incident(pipeline)
    assert (incident.status, incident.heal_phase) == ("VERIFYING", "applied")
    pipeline.put_raw_event(alarm_transition("ALARM", "2025-11-20T17:30:00.000+0000", 30.0))
    pipeline.run()
    assert only_incident(pipeline).duplicates == 1


def test_an_ok_between_the_restore_and_the_escalation_does_not_turn_a_rollback_into_a_resolution(aws, monkeypatch):
    """Expected: once a change has been rolled back for want of recovery, the incident ends
    ESCALATED and dependants get FixRolledBack, whatever alarm event arrives in between.

    Why it matters: the rollback step writes ROLLED_BACK, then ESCALATED, then sends FixRolledBack.
    If the Manager dies after the first write (a DynamoDB error, a time-out), the restore has
    landed but nobody is told. The alarm's OK (often the restore's own doing, or a
    flap) arriving before the retry resolves the incident: the retry of VerifyDue is then stale,
    FixRolledBack is never sent (dependants saw FixApplied only and believe the change stands),
    and a change that did not heal the service is reported RESOLVED with no escalation.
    """
    from lambdas.manager import heal
    from selfheal_core.incidents import IncidentStore, Status

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    dependant = Dependant(pipeline)
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    original = IncidentStore.transition
    crashed: list[str] = []

    def crash_once(self, incident_id, to, **kwargs):
        if to is Status.ESCALATED and not crashed:
            crashed.append(incident_id)
            raise RuntimeError("Lambda timed out")
        return original(self, incident_id, to, **kwargs)

    monkeypatch.setattr(IncidentStore, "transition", crash_once)
    [broken] = pipeline.fire_due("verify")
    assert broken.error and only_incident(pipeline).status == "ROLLED_BACK"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3  # the restore landed

    # When the alarm's OK arrives before Lambda retries the VerifyDue
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()
    monkeypatch.setattr(heal, "now", lambda: heal.datetime.now(heal.UTC) + heal.timedelta(days=2))
    pipeline.invoke(broken.agent, broken.event)
    pipeline.run()

    # Then the rollback is finished and announced: ESCALATED, and FixRolledBack reached dependants
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED", (incident.status, incident.last_reason)
    assert [e["type"] for e in dependant.events()] == ["FixApplied", "FixRolledBack"]


def test_an_ok_while_a_scheduled_change_is_being_applied_does_not_hide_the_change(aws, monkeypatch):
    """Expected: a change that reaches the target is announced (FixApplied) and verified; an OK
    that arrives while the change is in flight (`heal_phase == "applying"`) must not close the
    incident under it, exactly as `RESOLVED` is refused from APPROVED for that reason.

    Why it matters: in a low-traffic window the apply step claims the SCHEDULED incident
    (`heal_phase = applying`), writes the function, then records VERIFYING. If it dies in between
    and the alarm's OK arrives before the retry, the incident is RESOLVED and the retried ApplyDue
    is stale: the function runs with a changed configuration that no FixApplied announced (a
    dependant filtering on `breaking_change` never hears of it), with no `applied_at`, no verify
    and no rollback path.
    """
    from lambdas.manager import heal
    from selfheal_core.incidents import IncidentStore, Status

    ten = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(heal, "now", lambda: ten)
    pipeline = Pipeline(
        parameters={"apply-windows": json.dumps({FUNCTION: ["02:00-03:00"]})},
        functions={FUNCTION: {"timeout": 3, "memory": 512}},
    )
    dependant = Dependant(pipeline)
    low = copy.deepcopy(alarm_event())
    low["detail"]["configuration"]["description"] = "orders-api errors, low priority"
    pipeline.put_raw_event(low)
    pipeline.run()
    assert only_incident(pipeline).status == "SCHEDULED"

    # When the window opens and the apply dies after writing the function, before VERIFYING
    original = IncidentStore.transition
    crashed: list[Status] = []

    def crash_once(self, incident_id, to, **kwargs):
        if to is Status.VERIFYING and not crashed:
            crashed.append(to)
            raise RuntimeError("Lambda timed out")
        return original(self, incident_id, to, **kwargs)

    monkeypatch.setattr(IncidentStore, "transition", crash_once)
    monkeypatch.setattr(heal, "now", lambda: ten + timedelta(days=1, hours=-8, seconds=5))  # tomorrow 02:00:05
    pipeline.fire_schedules("apply")
    [broken] = pipeline.run()
    assert broken.error and pipeline.function_config(FUNCTION)["timeout_s"] == 10  # the write landed

    # And the alarm's OK is delivered before Lambda retries the ApplyDue
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()
    pipeline.invoke(broken.agent, broken.event)
    pipeline.run()

    # Then the change that landed was recorded and announced like any applied change
    incident = only_incident(pipeline)
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    assert (incident.change or {}).get("applied_at"), (incident.status, incident.heal_phase, incident.last_reason)
    assert "FixApplied" in [e["type"] for e in dependant.events()]


def test_a_crash_after_the_ok_resolved_the_incident_is_finished_by_the_retry(aws, monkeypatch):
    """A Lambda retry must finish the step: the RESOLVED write landed, then the invocation died
    before the verify decision, FixVerified and the lock's release."""
    from selfheal_core.incidents import IncidentStore, Status

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    dependant = Dependant(pipeline)
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    assert only_incident(pipeline).status == "VERIFYING"

    original = IncidentStore.transition
    crashed: list[str] = []

    def crash_after_resolving(self, incident_id, to, **kwargs):
        result = original(self, incident_id, to, **kwargs)
        if to is Status.RESOLVED and result is not None and not crashed:
            crashed.append(incident_id)
            raise RuntimeError("Lambda timed out")
        return result

    monkeypatch.setattr(IncidentStore, "transition", crash_after_resolving)
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    [broken] = pipeline.run()
    assert broken.error and only_incident(pipeline).status == "RESOLVED"

    # When Lambda retries the OK
    pipeline.invoke(broken.agent, broken.event)
    pipeline.run()

    # Then the resolution is recorded and announced once, and the alarm's next ALARM is a new incident
    incident = only_incident(pipeline)
    assert [e["type"] for e in dependant.events()] == ["FixApplied", "FixVerified"]
    assert len(decisions_of(pipeline, incident.incident_id, "verify")) == 1
    alarm_in_state("ALARM", 30.0)
    again = alarm_transition("ALARM", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"), 30.0)
    pipeline.put_raw_event(again)
    pipeline.run()
    assert len(pipeline.incidents()) == 2


def test_an_ok_read_before_a_scheduled_change_landed_leaves_the_change_to_its_own_verification(aws, monkeypatch):
    """The OK path reads the incident, asks CloudWatch, then writes RESOLVED. If the scheduled
    apply lands in between (SCHEDULED, then VERIFYING with the change live), that OK says nothing
    about the change: the incident stays VERIFYING, and the verify deadline judges the change."""
    from lambdas.manager import heal
    from selfheal_core.incidents import IncidentStore

    ten = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(heal, "now", lambda: ten)
    pipeline = Pipeline(
        parameters={"apply-windows": json.dumps({FUNCTION: ["02:00-03:00"]})},
        functions={FUNCTION: {"timeout": 3, "memory": 512}},
    )
    dependant = Dependant(pipeline)
    low = copy.deepcopy(alarm_event())
    low["detail"]["configuration"]["description"] = "orders-api errors, low priority"
    pipeline.put_raw_event(low)
    pipeline.run()
    scheduled = only_incident(pipeline)
    assert scheduled.status == "SCHEDULED"

    # Given the window opened and the change landed (VERIFYING)
    monkeypatch.setattr(heal, "now", lambda: ten + timedelta(days=1, hours=-8, seconds=5))
    pipeline.fire_schedules("apply")
    pipeline.run()
    assert only_incident(pipeline).status == "VERIFYING"

    # When the alarm's OK is handled by an invocation that read the incident before the apply landed
    original_get = IncidentStore.get
    stale: list[str] = []

    def read_before_the_apply(self, incident_id):
        if not stale:
            stale.append(incident_id)
            return scheduled
        return original_get(self, incident_id)

    monkeypatch.setattr(IncidentStore, "get", read_before_the_apply)
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()

    # Then the OK resolves nothing: the change is verified on its own evidence at its deadline
    incident = only_incident(pipeline)
    assert stale and incident.status == "VERIFYING" and incident.heal_phase == "applied"
    assert [e["type"] for e in dependant.events()] == ["FixApplied"]
    assert decisions_of(pipeline, incident.incident_id, "verify") == []


def test_an_ok_that_cannot_resolve_the_incident_does_not_release_its_fingerprint(aws, monkeypatch):
    """Expected: while an incident is open, every report of its alarm folds into it; an OK that
    is refused (the incident is APPROVED with its change in flight, so RESOLVED is not allowed)
    leaves the fingerprint lock alone, and the alarm's next ALARM folds into the open incident.

    Why it matters: a flap (ALARM, OK, ALARM) during an apply opens a second incident for the same
    alarm while the first still owns a change to the function. The second investigates the
    function as the first left it, proposes and applies its own change on top, and the first's
    rollback then finds the function moved under it (ROLLBACK FAILED): two heal loops racing on
    one target.
    """
    from lambdas.manager import heal

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    original = heal._check_still_managed
    crashed: list[str] = []

    def crash_once(change, cloud, *, by_hand):
        if not crashed:
            crashed.append(change["change_id"])
            raise RuntimeError("Lambda timed out")
        return original(change, cloud, by_hand=by_hand)

    monkeypatch.setattr(heal, "_check_still_managed", crash_once)
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    first = only_incident(pipeline)
    assert first.status == "APPROVED" and first.heal_phase == "applying"

    # When the alarm flaps: OK (really OK, but refused: the change is in flight), then ALARM again
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_transition("OK", "2025-11-20T17:06:40.000+0000", 0.0))
    [ok] = pipeline.run()
    assert ok.result["action"] == "stale"
    again = alarm_transition("ALARM", "2025-11-20T17:08:40.000+0000", 30.0)
    again["detail"]["state"]["reason"] = "Threshold Crossed again"
    pipeline.put_raw_event(again)
    pipeline.run()

    # Then the second ALARM is a duplicate of the open incident, not a second heal loop
    incidents = pipeline.incidents()
    assert [i.incident_id for i in incidents] == [first.incident_id], [(i.incident_id, i.status) for i in incidents]


def test_a_lost_verify_schedule_is_caught_by_the_scheduled_scan(aws, monkeypatch):
    # Given an applied fix whose VerifyDue schedule was deleted by hand, and no recovery
    from lambdas.manager import heal

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    for schedule in pipeline.schedules():
        boto3.client("scheduler").delete_schedule(Name=schedule["Name"])

    # When the scheduled scan runs before the deadline, nothing happens; well after it, the step is done
    early = pipeline.invoke("manager", load_event("scheduled_event"))
    assert early.error is None and early.result["swept"] == []
    assert only_incident(pipeline).status == "VERIFYING"
    later = datetime.now(UTC) + timedelta(days=1)
    monkeypatch.setattr(heal, "now", lambda: later)
    swept = pipeline.invoke("manager", {**load_event("scheduled_event"), "id": "scan-2"})
    pipeline.run()

    # Then the change is rolled back and escalated, once
    incident = only_incident(pipeline)
    assert swept.error is None and swept.result["swept"] == [incident.incident_id]
    assert incident.status == "ESCALATED"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3


def test_a_scan_finding_on_a_function_with_an_open_incident_of_its_type_is_left_to_that_incident(aws, monkeypatch):
    """The alarm's incident and the scan's finding have different fingerprints but are the same
    failure: no second proposal (tokens) and no second change queued behind the first."""
    from lambdas.manager import handler as manager_handler
    from lambdas.manager.scan import _breach
    from selfheal_core.config import ScanThresholds

    # Given the Errors alarm's incident on orders-api, its change under verification
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}, "search-api": {"timeout": 3}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    first = only_incident(pipeline)
    assert (first.status, first.issue_type) == ("VERIFYING", "high_error_rate")

    # When the scan finds errors on orders-api and on search-api
    errors = {"invocations": 200.0, "errors": 30.0, "throttles": 0.0, "duration": 100.0}
    findings = [_breach(FUNCTION, errors, ScanThresholds()), _breach("search-api", errors, ScanThresholds())]
    monkeypatch.setattr(manager_handler, "scan_lambda_metrics", lambda *_a, **_k: findings)
    scan = pipeline.invoke("manager", {**load_event("scheduled_event"), "id": "scan-1"})
    pipeline.run()

    # Then orders-api's finding is left to the open incident; search-api gets its own
    assert scan.error is None and scan.result["left_to_their_incidents"] == [FUNCTION]
    by_service = sorted(i.service for i in pipeline.incidents())
    assert by_service == sorted([FUNCTION, "search-api"]), by_service


def test_a_scan_finding_on_a_function_our_change_just_touched_is_left_alone(aws, monkeypatch):
    """Reserved concurrency does not move LastModified: a resolved throttling fix applied a minute
    ago would be judged on the throttles from before it."""
    from lambdas.manager import handler as manager_handler
    from lambdas.manager.scan import _breach
    from selfheal_core.config import ScanThresholds

    # Given a throttling fix (reserved 10 -> 20) applied and resolved on its metric
    pipeline = Pipeline(functions={FUNCTION: {"reserved": 10}})
    throttling_fix_applied(pipeline)
    traffic_after_the_change(pipeline, Throttles=0.0, Invocations=40.0)
    pipeline.fire_due("verify", after_seconds=1000)
    assert only_incident(pipeline).status == "RESOLVED"

    # When the scan, minutes later, finds the throttles of the window the fix landed in
    throttled = {"invocations": 200.0, "errors": 0.0, "throttles": 30.0, "duration": 100.0}
    monkeypatch.setattr(
        manager_handler, "scan_lambda_metrics", lambda *_a, **_k: [_breach(FUNCTION, throttled, ScanThresholds())]
    )
    scan = pipeline.invoke("manager", {**load_event("scheduled_event"), "id": "scan-touched"})
    pipeline.run()

    # Then nothing is reopened on them
    assert scan.error is None and scan.result["left_to_their_incidents"] == [FUNCTION]
    assert len(pipeline.incidents()) == 1


def test_a_due_event_for_another_change_is_ignored(aws):
    pipeline = Pipeline(functions={FUNCTION: {"memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    incident = only_incident(pipeline)
    forged = {
        "metadata": {
            "incident_id": incident.incident_id,
            "correlation_id": incident.correlation_id,
            "producer": "manager",
        },
        "data": {"change_id": "chg-forged000000", "due_at": "2020-01-01T00:00:00+00:00"},
    }

    pipeline.put("VerifyDue", forged, source="agentops.manager")
    [delivery] = pipeline.run()

    assert delivery.result["action"] == "stale"
    assert only_incident(pipeline).status == "VERIFYING"


def test_a_write_failing_halfway_puts_back_what_the_step_already_wrote(aws):
    # Given a two-setting change where the second write is denied
    from lambdas.manager import heal
    from lambdas.manager.investigate import CloudPort

    pipeline = Pipeline(functions={FUNCTION: {"memory": 512, "reserved": 5}})
    before = pipeline.function_config(FUNCTION)
    cloud = CloudPort(overrides={"lambda": Denying(boto3.client("lambda"), {"put_function_concurrency"})})

    # When the step writes memory, then fails on the reservation
    with pytest.raises(heal.HealAbort) as aborted:
        heal._write(
            FUNCTION,
            {"memory_mb": 1024.0, "reserved_concurrency": 10.0},
            {"memory_mb": 512.0, "reserved_concurrency": 5.0},
            before["revision_id"],
            cloud,
            chain=[],
        )

    # Then the memory it wrote is put back and the reason says exactly what happened
    assert (
        "reserved_concurrency failed (AccessDeniedException) after memory_mb was written; put back memory_mb=512"
        in aborted.value.reason
    )
    after = pipeline.function_config(FUNCTION)
    assert (after["memory_mb"], after["reserved_concurrency"]) == (512, 5)


class ThrottledOnce:
    """A Lambda client whose named operation is throttled the first time it is called (a burst of
    the account's control-plane calls), then answers as usual."""

    def __init__(self, real, operation: str, throttled: list[str]) -> None:
        self.real, self.operation, self.throttled = real, operation, throttled

    def __getattr__(self, name):
        if name == self.operation and not self.throttled:

            def throttle(**_kwargs):
                self.throttled.append(name)
                raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, name)

            return throttle
        return getattr(self.real, name)


def throttle_once(monkeypatch, operation: str, service: str = "lambda") -> list[str]:
    """The Manager's next `operation` of `service` is throttled once; returns the calls that were."""
    from lambdas.manager.investigate import CloudPort

    real_client = CloudPort.client
    throttled: list[str] = []
    monkeypatch.setattr(
        CloudPort,
        "client",
        lambda self, name: (
            ThrottledOnce(real_client(self, name), operation, throttled) if name == service else real_client(self, name)
        ),
    )
    return throttled


@pytest.mark.parametrize("operation", ["get_function", "list_tags", "update_function_configuration"])
def test_a_throttled_lambda_call_is_retried_by_lambda_not_turned_into_a_gap_or_an_escalation(
    aws, monkeypatch, operation
):
    # Given the Manager's first GetFunction (investigation), ListTags or UpdateFunctionConfiguration
    # (apply) is throttled once
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    throttled = throttle_once(monkeypatch, operation)
    pipeline.put_raw_event(alarm_event())
    [broken] = [d for d in pipeline.run() if d.error]
    assert throttled == [operation] and "TooManyRequestsException" in broken.error
    assert only_incident(pipeline).status in ("DETECTED", "APPROVED")  # nothing decided on the throttle

    # When Lambda retries the same event
    retried = pipeline.invoke(broken.agent, broken.event)
    pipeline.run()

    # Then the step is done as if nothing had happened: no gap, applied once, verifying
    incident = only_incident(pipeline)
    assert retried.error is None, retried.error
    assert (incident.status, incident.heal_phase) == ("VERIFYING", "applied"), incident.last_reason
    assert not [gap for gap in incident.investigation["gaps"] if "GetFunction " in gap]
    assert incident.investigation["values"]["timeout_s"] == 3
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    assert len(decisions_of(pipeline, incident.incident_id, "apply")) == 1


def test_a_throttled_rollback_write_is_retried_and_restores_the_previous_values(aws, monkeypatch):
    # Given an applied fix with no recovery, and the rollback's UpdateFunctionConfiguration throttled once
    from lambdas.manager import heal

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    throttle_once(monkeypatch, "update_function_configuration")
    [broken] = pipeline.fire_due("verify")
    assert "TooManyRequestsException" in str(broken.error)
    assert (only_incident(pipeline).status, only_incident(pipeline).heal_phase) == ("VERIFYING", "rolling_back")

    # When Lambda retries the VerifyDue
    later = datetime.now(UTC) + timedelta(days=2)
    monkeypatch.setattr(heal, "now", lambda: later)
    retried = pipeline.invoke(broken.agent, broken.event)

    # Then the previous values are restored: a rollback, not a failed one held for a person for 24 h
    incident = only_incident(pipeline)
    assert retried.error is None and retried.result["action"] == "rolled_back", retried.result
    assert (incident.status, incident.heal_phase) == ("ESCALATED", "rolled_back"), incident.last_reason
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3


@pytest.mark.parametrize(
    ("spec", "setting"),
    [({"timeout": 3}, "timeout_s"), ({"reserved": 10}, "reserved_concurrency")],
)
def test_a_function_deleted_during_verification_ends_escalated_with_nothing_to_roll_back(aws, spec, setting):
    # Given an applied change (timeout 3 -> 10 s, or reserved concurrency 10 -> 20) with no recovery
    pipeline = Pipeline(functions={FUNCTION: spec})
    if setting == "timeout_s":
        pipeline.put_raw_event(alarm_event())
        pipeline.run()
        alarm_in_state("ALARM", 41.0)
    else:
        throttling_fix_applied(pipeline)
        traffic_after_the_change(pipeline, Throttles=12.0, Invocations=40.0)
    # And its owner deletes the function meanwhile
    boto3.client("lambda").delete_function(FunctionName=FUNCTION)

    # When the verify window ends
    [verify] = pipeline.fire_due("verify", after_seconds=2 * 86_400)

    # Then the incident ends ESCALATED saying so, not as a failed rollback nor an error on every retry
    incident = only_incident(pipeline)
    assert verify.error is None, verify.error
    assert (incident.status, incident.heal_phase) == ("ESCALATED", "function_gone"), incident.last_reason
    assert f"the function {FUNCTION} no longer exists: nothing to roll back" in incident.last_reason
    [rollback] = decisions_of(pipeline, incident.incident_id, "rollback")
    assert rollback["outputs"]["function_gone"] is True


def test_a_function_deleted_before_the_apply_escalates_with_nothing_changed(aws, monkeypatch):
    # Given an APPROVED change whose step died before it touched the function, which is then deleted
    pipeline, broken, _ = died_after_approval(monkeypatch)
    boto3.client("lambda").delete_function(FunctionName=FUNCTION)

    # When Lambda retries the step
    retried = pipeline.invoke(broken.agent, broken.event)

    # Then it ends ESCALATED naming the deleted function
    incident = only_incident(pipeline)
    assert retried.error is None, retried.error
    assert incident.status == "ESCALATED"
    assert f"the function {FUNCTION} no longer exists: nothing was changed" in incident.last_reason


class Outbox:
    """What the Manager really published, and a process death: from `dies_at`'s moment on,
    nothing more of that invocation reaches the bus (its held events included)."""

    def __init__(self, monkeypatch) -> None:
        from selfheal_core.bus import EventPublisher

        self.sent: list[tuple[str, str]] = []  # (detail-type, incident id)
        self.dead = False
        self.dies_publishing: str | None = None
        original = EventPublisher.publish

        def publish(publisher, *messages):
            if publisher.source == "agentops.manager":
                types = {m.detail_type for m in messages}
                if self.dies_publishing in types:
                    self.dies_publishing, self.dead = None, True
                if self.dead:
                    raise RuntimeError("Lambda timed out")
            original(publisher, *messages)
            self.sent.extend((m.detail_type, m.metadata.incident_id) for m in messages)

        monkeypatch.setattr(EventPublisher, "publish", publish)

    def count(self, detail_type: str) -> int:
        return sum(1 for t, _ in self.sent if t == detail_type)


@pytest.mark.parametrize("dies", ["after the APPROVED write", "publishing FixApplied"])
def test_a_retry_of_the_approving_step_sends_what_its_dead_first_try_did_not(aws, monkeypatch, dies):
    # Given the Manager's FixValidated step dies after the APPROVED write (before it touches the
    # function), or after the VERIFYING write, at the PutEvents of RemediationApproved and FixApplied
    from lambdas.manager import heal

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    outbox = Outbox(monkeypatch)
    if dies == "publishing FixApplied":
        outbox.dies_publishing = "FixApplied"
    else:
        original = heal._check_still_managed
        died: list[str] = []

        def die_once(change, cloud, *, by_hand):
            if not died:
                died.append(change["change_id"])
                outbox.dead = True
                raise RuntimeError("Lambda timed out")
            return original(change, cloud, by_hand=by_hand)

        monkeypatch.setattr(heal, "_check_still_managed", die_once)
    pipeline.put_raw_event(alarm_event())
    [broken] = [d for d in pipeline.run() if d.error]
    incident = only_incident(pipeline)
    assert incident.status == ("VERIFYING" if dies == "publishing FixApplied" else "APPROVED")
    assert outbox.count("RemediationApproved") == outbox.count("FixApplied") == 0

    # When Lambda retries the same event
    outbox.dead = False
    retried = pipeline.invoke(broken.agent, broken.event)

    # Then the step is finished: the change made once, announced, and its decisions recorded
    assert retried.error is None and retried.result["action"] == "applied", retried.result
    assert only_incident(pipeline).status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    assert outbox.count("RemediationApproved") == outbox.count("FixApplied") == 1
    for kind in ("close_incident", "apply"):
        assert len(decisions_of(pipeline, incident.incident_id, kind)) == 1, kind


@pytest.mark.parametrize("ending", ["rolled_back", "rollback_failed"])
def test_a_retry_of_the_rollback_step_that_died_after_escalating_pages_once(aws, monkeypatch, ending):
    # Given an applied fix with no recovery (and, for a failed rollback, memory changed by hand)
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    if ending == "rollback_failed":
        boto3.client("lambda").update_function_configuration(FunctionName=FUNCTION, MemorySize=768)
    # And the VerifyDue step dies after the ESCALATED write, at the PutEvents of its escalation
    outbox = Outbox(monkeypatch)
    outbox.dies_publishing = "IncidentEscalated"
    [broken] = pipeline.fire_due("verify")
    incident = only_incident(pipeline)
    assert broken.error and (incident.status, incident.heal_phase) == ("ESCALATED", ending)
    assert outbox.count("IncidentEscalated") == 0

    # When Lambda retries the same event, and the schedule delivers it once more later
    outbox.dead = False
    retried = pipeline.invoke(broken.agent, broken.event)
    again = pipeline.invoke(broken.agent, broken.event)

    # Then the retry records the rollback and pages once; the late delivery is stale
    assert retried.error is None and retried.result["action"] == "rollback_announced", retried.result
    assert again.result["action"] == "stale"
    assert outbox.count("IncidentEscalated") == 1 and outbox.count("FixRolledBack") >= 1
    assert len(decisions_of(pipeline, incident.incident_id, "rollback")) == 1


def test_a_denial_racing_an_approval_leaves_the_applied_change_to_be_verified(aws):
    # Given an operator's reject read AWAITING_APPROVAL, then another's approve won the write and applied the fix
    from lambdas.manager import handler as manager_handler  # reads the test environment on import
    from lambdas.manager import logic
    from selfheal_core.events import ApprovalV1, Metadata
    from tests.support.context import FakeLambdaContext

    pipeline = Pipeline(parameters={"automation-level": "manual"}, functions={FUNCTION: {"memory": 512}})
    pipeline.put(
        "IssueReported",
        {"service": FUNCTION, "issue_type": "latency", "severity": "high", "summary": "p95 4.2 s"},
    )
    pipeline.run()
    snapshot = only_incident(pipeline)
    assert snapshot.status == "AWAITING_APPROVAL"
    approve(pipeline, snapshot)
    assert only_incident(pipeline).status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 1024
    # When the denial's invocation carries on from what it read
    ports = manager_handler.ports(FakeLambdaContext(function_name="selfheal-test-manager"))
    ports.incidents.get = lambda _incident_id: snapshot
    denial = ApprovalV1(approver="arn:aws:iam::123456789012:user/bob", comment="no")
    metadata = Metadata(
        incident_id=snapshot.incident_id,
        correlation_id=snapshot.correlation_id,
        attempt=snapshot.attempts,
        producer="approvals",
    )
    outcome = logic.handle_approval(metadata, denial, False, ports)
    # Then it is stale: the live change stays VERIFYING, nothing claims the denial decided it,
    # and the verify deadline still verifies it (kept or rolled back, never left unverified)
    assert outcome["action"] == "stale"
    assert only_incident(pipeline).status == "VERIFYING"
    [decided] = decisions_of(pipeline, snapshot.incident_id, "human_approval")
    assert decided["inputs"]["approver"] == "alice@example.com" and decided["outputs"] == {"granted": True}
    traffic_after_the_change(pipeline, Invocations=50.0)  # (in-process moto computes no p95 of Duration)
    pipeline.fire_due("verify")
    assert only_incident(pipeline).status == "RESOLVED"
    assert only_incident(pipeline).last_reason == "recovered within the verify window"


# ------------------------------------------------------------------------------ one change per target at a time


def two_incidents_on_one_function(pipeline: Pipeline):
    """A: the Errors alarm, its timeout fix (3 -> 10 s) applied and VERIFYING. B: a latency issue on
    the same function (memory 512 -> 1024), investigated after A's apply, reaching its apply."""
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    a = only_incident(pipeline)
    assert a.status == "VERIFYING" and pipeline.function_config(FUNCTION)["timeout_s"] == 10
    pipeline.put("IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "high"})
    pipeline.run()
    b = next(i for i in pipeline.incidents() if i.incident_id != a.incident_id)
    return a, b


def test_a_second_incident_does_not_change_a_function_whose_change_is_being_verified(aws):
    # Given incident A's change on orders-api under verification, and incident B on the same function
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    a, b = two_incidents_on_one_function(pipeline)

    # Then B's change was not written: A's verification is not confounded, A's rollback stays possible
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 512
    assert b.status == "SCHEDULED", (b.status, b.last_reason)
    assert a.incident_id in b.last_reason
    [wait] = decisions_of(pipeline, b.incident_id, "wait_for_target")
    assert a.incident_id in json.dumps(wait["reasoning_chain"])
    assert b.change["waited_for"] == a.incident_id and b.change["reread"] is True
    assert hold_of(pipeline, FUNCTION) == a.incident_id


def hold_of(pipeline: Pipeline, function: str) -> str | None:
    from selfheal_core.incidents import IncidentStore

    return IncidentStore(pipeline.env["DECISIONS_TABLE_NAME"]).holder_of(function)


def incident_by_id(pipeline: Pipeline, incident_id: str):
    return next(i for i in pipeline.incidents() if i.incident_id == incident_id)


def test_the_waiting_change_applies_after_the_first_one_is_resolved_re_reading_the_function(aws):
    # Given A verifying on orders-api and B waiting for it
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    a, b = two_incidents_on_one_function(pipeline)

    # When A's alarm returns to OK (A resolved, its change kept) and B's wait ends
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()
    assert incident_by_id(pipeline, a.incident_id).status == "RESOLVED"
    assert hold_of(pipeline, FUNCTION) is None
    pipeline.fire_due("apply")

    # Then B is applied on top of A's kept change, guarded by the revision read after the wait
    b = incident_by_id(pipeline, b.incident_id)
    assert b.status == "VERIFYING", (b.status, b.last_reason)
    config = pipeline.function_config(FUNCTION)
    assert (config["timeout_s"], config["memory_mb"]) == (10, 1024)
    assert "reread" not in b.change
    assert hold_of(pipeline, FUNCTION) == b.incident_id
    [apply] = decisions_of(pipeline, b.incident_id, "apply")
    assert any("Waited for incident" in s["thought"] for s in apply["reasoning_chain"])


def test_the_waiting_change_applies_after_the_first_one_is_rolled_back(aws):
    # Given A verifying on orders-api and B waiting for it
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    a, b = two_incidents_on_one_function(pipeline)

    # When A does not recover and is rolled back, then B's wait ends
    alarm_in_state("ALARM", 41.0)
    pipeline.fire_due("verify")
    a = incident_by_id(pipeline, a.incident_id)
    assert (a.status, a.heal_phase) == ("ESCALATED", "rolled_back")  # the rollback was not blocked
    assert hold_of(pipeline, FUNCTION) == a.incident_id  # cooling down: A's change is not made again
    pipeline.fire_due("apply")

    # Then B, another change (memory, not A's timeout), is applied on the restored function
    assert incident_by_id(pipeline, b.incident_id).status == "VERIFYING"
    config = pipeline.function_config(FUNCTION)
    assert (config["timeout_s"], config["memory_mb"]) == (3, 1024)


def test_a_change_that_was_just_rolled_back_is_not_made_again_by_another_report(aws):
    """The scan (or another alarm) reports the same failure under another fingerprint right after
    a rollback: the change that did not help is not made again within the cool-down."""
    # Given the alarm's timeout fix (3 -> 10 s) applied, not recovered, rolled back
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    pipeline.fire_due("verify")
    first = only_incident(pipeline)
    assert (first.status, first.heal_phase) == ("ESCALATED", "rolled_back")
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3

    # When another report of the same failure proposes the same change
    pipeline.put(
        "IssueReported",
        {"service": FUNCTION, "issue_type": "high_error_rate", "summary": "errors", "severity": "high"},
    )
    pipeline.run()

    # Then nothing is changed: a person is asked, with the change that did not help named
    second = next(i for i in pipeline.incidents() if i.incident_id != first.incident_id)
    assert second.status == "ESCALATED", (second.status, second.last_reason)
    assert "was rolled back for no recovery" in second.last_reason and first.incident_id in second.last_reason
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3


def test_nobody_is_asked_to_approve_a_change_that_was_just_rolled_back(aws):
    """With approval required, the repeat is escalated when QA's verdict arrives, not after a
    person approved a change that `apply_change` would then refuse."""
    # Given the alarm's timeout fix (3 -> 10 s) applied, not recovered, rolled back
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    pipeline.fire_due("verify")
    first = only_incident(pipeline)
    assert (first.status, first.heal_phase) == ("ESCALATED", "rolled_back")
    pipeline.notifications()  # what the first incident sent

    # When changes need a person and another report of the same failure proposes the same change
    boto3.client("ssm").put_parameter(
        Name=f"{pipeline.env['PARAMETER_PREFIX']}automation-level", Value="manual", Type="String", Overwrite=True
    )
    pipeline.put(
        "IssueReported",
        {"service": FUNCTION, "issue_type": "high_error_rate", "summary": "errors", "severity": "high"},
    )
    pipeline.run()

    # Then it is escalated naming the rolled-back incident, and no approval was requested
    second = next(i for i in pipeline.incidents() if i.incident_id != first.incident_id)
    assert second.status == "ESCALATED", (second.status, second.last_reason)
    assert "was rolled back for no recovery" in second.last_reason and first.incident_id in second.last_reason
    assert "AWAITING_APPROVAL" not in json.dumps(second.status_history)
    sent = pipeline.notifications()
    assert not any("ApprovalRequested" in body or "selfheal approve" in body for body in sent), sent
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3


def test_no_change_is_stacked_automatically_on_a_function_whose_rollback_failed(aws):
    """A failed rollback leaves the function to a person, with the values to restore: another
    report's automatic change would stack on what they are restoring."""
    # Given the alarm's timeout fix (3 -> 10 s), memory changed by hand during verification, and the rollback failed
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    boto3.client("lambda").update_function_configuration(FunctionName=FUNCTION, MemorySize=768)
    pipeline.fire_due("verify")
    first = only_incident(pipeline)
    assert (first.status, first.heal_phase) == ("ESCALATED", "rollback_failed")

    # When another report of the failure arrives, its change approved automatically
    pipeline.put(
        "IssueReported",
        {"service": FUNCTION, "issue_type": "high_error_rate", "summary": "errors", "severity": "high"},
    )
    pipeline.run()

    # Then nothing is changed: it is escalated naming the incident a person must settle first
    second = next(i for i in pipeline.incidents() if i.incident_id != first.incident_id)
    assert second.status == "ESCALATED", (second.status, second.last_reason)
    assert "left to a person (its rollback failed)" in second.last_reason
    assert first.incident_id in second.last_reason
    config = pipeline.function_config(FUNCTION)
    assert (config["timeout_s"], config["memory_mb"]) == (10, 768)


def test_nobody_is_asked_to_approve_another_change_on_a_function_whose_change_is_unverified(aws, monkeypatch):
    """An unverified change is kept, unproven, for a person to confirm or undo: no other change is
    made (or asked for) on the function before they do, whatever setting it touches."""
    # Given a throttling fix (reserved concurrency 10 -> 20) kept UNVERIFIED after windows without traffic
    monkeypatch.setattr("lambdas.manager.heal.VERIFY_EXTENSIONS", 0)
    pipeline = Pipeline(functions={FUNCTION: {"reserved": 10, "timeout": 3, "memory": 512}})
    throttling_fix_applied(pipeline)
    fire_verify(pipeline, 0)
    first = only_incident(pipeline)
    assert (first.status, first.heal_phase) == ("ESCALATED", "unverified")
    pipeline.notifications()  # what the first incident sent

    # When, with approval required, a latency report proposes another setting (memory)
    boto3.client("ssm").put_parameter(
        Name=f"{pipeline.env['PARAMETER_PREFIX']}automation-level", Value="manual", Type="String", Overwrite=True
    )
    pipeline.put("IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "high"})
    pipeline.run()

    # Then it is escalated naming the unverified incident, and nobody is asked to approve it
    second = next(i for i in pipeline.incidents() if i.incident_id != first.incident_id)
    assert second.status == "ESCALATED", (second.status, second.last_reason)
    assert "left to a person (it was kept unverified)" in second.last_reason
    assert first.incident_id in second.last_reason
    assert "AWAITING_APPROVAL" not in json.dumps(second.status_history)
    sent = pipeline.notifications()
    assert not any("ApprovalRequested" in body or "selfheal approve" in body for body in sent), sent
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 512


def test_a_different_change_still_asks_for_approval_during_the_cool_down(aws):
    # Given the alarm's timeout fix rolled back (the target cooling down)
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    pipeline.fire_due("verify")
    first = only_incident(pipeline)
    assert first.heal_phase == "rolled_back"

    # When, with approval required, a latency report proposes another setting (memory)
    boto3.client("ssm").put_parameter(
        Name=f"{pipeline.env['PARAMETER_PREFIX']}automation-level", Value="manual", Type="String", Overwrite=True
    )
    pipeline.put("IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "high"})
    pipeline.run()

    # Then a person is asked as usual
    second = next(i for i in pipeline.incidents() if i.incident_id != first.incident_id)
    assert second.status == "AWAITING_APPROVAL", (second.status, second.last_reason)


def test_a_change_still_held_at_its_due_time_waits_again_then_a_person_decides(aws, monkeypatch):
    from lambdas.manager import heal

    monkeypatch.setattr(heal, "TARGET_WAITS", 2)
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    a, b = two_incidents_on_one_function(pipeline)

    # When B's wait ends while A is still verifying (its window extended), B waits again
    pipeline.fire_due("apply")
    b = incident_by_id(pipeline, b.incident_id)
    assert (b.status, b.change["waits"]) == ("SCHEDULED", 2)

    # And after TARGET_WAITS waits a person is told which incident holds the function
    pipeline.fire_due("apply", after_seconds=3 * 86_400)
    b = incident_by_id(pipeline, b.incident_id)
    assert b.status == "ESCALATED" and a.incident_id in b.last_reason
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 512
    assert (
        incident_by_id(pipeline, a.incident_id).status == "VERIFYING" and hold_of(pipeline, FUNCTION) == a.incident_id
    )


def test_a_waiting_change_is_refused_when_its_setting_moved_while_it_waited(aws):
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    _, b = two_incidents_on_one_function(pipeline)

    # When someone sets the memory B was validated against, and A resolves
    boto3.client("lambda").update_function_configuration(FunctionName=FUNCTION, MemorySize=768)
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()
    pipeline.fire_due("apply")

    # Then B fails safe: nothing written, a person told why, the hold released
    b = incident_by_id(pipeline, b.incident_id)
    assert b.status == "ESCALATED" and "memory_mb is now 768, not the validated 512" in b.last_reason
    assert pipeline.function_config(FUNCTION)["memory_mb"] == 768
    assert hold_of(pipeline, FUNCTION) is None


def test_a_retry_of_the_apply_after_the_hold_was_taken_finishes_it(aws, monkeypatch):
    # Given the Manager crashes inside the apply, after the claim took the hold
    pipeline, broken, _ = died_after_approval(monkeypatch)
    incident = only_incident(pipeline)
    assert hold_of(pipeline, FUNCTION) == incident.incident_id and pipeline.function_config(FUNCTION)["timeout_s"] == 3

    # When Lambda retries the step, the holder re-takes its own hold and finishes
    retried = pipeline.invoke(broken.agent, broken.event)
    assert retried.error is None and retried.result["action"] == "applied", retried.result
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    assert hold_of(pipeline, FUNCTION) == incident.incident_id


def test_a_hold_left_by_a_closed_incident_does_not_block_the_target(aws, monkeypatch):
    # Given A resolved, but its hold was not released (a crash between the two writes)
    from selfheal_core.incidents import IncidentStore

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    release = IncidentStore._release_target
    crashing = [True]
    monkeypatch.setattr(
        IncidentStore, "_release_target", lambda self, incident: None if crashing else release(self, incident)
    )
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    a = only_incident(pipeline)
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()
    assert incident_by_id(pipeline, a.incident_id).status == "RESOLVED" and hold_of(pipeline, FUNCTION) == a.incident_id
    crashing.clear()

    # When B reaches its apply
    pipeline.put("IssueReported", {"service": FUNCTION, "issue_type": "latency", "summary": "slow", "severity": "high"})
    pipeline.run()

    # Then the holder's own state is the truth: the stale hold is replaced, B applied at once
    b = next(i for i in pipeline.incidents() if i.incident_id != a.incident_id)
    assert b.status == "VERIFYING" and pipeline.function_config(FUNCTION)["memory_mb"] == 1024
    assert hold_of(pipeline, FUNCTION) == b.incident_id


def math_or_band_alarm_set_ok_by_hand(kind: str, at: datetime) -> None:
    """The incident's alarm as a metric-math error rate or an anomaly band, set OK by hand with
    reason data about a period before `at`."""
    cw = boto3.client("cloudwatch")
    stat = lambda name, ret: {  # noqa: E731
        "Id": name.lower(),
        "ReturnData": ret,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Lambda",
                "MetricName": name,
                "Dimensions": [{"Name": "FunctionName", "Value": FUNCTION}],
            },
            "Period": 60,
            "Stat": "Sum",
        },
    }
    if kind == "math":
        shape = {
            "Metrics": [
                {"Id": "rate", "Expression": "100 * errors / invocations", "ReturnData": True},
                stat("Errors", False),
                stat("Invocations", False),
            ],
            "Threshold": 5.0,
            "ComparisonOperator": "GreaterThanThreshold",
        }
    else:
        shape = {
            "Metrics": [stat("Errors", True), {"Id": "band", "Expression": "ANOMALY_DETECTION_BAND(errors, 2)"}],
            "ThresholdMetricId": "band",
            "ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold",
        }
    cw.put_metric_alarm(AlarmName=ALARM, EvaluationPeriods=1, **shape)
    configured_before_the_incident(ALARM)
    cw.set_alarm_state(
        AlarmName=ALARM,
        StateValue="OK",
        StateReason="manual: testing alarm actions",
        StateReasonData=json.dumps(
            {"evaluatedDatapoints": [{"timestamp": (at - timedelta(minutes=2)).isoformat(), "value": 0.0}]}
        ),
    )


@pytest.mark.parametrize("kind", ["math", "anomaly_band"])
def test_an_ok_set_by_hand_on_a_math_or_band_alarm_over_failing_calls_resolves_nothing(aws, kind):
    # Given an applied fix, calls after it that still fail (9 errors in 25 calls), and the
    # incident's metric-math (or anomaly band) alarm set OK by hand
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    applied = datetime.fromisoformat(only_incident(pipeline).change["applied_at"])
    # Inside any query of the figures since the change (and since calls in flight at it ended).
    in_the_first_whole_minute = first_whole_minute(evidence_since(only_incident(pipeline))) + timedelta(seconds=5)
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": "FunctionName", "Value": FUNCTION}],
                "Timestamp": in_the_first_whole_minute,
                "Value": v,
            }
            for name, v in (("Invocations", 25.0), ("Errors", 9.0))
        ],
    )
    math_or_band_alarm_set_ok_by_hand(kind, applied)

    # When its OK event arrives
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()

    # Then the incident is not resolved by it: the OK evaluated no period since the change, and
    # the calls since then are no recovery unless the alarm's own series says so
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING", incident.last_reason
    decisions = json.dumps(decisions_of(pipeline, incident.incident_id, "verify"))
    assert "RESOLVED" not in decisions


@pytest.mark.parametrize("automation_level", ["semi_auto", "full_auto"])
def test_an_alarm_set_by_hand_with_no_datapoint_behind_it_changes_nothing_without_a_person(aws, automation_level):
    # Given a healthy function whose alarm an operator sets to ALARM by hand (no reason data:
    # `aws cloudwatch set-alarm-state --state-value ALARM --state-reason "testing the pager"`)
    pipeline = Pipeline(
        functions={FUNCTION: {"timeout": 3, "memory": 512}}, parameters={"automation-level": automation_level}
    )
    by_hand = copy.deepcopy(alarm_event())
    del by_hand["detail"]["state"]["reasonData"]
    by_hand["detail"]["state"]["reason"] = "testing the pager"

    # When the incident it opens reaches a validated, low-risk fix
    pipeline.put_raw_event(by_hand)
    pipeline.run()

    # Then nothing is changed automatically: a person is asked, and told why
    incident = only_incident(pipeline)
    assert incident.status == "AWAITING_APPROVAL", incident.last_reason
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3
    [close] = decisions_of(pipeline, incident.incident_id, "close_incident")
    assert "set by hand?" in json.dumps(close["reasoning_chain"])


def test_a_flapping_alarm_after_a_rollback_folds_into_the_closed_incident_instead_of_opening_more(aws):
    # Given an incident rolled back and escalated, the function still failing since it opened
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    pipeline.fire_due("verify")
    closed = only_incident(pipeline)
    assert (closed.status, closed.heal_phase) == ("ESCALATED", "rolled_back")
    traffic_after_the_change(pipeline, Invocations=25.0, Errors=9.0)

    # When its alarm is set OK by hand and goes back to ALARM, twice
    for _ in range(2):
        ok_on_a_period_before(datetime.now(UTC))
        pipeline.put_raw_event(alarm_transition("OK", stamp(datetime.now(UTC)), datapoint=0.0))
        pipeline.run()
        pipeline.put_raw_event(
            alarm_transition("ALARM", stamp(datetime.now(UTC) + timedelta(seconds=1)), datapoint=9.0)
        )
        pipeline.run()

    # Then no new incident opened (nothing ran the Engineer or QA again): the ALARMs folded into it
    assert [i.incident_id for i in pipeline.incidents()] == [closed.incident_id]
    assert only_incident(pipeline).duplicates >= 2


def stamp(at: datetime) -> str:
    """A time as CloudWatch writes it in a state-change event."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def test_a_retry_of_the_ok_step_whose_settle_was_throttled_records_the_verification(aws, monkeypatch):
    # Given an applied fix whose alarm returns to OK, and the OK step's settle (its decisions, its
    # idempotency record) throttled after the RESOLVED write and the announcements
    from botocore.client import BaseClient

    from tests.support.faults import expire_in_progress

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("OK", 0.0)
    original, throttled = BaseClient._make_api_call, []

    def throttle_once(client, operation, params):
        if operation == "TransactWriteItems" and not throttled:
            throttled.append(operation)
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, operation)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", throttle_once)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    [broken] = pipeline.run()
    incident = only_incident(pipeline)
    assert throttled and broken.error and incident.status == "RESOLVED"
    assert not decisions_of(pipeline, incident.incident_id, "verify")

    # When Lambda retries the OK event
    expire_in_progress(pipeline)
    retried = pipeline.invoke(broken.agent, broken.event)

    # Then the retry finds the incident (its fingerprint is released only with the records) and
    # records the verification with its before and after figures, once
    assert retried.error is None and retried.result["action"] == "resolved", retried.result
    [verify] = decisions_of(pipeline, incident.incident_id, "verify")
    assert verify["outputs"]["figures"]["before_latest_datapoint"] == 37
    assert verify["outputs"]["figures"]["after_latest_datapoint"] == 0
    assert len(decisions_of(pipeline, incident.incident_id, "resolve_on_recovery")) == 1
    from selfheal_core.incidents import IncidentStore

    assert IncidentStore(pipeline.env["DECISIONS_TABLE_NAME"]).open_incident_for(incident.fingerprint) is None


def test_a_retry_of_the_verify_deadline_that_died_after_resolving_records_the_verification(aws, monkeypatch):
    # Given an applied fix that recovered, and the VerifyDue step dying after its RESOLVED write
    # and its announcements, before it settles
    from tests.support.faults import die_after_publishing

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("OK", 0.0)
    die_after_publishing(monkeypatch, "agentops.manager", "IncidentResolved")
    [broken] = pipeline.fire_due("verify")
    incident = only_incident(pipeline)
    assert broken.error and incident.status == "RESOLVED"
    assert not decisions_of(pipeline, incident.incident_id, "verify")

    # When Lambda retries the VerifyDue, and a duplicate of it arrives later
    retried = pipeline.invoke(broken.agent, broken.event)
    again = pipeline.invoke(broken.agent, broken.event)

    # Then the retry records the verification with before and after figures; the duplicate is stale
    assert retried.error is None and retried.result["action"] == "resolved", retried.result
    assert again.result["action"] == "stale"
    [verify] = decisions_of(pipeline, incident.incident_id, "verify")
    assert verify["outputs"]["recovered"] is True
    assert verify["outputs"]["figures"]["before_latest_datapoint"] == 37
    assert "after_latest_datapoint" in verify["outputs"]["figures"]


def test_a_throttled_alarm_read_at_the_deadline_decides_nothing_until_lambda_retries(aws, monkeypatch):
    # Given an applied fix whose alarm is still in ALARM at the deadline, and the VerifyDue's first
    # DescribeAlarms throttled (it used to read as UNREADABLE: no recovery, so a rollback)
    operation = "describe_alarms"
    from lambdas.manager import heal

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    throttled = throttle_once(monkeypatch, operation, service="cloudwatch")
    [due] = pipeline.fire_due("verify")

    # Then the throttle is no verdict: nothing rolled back, the delivery fails for Lambda to retry
    assert throttled == [operation]
    assert "TooManyRequestsException" in str(due.error)
    assert only_incident(pipeline).status == "VERIFYING"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10

    # When Lambda retries it
    later = datetime.now(UTC) + timedelta(days=2)
    monkeypatch.setattr(heal, "now", lambda: later)
    retried = pipeline.invoke(due.agent, due.event)
    assert retried.error is None, retried.error

    # Then the retry judges on real readings: the alarm is in ALARM, so the change is rolled back
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED" and incident.heal_phase == "rolled_back", incident.last_reason
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3
