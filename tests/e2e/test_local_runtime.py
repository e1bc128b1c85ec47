"""The local runtime end to end: a child process, the stock AWS CLI, the real agents.

Given the app synthesized with a very low costAlertThreshold, when an issue is put on the
bus with `aws events put-events`, then all three agents decide under one correlation id, the
agents' EMF metrics are in the emulator's CloudWatch (without a single PutMetricData call),
the cost alarm goes to ALARM, notifies the alerts topic and emits a real-shaped state
change event, and stopping the runtime leaves no process behind.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from selfheal_core.catalog import SETTLED
from tests.e2e.conftest import ALERT_EMAIL
from tests.e2e.functions import create_function
from tests.support.harness import RuntimeProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runtime(e2e_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    rt = RuntimeProcess(
        state_dir=tmp_path_factory.mktemp("runtime"),
        assembly=e2e_assembly,
        extra_args=["--alarm-interval", "1", "--quiet"],
    )
    rt.start()
    yield rt
    rt.stop()


def _wait(predicate: Any, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def _incidents(rt: Any) -> list[dict[str, Any]]:
    proc = rt.selfheal("incidents", "--json")
    return json.loads(proc.stdout)["incidents"]


def test_an_issue_put_with_the_aws_cli_runs_through_all_three_agents(runtime: Any, tmp_path: Path) -> None:
    # Given an alarm-state-change listener (a rule with a Logs target, created through the API)
    alarm_events = runtime.listen("e2e-alarm-listener", {"source": ["aws.cloudwatch"]})

    # and the function the issue concerns, which the Manager investigates before asking for a fix
    create_function(runtime, "orders-api", timeout=3)

    # When an IssueReported is put with the stock AWS CLI
    issue = {
        "service": "orders-api",
        "issue_type": "high_error_rate",
        "severity": "high",
        "summary": "orders-api 5xx above 8 % since the last deploy",
        "signals": {"error_rate_pct": 8.4},
        "idempotency_key": f"e2e-{time.time_ns()}",
    }
    entries = tmp_path / "issue.json"
    entries.write_text(
        json.dumps(
            [
                {
                    "EventBusName": "agentops-dev",
                    "Source": "com.example.orders",
                    "DetailType": "IssueReported",
                    "Detail": json.dumps(issue),
                }
            ]
        )
    )
    result = runtime.aws("events", "put-events", "--entries", f"file://{entries}")
    assert result["FailedEntryCount"] == 0

    # Then an incident opens and reaches a decision
    incident = _wait(
        lambda: next((i for i in _incidents(runtime) if i["service"] == "orders-api" and i["status"] in SETTLED), None),
        90,
    )
    assert incident, f"no terminal incident; runtime log:\n{runtime.log()[-3000:]}"

    # and Manager, Engineer and QA each recorded decisions under the one correlation id
    trace = json.loads(runtime.selfheal("trace", incident["incident_id"], "--json").stdout)
    agents = {d["agent"] for d in trace["decisions"]}
    assert {"manager", "engineer", "qa"} <= agents, trace["decisions"]
    assert trace["correlation_ids"] == [incident["correlation_id"]]
    assert all(d["reasoning_chain"] and 0 <= d["confidence_score"] <= 1 for d in trace["decisions"])
    assert any(d["evidence"] for d in trace["decisions"] if d["agent"] == "qa"), "QA must return evidence"

    # and the agents' EMF output is in the emulator's CloudWatch
    cw = runtime.client("cloudwatch")
    namespaces = {m["Namespace"] for m in cw.list_metrics()["Metrics"]}
    assert {"AgentOps/Events", "AgentOps/Costs"} <= namespaces
    end = datetime.now(UTC) + timedelta(minutes=1)
    data = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "cost",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AgentOps/Costs",
                        "MetricName": "TotalCost",
                        "Dimensions": [{"Name": "environment", "Value": "dev"}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=end - timedelta(hours=1),
        EndTime=end,
    )["MetricDataResults"][0]
    assert sum(data["Values"]) > 0

    # and not one PutMetricData call was made by an agent
    calls = runtime.control("api-calls")
    assert calls["put_metric_data_calls"] == 0
    assert all(not k.endswith("PutMetricData") for per in calls["by_caller"].values() for k in per)

    # and the cost alarm crossed its threshold, notified the alerts topic ...
    cost_alarm = _wait(
        lambda: next(
            (
                a
                for a in cw.describe_alarms()["MetricAlarms"]
                if "TotalCost" in json.dumps(a.get("Metrics", [])) + a.get("MetricName", "")
                and a["StateValue"] == "ALARM"
            ),
            None,
        ),
        30,
    )
    assert cost_alarm, cw.describe_alarms()["MetricAlarms"]
    notes = _wait(
        lambda: [
            n
            for n in runtime.control("notifications")["notifications"]
            if (n.get("subject") or "").startswith(f'ALARM: "{cost_alarm["AlarmName"]}"')
        ],
        10,
    )
    assert notes, runtime.control("notifications")
    message = json.loads(notes[0]["message"])
    assert message["NewStateValue"] == "ALARM" and message["AlarmName"] == cost_alarm["AlarmName"]
    # the alert email is subscribed; with no mail server locally the delivery is recorded, not sent
    assert [(d["protocol"], d["endpoint"]) for d in notes[0]["deliveries"]] == [("email", ALERT_EMAIL)]
    assert notes[0]["deliveries"][0]["status"].startswith("not sent")

    # ... and put a real-shaped state change event on the default bus
    received: list[dict[str, Any]] = []

    def alarm_event() -> bool:
        received[:] = alarm_events()
        return any(
            e["detail"]["alarmName"] == cost_alarm["AlarmName"] and e["detail"]["state"]["value"] == "ALARM"
            for e in received
        )

    assert _wait(alarm_event, 15)
    event = next(
        e
        for e in received
        if e["detail"]["alarmName"] == cost_alarm["AlarmName"] and e["detail"]["state"]["value"] == "ALARM"
    )
    assert event["detail-type"] == "CloudWatch Alarm State Change" and event["source"] == "aws.cloudwatch"
    assert event["resources"] == [cost_alarm["AlarmArn"]]
    assert {"reason", "reasonData", "timestamp", "value"} <= set(event["detail"]["state"])
    assert event["detail"]["configuration"]["metrics"]

    # and because it is one of Selfheal's own alarms (prefix selfheal-), the Manager never saw it
    manager_alarm_calls = [
        i for i in runtime.control("invocations")["invocations"] if i["detail_type"] == "CloudWatch Alarm State Change"
    ]
    assert manager_alarm_calls == []


def test_set_alarm_state_with_the_aws_cli_changes_the_alarm_as_on_aws_and_opens_an_incident(runtime: Any) -> None:
    """`aws cloudwatch set-alarm-state` is how teams test alarm-driven automation: on AWS it runs
    the alarm's actions and emits the state change event; the emulator must not just store it."""
    alarm_events = runtime.listen("e2e-set-state-listener", {"source": ["aws.cloudwatch"]})
    create_function(runtime, "stock-api", timeout=3)
    name = "stock-api-errors"

    def put_alarm(threshold: str) -> None:
        runtime.aws(
            "cloudwatch", "put-metric-alarm", "--alarm-name", name, "--namespace", "AWS/Lambda",
            "--metric-name", "Errors", "--dimensions", "Name=FunctionName,Value=stock-api", "--statistic", "Sum",
            "--period", "60", "--evaluation-periods", "1", "--threshold", threshold,
            "--comparison-operator", "GreaterThanThreshold", "--treat-missing-data", "ignore",
        )  # fmt: skip

    put_alarm("5")

    def state_of() -> str:
        found = runtime.aws("cloudwatch", "describe-alarms", "--alarm-names", name)["MetricAlarms"]
        return str(found[0]["StateValue"])

    assert state_of() == "INSUFFICIENT_DATA"  # as AWS creates an alarm (moto would say OK)

    # When the alarm is set to ALARM with the stock CLI
    runtime.aws(
        "cloudwatch", "set-alarm-state", "--alarm-name", name, "--state-value", "ALARM",
        "--state-reason", "game day: errors injected by hand",
    )  # fmt: skip

    # Then a real-shaped state change event is on the default bus, with the reason given
    def alarmed() -> list[dict[str, Any]]:
        return [e for e in alarm_events() if e["detail"]["alarmName"] == name]

    events = _wait(alarmed, 15)
    assert [e["detail"]["state"]["value"] for e in events] == ["ALARM"], events
    state = events[0]["detail"]["state"]
    assert state["reason"] == "game day: errors injected by hand" and "reasonData" not in state
    assert events[0]["detail"]["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert events[0]["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] == {
        "FunctionName": "stock-api"
    }

    # and the Manager opens an incident for the alarm's function
    incident = _wait(
        lambda: next((i for i in _incidents(runtime) if i["service"] == "stock-api"), None),
        30,
    )
    assert incident, runtime.log()[-3000:]
    assert incident["issue_type"] == "high_error_rate"

    # and setting the same state again, or updating the alarm, changes no state: no second event
    runtime.aws(
        "cloudwatch", "set-alarm-state", "--alarm-name", name, "--state-value", "ALARM", "--state-reason", "again"
    )
    put_alarm("6")
    assert state_of() == "ALARM"
    time.sleep(2)
    assert [e["detail"]["state"]["value"] for e in alarmed()] == ["ALARM"]


def test_a_forged_alarm_put_with_the_aws_cli_is_refused_as_eventbridge_does(runtime: Any, tmp_path: Path) -> None:
    """Only CloudWatch emits `aws.cloudwatch` events: an alarm state change put by a client is an
    entry EventBridge refuses (NotAuthorizedForSourceException), so it never reaches the Manager;
    the entry beside it is delivered."""
    create_function(runtime, "forged-api", timeout=3, managed=True)
    forged = json.loads((Path(__file__).parents[1] / "events" / "alarm_state_change.json").read_text())
    forged["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {
        "FunctionName": "forged-api"
    }
    forged["detail"]["alarmName"] = "forged-api-Errors"
    entries = tmp_path / "forged.json"
    entries.write_text(
        json.dumps(
            [
                {
                    "Source": "aws.cloudwatch",
                    "DetailType": forged["detail-type"],
                    "Detail": json.dumps(forged["detail"]),
                },
                {"Source": "com.example.orders", "DetailType": "OrderPlaced", "Detail": "{}"},
            ]
        )
    )
    since = time.time()
    result = runtime.aws("events", "put-events", "--entries", f"file://{entries}")
    assert result["FailedEntryCount"] == 1
    assert result["Entries"][0] == {
        "ErrorCode": "NotAuthorizedForSourceException",
        "ErrorMessage": "Not authorized for the source.",
    }
    assert result["Entries"][1]["EventId"]
    time.sleep(3)
    assert not [i for i in _incidents(runtime) if i["service"] == "forged-api"]
    alarm_calls = [
        i
        for i in runtime.control(f"invocations?since={since}")["invocations"]
        if i["detail_type"] == "CloudWatch Alarm State Change"
    ]
    assert alarm_calls == []


def test_put_events_over_256_kb_together_is_refused_whole_as_eventbridge_does(runtime: Any, tmp_path: Path) -> None:
    """Two entries of 150 KB each pass one by one and fail together: the emulator must not accept
    what EventBridge refuses, or a step that publishes too much at once would work only here."""
    entry = {
        "EventBusName": "agentops-dev",
        "Source": "com.example.tests",
        "DetailType": "SizeProbe",
        "Detail": json.dumps({"padding": "x" * 150_000}),
    }
    both = tmp_path / "both.json"
    both.write_text(json.dumps([entry, entry]))
    with pytest.raises(RuntimeError, match="ValidationException"):
        runtime.aws("events", "put-events", "--entries", f"file://{both}")
    one = tmp_path / "one.json"
    one.write_text(json.dumps([entry]))
    assert runtime.aws("events", "put-events", "--entries", f"file://{one}")["FailedEntryCount"] == 0


def test_the_cli_reads_notifications_and_agents(runtime: Any) -> None:
    out = runtime.selfheal("notifications").stdout
    assert "ALARM" in out
    agents = json.loads(runtime.selfheal("agents", "--json").stdout)["agents"]
    by_name = {a["agent"]: a for a in agents}
    assert by_name["manager"]["invocations"] >= 1 and by_name["manager"]["state"] == "ENABLED"
    assert all("dlq_depth" in a and "last_activity" in a for a in agents)


def test_stopping_leaves_no_process(e2e_assembly: Path, tmp_path: Path) -> None:
    # A separate runtime whose workers are all warm when it is stopped with Ctrl-C (SIGINT)
    rt = RuntimeProcess(
        state_dir=tmp_path / "state", assembly=e2e_assembly, extra_args=["--quiet", "--alarm-interval", "3600"]
    )
    rt.start()
    try:
        rt.client("events").put_events(
            Entries=[
                {
                    "EventBusName": "agentops-dev",
                    "Source": "com.example.tests",
                    "DetailType": "IssueReported",
                    "Detail": json.dumps({"service": "stop-test", "issue_type": "latency", "summary": "p95 over 3 s"}),
                }
            ]
        )
        assert rt.idle(timeout=60)
        status = rt.control("status")
        workers = [pid for f in status["functions"].values() for pid in f["workers"]]
        assert workers, "expected warm workers before the stop"
    finally:
        leftover = rt.stop()
    assert rt.proc is not None and rt.proc.returncode == 0
    assert leftover == []
