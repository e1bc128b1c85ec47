"""The heal loop under late, out-of-order and interleaved deliveries: RESOLVED must mean recovered."""

from __future__ import annotations

import copy
import json

from tests.integration.test_heal import FUNCTION, Dependant, alarm_event, alarm_in_state, only_incident
from tests.support.pipeline import Pipeline


def alarm_transition(state: str, at: str, datapoint: float) -> dict:
    """The alarm's state-change event as CloudWatch sends it, stamped with when the state changed."""
    event = copy.deepcopy(alarm_event(state, datapoint=datapoint))
    event["detail"]["state"]["timestamp"] = at
    return event


def test_a_late_ok_older_than_the_alarm_that_opened_the_incident_does_not_resolve_it(aws):
    """Expected: an OK transition that happened *before* the ALARM transition that opened the
    incident (EventBridge does not order deliveries; an async retry of the earlier OK can arrive
    minutes later) must not resolve the incident nor keep its change: the alarm is in ALARM now.

    Why it matters: the alarm stays in ALARM and will emit no further event, so nothing ever
    re-checks it: the incident is RESOLVED (FixVerified, "change kept") while the service is still
    failing, and the verify-window rollback is skipped for good.

    Actual: `logic._alarm_recovered` resolves whatever incident the fingerprint lock names, without
    comparing the OK's `state.timestamp` with the incident's opening alarm or reading the alarm.
    """
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    dependant = Dependant(pipeline)
    # The alarm went OK at 16:59 and ALARM at 17:04 (tests/events/alarm_state_change.json); the ALARM
    # is delivered first and its change applied.
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    assert only_incident(pipeline).status == "VERIFYING"
    alarm_in_state("ALARM", 41.0)  # what CloudWatch holds now: still failing

    # When the earlier OK (16:59:40, before the ALARM at 17:04:40) is delivered late
    pipeline.put_raw_event(alarm_transition("OK", "2025-11-20T16:59:40.987+0000", 0.0))
    pipeline.run()

    # Then the incident is still being verified, and no FixVerified claims a recovery
    incident = only_incident(pipeline)
    assert incident.status == "VERIFYING", (incident.status, incident.last_reason)
    assert "FixVerified" not in [e["type"] for e in dependant.events()]

    # And at the deadline the change is rolled back, as for any change with no recovery
    pipeline.fire_due("verify")
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3


def test_an_ok_between_the_restore_and_the_escalation_does_not_turn_a_rollback_into_a_resolution(aws, monkeypatch):
    """Expected: once a change has been rolled back for want of recovery, the incident ends
    ESCALATED and dependants get FixRolledBack, whatever alarm event arrives in between.

    Why it matters: the rollback step writes ROLLED_BACK, then sends FixRolledBack, then writes
    ESCALATED. If the Manager dies after the first write (a PutEvents error, a time-out), the
    restore has landed but nobody is told. The alarm's OK (often the restore's own doing, or a
    flap) arriving before the retry resolves the incident: the retry of VerifyDue is then stale,
    FixRolledBack is never sent (dependants saw FixApplied only and believe the change stands),
    and a change that did not heal the service is reported RESOLVED with no escalation.

    Actual: `Status.RESOLVED` is allowed from `ROLLED_BACK` (incidents.ALLOWED_FROM: every open
    status but APPROVED) and `_alarm_recovered` forbids only `heal_phase == "rolling_back"`, while
    a finished restore is `heal_phase == "rolled_back"`.
    """
    from lambdas.manager import heal
    from selfheal_core.events import DetailType

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    dependant = Dependant(pipeline)
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    alarm_in_state("ALARM", 41.0)
    original = heal._send
    crashed: list[str] = []

    def crash_once(ports, incident, detail_type, data):
        if detail_type is DetailType.FIX_ROLLED_BACK and not crashed:
            crashed.append(incident.incident_id)
            raise RuntimeError("PutEvents failed")
        return original(ports, incident, detail_type, data)

    monkeypatch.setattr(heal, "_send", crash_once)
    [broken] = pipeline.fire_due("verify")
    assert broken.error and only_incident(pipeline).status == "ROLLED_BACK"
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3  # the restore landed

    # When the alarm's OK arrives before Lambda retries the VerifyDue
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()
    monkeypatch.setattr(heal, "now", lambda: heal.datetime.now(heal.UTC) + heal.timedelta(days=2))
    pipeline.invoke(broken.agent, broken.event)
    pipeline.run()

    # Then the rollback is finished and announced: ESCALATED, and FixRolledBack reached dependants
    incident = only_incident(pipeline)
    assert incident.status == "ESCALATED", (incident.status, incident.last_reason)
    assert [e["type"] for e in dependant.events()] == ["FixApplied", "FixRolledBack"]


def test_an_ok_while_a_scheduled_change_is_being_applied_does_not_hide_the_change(aws, monkeypatch):
    """Expected: a change that reaches the target is announced (FixApplied) and verified; an OK
    that arrives while the change is in flight (`heal_phase == "applying"`) must not close the
    incident under it, exactly as `RESOLVED` is refused from APPROVED for that reason.

    Why it matters: in a low-traffic window the apply step claims the SCHEDULED incident
    (`heal_phase = applying`), writes the function, then records VERIFYING. If it dies in between
    and the alarm's OK arrives before the retry, the incident is RESOLVED and the retried ApplyDue
    is stale: the function runs with a changed configuration that no FixApplied announced (a
    dependant filtering on `breaking_change` never hears of it), with no `applied_at`, no verify
    and no rollback path.

    Actual: incidents.ALLOWED_FROM lets RESOLVED follow SCHEDULED, and `_alarm_recovered` only
    forbids `heal_phase == "rolling_back"`.
    """
    from datetime import UTC, datetime, timedelta

    from lambdas.manager import heal
    from selfheal_core.incidents import IncidentStore, Status

    ten = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(heal, "now", lambda: ten)
    pipeline = Pipeline(
        parameters={"apply-windows": json.dumps({FUNCTION: ["02:00-03:00"]})},
        functions={FUNCTION: {"timeout": 3, "memory": 512}},
    )
    dependant = Dependant(pipeline)
    low = copy.deepcopy(alarm_event())
    low["detail"]["configuration"]["description"] = "orders-api errors, low priority"
    pipeline.put_raw_event(low)
    pipeline.run()
    assert only_incident(pipeline).status == "SCHEDULED"

    # When the window opens and the apply dies after writing the function, before VERIFYING
    original = IncidentStore.transition
    crashed: list[Status] = []

    def crash_once(self, incident_id, to, **kwargs):
        if to is Status.VERIFYING and not crashed:
            crashed.append(to)
            raise RuntimeError("Lambda timed out")
        return original(self, incident_id, to, **kwargs)

    monkeypatch.setattr(IncidentStore, "transition", crash_once)
    monkeypatch.setattr(heal, "now", lambda: ten + timedelta(days=1, hours=-8, seconds=5))  # tomorrow 02:00:05
    pipeline.fire_schedules("apply")
    [broken] = pipeline.run()
    assert broken.error and pipeline.function_config(FUNCTION)["timeout_s"] == 10  # the write landed

    # And the alarm's OK is delivered before Lambda retries the ApplyDue
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_event("OK", datapoint=0.0))
    pipeline.run()
    pipeline.invoke(broken.agent, broken.event)
    pipeline.run()

    # Then the change that landed was recorded and announced like any applied change
    incident = only_incident(pipeline)
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 10
    assert (incident.change or {}).get("applied_at"), (incident.status, incident.heal_phase, incident.last_reason)
    assert "FixApplied" in [e["type"] for e in dependant.events()]


def test_an_ok_that_cannot_resolve_the_incident_does_not_release_its_fingerprint(aws, monkeypatch):
    """Expected: while an incident is open, every report of its alarm folds into it; an OK that
    is refused (the incident is APPROVED with its change in flight, so RESOLVED is not allowed)
    leaves the fingerprint lock alone, and the alarm's next ALARM folds into the open incident.

    Why it matters: a flap (ALARM, OK, ALARM) during an apply opens a second incident for the same
    alarm while the first still owns a change to the function. The second investigates the
    function as the first left it, proposes and applies its own change on top, and the first's
    rollback then finds the function moved under it (ROLLBACK FAILED): two heal loops racing on
    one target.

    Actual: `logic._alarm_recovered` calls `release_now` whether or not the RESOLVED transition
    succeeded, deleting the lock of an incident that is still open.
    """
    from lambdas.manager import heal

    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3, "memory": 512}})
    original = heal._check_still_managed
    crashed: list[str] = []

    def crash_once(change, cloud, *, by_hand):
        if not crashed:
            crashed.append(change["change_id"])
            raise RuntimeError("Lambda timed out")
        return original(change, cloud, by_hand=by_hand)

    monkeypatch.setattr(heal, "_check_still_managed", crash_once)
    pipeline.put_raw_event(alarm_event())
    pipeline.run()
    first = only_incident(pipeline)
    assert first.status == "APPROVED" and first.heal_phase == "applying"

    # When the alarm flaps: OK (really OK, but refused: the change is in flight), then ALARM again
    alarm_in_state("OK", 0.0)
    pipeline.put_raw_event(alarm_transition("OK", "2025-11-20T17:06:40.000+0000", 0.0))
    [ok] = pipeline.run()
    assert ok.result["action"] == "stale"
    again = alarm_transition("ALARM", "2025-11-20T17:08:40.000+0000", 30.0)
    again["detail"]["state"]["reason"] = "Threshold Crossed again"
    pipeline.put_raw_event(again)
    pipeline.run()

    # Then the second ALARM is a duplicate of the open incident, not a second heal loop
    incidents = pipeline.incidents()
    assert [i.incident_id for i in incidents] == [first.incident_id], [(i.incident_id, i.status) for i in incidents]
