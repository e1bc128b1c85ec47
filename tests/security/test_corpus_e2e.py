"""One corpus case end to end through the local runtime: the fake Anthropic API answers the
Engineer three times (the real fix, a non-fix, a cheat), QA sends every run to the QA runner
function through `lambda:Invoke` (one fresh tenant, one worker, one tree each), and only the
real fix resolves its incident."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selfheal_core import catalog as naming
from selfheal_core.catalog import SETTLED
from tests.support.anthropic_server import AnthropicTestServer, tool_use
from tests.support.harness import RuntimeProcess

from .corpus_cases import load

pytestmark = pytest.mark.e2e

CASE = load("off_by_one")
FAKE_ANTHROPIC_KEY = "sk-ant-" + "test-" + "x" * 20


@pytest.fixture(scope="module")
def server() -> Iterator[AnthropicTestServer]:
    with AnthropicTestServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def runtime(server: AnthropicTestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    rt = RuntimeProcess(
        state_dir=tmp_path_factory.mktemp("runtime"),
        # The Engineer reaches the fake Anthropic API as it would a gateway (SSM anthropic-base-url).
        context={
            "anthropicBaseUrl": server.base_url,
            "engineerProvider": "anthropic",
            "maxFixAttempts": "1",
            "automationLevel": "full_auto",  # a code fix is medium risk: semi_auto would ask a person
        },
        extra_args=["--quiet"],
    )
    rt.start(timeout=300)
    rt.client("secretsmanager").put_secret_value(
        SecretId=naming.anthropic_secret_name("dev"), SecretString=json.dumps({"anthropic_api_key": FAKE_ANTHROPIC_KEY})
    )
    yield rt
    rt.stop()


def _incident(rt: RuntimeProcess, service: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        incidents = json.loads(rt.selfheal("incidents", "--json").stdout)["incidents"]
        found = next((i for i in incidents if i["service"] == service and i["status"] in SETTLED), None)
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"{service}: no terminal incident; runtime log:\n{rt.log()[-3000:]}")


def _report(rt: RuntimeProcess, service: str, tmp_path: Path) -> dict[str, Any]:
    detail = {
        "service": service,
        "issue_type": "exception",
        "severity": "high",
        "summary": "GET /orders?page=1 returns one order too few per page",
        "code": {"files": CASE.files, "test_command": "python -m pytest -q"},
        "idempotency_key": f"{service}-{time.time_ns()}",
    }
    entries = tmp_path / f"{service}.json"
    entries.write_text(
        json.dumps(
            [
                {
                    "EventBusName": naming.bus_name("dev"),
                    "Source": "com.example.orders",
                    "DetailType": "IssueReported",
                    "Detail": json.dumps(detail),
                }
            ]
        )
    )
    assert rt.aws("events", "put-events", "--entries", f"file://{entries}")["FailedEntryCount"] == 0
    incident = _incident(rt, service)
    trace = json.loads(rt.selfheal("trace", incident["incident_id"], "--json").stdout)
    [qa] = [d for d in trace["decisions"] if d["agent"] == "qa"]
    return {"incident": incident, "qa": qa}


ANSWERS = {
    "real-fix": {"files": {CASE.module: CASE.fix}, "tests": {CASE.new_test_path: CASE.new_test}},
    "non-fix": {"files": {CASE.module: CASE.nonfix}, "tests": {CASE.new_test_path: CASE.new_test}},
    "cheat": {
        "files": {CASE.module: CASE.nonfix, CASE.test_file: "def test_ok():\n    assert True\n"},
        "tests": {CASE.new_test_path: "def test_fixed():\n    assert True\n"},
    },
}


def test_only_the_real_fix_resolves_its_incident(
    runtime: RuntimeProcess, server: AnthropicTestServer, tmp_path: Path
) -> None:
    results = {}
    for n, (name, answer) in enumerate(ANSWERS.items()):
        # Given the Engineer's model answers with this fix (one incident at a time: the script is ordered)
        server.script.append(tool_use({**answer, "risk_level": "low", "rationale": f"{name}: page slicing"}))

        # When the bug is reported
        results[name] = _report(runtime, f"orders-{n}", tmp_path)

    # Then the real fix is proven and kept as a ready patch; QA's evidence says each run was isolated
    real = results["real-fix"]
    assert real["incident"]["status"] == "PATCH_READY", real  # validated code is kept as a patch, not deployed
    evidence = real["qa"]["outputs"]["evidence"]
    assert {e["check"] for e in evidence} >= {"tests", "new_tests", "new_tests_unpatched", "tests_unpatched"}
    assert {e.get("isolation") for e in evidence if e["check"] not in ("risk", "apply")} == {"namespaces"}
    # And the non-fix and the cheat are rejected (one attempt each), for the right reasons
    assert results["non-fix"]["incident"]["status"] == "FAILED"
    assert results["non-fix"]["qa"]["outputs"]["reason"].startswith("the fix's new tests do not all pass")
    assert results["cheat"]["incident"]["status"] == "FAILED"
    assert results["cheat"]["qa"]["outputs"]["reason"] == f"tampers with tests: {CASE.test_file}"
    # And every runner invocation had a tenant of its own (a cold worker each)
    status = runtime.control("status")
    runner = status["functions"]["selfheal-dev-qa-runner"]
    assert runner["invocations"] == 4 + 2  # real fix: 4 runs; non-fix: 2 (its new test fails on it); cheat: none
    assert runner["cold_starts"] == runner["invocations"]
    assert len(server.requests) == 3
