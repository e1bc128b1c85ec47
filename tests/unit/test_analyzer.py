"""The analyzer over seeded histories (moto tables in-process; histories written by the monitor API)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from moto import mock_aws

from agentops_monitoring import AgentOpsMonitor
from agentops_monitoring.analyzer import AgentOpsAnalyzer
from agentops_monitoring.emf import MetricSink
from lambdas.analyzer.logic import run_hourly
from selfheal_core import aws
from selfheal_core.config import get_settings
from selfheal_core.incidents import IncidentStore, Status
from tests.support.tables import create_tables

NOW = datetime.now(UTC).replace(microsecond=0)
FORWARD = [Status.REMEDIATING, Status.FIX_PROPOSED, Status.VALIDATING]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def settings():
    return get_settings()


@pytest.fixture
def tables(settings):
    with mock_aws():
        aws.reset_clients()
        create_tables(settings.decisions_table_name, settings.monitoring_table_name, settings.idempotency_table_name)
        yield
        aws.reset_clients()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def monitors(tables, settings, clock):
    return {agent: AgentOpsMonitor(agent, settings=settings, clock=clock) for agent in ("manager", "engineer", "qa")}


@pytest.fixture
def analyzer(tables, settings) -> AgentOpsAnalyzer:
    return AgentOpsAnalyzer(settings, clock=lambda: NOW, baseline_hours=48)


def send(monitors, clock, hours_ago: float, flow: str, message_type: str = "Msg", incident_id: str | None = None):
    clock.now = NOW - timedelta(hours=hours_ago)
    sender, receiver = flow.split("->")
    monitors[sender].incident_id = incident_id
    monitors[sender].record_collaboration(sender, receiver, message_type)


def regular_history(monitors, clock, hours: int = 48, offset: int = 1) -> None:
    """Two manager->engineer messages every hour, three every fourth hour: a steady, quiet baseline."""
    for hour in range(offset, offset + hours):
        for n in range(3 if hour % 4 == 0 else 2):
            send(monitors, clock, hour + 0.1 + n * 0.2, "manager->engineer", "RemediationRequested")


def test_the_busiest_flow_is_the_most_active(monitors, clock, analyzer):
    for n, (flow, count) in enumerate({"manager->engineer": 10, "engineer->qa": 6, "qa->manager": 3}.items()):
        for i in range(count):
            send(monitors, clock, 1 + n + i * 0.5, flow)
    result = analyzer.analyze_collaboration_patterns(time_window_hours=24)
    assert result["most_active_flow"]["flow"] == "manager->engineer" and result["most_active_flow"]["count"] == 10
    assert [(f["flow"], f["count"]) for f in result["flows"]] == [
        ("manager->engineer", 10),
        ("engineer->qa", 6),
        ("qa->manager", 3),
    ]
    assert result["total_messages"] == 19


def test_an_injected_burst_is_an_anomaly_against_the_flows_own_baseline(monitors, clock, analyzer):
    regular_history(monitors, clock)
    for i in range(15):  # the last hour: a burst of requests
        send(monitors, clock, 0.05 + i * 0.05, "manager->engineer", "RemediationRequested")
    result = analyzer.analyze_collaboration_patterns(time_window_hours=1)
    [anomaly] = result["anomalies"]
    assert anomaly["flow"] == "manager->engineer" and anomaly["count"] == 15 and anomaly["hours_ago"] == 0
    assert anomaly["baseline_mean"] == pytest.approx(2.25) and anomaly["count"] > anomaly["threshold"]
    assert result["baseline_status"] == "ok"


def test_a_quiet_regular_history_raises_no_anomaly(monitors, clock, analyzer):
    regular_history(monitors, clock, offset=1)
    for i in range(3):  # the last hour looks like every fourth hour before it
        send(monitors, clock, 0.1 + i * 0.2, "manager->engineer", "RemediationRequested")
    result = analyzer.analyze_collaboration_patterns(time_window_hours=1)
    assert result["anomalies"] == [] and result["baseline_status"] == "ok"
    assert result["most_active_flow"]["count"] == 3


def test_a_burst_is_not_judged_without_a_baseline(monitors, clock, analyzer):
    for i in range(15):
        send(monitors, clock, 0.05 + i * 0.05, "engineer->qa")
    result = analyzer.analyze_collaboration_patterns(time_window_hours=1)
    assert result["anomalies"] == [] and result["baseline_status"] == "insufficient"


def test_repeated_rejections_of_one_incident_are_a_rejection_loop(monitors, clock, analyzer):
    for i in range(3):
        send(monitors, clock, 0.5 - i * 0.1, "qa->engineer", "FixRejected", incident_id="inc-loop")
    send(monitors, clock, 0.2, "qa->engineer", "FixRejected", incident_id="inc-once")
    loops = analyzer.analyze_collaboration_patterns(time_window_hours=1)["rejection_loops"]
    assert loops == [{"incident_id": "inc-loop", "rejections": 3}]


# ---------------------------------------------------------------------- effectiveness and opportunities
def incident_history(
    settings, monitors, clock, n: int, *, model: str, validated: bool, resolved: bool = False, hours_ago: float = 10
) -> str:
    store = IncidentStore(settings.decisions_table_name)
    incident_id = f"inc-{model}-{n}"
    store.open_or_fold(
        incident_id=incident_id,
        fingerprint=incident_id,
        correlation_id="c",
        origin="test",
        issue={"service": f"svc-{n}", "issue_type": "exception"},
    )
    for status in FORWARD:
        store.transition(incident_id, status, reason="test", new_attempt=1 if status == Status.REMEDIATING else None)
    store.transition(incident_id, Status.VALIDATED if validated else Status.REJECTED, reason="qa")
    clock.now = NOW - timedelta(hours=hours_ago)
    engineer = monitors["engineer"]
    engineer.bind(incident_id=incident_id)
    engineer.track_llm_usage(model, 20_000, 3_000)
    monitors["qa"].bind(incident_id=incident_id)
    monitors["qa"].record_event("test_passed" if validated else "test_failed", {})
    if resolved:
        store.transition(incident_id, Status.APPROVED, reason="auto")
        store.transition(incident_id, Status.VERIFYING, reason="applied")  # approval alone never resolves
        store.transition(incident_id, Status.RESOLVED, reason="done")
    return incident_id


def test_a_cheaper_model_that_holds_its_success_rate_is_a_downgrade_opportunity(settings, monitors, clock, analyzer):
    for n in range(6):
        incident_history(settings, monitors, clock, n, model="claude-sonnet-4-5", validated=n != 0)
        incident_history(settings, monitors, clock, n, model="claude-haiku-4-5", validated=n != 1)
    opportunities = analyzer.identify_optimization_opportunities(time_window_hours=24)
    [downgrade] = [o for o in opportunities if o["type"] == "model_downgrade"]
    assert "claude-haiku-4-5" in downgrade["recommendation"] and "claude-sonnet-4-5" in downgrade["recommendation"]
    evidence = downgrade["evidence"]
    assert evidence["agent"] == "engineer"
    assert evidence["claude-sonnet-4-5"]["success_rate"] == pytest.approx(5 / 6, abs=1e-3)
    assert evidence["claude-haiku-4-5"]["success_rate"] == pytest.approx(5 / 6, abs=1e-3)
    assert evidence["claude-sonnet-4-5"]["incidents"] == 6
    # Same usage on Haiku costs a third of Sonnet's; the window is one day, scaled to a month.
    spent = evidence["spent_on_expensive_usd"]
    assert evidence["same_usage_on_cheap_usd"] == pytest.approx(spent / 3)
    assert downgrade["estimated_monthly_savings_usd"] == pytest.approx(spent * 2 / 3 * 730 / 24, rel=1e-2)


def test_no_downgrade_when_the_cheaper_model_fails_more(settings, monitors, clock, analyzer):
    for n in range(6):
        incident_history(settings, monitors, clock, n, model="claude-sonnet-4-5", validated=True)
        incident_history(settings, monitors, clock, n, model="claude-haiku-4-5", validated=n < 3)
    opportunities = analyzer.identify_optimization_opportunities(time_window_hours=24)
    assert [o for o in opportunities if o["type"] == "model_downgrade"] == []


def test_prompts_without_cache_reads_are_a_caching_opportunity(settings, monitors, clock, analyzer):
    monitors["engineer"].track_llm_usage("claude-sonnet-4-5", 400_000, 5_000, 0, 10_000)
    [caching] = [o for o in analyzer.identify_optimization_opportunities(24) if o["type"] == "prompt_caching"]
    assert caching["evidence"]["cache_read_share"] == pytest.approx(10_000 / 410_000, abs=1e-3)
    assert caching["estimated_monthly_savings_usd"] > 0


def test_effectiveness_reports_success_rate_attempts_time_to_fix_and_cost_per_resolved_incident(
    settings, monitors, clock
):
    for n in range(3):
        incident_history(settings, monitors, clock, n, model="claude-haiku-4-5", validated=n < 2, resolved=n == 0)
    # Incidents are stamped with the real clock when opened; analyse up to just after that.
    analyzer = AgentOpsAnalyzer(settings, clock=lambda: datetime.now(UTC) + timedelta(seconds=5))
    report = analyzer.analyze_agent_effectiveness("engineer", time_window_hours=24)
    assert report["success_rate"] == pytest.approx(2 / 3)
    assert (report["tests_passed"], report["tests_failed"]) == (2, 1)
    assert report["validated_fixes"] == 2 and report["attempts_per_fix"] == 1
    assert report["mean_time_to_validated_fix_s"] >= 0
    assert report["resolved_incidents"] == 1 and report["cost_per_resolved_incident_usd"] > 0
    assert report["agent_cost_usd"] > 0


def test_the_hourly_run_publishes_zeros_when_nothing_is_wrong(tables, settings, analyzer, capsys):
    result = run_hourly(analyzer, MetricSink(), "test")
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = {
        (d["_aws"]["CloudWatchMetrics"][0]["Namespace"], m["Name"]): d[m["Name"]]
        for d in out
        for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert values[("AgentOps/Anomalies/Collaboration", "FlowAnomalies")] == [0.0]
    assert values[("AgentOps/Anomalies/Collaboration", "RejectionLoops")] == [0.0]
    assert values[("AgentOps/Anomalies/Incidents", "DuplicateStorms")] == [0.0]
    assert result["open_incidents"]["REMEDIATING"] == 0
