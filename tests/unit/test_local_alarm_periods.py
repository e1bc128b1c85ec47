"""The local alarm evaluator on the sample alarm's shape (Errors >= 1, one 60 s period, not breaching)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from selfheal_dev.local.alarms import AlarmEvaluator
from selfheal_dev.local.metrics import Datum, MetricStore

MINUTE = 60.0
T0 = 1_800_000_000.0 - (1_800_000_000.0 % 60)  # a minute boundary


@pytest.fixture
def evaluator() -> Any:
    with mock_aws():
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        cw.put_metric_alarm(
            AlarmName="sample-orders-errors-dev",
            Namespace="AWS/Lambda",
            MetricName="Errors",
            Statistic="Sum",
            Dimensions=[{"Name": "FunctionName", "Value": "sample-orders-dev"}],
            Period=60,
            EvaluationPeriods=1,
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            TreatMissingData="notBreaching",
        )
        from moto.backends import get_backend

        backend = get_backend("cloudwatch")["123456789012"]["us-east-1"]
        store = MetricStore(backend)
        runtime = SimpleNamespace(metric_store=store)
        alarm = backend.alarms["sample-orders-errors-dev"]

        def errors(at: float, value: float) -> None:
            store.ingest([Datum("AWS/Lambda", "Errors", value, (("FunctionName", "sample-orders-dev"),), at, "Count")])

        def state(at: float) -> str | None:
            return AlarmEvaluator(runtime, interval_s=3600)._evaluate(alarm, at)[0]  # type: ignore[arg-type]

        yield SimpleNamespace(errors=errors, state=state)


def test_an_error_alarms_at_once_within_its_open_minute(evaluator):
    # Given one failed invocation 10 s into a minute / When evaluated 1 s later / Then ALARM
    evaluator.errors(T0 + 10, 1.0)
    assert evaluator.state(T0 + 11) == "ALARM"


def test_steady_errors_do_not_flap_to_ok_at_the_start_of_the_next_minute(evaluator):
    # Given errors throughout a minute, and a new minute 1 s old with no data point yet
    for s in range(0, 60, 3):
        evaluator.errors(T0 + s, 1.0)
    # When evaluated / Then the open, empty minute is not "missing": the last full minute keeps it in ALARM
    assert evaluator.state(T0 + MINUTE + 1) == "ALARM"
    # And once the new minute has an error too, still ALARM
    evaluator.errors(T0 + MINUTE + 2, 1.0)
    assert evaluator.state(T0 + MINUTE + 3) == "ALARM"


def test_successes_after_the_fix_return_it_to_ok(evaluator):
    # Given errors in one minute, then only successful invocations (Errors 0) in the next
    evaluator.errors(T0 + 30, 1.0)
    evaluator.errors(T0 + MINUTE + 2, 0.0)
    # Then OK as soon as the new minute has its (non-breaching) data point
    assert evaluator.state(T0 + MINUTE + 3) == "OK"


def test_no_traffic_at_all_returns_to_ok_after_a_whole_quiet_minute(evaluator):
    # Given errors in one minute, then no invocations at all (missing data, not breaching)
    evaluator.errors(T0 + 30, 1.0)
    # Then it stays in ALARM while the next minute is open and empty, and is OK once that minute is over
    assert evaluator.state(T0 + MINUTE + 30) == "ALARM"
    assert evaluator.state(T0 + 2 * MINUTE + 1) == "OK"


def test_set_alarm_state_on_an_anomaly_detection_alarm_emits_its_event_with_the_band():
    """An anomaly detection alarm has no Threshold (it compares with a band): setting its state
    by hand must still notify and emit the event, not fail on the missing number."""
    with mock_aws():
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        cw.put_metric_alarm(
            AlarmName="orders-latency-anomaly",
            ComparisonOperator="GreaterThanUpperThreshold",
            EvaluationPeriods=1,
            ThresholdMetricId="ad1",
            AlarmActions=["arn:aws:sns:us-east-1:123456789012:ops"],
            Metrics=[
                {
                    "Id": "m1",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/Lambda",
                            "MetricName": "Duration",
                            "Dimensions": [{"Name": "FunctionName", "Value": "orders-api"}],
                        },
                        "Period": 60,
                        "Stat": "p95",
                    },
                    "ReturnData": True,
                },
                {"Id": "ad1", "Expression": "ANOMALY_DETECTION_BAND(m1, 2)", "ReturnData": True},
            ],
        )
        from moto.backends import get_backend

        backend = get_backend("cloudwatch")["123456789012"]["us-east-1"]
        events: list[dict[str, Any]] = []
        notes: list[str] = []
        platform = SimpleNamespace(
            backend=lambda _service: backend,
            log_platform=lambda _line: None,
            publish_sns=lambda _arn, message, **_kw: notes.append(message),
            put_platform_event=lambda _source, _type, detail, _resources: events.append(detail),
        )
        evaluator = AlarmEvaluator(platform, interval_s=3600)  # type: ignore[arg-type]

        def set_by_hand() -> list[bytes]:
            cw.set_alarm_state(AlarmName="orders-latency-anomaly", StateValue="ALARM", StateReason="game day")
            return []

        evaluator.through_api("SetAlarmState", set_by_hand)

        [detail] = events
        assert detail["state"]["value"] == "ALARM" and detail["state"]["reason"] == "game day"
        [note] = notes
        assert json.loads(note)["Trigger"]["ThresholdMetricId"] == "ad1"


def test_get_metric_data_rounds_its_start_down_as_cloudwatch_does():
    """Less than 15 days old: to the minute; up to 63 days: to 5 minutes; older: to the hour."""
    from selfheal_dev.local.metrics import rounded_start

    now = 1_800_000_000.0
    assert rounded_start(now - 48.0, now) == (now - 48.0) // 60 * 60
    assert rounded_start(now - 20 * 86_400 - 7, now) == (now - 20 * 86_400 - 7) // 300 * 300
    assert rounded_start(now - 90 * 86_400 - 7, now) == (now - 90 * 86_400 - 7) // 3_600 * 3_600


def test_an_alarm_name_cannot_forge_lines_or_drive_the_terminal_in_the_runtime_log():
    from types import SimpleNamespace

    from selfheal_dev.local.runtime import LocalRuntime

    # Given an alarm name with a newline and an escape sequence (the emulator accepts them)
    shown: list[str] = []
    runtime = SimpleNamespace(options=SimpleNamespace(quiet=False), echo=shown.append)

    # When the runtime logs its state change
    LocalRuntime.log_platform(runtime, "alarm x\n12:00:00 [platform] forged\x1b[2J: OK -> ALARM")  # type: ignore[arg-type]

    # Then it is one line, the escape shown, not sent
    [line] = shown
    assert "\n" not in line and "\x1b" not in line and "\\n12:00:00" in line and "\\x1b[2J" in line
