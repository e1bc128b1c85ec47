"""Alarm evaluation for the local runtime (moto stores alarms but never evaluates them).

Every alarm in the emulator (so those provisioned from the template, and any added later
through the API) is evaluated on a timer against the metric store: single-metric alarms
(statistics and percentiles) and metric-math alarms. Composite alarms are not evaluated: the
template has none (their state is left as moto stores it). The newest, possibly still open, period counts once it
has data, so a spike alarms at once; while it has none yet, the periods before it are used.
`EvaluationPeriods`, `DatapointsToAlarm` and `TreatMissingData`
behave as documented. A state change updates the alarm in moto (describe-alarms and
describe-alarm-history show it), publishes the real notification JSON to the SNS topics of
the matching actions, and puts a "CloudWatch Alarm State Change" event on the default bus. So
does `set-alarm-state` (composite alarms included) when it changes the state, as on AWS.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .assembly import ACCOUNT
from .metrics import run_queries, timeline
from .moto_patches import REQUEST_LOCK
from .platform import Platform

REGION_NAME = "US East (N. Virginia)"
INITIAL_REASON = "Unchecked: Initial alarm creation"
OPS = {
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}


def _cw_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _short_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d/%m/%y %H:%M:%S")


def _true(value: Any) -> bool:
    return value not in (False, "false", "False", 0)


def alarm_queries(alarm: Any) -> tuple[list[dict[str, Any]], str, int]:
    """GetMetricData queries for an alarm, the id whose series is compared, and its period."""
    if alarm.metric_data_queries:
        queries = []
        period = 0
        for q in alarm.metric_data_queries:
            d: dict[str, Any] = {"Id": q.id, "ReturnData": q.return_data is None or _true(q.return_data)}
            if q.label:
                d["Label"] = q.label
            if q.expression:
                d["Expression"] = q.expression
            if q.metric_stat:
                ms = q.metric_stat
                d["MetricStat"] = {
                    "Metric": {
                        "Namespace": ms.metric.namespace,
                        "MetricName": ms.metric.metric_name,
                        "Dimensions": [{"Name": dim.name, "Value": dim.value} for dim in ms.metric.dimensions],
                    },
                    "Period": int(ms.period),
                    "Stat": ms.stat,
                }
                if ms.unit:
                    d["MetricStat"]["Unit"] = ms.unit
                period = period or int(ms.period)
            if q.period:
                period = int(q.period)
            queries.append(d)
        returning = [q["Id"] for q in queries if q["ReturnData"]]
        return queries, (returning[-1] if returning else queries[-1]["Id"]), period or 60
    stat = alarm.statistic or alarm.extended_statistic or "Average"
    metric = {
        "Namespace": alarm.namespace,
        "MetricName": alarm.metric_name,
        "Dimensions": [{"Name": d.name, "Value": d.value} for d in alarm.dimensions],
    }
    metric_stat: dict[str, Any] = {"Metric": metric, "Period": int(alarm.period), "Stat": stat}
    if alarm.unit:
        metric_stat["Unit"] = alarm.unit
    query = {"Id": "m1", "ReturnData": True, "MetricStat": metric_stat}
    return [query], "m1", int(alarm.period)


def event_configuration(alarm: Any) -> dict[str, Any]:
    """`detail.configuration` of the state-change event, in the service's shape."""
    if alarm.rule:  # a composite alarm (only `set-alarm-state` changes one here: none is evaluated)
        return {"alarmRule": alarm.rule, **({"description": alarm.description} if alarm.description else {})}
    queries, _, _ = alarm_queries(alarm)
    metrics = []
    for q in queries:
        item: dict[str, Any] = {
            "id": q["Id"] if alarm.metric_data_queries else str(uuid.uuid5(uuid.NAMESPACE_URL, alarm.alarm_arn)),
            "returnData": q["ReturnData"],
        }
        if "Expression" in q:
            item["expression"] = q["Expression"]
            item["label"] = q.get("Label", q["Id"])
        if "MetricStat" in q:
            ms = q["MetricStat"]
            item["metricStat"] = {
                "metric": {
                    "dimensions": {d["Name"]: d["Value"] for d in ms["Metric"]["Dimensions"]},
                    "name": ms["Metric"]["MetricName"],
                    "namespace": ms["Metric"]["Namespace"],
                },
                "period": ms["Period"],
                "stat": ms["Stat"],
            }
        metrics.append(item)
    out: dict[str, Any] = {"metrics": metrics}
    if alarm.description:
        out["description"] = alarm.description
    return out


class AlarmEvaluator(threading.Thread):
    def __init__(self, platform: Platform, interval_s: float = 10.0) -> None:
        super().__init__(name="alarms", daemon=True)
        self.platform = platform
        self.interval_s = interval_s
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.transitions: list[dict[str, Any]] = []
        self.errors: dict[str, str] = {}

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            with contextlib.suppress(Exception):
                self.evaluate_all()

    def stop(self) -> None:
        self._halt.set()

    def evaluate_all(self, now: float | None = None) -> list[dict[str, Any]]:
        with self._lock, REQUEST_LOCK:
            now = now or time.time()
            backend = self.platform.backend("cloudwatch")
            changes = []
            for alarm in [a for a in list(backend.alarms.values()) if not a.rule]:
                try:
                    new_state, reason, reason_data = self._evaluate(alarm, now)
                    self.errors.pop(alarm.name, None)
                except Exception as exc:  # noqa: BLE001 - one bad alarm must not stop the others
                    self.errors[alarm.name] = f"{type(exc).__name__}: {exc}"
                    continue
                if new_state is None or new_state == alarm.state_value:
                    continue
                changes.append(self._change(alarm, new_state, reason, reason_data, now))
            return changes

    # evaluation ---------------------------------------------------------------------
    def _evaluate(self, alarm: Any, now: float) -> tuple[str | None, str, str]:
        queries, return_id, period = alarm_queries(alarm)
        n = int(alarm.evaluation_periods or 1)
        m = int(alarm.datapoints_to_alarm or n)
        end = now
        start = math.floor(now / period) * period - n * period
        results = {r["id"]: r for r in run_queries(self.platform.metric_store, queries, start, end + 1e-6)}
        series = dict(zip(results[return_id]["timestamps"], results[return_id]["values"], strict=True))
        buckets = timeline(start, end + 1e-6, period)
        # The newest period is still open: with data it counts (a spike alarms at once); without
        # data yet it is not missing, so the N periods before it are evaluated instead. Otherwise a
        # steady stream of errors would read as "missing, not breaching" in the first seconds of
        # every period, and the alarm would flap to OK.
        buckets = buckets[-n:] if buckets and buckets[-1] in series else buckets[-n - 1 : -1] or buckets[-n:]
        op_name = alarm.comparison_operator
        if op_name not in OPS:
            raise ValueError(f"comparison {op_name} is not evaluated locally")
        compare, words = OPS[op_name]
        threshold = float(alarm.threshold)
        missing = alarm.treat_missing_data or "missing"
        present = [(t, series[t]) for t in buckets if t in series]
        breaching = sum(1 for _, v in present if compare(v, threshold))
        n_missing = len(buckets) - len(present)
        if missing == "breaching":
            breaching += n_missing
        stat = queries[0]["MetricStat"]["Stat"] if not alarm.metric_data_queries else None
        recent = [v for _, v in present]
        reason_data: dict[str, Any] = {
            "version": "1.0",
            "queryDate": _cw_time(now),
            "startDate": _cw_time(buckets[0]),
            **({"statistic": stat} if stat else {}),
            "period": period,
            "recentDatapoints": recent,
            "threshold": threshold,
            "evaluatedDatapoints": [{"timestamp": _cw_time(t), "value": v} for t, v in present],
        }
        if not present and missing in ("missing", "ignore"):
            if missing == "ignore":
                return None, "", ""
            reason = f"Insufficient Data: {len(buckets)} datapoint{'s' if len(buckets) != 1 else ''} were unknown."
            return "INSUFFICIENT_DATA", reason, json.dumps(reason_data)
        new_state = "ALARM" if breaching >= m else "OK"
        shown = ", ".join(f"{v} ({_short_time(t)})" for t, v in present[-n:])
        verb = "was" if new_state == "ALARM" else "was not"
        transition = f"{alarm.state_value} -> {new_state}"
        if not present:
            treated = "Breaching" if missing == "breaching" else "NonBreaching"
            reason = (
                f"Threshold Crossed: no datapoints were received for {n_missing} period{'s' if n_missing != 1 else ''} and "
                f"{n_missing} missing datapoint{'s were' if n_missing != 1 else ' was'} treated as [{treated}]."
            )
        else:
            reason = (
                f"Threshold Crossed: {len(present)} out of the last {len(buckets)} datapoints [{shown}] {verb} {words} "
                f"the threshold ({threshold}) (minimum {m} datapoint{'s' if m != 1 else ''} for {transition} transition)."
            )
        return new_state, reason, json.dumps(reason_data)

    # effects ------------------------------------------------------------------------
    def _change(self, alarm: Any, new_state: str, reason: str, reason_data: str, now: float) -> dict[str, Any]:
        before = _state_of(alarm)
        alarm.update_state(reason, reason_data, new_state)
        return self._announce(alarm, before, now)

    def through_api(self, action: str, call: Callable[[], list[bytes]]) -> list[bytes]:
        """An alarm write from the API (`call`, run under REQUEST_LOCK, as the evaluation is), with
        what AWS does around it that moto does not: a new alarm starts INSUFFICIENT_DATA and an
        updated one keeps its state (moto starts both at OK); a state `set-alarm-state` changed runs
        the alarm's actions and emits its event (the next evaluation then sets the state the
        metrics give, as on AWS)."""
        alarms: dict[str, Any] = self.platform.backend("cloudwatch").alarms
        before = dict(alarms)
        states = {name: _state_of(alarm) for name, alarm in before.items()}
        answer = call()
        for name, alarm in list(alarms.items()):
            if name not in before or before[name] is not alarm:  # created, or rebuilt by an update
                initial = ("INSUFFICIENT_DATA", INITIAL_REASON, None, alarm.state_updated_timestamp)
                (alarm.state_value, alarm.state_reason, alarm.state_reason_data, alarm.state_updated_timestamp) = (
                    states.get(name, initial)
                )
            elif action == "SetAlarmState" and states[name][0] != alarm.state_value:
                self._announce(alarm, states[name], time.time())
        return answer

    def _announce(self, alarm: Any, before: tuple[Any, ...], now: float) -> dict[str, Any]:
        old_state, old_reason, old_data, old_ts = before
        new_state, reason, reason_data = alarm.state_value, alarm.state_reason, alarm.state_reason_data
        change = {
            "alarm": alarm.name,
            "from": old_state,
            "to": new_state,
            "reason": reason,
            "at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        }
        self.transitions.append(change)
        self.platform.log_platform(f"alarm {alarm.name}: {old_state} -> {new_state}")
        actions = {
            "ALARM": alarm.alarm_actions,
            "OK": alarm.ok_actions,
            "INSUFFICIENT_DATA": alarm.insufficient_data_actions,
        }[new_state]
        if alarm.actions_enabled:
            message = self._notification(alarm, old_state, now)
            subject = f'{new_state}: "{alarm.name}" in {REGION_NAME}'
            for action in actions or []:
                if action.startswith("arn:aws:sns:"):
                    try:
                        self.platform.publish_sns(
                            action, json.dumps(message), subject=subject[:100], origin=f"alarm {alarm.name}"
                        )
                    except Exception as exc:  # noqa: BLE001
                        self.platform.log_platform(f"alarm {alarm.name}: publishing to {action} failed: {exc!r}")
        previous = {"reason": old_reason, "timestamp": _cw_time(_epoch(old_ts)), "value": old_state}
        if old_data and old_data != "{}":
            previous["reasonData"] = old_data
        detail = {
            "alarmName": alarm.name,
            "state": {
                "value": new_state,
                "reason": reason,
                **({"reasonData": reason_data} if reason_data else {}),
                "timestamp": _cw_time(now),
            },
            "previousState": previous,
            "configuration": event_configuration(alarm),
        }
        self.platform.put_platform_event("aws.cloudwatch", "CloudWatch Alarm State Change", detail, [alarm.alarm_arn])
        return change

    def _notification(self, alarm: Any, old_state: str, now: float) -> dict[str, Any]:
        trigger: dict[str, Any]
        if alarm.rule:
            trigger = {}
        elif alarm.metric_data_queries:
            queries, _, period = alarm_queries(alarm)
            trigger = {
                "Period": period,
                "EvaluationPeriods": alarm.evaluation_periods,
                "ComparisonOperator": alarm.comparison_operator,
                # an anomaly detection alarm compares with a band (a query), not a number
                **(
                    {"Threshold": float(alarm.threshold)}
                    if alarm.threshold is not None
                    else {"ThresholdMetricId": alarm.threshold_metric_id}
                ),
                "TreatMissingData": alarm.treat_missing_data or "missing",
                "EvaluateLowSampleCountPercentile": "",
                "Metrics": [{k[0].lower() + k[1:]: v for k, v in q.items()} for q in queries],
            }
        else:
            trigger = {
                "MetricName": alarm.metric_name,
                "Namespace": alarm.namespace,
                "StatisticType": "Statistic" if alarm.statistic else "ExtendedStatistic",
                "Statistic": (alarm.statistic or alarm.extended_statistic or "").upper(),
                "Unit": alarm.unit,
                "Dimensions": [{"value": d.value, "name": d.name} for d in alarm.dimensions],
                "Period": int(alarm.period),
                "EvaluationPeriods": alarm.evaluation_periods,
                "DatapointsToAlarm": alarm.datapoints_to_alarm or alarm.evaluation_periods,
                "ComparisonOperator": alarm.comparison_operator,
                "Threshold": float(alarm.threshold),
                "TreatMissingData": alarm.treat_missing_data or "missing",
                "EvaluateLowSampleCountPercentile": "",
            }
        return {
            "AlarmName": alarm.name,
            "AlarmDescription": alarm.description,
            "AWSAccountId": ACCOUNT,
            "AlarmConfigurationUpdatedTimestamp": _cw_time(_epoch(alarm.configuration_updated_timestamp)),
            "NewStateValue": alarm.state_value,
            "NewStateReason": alarm.state_reason,
            "StateChangeTime": _cw_time(now),
            "Region": REGION_NAME,
            "AlarmArn": alarm.alarm_arn,
            "OldStateValue": old_state,
            "OKActions": alarm.ok_actions,
            "AlarmActions": alarm.alarm_actions,
            "InsufficientDataActions": alarm.insufficient_data_actions,
            **({"Trigger": trigger} if trigger else {"AlarmRule": alarm.rule}),
        }


def _state_of(alarm: Any) -> tuple[Any, ...]:
    return alarm.state_value, alarm.state_reason, alarm.state_reason_data, alarm.state_updated_timestamp


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value or time.time())
