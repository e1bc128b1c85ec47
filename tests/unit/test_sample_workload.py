"""The sample workload's handler: its faults are exactly the ones the caller asks for."""

from __future__ import annotations

import pytest

from workloads.sample_orders import handler as sample


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    calls: list[float] = []
    monkeypatch.setattr(sample.time, "sleep", calls.append)
    return calls


def test_sleeps_what_the_event_asks_and_succeeds(slept):
    # Given {"sleep_s": 5} / When invoked / Then it sleeps 5 s and returns ok
    assert sample.handler({"sleep_s": 5}, None) == {"ok": True, "slept_s": 5.0}
    assert slept == [5.0]


def test_fail_true_raises_after_the_sleep(slept):
    # Given fail=true / When invoked / Then it raises (an error no configuration change cures)
    with pytest.raises(sample.OrderBackendError):
        sample.handler({"fail": True, "sleep_s": 0.5}, None)
    assert slept == [0.5]


@pytest.mark.parametrize("event", [{"fail": "true"}, {"fail": 1}, {}, None, ["fail"], "fail"])
def test_only_a_real_true_fails(slept, event):
    # Given anything but a JSON true in "fail" / Then the request succeeds
    assert sample.handler(event, None)["ok"] is True


@pytest.mark.parametrize(
    ("raw", "expected"), [(-3, 0.0), ("abc", 0.0), (float("nan"), 0.0), (10**9, 900.0), ("1.5", 1.5)]
)
def test_hostile_sleep_values_are_clamped(slept, raw, expected):
    # Given a negative, non-numeric, NaN or absurd sleep_s / Then it sleeps within [0, 900] s
    assert sample.handler({"sleep_s": raw}, None)["slept_s"] == expected
