"""The operator CLI in-process over moto: what it prints comes from what the agents wrote."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from agentops_monitoring import AgentOpsMonitor
from selfheal import cli
from selfheal_core import aws
from selfheal_core.config import get_settings
from tests.support.tables import create_tables


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    # No running local runtime is found (empty state dir); the CLI's session becomes boto3's default.
    monkeypatch.setenv("SELFHEAL_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    settings = get_settings()
    with mock_aws():
        aws.reset_clients()
        create_tables(settings.decisions_table_name, settings.monitoring_table_name, settings.idempotency_table_name)
        yield settings
        aws.reset_clients()


def test_analyze_prints_each_optimisation_recommendation_the_analyzer_wrote(deployed, capsys):
    engineer = AgentOpsMonitor("engineer", settings=deployed)
    # A large prompt with almost no cache reads: the analyzer recommends prompt caching.
    engineer.track_llm_usage("claude-sonnet-4-5", 400_000, 5_000, 0, 10_000)
    AgentOpsMonitor("manager", settings=deployed).record_collaboration("manager", "engineer", "RemediationRequested")

    assert cli.main(["analyze", "--env", "test", "--region", "us-east-1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [caching] = [o for o in report["optimization_opportunities"] if o["type"] == "prompt_caching"]

    assert cli.main(["analyze", "--env", "test", "--region", "us-east-1"]) == 0
    text = capsys.readouterr().out
    assert f"prompt_caching: {caching['recommendation']}" in text
    assert "manager->engineer 1" in text


def test_the_operator_cli_leaves_the_environment_alone(deployed, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    before = dict(__import__("os").environ)
    assert cli.main(["incidents", "--env", "test", "--endpoint-url", "http://127.0.0.1:9", "--json"]) == 1
    assert dict(__import__("os").environ) == before
    # It did talk to the endpoint it was given (nothing listens there), not to AWS.
    assert "127.0.0.1:9" in json.loads(capsys.readouterr().out)["error"]


def test_trace_shows_the_status_history_the_store_kept(deployed, capsys):
    from selfheal_core.incidents import IncidentStore, Status

    store = IncidentStore(deployed.decisions_table_name)
    store.open_or_fold(
        incident_id="inc-trace",
        fingerprint="fp-trace",
        correlation_id="corr-trace",
        issue={"service": "orders", "issue_type": "latency", "severity": "low", "summary": "slow"},
        origin="test",
    )
    store.transition("inc-trace", Status.REMEDIATING, reason="asked the engineer")

    assert cli.main(["trace", "inc-trace", "--env", "test", "--region", "us-east-1", "--json"]) == 0
    trace = json.loads(capsys.readouterr().out)
    assert [h["status"] for h in trace["status_history"]] == ["DETECTED", "REMEDIATING"]
    assert trace["incident"]["status"] == "REMEDIATING"


def test_the_dev_commands_plug_in_and_the_operator_package_never_imports_them():
    import ast

    args = cli.build_parser().parse_args(["local", "status", "--json"])
    assert args.func.__module__ == "selfheal_dev.cli"
    imported = set()
    for path in Path(cli.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
    assert "selfheal_dev" not in imported
