"""Heal and roll back a real function, driven from outside with the stock AWS CLI.

`selfheal local up -c sampleWorkload=true -c verifyWindowSeconds=60` runs the app with the
sample workload. Traffic is sent with `aws lambda invoke --invocation-type Event`; every
reading of the function is `aws lambda get-function-configuration` against the local
endpoint. Nothing is injected: the alarm is evaluated from the invocations' own Errors
metric, and the Manager, Engineer and QA decide as they would on AWS.

- Heal: `{"sleep_s": 5}` times out at 3 s, the alarm fires, the Manager investigates (3 s),
  the fix 3 -> 10 is validated and applied, traffic succeeds, the alarm returns to OK, and
  the incident is RESOLVED with the function at 10 s.
- Roll back (same runtime, the operator first puts the timeout back to 3 s): `{"fail": true}`
  raises whatever the timeout, the change is applied, the alarm stays in ALARM for the verify
  window, the change is rolled back to 3 s and the incident is ESCALATED.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from selfheal_core.catalog import TERMINAL
from tests.support.harness import RuntimeProcess

pytestmark = pytest.mark.e2e

SAMPLE = "sample-orders-dev"
ALARM = "sample-orders-errors-dev"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Any:
    rt = RuntimeProcess(
        state_dir=tmp_path_factory.mktemp("heal"),
        context={"sampleWorkload": "true", "verifyWindowSeconds": "60"},
        extra_args=["--alarm-interval", "2"],
    )
    rt.start(timeout=240)
    yield rt
    leftover = rt.stop()
    assert leftover == [], f"processes left after stop: {leftover}"


class Traffic:
    """`aws lambda invoke --invocation-type Event` every few seconds until stopped."""

    def __init__(self, rt: RuntimeProcess, payload: dict[str, Any], every_s: float = 3.0) -> None:
        self.rt, self.payload, self.every_s = rt, payload, every_s
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self, out: Path = Path("/dev/null")) -> None:
        while not self._stop.is_set():
            self.rt.aws(
                "lambda",
                "invoke",
                "--function-name",
                SAMPLE,
                "--invocation-type",
                "Event",
                "--payload",
                json.dumps(self.payload),
                str(out),
            )
            self.sent += 1
            self._stop.wait(self.every_s)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def timeout_of(rt: RuntimeProcess) -> int:
    return int(rt.aws("lambda", "get-function-configuration", "--function-name", SAMPLE)["Timeout"])


def alarm_state(rt: RuntimeProcess) -> str:
    alarms = rt.aws("cloudwatch", "describe-alarms", "--alarm-names", ALARM)["MetricAlarms"]
    return str(alarms[0]["StateValue"])


def incidents(rt: RuntimeProcess) -> list[dict[str, Any]]:
    items = json.loads(rt.selfheal("incidents", "--json").stdout)["incidents"]
    return [i for i in items if i.get("service") == SAMPLE or SAMPLE in json.dumps(i)]


def wait_for(check: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not reached within {timeout:.0f} s")


def at_minute_start() -> None:
    """CloudWatch periods are whole minutes: start a scenario just after one begins, so the
    verify window (60 s) does not depend on where in a minute the change lands."""
    time.sleep((60 - time.time() % 60) % 60 + 1)


def run_scenario(rt: RuntimeProcess, payload: dict[str, Any], known: set[str]) -> tuple[dict[str, Any], list[int]]:
    """Traffic until the new incident is terminal; the timeouts seen through the CLI on the way."""
    seen: list[int] = []

    def new_incident() -> dict[str, Any] | None:
        value = timeout_of(rt)
        if not seen or seen[-1] != value:
            seen.append(value)
        fresh = [i for i in incidents(rt) if i["incident_id"] not in known]
        for inc in fresh:
            if inc["status"] == "AWAITING_APPROVAL":  # semi_auto approves low-risk fixes itself; be safe
                rt.selfheal("approve", inc["incident_id"], "--comment", "e2e")
        return fresh[0] if fresh and fresh[0]["status"] in TERMINAL else None

    at_minute_start()
    with Traffic(rt, payload):
        incident = wait_for(new_incident, timeout=360)
    final = timeout_of(rt)
    if seen[-1] != final:
        seen.append(final)
    return incident, seen


def decision_types(rt: RuntimeProcess, incident_id: str) -> list[str]:
    trace = json.loads(rt.selfheal("trace", incident_id, "--json").stdout)
    return [d["decision_type"] for d in trace["decisions"]]


def test_heal_then_roll_back_a_real_function_seen_through_the_stock_aws_cli(runtime: RuntimeProcess) -> None:
    # Given the sample function as deployed: 3 s, tagged for Selfheal, its alarm not yet in ALARM
    assert timeout_of(runtime) == 3
    tags = runtime.aws("lambda", "list-tags", "--resource", f"arn:aws:lambda:us-east-1:123456789012:function:{SAMPLE}")[
        "Tags"
    ]
    assert tags["selfheal:managed"] == "true"

    # When requests that take 5 s keep coming
    healed, seen = run_scenario(runtime, {"sleep_s": 5}, known=set())
    # Then the incident is RESOLVED and the function's timeout is 10 s, read with the AWS CLI
    assert healed["status"] == "RESOLVED", healed
    assert timeout_of(runtime) == 10 and seen[0] == 3 and seen[-1] == 10
    assert alarm_state(runtime) == "OK"
    kinds = decision_types(runtime, healed["incident_id"])
    assert {"investigate", "apply", "verify"} <= set(kinds), kinds
    assert "rollback" not in kinds
    # And the change is on the local CloudTrail, made by the Manager
    trail = runtime.aws(
        "cloudtrail", "lookup-events", "--lookup-attributes", f"AttributeKey=ResourceName,AttributeValue={SAMPLE}"
    )["Events"]
    assert any(
        e["EventName"].startswith("UpdateFunctionConfiguration") and e["Username"] == "selfheal-dev-manager"
        for e in trail
    )

    # Given the operator puts the timeout back to 3 s (the value before the next fix)
    revision = runtime.aws("lambda", "get-function-configuration", "--function-name", SAMPLE)["RevisionId"]
    runtime.aws(
        "lambda",
        "update-function-configuration",
        "--function-name",
        SAMPLE,
        "--timeout",
        "3",
        "--revision-id",
        revision,
    )
    assert timeout_of(runtime) == 3
    # When requests fail whatever the timeout
    escalated, seen = run_scenario(runtime, {"fail": True}, known={healed["incident_id"]})
    # Then the fix was applied (10 s seen through the CLI), did not cure it, was rolled back: ESCALATED at 3 s
    assert escalated["status"] == "ESCALATED", escalated
    assert 10 in seen and seen[-1] == 3 and timeout_of(runtime) == 3
    assert alarm_state(runtime) == "ALARM"
    kinds = decision_types(runtime, escalated["incident_id"])
    assert {"investigate", "apply", "rollback"} <= set(kinds), kinds
    history = json.loads(runtime.selfheal("trace", escalated["incident_id"], "--json").stdout)["status_history"]
    statuses = [h["status"] for h in history]
    assert "VERIFYING" in statuses and "ROLLED_BACK" in statuses, statuses
