"""Pure parts of the heal loop: targets, windows, breaking changes, the patch format."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from lambdas.manager.heal import HealAbort, format_patch, next_window, plan_change
from lambdas.manager.home import Home
from lambdas.manager.investigate import enrich, function_name_of, target_of
from selfheal_core.catalog import OPEN_STATUSES, TERMINAL, Status
from selfheal_core.events import (
    ConfigChange,
    Fix,
    InvalidEvent,
    Investigation,
    IssueReportedV1,
    SettingChange,
    is_breaking,
    parse_detail,
)
from selfheal_core.incidents import ALLOWED_FROM, Incident

AT_TEN = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "reference, name",
    [
        ("orders-api", "orders-api"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:orders-api", "orders-api"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:orders-api:live", "orders-api"),
        ("orders-api:live", "orders-api"),
        ("orders-api:$LATEST", "orders-api"),
        ("orders-api:live:extra", None),
        ("arn:aws:lambda:eu-west-1:123456789012:function:orders-api:live:extra", None),
        ("orders-api:", None),
        ("arn:aws:sqs:eu-west-1:123456789012:orders-api", None),  # not a function
        ("../../etc/passwd", None),
        ("orders api; rm -rf /", None),
        ("", None),
    ],
)
def test_only_function_names_and_function_arns_are_targets(reference, name):
    assert function_name_of(reference) == name


HOME = Home(account="123456789012", region="eu-west-1")


def test_an_alarm_without_a_function_dimension_has_no_target():
    issue = IssueReportedV1(service="checkout-alb", issue_type="latency", summary="s", resource="checkout-alb-5xx")
    assert target_of(issue, "alarm", None, HOME) == (
        None,
        "the alarm's metrics name no single function (FunctionName or function_name dimension)",
    )
    assert target_of(issue, "alarm", "checkout-fn", HOME)[0] == "checkout-fn"
    assert target_of(issue, "alarm", "checkout-fn:prod", HOME)[0] == "checkout-fn:prod"
    qualified = issue.model_copy(update={"resource": "arn:aws:lambda:eu-west-1:123456789012:function:checkout-fn:7"})
    assert target_of(qualified, "issue", None, HOME)[0] == "checkout-fn:7"
    latest = issue.model_copy(update={"resource": "checkout-fn:$LATEST"})
    assert target_of(latest, "issue", None, HOME)[0] == "checkout-fn"
    assert target_of(issue, "issue", None, HOME)[0] == "checkout-alb-5xx"


@pytest.mark.parametrize(
    "origin, reference, elsewhere",
    [
        (
            "issue",
            "arn:aws:lambda:eu-west-1:999999999999:function:orders-api",
            "account 999999999999 / Region eu-west-1",
        ),
        (
            "issue",
            "arn:aws:lambda:us-east-1:123456789012:function:orders-api:live",
            "account 123456789012 / Region us-east-1",
        ),
        (
            "alarm",
            "arn:aws:lambda:eu-west-1:999999999999:function:orders-api",
            "account 999999999999 / Region eu-west-1",
        ),
        (
            "scan",
            "arn:aws:lambda:eu-west-1:999999999999:function:orders-api",
            "account 999999999999 / Region eu-west-1",
        ),
    ],
)
def test_a_function_arn_of_another_account_or_region_is_no_target_here(origin, reference, elsewhere):
    """Only its name would be left, and that names this account's namesake."""
    issue = IssueReportedV1(
        service=reference if origin == "scan" else "orders-api",
        issue_type="latency",
        summary="s",
        resource=reference if origin == "issue" else None,
    )
    target, how = target_of(issue, origin, reference if origin == "alarm" else None, HOME)
    assert target is None
    assert f"function ARN in {elsewhere}, not this Manager's (account 123456789012 / Region eu-west-1)" in how


def test_a_function_arn_of_this_account_and_region_is_its_name_with_its_qualifier():
    issue = IssueReportedV1(
        service="s", issue_type="latency", summary="s", resource="arn:aws:lambda:eu-west-1:123456789012:function:f:1"
    )
    assert target_of(issue, "issue", None, HOME) == ("f:1", "the reported resource")
    # A Manager that cannot tell its own account takes no ARN as its own; names still work.
    assert target_of(issue, "issue", None, Home("", ""))[0] is None
    assert target_of(issue.model_copy(update={"resource": "f"}), "issue", None, Home("", ""))[0] == "f"


def test_reported_settings_are_claims_and_only_readings_reach_the_engineer():
    issue = IssueReportedV1(
        service="s",
        issue_type="latency",
        summary="s",
        signals={"memory_mb": 4096.0, "timeout_s": 1.0, "p95_ms": 4200.0},
    )
    assert enrich(issue, None).signals == {"p95_ms": 4200.0}
    read = Investigation(target="s", values={"memory_mb": 512.0}, error_lines=["ERROR boom"])
    enriched = enrich(issue, read)
    assert enriched.signals == {"p95_ms": 4200.0, "memory_mb": 512.0}
    assert enriched.evidence == ["s log: ERROR boom"]


@pytest.mark.parametrize(
    "severity, windows, expected",
    [
        ("high", {"*": ["02:00-03:00"]}, None),  # urgent: now
        ("critical", {"orders": ["02:00-03:00"]}, None),
        ("medium", {}, None),  # no windows: any time
        ("medium", {"orders": "any"}, None),
        ("medium", {"orders": ["09:30-10:30"]}, None),  # inside a window
        ("medium", {"orders": ["02:00-03:00"]}, datetime(2026, 11, 28, 2, 0, tzinfo=UTC)),
        ("low", {"orders": ["14:00-15:00", "02:00-03:00"]}, datetime(2026, 11, 27, 14, 0, tzinfo=UTC)),
        ("medium", {"*": ["23:00-01:00"]}, datetime(2026, 11, 27, 23, 0, tzinfo=UTC)),  # wraps midnight
        ("medium", {"other": ["02:00-03:00"]}, None),
    ],
)
def test_low_traffic_windows(severity, windows, expected):
    assert next_window(AT_TEN, "orders", severity, windows) == expected


def test_a_window_that_wraps_midnight_includes_the_small_hours():
    assert next_window(datetime(2026, 11, 27, 0, 30, tzinfo=UTC), "orders", "medium", {"*": ["23:00-01:00"]}) is None


def test_a_malformed_window_fails_loudly():
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        next_window(AT_TEN, "orders", "medium", {"orders": ["at night"]})


@pytest.mark.parametrize(
    "setting, before, after, breaking",
    [
        ("timeout_s", 10, 3, True),
        ("memory_mb", 1024, 512, True),
        ("reserved_concurrency", 20, 10, True),
        ("timeout_s", 3, 10, False),
        ("memory_mb", 512, 1024, False),
        ("max_retries", 2, 0, False),  # not a limit on callers
    ],
)
def test_breaking_change_is_a_lowered_limit(setting, before, after, breaking):
    assert is_breaking([SettingChange(setting=setting, before=before, after=after)]) is breaking


def test_the_new_statuses_have_their_only_ways_in():
    assert ALLOWED_FROM[Status.VERIFYING] == {Status.APPROVED, Status.SCHEDULED}
    assert ALLOWED_FROM[Status.ROLLED_BACK] == {Status.VERIFYING}
    assert ALLOWED_FROM[Status.SCHEDULED] == {Status.APPROVED}
    assert ALLOWED_FROM[Status.PATCH_READY] == {Status.APPROVED}
    # Approval alone never resolves: a change may be in flight.
    assert Status.APPROVED not in ALLOWED_FROM[Status.RESOLVED]
    # A rollback always ends ESCALATED with FixRolledBack, whatever OK arrives meanwhile.
    assert Status.ROLLED_BACK not in ALLOWED_FROM[Status.RESOLVED]
    assert {Status.PATCH_READY, Status.VERIFYING, Status.SCHEDULED} <= ALLOWED_FROM[Status.RESOLVED]  # alarm back to OK
    assert {Status.VERIFYING, Status.PATCH_READY, Status.SCHEDULED} <= OPEN_STATUSES
    assert {Status.RESOLVED, Status.FAILED, Status.ESCALATED} == TERMINAL


def test_due_and_lifecycle_events_are_versioned_and_validated():
    meta = {"incident_id": "inc-1", "correlation_id": "c", "producer": "manager"}
    due = {"metadata": meta, "data": {"change_id": "chg-1", "due_at": "2026-11-27T10:00:00+00:00"}}
    parsed = parse_detail("VerifyDue", due, source="agentops.manager")
    assert parsed.data.change_id == "chg-1"
    with pytest.raises(InvalidEvent, match="must come from"):  # a due event forged by another producer
        parse_detail("ApplyDue", due, source="acme.monitoring")
    with pytest.raises(InvalidEvent):
        parse_detail("FixApplied", {"metadata": meta, "data": {"change_id": "chg-1"}})
    with pytest.raises(InvalidEvent, match="unsupported event_version"):
        parse_detail("FixRolledBack", {"metadata": {**meta, "event_version": "2"}, "data": {}})


def _incident(**kw) -> Incident:
    base = dict(
        incident_id="inc-1",
        status="APPROVED",
        attempts=1,
        cost_usd=0.0,
        duplicates=0,
        fingerprint="f",
        correlation_id="c",
        service="orders-api",
        issue_type="latency",
        severity="high",
        summary="s",
        created_at="",
        updated_at="",
        origin="issue",
        issue={},
    )
    return Incident(**{**base, **kw})


def _config_fix(target="orders-api", setting="memory_mb", proposed=1024.0) -> Fix:
    return Fix(
        kind="config",
        provider="runbook",
        rationale="r",
        risk_level="low",
        changes=[ConfigChange(setting=setting, target=target, proposed=proposed)],
    )


@pytest.mark.parametrize(
    "investigation, fix, refusal",
    [
        (None, _config_fix(), "never investigated"),
        (
            {"target": "orders-api", "managed": False, "values": {"memory_mb": 512}, "revision_id": "r"},
            _config_fix(),
            "target not managed",
        ),
        (
            {"target": "orders-api", "values": {"memory_mb": 512}, "revision_id": "r"},
            _config_fix(),
            "tags could not be read",
        ),
        (
            {"target": "orders-api", "managed": True, "values": {"memory_mb": 512}, "revision_id": "r"},
            _config_fix(target="payments"),
            "targets 'payments'",
        ),
        (
            {
                "target": "orders-api",
                "managed": True,
                "values": {},
                "revision_id": "r",
                "gaps": ["GetFunctionConfiguration: permission denied"],
            },
            _config_fix(),
            "permission denied",
        ),
        ({"target": "orders-api", "managed": True, "values": {"memory_mb": 512}}, _config_fix(), "no RevisionId"),
        (
            {"target": "orders-api", "managed": True, "values": {"memory_mb": 512}, "revision_id": "r"},
            _config_fix(setting="batch_size", proposed=10),
            "cannot be applied",
        ),
        (
            {"target": "orders-api", "managed": True, "values": {"memory_mb": 512}, "revision_id": "r"},
            _config_fix(proposed=767.5),
            "memory_mb=767.5 is not a whole number",
        ),
    ],
)
def test_a_change_is_planned_only_on_a_read_managed_target(investigation, fix, refusal):
    with pytest.raises(HealAbort, match=refusal):
        plan_change(_incident(investigation=investigation), fix)


def test_a_planned_change_keeps_the_values_read_as_the_ones_to_restore():
    inv = {"target": "orders-api", "managed": True, "values": {"memory_mb": 512, "timeout_s": 30}, "revision_id": "r1"}
    change = plan_change(_incident(investigation=inv), _config_fix())
    assert change["previous"] == {"memory_mb": 512} and change["proposed"] == {"memory_mb": 1024.0}
    assert change["revision_id"] == "r1" and change["change_id"].startswith("chg-")


def test_a_change_judged_from_another_reading_is_not_planned():
    """A fix whose starting point is not the Manager's reading was rated on a change it is not
    (a stale or forged reading: 1 -> 2 looks like x2, applied to 100 it is a cut to 2)."""
    inv = {"target": "orders-api", "managed": True, "values": {"reserved_concurrency": 100}, "revision_id": "r1"}
    fix = _config_fix(setting="reserved_concurrency", proposed=2.0)
    fix.changes[0] = ConfigChange(setting="reserved_concurrency", target="orders-api", current=1.0, proposed=2.0)

    with pytest.raises(HealAbort, match="from 1, but the investigation read 100"):
        plan_change(_incident(investigation=inv), fix)
    fix.changes[0] = ConfigChange(setting="reserved_concurrency", target="orders-api", current=100, proposed=200.0)
    assert plan_change(_incident(investigation=inv), fix)["previous"] == {"reserved_concurrency": 100}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_kept_patch_applies_with_git_am_and_carries_qa_evidence(tmp_path):
    # Given the original source and a validated fix as whole files plus a new test
    original = "def average_price(items):\n    return sum(items) / len(items)\n"
    fixed = "def average_price(items):\n    if not items:\n        return 0.0\n    return sum(items) / len(items)\n"
    fix = Fix(
        kind="code",
        provider="anthropic",
        model="claude-sonnet-4-5",
        risk_level="low",
        rationale="Empty carts divided by zero.\n--- not a diff marker\ndiff lines in prose stay prose",
        files={"cart.py": fixed},
        tests={"test_empty_cart.py": "from cart import average_price\n"},
    )
    record = {
        "attempt": 2,
        "evidence": [
            {
                "check": "tests_with_fix",
                "passed": True,
                "command": "python -m pytest -q",
                "exit_code": 0,
                "excerpt": "2 passed",
            },
            {"check": "fails_without_fix", "passed": True, "exit_code": 1, "excerpt": "ZeroDivisionError\n1 failed"},
        ],
    }
    incident = _incident(issue_type="exception", service="checkout")
    mbox = format_patch(incident, fix, record, {"cart.py": original}, when=AT_TEN)

    # When it is applied with git am to a repository holding the original
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cart.py").write_text(original)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "original"]):
        subprocess.run([*git, *cmd], cwd=repo, check=True)
    (tmp_path / "fix.patch").write_text(mbox)
    subprocess.run([*git, "am", "-q", str(tmp_path / "fix.patch")], cwd=repo, check=True)

    # Then the files are the validated ones and the commit message holds QA's evidence
    assert (repo / "cart.py").read_text() == fixed
    assert (repo / "test_empty_cart.py").exists()
    message = subprocess.run(
        ["git", "log", "-1", "--format=%B"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
    assert "Fix exception in checkout (inc-1)" in message
    assert "tests_with_fix: PASS, exit 0 (python -m pytest -q)" in message
    assert "fails_without_fix: PASS, exit 1" in message and "ZeroDivisionError" in message
    assert "Selfheal-Incident: inc-1" in message


class _Alarms:
    """A CloudWatch client that holds one composite alarm, answering the way DescribeAlarms does."""

    def __init__(self) -> None:
        self.asked: list[dict] = []

    def describe_alarms(self, **kwargs):
        self.asked.append(kwargs)
        composite = [{"AlarmName": "orders-health", "StateValue": "OK"}]
        return {
            "MetricAlarms": [],
            "CompositeAlarms": composite if "CompositeAlarm" in kwargs.get("AlarmTypes", []) else [],
        }


def test_a_composite_alarms_state_is_read_and_a_nameless_alarm_is_missing_without_a_call():
    from lambdas.manager.heal import describe_alarm
    from lambdas.manager.investigate import CloudPort

    alarms = _Alarms()
    cloud = CloudPort(overrides={"cloudwatch": alarms})
    assert describe_alarm("orders-health", cloud) == {"AlarmName": "orders-health", "StateValue": "OK"}
    assert describe_alarm(None, cloud) == "MISSING"
    assert len(alarms.asked) == 1


@pytest.mark.parametrize(
    ("applied", "first"),
    [
        (datetime(2026, 11, 27, 12, 24, 12, tzinfo=UTC), datetime(2026, 11, 27, 12, 25, tzinfo=UTC)),
        (datetime(2026, 11, 27, 12, 24, 0, 1, tzinfo=UTC), datetime(2026, 11, 27, 12, 25, tzinfo=UTC)),
        (datetime(2026, 11, 27, 12, 24, tzinfo=UTC), datetime(2026, 11, 27, 12, 24, tzinfo=UTC)),
    ],
)
def test_recovery_is_read_from_the_first_minute_that_began_after_the_change(applied, first):
    """GetMetricData rounds StartTime down to the minute: from 12:24:12 it would count 12:24's
    errors, the ones before the change included."""
    from lambdas.manager.heal import first_whole_minute

    assert first_whole_minute(applied) == first


@pytest.mark.parametrize(
    "origin, reference",
    [
        ("alarm", "selfheal-dev-analyzer"),
        ("alarm", "selfheal-prod-manager:live"),
        ("issue", "arn:aws:lambda:eu-west-1:123456789012:function:selfheal-dev-qa-runner"),
        ("scan", "selfheal-dev-engineer"),
    ],
)
def test_selfheals_own_functions_are_never_a_target_whatever_their_tags(origin, reference):
    # Given an alarm, a report or a scan naming one of Selfheal's own functions (any environment)
    issue = IssueReportedV1(
        service=reference if origin == "scan" else "x",
        issue_type="latency",
        summary="s",
        resource=reference if origin == "issue" else None,
    )

    # Then there is no target: nothing is read or changed, and the reason says why
    target, how = target_of(issue, origin, reference if origin == "alarm" else None, HOME)
    assert target is None and "Selfheal's own function" in how and "never changes" in how


def test_an_alarm_dimension_that_is_no_function_name_is_quoted_in_the_reason():
    issue = IssueReportedV1(service="x", issue_type="latency", summary="s")
    target, how = target_of(issue, "alarm", "Orders API (prod)", HOME)
    assert target is None
    assert how == "the alarm's function dimension 'Orders API (prod)' is not a function name or ARN"


def test_the_figures_about_a_change_start_once_calls_in_flight_at_it_could_have_ended():
    import dataclasses
    import json

    from lambdas.manager.heal import evidence_since, recovery_shown
    from selfheal_core.incidents import Incident

    # Given a timeout change 3 -> 10 s applied two seconds before a minute ended
    fields = {f.name: None for f in dataclasses.fields(Incident)}
    incident = Incident(
        **{
            **fields,
            "change": {"applied_at": "2026-11-29T16:34:58+00:00", "previous": {"timeout_s": 3}},
            "investigation": {"values": {"timeout_s": 3}},
        }
    )
    since = evidence_since(incident)
    assert since == datetime(2026, 11, 29, 16, 35, 2, tzinfo=UTC)

    # When the alarm's last evaluation is the 16:35 minute, in which calls started under 3 s timed out
    def alarm(period_start: str) -> dict:
        points = [{"timestamp": period_start, "value": 1.0}]
        return {"StateValue": "ALARM", "StateReasonData": json.dumps({"evaluatedDatapoints": points})}

    # Then that minute is no evidence about the change; the 16:36 minute is
    assert recovery_shown(alarm("2026-11-29T16:35:00+00:00"), since, None, cloud=None)[0] is None
    assert recovery_shown(alarm("2026-11-29T16:36:00+00:00"), since, None, cloud=None)[0] is True
