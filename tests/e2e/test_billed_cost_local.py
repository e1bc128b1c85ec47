"""From outside: the Lambda cost Selfheal reports is what the REPORT lines in the agents' log groups bill.

Given the local runtime (which writes real-shaped REPORT lines and delivers them through the
template's subscription filters to the cost reconciler), when one config incident runs through
the agents, then summing Billed Duration x memory x price, plus the request price, over the
REPORT lines read back with the stock AWS CLI equals `selfheal costs`' Lambda total within 1 %.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentops_monitoring.billing import parse_report
from agentops_monitoring.costs import PRICES_FILE
from selfheal_core.catalog import SETTLED
from tests.support.harness import RuntimeProcess

pytestmark = pytest.mark.e2e

AGENTS = ("manager", "engineer", "qa")


@pytest.fixture(scope="module")
def runtime(e2e_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    rt = RuntimeProcess(
        state_dir=tmp_path_factory.mktemp("billed"),
        assembly=e2e_assembly,
        extra_args=["--quiet"],
        env={"ANTHROPIC_BASE_URL": "https://llm-gateway.example.com/anthropic"},
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


def _report_lines(rt: RuntimeProcess) -> list[str]:
    """Every REPORT line of the agents' log groups, read with the stock AWS CLI (it follows the pages)."""
    lines = []
    for agent in AGENTS:
        found = rt.aws("logs", "filter-log-events", "--log-group-name", f"/aws/lambda/selfheal-dev-{agent}")
        lines += [e["message"] for e in found.get("events", []) if e["message"].startswith("REPORT RequestId: ")]
    return lines


def _billed_from_outside(lines: list[str]) -> float:
    aws = json.loads(PRICES_FILE.read_text())["aws"]
    total = 0.0
    for line in lines:
        fields = dict(part.split(": ", 1) for part in line.removeprefix("REPORT ").split("\t") if part)
        billed_ms = int(fields["Billed Duration"].removesuffix(" ms"))
        memory_mb = int(fields["Memory Size"].removesuffix(" MB"))
        total += billed_ms / 1000 * memory_mb / 1024 * aws["lambda_gb_second"]["x86_64"] + aws["lambda_request"]
    return total


def test_the_lambda_total_matches_the_report_lines_in_the_log_groups(runtime: RuntimeProcess, tmp_path: Path) -> None:
    # Given one config incident put on the bus with the stock AWS CLI
    issue = {
        "service": "billing-api",
        "issue_type": "latency",
        "severity": "medium",
        "summary": "billing-api p95 above 3 s",
        "signals": {"latency_p95_ms": 4100.0},
        "idempotency_key": f"billed-{time.time_ns()}",
    }
    entries = tmp_path / "issue.json"
    entries.write_text(
        json.dumps(
            [
                {
                    "EventBusName": "agentops-dev",
                    "Source": "com.example.billing",
                    "DetailType": "IssueReported",
                    "Detail": json.dumps(issue),
                }
            ]
        )
    )
    assert runtime.aws("events", "put-events", "--entries", f"file://{entries}")["FailedEntryCount"] == 0
    incident = _wait(
        lambda: next(
            (
                i
                for i in json.loads(runtime.selfheal("incidents", "--json").stdout)["incidents"]
                if i["service"] == "billing-api" and i["status"] in SETTLED
            ),
            None,
        ),
        120,
    )
    assert incident, runtime.log()[-3000:]

    # When every REPORT line has gone through the subscription filters to the reconciler
    def settled() -> tuple[list[str], dict[str, Any]] | None:
        if not runtime.idle(timeout=60, quiet=1.5):
            return None
        lines = _report_lines(runtime)
        costs = json.loads(runtime.selfheal("costs", "--json", "--days", "1").stdout)
        lam = costs["lambda"]
        return (lines, costs) if lam["awaiting_report"] == 0 and lam["billed_invocations"] == len(lines) else None

    result = _wait(settled, 60, interval=1.0)
    assert result, (runtime.control("status")["router"], runtime.log()[-3000:])
    lines, costs = result

    # Then the lines are real-shaped: tab-separated, Init Duration on cold starts, init included in Billed Duration
    reports = [parse_report(line) for line in lines]
    assert all(reports) and len(reports) >= 3
    cold = [r for r in reports if r.init_ms is not None]
    assert cold, "every agent started cold at least once"
    assert all(r.billed_ms == math.ceil(r.duration_ms + (r.init_ms or 0.0)) for r in reports)
    assert all(r.billed_ms >= r.init_ms + r.duration_ms for r in cold)

    # And `selfheal costs`' Lambda total is what those lines bill, within 1 %
    outside = _billed_from_outside(lines)
    reported = costs["lambda"]["total_usd"]
    assert outside > 0 and abs(reported - outside) <= 0.01 * outside, (reported, outside)
    assert costs["by_kind"]["lambda"] == pytest.approx(reported, rel=1e-3)
    # And the handlers' own estimate, which cannot see the init phase, was below the bill
    assert costs["lambda"]["billed_estimate_usd"] < reported

    # And the incident's own total carries the billed figures (its cost records sum to it)
    trace = json.loads(runtime.selfheal("trace", incident["incident_id"], "--json").stdout)
    assert trace["incident"]["cost_usd"] == pytest.approx(trace["costs"]["total_usd"], abs=1e-6)  # shown to 6 places
    print(
        f"\nREPORT lines {len(lines)} ({len(cold)} cold): billed from outside ${outside:.10f}, "
        f"selfheal costs Lambda ${reported:.10f} ({(reported - outside) / outside:+.4%}), "
        f"in-handler estimate of the same invocations ${costs['lambda']['billed_estimate_usd']:.10f} "
        f"({costs['lambda']['billed_estimate_usd'] / reported - 1:+.1%} against the bill)"
    )


def _local_status(rt: RuntimeProcess, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "selfheal", "local", "status", "--state-dir", str(rt.state_dir), *args],
        capture_output=True,
        text=True,
        env=rt.env,
        check=True,
    )
    return proc.stdout


def test_local_status_names_the_engineers_endpoint_and_the_subscriptions(runtime: RuntimeProcess) -> None:
    # Given the default provider: the Engineer calls no model
    status = json.loads(_local_status(runtime, "--json"))
    assert status["engineer_endpoint"]["provider"] == "runbook"
    assert sorted(s["log_group"] for s in status["subscription_filters"]) == [
        f"/aws/lambda/selfheal-dev-{agent}" for agent in sorted(AGENTS)
    ]
    # When the operator switches the Engineer to Claude (SSM, no redeploy)
    runtime.aws(
        "ssm", "put-parameter", "--name", "/selfheal/dev/engineer-provider", "--value", "anthropic", "--overwrite"
    )
    try:
        # Then status says the Engineer goes through the gateway the runtime's shell named
        text = _local_status(runtime)
        assert "engineer: anthropic provider" in text
        assert "endpoint https://llm-gateway.example.com/anthropic (ANTHROPIC_BASE_URL)" in text
    finally:
        runtime.aws(
            "ssm", "put-parameter", "--name", "/selfheal/dev/engineer-provider", "--value", "runbook", "--overwrite"
        )
