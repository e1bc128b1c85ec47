"""A bad SSM value is refused and listed, and the agents carry on with its default
(docs/decision_log.md, "Red-team round 7: one bad parameter stopped the Manager")."""

from __future__ import annotations

from datetime import datetime

import pytest

from selfheal_core import catalog
from selfheal_core.config import RuntimeParameters, usable_parameters
from selfheal_core.rejections import RejectionLog
from tests.integration.test_heal import FUNCTION, alarm_event, only_incident
from tests.support.pipeline import Pipeline

PREFIX = "/selfheal/dev/"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("verify-window-seconds", "5"),
        ("apply-windows", '{"*": ["25:00-26:00"]}'),
        ("apply-windows", '{"orders-api": "02:00-4:00"}'),
        ("apply-windows", '{"*": "nightly"}'),
        ("scan-thresholds", "{not json"),
        ("automation-level", "bogus"),
    ],
)
def test_a_bad_value_is_refused_alone_and_the_others_are_kept(name: str, value: str) -> None:
    # Given one bad value among good ones
    values = {f"{PREFIX}{name}": value, f"{PREFIX}max-fix-attempts": "5"}
    if name != "automation-level":
        values[f"{PREFIX}automation-level"] = "manual"

    # When the parameters are read
    params, refused = usable_parameters(values)

    # Then that one is refused with a reason naming it, falls back to its default, and the rest hold
    assert list(refused) == [f"{PREFIX}{name}"] and f"{PREFIX}{name}" in refused[f"{PREFIX}{name}"]
    field = {"verify-window-seconds": "verify_window_seconds", "apply-windows": "apply_windows"}.get(name)
    if field:
        assert getattr(params, field) == getattr(RuntimeParameters(), field)
    assert params.max_fix_attempts == 5


def test_windows_that_read_as_windows_are_kept() -> None:
    params, refused = usable_parameters({f"{PREFIX}apply-windows": '{"*": ["22:00-06:00", "12:00-24:00"], "a": "any"}'})

    assert refused == {} and params.apply_windows == {"*": ["22:00-06:00", "12:00-24:00"], "a": "any"}


def test_a_bad_verify_window_is_listed_and_the_alarm_still_opens_an_incident(aws) -> None:
    # Given an operator's typo: a verify window of 5 s (30 to 86400 are allowed)
    pipeline = Pipeline(parameters={"verify-window-seconds": "5"}, functions={FUNCTION: {"timeout": 3}})

    # When the function's alarm fires
    pipeline.put_raw_event(alarm_event())
    pipeline.run()

    # Then the Manager worked with the default window, and the refusal is listed once for operators
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING", incident.status
    applied, until = (datetime.fromisoformat(incident.change[k]) for k in ("applied_at", "verify_until"))
    assert (until - applied).total_seconds() == catalog.DEFAULT_VERIFY_WINDOW_SECONDS
    refusals = [r for r in RejectionLog(pipeline.env["MONITORING_TABLE_NAME"]).list() if "SSM parameter" in r["reason"]]
    assert refusals and all("verify-window-seconds" in r["reason"] for r in refusals)
    assert len(refusals) == 1, refusals  # once per value, not on every read of the parameters
