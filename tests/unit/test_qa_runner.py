"""The QA runner's own edges: what it reads back from the sandbox, how QA calls it, the metric."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from lambdas.qa.validators.runner import LambdaRunner, RunnerError
from lambdas.qa_runner import logic
from selfheal_core.qa_run import CommandRefused, RunBundle, RunStep, parse_test_command

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.test_a" name="test_ok" time="0.001"/>
<testcase classname="tests.test_a" name="test_bad" time="0.001"><failure message="assert 1 == 2">...</failure></testcase>
<testcase classname="tests.test_a" name="test_skip" time="0.0"><skipped type="pytest.skip" message="later"/></testcase>
</testsuite></testsuites>"""


def test_the_junit_report_is_read_into_test_cases(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT)

    cases = logic.read_junit(report)

    assert [(c.id, c.outcome) for c in cases or []] == [
        ("tests.test_a::test_ok", "passed"),
        ("tests.test_a::test_bad", "failed"),
        ("tests.test_a::test_skip", "skipped"),
    ]
    assert cases and cases[1].reproduces and cases[1].message == "assert 1 == 2"


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/hostname"])
def test_a_report_swapped_for_a_symlink_is_not_followed(tmp_path: Path, target: str) -> None:
    # Given the sandboxed child replaced its report by a link to a device or a host file
    report = tmp_path / "junit.xml"
    report.symlink_to(target)

    # Then the runner reads nothing through it (and does not hang on /dev/zero)
    assert logic.read_junit(report) is None


def test_a_report_that_is_not_a_regular_file_or_too_large_is_ignored(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)
    assert logic.read_junit(fifo) is None
    huge = tmp_path / "huge.xml"
    huge.write_text("<testsuites>" + " " * (logic.MAX_REPORT_BYTES + 10) + "</testsuites>")
    assert logic.read_junit(huge) is None


@pytest.mark.parametrize(
    "message, reproduces",
    [
        ("assert 3 == 4", True),
        ("AssertionError: wrong", True),
        ("Failed: DID NOT RAISE <class 'ValueError'>", True),
        ("ZeroDivisionError: division by zero", True),
        ("RecursionError: maximum recursion depth exceeded", True),
        ("ImportError: cannot import name 'new_helper' from 'cart'", False),
        ("ModuleNotFoundError: No module named 'newmod'", False),
        ("NameError: name 'helper' is not defined", False),
        ("AttributeError: module 'cart' has no attribute 'new_helper'", False),
        ("AttributeError: 'NoneType' object has no attribute 'items'", True),
    ],
)
def test_only_a_failure_of_what_the_test_checks_reproduces_the_bug(message: str, reproduces: bool) -> None:
    from selfheal_core.qa_run import TestCase

    assert TestCase(id="t", outcome="failed", message=message).reproduces is reproduces
    assert not TestCase(id="t", outcome="error", message=message).reproduces  # setup / collection error


@pytest.mark.parametrize(
    "command",
    [
        "python -m pytest",
        "pytest -q -x",
        "python3 -m pytest -k 'a and not b' tests/test_x.py",
        "python -m pytest tests/test_x.py::test_one",
    ],
)
def test_allowed_commands_parse_to_symbolic_argv(command: str) -> None:
    assert parse_test_command(command)[:3] == ["python", "-m", "pytest"]


@pytest.mark.parametrize(
    "command",
    [
        "python -S -m pytest",
        "python -m pytest --junitxml=/tmp/x",
        "python -m pytest -k",
        "python -m pytest -k '__import__(\"os\")'",
        "python -m pytest tests/../../etc",
        "python -m pytest -o addopts=-p",
        "pytest '-q x'",
        "python -m pip install x",
        "",
    ],
)
def test_everything_else_is_refused(command: str) -> None:
    with pytest.raises(CommandRefused):
        parse_test_command(command)


@pytest.mark.parametrize("files", [{"../x.py": "x = 1\n"}, {"a": "x", "a/b.py": "y = 1\n"}])
def test_files_that_cannot_be_laid_out_are_a_refusal_not_a_crash(files: dict[str, str]) -> None:
    bundle = RunBundle(files=files, steps=[RunStep(check="tests", argv=["python", "-m", "pytest"])])

    reply = logic.run_bundle(bundle.model_dump(mode="json"), mode=lambda: "namespaces")

    assert reply["refused"].startswith("the files cannot be laid out") and reply["steps"] == []


def test_a_bundle_too_large_for_one_invocation_is_not_sent() -> None:
    client = FakeLambda({})
    runner = LambdaRunner("selfheal-dev-qa-runner", client=client)
    big = RunBundle(files={"big.py": "#" * 6_100_000}, steps=[RunStep(check="tests", argv=["python", "-m", "pytest"])])

    with pytest.raises(RunnerError, match="at most"):
        runner.run(big)
    assert client.calls == []


class FakeLambda:
    def __init__(self, payload: dict[str, Any], function_error: str | None = None) -> None:
        self.payload, self.function_error = payload, function_error
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        response: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(self.payload).encode())}
        if self.function_error:
            response["FunctionError"] = self.function_error
        return response


def test_qa_invokes_the_runner_synchronously_with_a_fresh_tenant_every_run() -> None:
    # Given QA's runner port over a Lambda client
    client = FakeLambda({"isolation": "microvm", "refused": None, "steps": []})
    runner = LambdaRunner("selfheal-dev-qa-runner", client=client)
    bundle = RunBundle(files={"a.py": "x = 1\n"}, steps=[RunStep(check="tests", argv=["python", "-m", "pytest"])])

    # When it runs twice
    first, second = runner.run(bundle), runner.run(bundle)

    # Then each run is a RequestResponse invocation of the runner with a tenant id of its own
    assert first.isolation == second.isolation == "microvm"
    assert [c["FunctionName"] for c in client.calls] == ["selfheal-dev-qa-runner"] * 2
    assert {c["InvocationType"] for c in client.calls} == {"RequestResponse"}
    tenants = [c["TenantId"] for c in client.calls]
    assert len(set(tenants)) == 2 and all(len(t) == 36 for t in tenants)
    assert json.loads(client.calls[0]["Payload"])["files"] == {"a.py": "x = 1\n"}


def test_a_runner_crash_is_an_error_not_a_result() -> None:
    client = FakeLambda({"errorType": "Runtime.ExitError", "errorMessage": "worker exited"}, function_error="Unhandled")
    runner = LambdaRunner("selfheal-dev-qa-runner", client=client)

    with pytest.raises(RunnerError, match=r"Runtime\.ExitError"):
        runner.run(RunBundle(files={}, steps=[RunStep(check="tests", argv=["python", "-m", "pytest"])]))


def test_every_runner_invocation_is_counted_by_isolation_mode(capsys: pytest.CaptureFixture[str]) -> None:
    # Given QA's monitor
    from agentops_monitoring import AgentOpsMonitor, names

    monitor = AgentOpsMonitor("qa")

    # When two runs are recorded and the metrics flushed
    monitor.record_qa_run("namespaces")
    monitor.record_qa_run("namespaces")
    monitor.flush()

    # Then one EMF document carries QaRunnerRuns = 2 with the isolation_mode dimension
    [doc] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if names.QA_RUNS in line]
    value = doc[names.QA_RUNS]
    assert (sum(value) if isinstance(value, list) else value) == 2
    assert doc[names.ISOLATION_MODE] == "namespaces" and doc[names.ENVIRONMENT] == "test"
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == names.EVENTS
    assert [names.ENVIRONMENT, names.ISOLATION_MODE] in [sorted(d) for d in directive["Dimensions"]]
