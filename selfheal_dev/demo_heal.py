"""The demo's two outcomes on a real function (`sample-orders-<env>`, context key `sampleWorkload`).

Heal: requests that take 5 s time out at the function's 3 s; its alarm fires; the Manager
investigates (reads 3 s), the fix 3 -> 10 is proposed, validated and applied through the
Lambda API; requests succeed, the alarm returns to OK and the incident is RESOLVED.

Roll back: requests fail whatever the timeout; the same fix is applied, the alarm stays in
ALARM through the verify window, the change is rolled back and the incident is ESCALATED.

Traffic is real Lambda invocations (asynchronous, like `aws lambda invoke --invocation-type
Event`); the function's configuration at each step is read with the stock AWS CLI when it is
installed (it is a development dependency), else with boto3, and printed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from selfheal_core.catalog import TERMINAL, sample_alarm_name, sample_function_name

VERIFY_WINDOW_S = 60  # the demo's verifyWindowSeconds (the deployed default is 900)
TRAFFIC_EVERY_S = 3.0


class SampleDemo:
    def __init__(self, endpoint: str, env: str, say: Callable[[str], None]) -> None:
        import boto3

        self.endpoint = endpoint
        self.say = say
        self.function = sample_function_name(env)
        self.alarm = sample_alarm_name(env)
        session = boto3.Session(
            aws_access_key_id="ASIALOCALDEMOTRAFFIC",
            aws_secret_access_key="x",  # noqa: S106 - the emulator accepts any credentials
            region_name="us-east-1",
        )
        self.lam = session.client("lambda", endpoint_url=endpoint)
        self.cw = session.client("cloudwatch", endpoint_url=endpoint)
        self.use_cli = importlib.util.find_spec("awscli") is not None

    # ------------------------------------------------------------------ readings
    def configuration(self, label: str) -> dict[str, Any]:
        """`aws lambda get-function-configuration` against the local endpoint, printed."""
        args = ["lambda", "get-function-configuration", "--function-name", self.function]
        if self.use_cli:
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": "ASIALOCALAWSCLI0000",
                "AWS_SECRET_ACCESS_KEY": "x",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_PAGER": "",
            }
            env.pop("AWS_PROFILE", None)
            proc = subprocess.run(
                [sys.executable, "-m", "awscli", "--endpoint-url", self.endpoint, "--output", "json", *args],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            config = json.loads(proc.stdout)
            how = "$ aws"
        else:
            config = self.lam.get_function_configuration(FunctionName=self.function)
            how = "boto3 (awscli not installed):"
        self.say(
            f"   {label:<26} {how} {' '.join(args)} --endpoint-url {self.endpoint}\n"
            f"   {'':<26} -> Timeout {config['Timeout']}, MemorySize {config['MemorySize']}, "
            f"RevisionId {config['RevisionId'][:8]}…"
        )
        return config

    def timeout(self) -> int:
        return int(self.lam.get_function_configuration(FunctionName=self.function)["Timeout"])

    def alarm_state(self) -> str:
        alarms = self.cw.describe_alarms(AlarmNames=[self.alarm]).get("MetricAlarms", [])
        return str(alarms[0]["StateValue"]) if alarms else "missing"

    # ------------------------------------------------------------------ a scenario
    def run(
        self,
        *,
        payload: dict[str, Any],
        known: set[str],
        incidents: Callable[[], list[dict[str, Any]]],
        approve: Callable[[str], None],
        timeout_s: float,
    ) -> dict[str, Any]:
        """Traffic until the sample's new incident is terminal; what was seen on the way."""
        wait = (60 - time.time() % 60) % 60 + 1
        self.say(
            f"   waiting {wait:.0f} s for the next CloudWatch minute (alarm periods are whole minutes; "
            f"the verify window is {VERIFY_WINDOW_S} s)"
        )
        time.sleep(wait)
        self.configuration("before:")
        stop = threading.Event()
        sent = [0]

        def traffic() -> None:
            body = json.dumps(payload).encode()
            while not stop.is_set():
                try:
                    self.lam.invoke(FunctionName=self.function, InvocationType="Event", Payload=body)
                    sent[0] += 1
                except Exception as exc:  # noqa: BLE001 - keep sending; the error is shown
                    self.say(f"   traffic: {type(exc).__name__}: {exc}")
                stop.wait(TRAFFIC_EVERY_S)

        self.say(
            f"   traffic: {json.dumps(payload)} every {TRAFFIC_EVERY_S:.0f} s (aws lambda invoke --invocation-type Event)"
        )
        thread = threading.Thread(target=traffic, name="demo-traffic", daemon=True)
        started = time.time()
        thread.start()
        seen_timeouts: list[int] = []
        last: tuple[Any, ...] = ()
        incident: dict[str, Any] | None = None
        shown_applied = False
        try:
            while time.time() - started < timeout_s:
                timeout_now = self.timeout()
                if not seen_timeouts or seen_timeouts[-1] != timeout_now:
                    seen_timeouts.append(timeout_now)
                fresh = [i for i in incidents() if i["incident_id"] not in known and i.get("service") == self.function]
                incident = fresh[0] if fresh else None
                state = (incident["status"] if incident else "-", self.alarm_state(), timeout_now)
                if state != last:
                    self.say(
                        f"   +{time.time() - started:5.0f}s  incident {incident['incident_id'] if incident else '-':<16} "
                        f"{state[0]:<18} alarm {state[1]:<17} timeout {timeout_now} s"
                    )
                    last = state
                if incident and incident["status"] == "AWAITING_APPROVAL":
                    approve(incident["incident_id"])
                if incident and incident["status"] == "VERIFYING" and not shown_applied:
                    self.configuration("applied (verifying):")
                    shown_applied = True
                if incident and incident["status"] in TERMINAL:
                    break
                time.sleep(1.5)
        finally:
            stop.set()
            thread.join(timeout=10)
        final = self.configuration("after:")
        if not seen_timeouts or seen_timeouts[-1] != final["Timeout"]:
            seen_timeouts.append(int(final["Timeout"]))
        return {
            "incident_id": incident["incident_id"] if incident else None,
            "status": incident["status"] if incident else None,
            "timeouts_seen": seen_timeouts,
            "final_timeout": int(final["Timeout"]),
            "alarm": self.alarm_state(),
            "requests_sent": sent[0],
            "seconds": round(time.time() - started, 1),
        }

    def reset_timeout(self, seconds: int) -> None:
        """The operator puts the timeout back (with the RevisionId just read, as Selfheal does)."""
        revision = self.lam.get_function_configuration(FunctionName=self.function)["RevisionId"]
        self.lam.update_function_configuration(FunctionName=self.function, Timeout=seconds, RevisionId=revision)
        self.say(
            f"   operator: aws lambda update-function-configuration --function-name {self.function} "
            f"--timeout {seconds} --revision-id {revision[:8]}…"
        )
