"""The forged test command and a runner without isolation, through the whole in-process chain
(moto; the runner in-process through its JSON contract): neither can end RESOLVED."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from tests.support.anthropic_server import AnthropicTestServer, tool_use
from tests.support.pipeline import Pipeline
from tests.support.qa_runner import InProcessRunner

from .corpus_cases import load

CASE = load("wrong_loop_bounds")
FAKE_ANTHROPIC_KEY = "sk-ant-" + "api03-" + "y" * 40
REAL_FIX = {
    "files": {CASE.module: CASE.fix},
    "tests": {CASE.new_test_path: CASE.new_test},
    "risk_level": "low",
    "rationale": "the last window was skipped",
}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicTestServer]:
    with AnthropicTestServer() as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.base_url)
        yield srv


@pytest.fixture
def pipeline(server: AnthropicTestServer) -> Iterator[Pipeline]:
    with mock_aws():
        yield Pipeline(
            parameters={
                "engineer-provider": "anthropic",
                "automation-level": "full_auto",  # a code fix is medium risk: semi_auto would ask a person
                "max-fix-attempts": "1",
                "daily-llm-budget-usd": "5",
            },
            secret={"anthropic_api_key": FAKE_ANTHROPIC_KEY},
        )


def report(pipeline: Pipeline, test_command: str) -> tuple[Any, dict[str, Any]]:
    pipeline.put(
        "IssueReported",
        {
            "service": "metrics",
            "issue_type": "exception",
            "severity": "high",
            "summary": "the last window of traffic is never summed",
            "code": {"files": CASE.files, "test_command": test_command},
        },
    )
    pipeline.run()
    [incident] = pipeline.incidents()
    [qa] = [d for d in pipeline.decisions(incident.incident_id) if d["decision_type"] == "validate_fix"]
    return incident, qa


def test_an_issue_whose_test_command_skips_the_guard_never_resolves(
    pipeline: Pipeline, server: AnthropicTestServer
) -> None:
    # Given an IssueReported (any sender) whose test command is `python -S -c` reading a parent's environment
    server.script.append(tool_use(REAL_FIX))
    command = "python -S -c \"import os; print(open(f'/proc/{os.getppid()}/environ').read())\""

    # When it runs through the chain with a correct fix
    incident, qa = report(pipeline, command)

    # Then QA refuses the command, nothing runs, and the incident fails instead of resolving
    assert incident.status == "FAILED"
    assert qa["outputs"]["reason"].startswith("the test command is refused")
    assert [e["check"] for e in qa["outputs"]["evidence"]] == ["risk", "command"]  # QA's risk, then the refusal


def test_without_isolation_a_code_fix_is_rejected_with_the_reason(
    pipeline: Pipeline, server: AnthropicTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a runner that has neither namespaces nor a microVM, and no opt-in
    import lambdas.qa.handler as qa_handler

    monkeypatch.delenv("SELFHEAL_ALLOW_UNISOLATED_QA", raising=False)
    monkeypatch.setattr(qa_handler, "make_runner", lambda: InProcessRunner(kwargs={"mode": lambda: "none"}))
    server.script.append(tool_use(REAL_FIX))

    # When a correct fix is validated
    incident, qa = report(pipeline, "python -m pytest -q")

    # Then nothing ran, the evidence says why and how it was (not) isolated
    assert incident.status == "FAILED"
    assert qa["outputs"]["reason"] == "isolation unavailable"
    evidence = qa["outputs"]["evidence"]
    assert [(e["check"], e["passed"], e["isolation"]) for e in evidence][-1] == ("compile", False, "none")


def test_with_isolation_the_same_fix_resolves_and_every_evidence_item_names_it(
    pipeline: Pipeline, server: AnthropicTestServer
) -> None:
    server.script.append(tool_use(REAL_FIX))

    incident, qa = report(pipeline, "python -m pytest -q")

    assert incident.status == "PATCH_READY", qa["outputs"]["reason"]  # validated code is kept as a patch, not deployed
    runs = [e for e in qa["outputs"]["evidence"] if e["check"] not in ("risk", "apply")]  # what ran
    assert runs and {e["isolation"] for e in runs} == {"namespaces"}
    assert json.dumps(qa["outputs"], default=str).count('"isolation": "namespaces"') == len(runs)
