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


def _exit_code(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["inject", "--file", "{missing}"], "cannot read"),
        (["inject", "--file", "{not_json}"], "is not JSON"),
        (["inject", "--file", "{not_entries}"], "entry 0 is not a put-events entry"),
        (["inject", "--service", "s", "--summary", "x", "--signal", "p95_ms"], "expected NAME=VALUE"),
        (["inject", "--service", "s", "--summary", "x", "--signal", "p95_ms=fast"], "not a number"),
        (["inject", "--service", "s", "--summary", "x", "--signal", "p95_ms=nan"], "finite"),
        (["inject", "--service", "s"], "at least --service and --summary"),
        (["inject", "--alarm", "a", "--dimension", "FunctionName"], "expected NAME=VALUE"),
        (["inject", "--alarm", "a", "--count", "0"], "must be 1 or more"),
        (["inject", "--alarm", "a", "--value", "inf"], "finite"),
        (["inject", "--alarm", "a", "--threshold", "NaN"], "finite"),
        (["incidents", "--limit", "0"], "must be 1 or more, not 0"),
        (["incidents", "--limit", "-5"], "must be 1 or more, not -5"),
        (["incidents", "--limit", "ten"], "not a whole number"),
        (["rejected", "--limit", "0"], "must be 1 or more"),
        (["notifications", "--limit", "0"], "must be 1 or more"),
        (["costs", "--days", "-1"], "must be 1 or more"),
        (["tail", "--for", "-2"], "must be a number > 0"),
    ],
)
def test_a_usage_error_is_one_clear_line_and_exit_code_2_not_a_traceback(deployed, tmp_path, capsys, argv, says):
    files = {
        "missing": tmp_path / "nope.json",
        "not_json": tmp_path / "bad.json",
        "not_entries": tmp_path / "list.json",
    }
    files["not_json"].write_text("{'service': 'single quotes'}")
    files["not_entries"].write_text("[1, 2]")
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]

    assert _exit_code([*argv, "--env", "test", "--region", "us-east-1"]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert err.startswith(("usage:", f"selfheal {argv[0]}: error:"))


def test_inject_alarm_describes_an_existing_alarm_as_cloudwatch_defines_it(deployed, monkeypatch):
    from selfheal.ops import inject
    from selfheal.ops.target import OperatorError, Target

    # Given an alarm on a p95 latency metric of a function whose name is not the alarm's prefix
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    cw.put_metric_alarm(
        AlarmName="checkout-slow",
        AlarmDescription="checkout p95 over 3 s",
        Namespace="AWS/Lambda",
        MetricName="Duration",
        Dimensions=[{"Name": "FunctionName", "Value": "checkout-handler-prod"}],
        ExtendedStatistic="p95",
        Period=300,
        EvaluationPeriods=1,
        Threshold=3000.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    sent: list[dict] = []
    monkeypatch.setattr(
        inject, "_put", lambda _target, entries: sent.extend(entries) or {"event_ids": [], "sent": 0, "failed": []}
    )
    target = Target(env="test", region="us-east-1", endpoint_url=None, local=True)

    # When it is injected without describing it
    inject.inject_alarm(target, alarm_name="checkout-slow", value=4200.0)

    # Then the event carries the alarm's own metric, dimensions, statistic, period and threshold
    [entry] = sent
    detail = json.loads(entry["Detail"])
    [metric] = detail["configuration"]["metrics"]
    assert metric["metricStat"] == {
        "metric": {
            "namespace": "AWS/Lambda",
            "name": "Duration",
            "dimensions": {"FunctionName": "checkout-handler-prod"},
        },
        "period": 300,
        "stat": "p95",
    }
    assert detail["configuration"]["description"] == "checkout p95 over 3 s"
    assert json.loads(detail["state"]["reasonData"])["threshold"] == 3000.0
    assert entry["Resources"] == [cw.describe_alarms(AlarmNames=["checkout-slow"])["MetricAlarms"][0]["AlarmArn"]]
    # And a definition typed for an existing alarm is refused rather than sent as if it were the alarm's
    with pytest.raises(OperatorError, match="drop --metric"):
        inject.inject_alarm(target, alarm_name="checkout-slow", metric="Errors")


def test_hostile_text_in_an_incident_cannot_drive_the_operators_terminal(deployed, capsys):
    from selfheal_core.incidents import IncidentStore

    # Given an incident whose reporter-supplied text carries terminal escapes and a bidi override
    hostile = "x\x1b]0;pwned\x07\x1b[2K\rRESOLVED all good\u202e"
    IncidentStore(deployed.decisions_table_name).open_or_fold(
        incident_id="inc-ansi",
        fingerprint="fp-ansi",
        correlation_id="corr-ansi",
        issue={"service": "svc\x1b[31mRED\x1b[0m", "issue_type": "latency", "severity": "low", "summary": hostile},
        origin="test",
    )

    # When the operator reads it as a table and as a trace
    assert cli.main(["incidents", "--env", "test", "--region", "us-east-1"]) == 0
    assert cli.main(["trace", "inc-ansi", "--env", "test", "--region", "us-east-1"]) == 0
    text = capsys.readouterr().out

    # Then the text is there, but no control character reaches the terminal
    assert "svc\\x1b[31mRED" in text
    assert not any(ch in text for ch in "\x1b\x07\r\u202e"), repr(text[:500])

    # and --json keeps the data exact (JSON escapes it)
    assert cli.main(["trace", "inc-ansi", "--env", "test", "--region", "us-east-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["incident"]["summary"] == hostile


def test_hostile_text_cannot_forge_a_row_or_hide_in_invisible_characters(deployed, capsys):
    from selfheal_core.incidents import IncidentStore

    # Given a service name with a line break that continues as a RESOLVED row, and one with a zero-width space
    forged_row = "rt-nl\ninc-000000000000  RESOLVED  1  $0.0000  0  forged-row"
    summary = "ok\n  [2026-11-29T00:00:00+00:00] OPERATOR  approve  confidence=1.0"
    store = IncidentStore(deployed.decisions_table_name)
    for n, service in enumerate([forged_row, "rt-st\u200borm\u00a0"]):
        store.open_or_fold(
            incident_id=f"inc-forge{n}",
            fingerprint=f"fp-forge{n}",
            correlation_id="key\n  [2026-11-29T00:00:00+00:00] OPERATOR  approve",  # a producer's idempotency key
            issue={"service": service, "issue_type": "latency", "severity": "low", "summary": summary},
            origin="test",
        )

    # When the operator lists incidents and traces one
    assert cli.main(["incidents", "--env", "test", "--region", "us-east-1"]) == 0
    assert cli.main(["trace", "inc-forge0", "--env", "test", "--region", "us-east-1"]) == 0
    lines = capsys.readouterr().out.splitlines()

    # Then no line starts as a forged row or decision, and the invisible characters are shown
    assert not any(line.startswith(("inc-000000000000", "  [2026-11-29T00:00:00")) for line in lines), lines
    assert any("rt-st\\u200borm\\xa0" in line for line in lines), lines


def test_a_table_shows_its_last_column_whole_and_cuts_the_others_at_60():
    from selfheal.output import table

    reason = "field data.alarm_name: " + "a long explanation of why the event was refused; " * 4 + "end"
    rendered = table(
        [{"source": "s" * 80, "reason": reason}, {"source": "short", "reason": "bad"}],
        [("source", "SOURCE"), ("reason", "REASON")],
    )
    header, rule, first, second = rendered.splitlines()
    assert first.endswith(reason) and "…" in first.split(reason)[0]
    assert first.index(reason) == header.index("REASON") == second.index("bad")
    assert rule.split() == ["-" * 60, "-" * 60]


def test_a_reader_that_leaves_early_ends_the_cli_quietly_with_sigpipes_status():
    import subprocess
    import sys

    # Given a verb that prints far more than a pipe holds, read by something like `head -1`
    flood = (
        "import argparse, sys\nfrom selfheal import cli\n"
        "def flood(args):\n    for i in range(200_000):\n        print('line', i)\n"
        "parser = argparse.ArgumentParser()\nparser.set_defaults(func=flood, command='flood', json=False)\n"
        "cli.build_parser = lambda: parser\nsys.exit(cli.main([]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", flood], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()

    # Then it ends with 141 (128 + SIGPIPE), as a shell tool does, and without a traceback
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and first == b"line 0\n"
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
