"""Intake: what an alarm or a report names must be what Selfheal investigates and changes."""

from __future__ import annotations

import copy

from tests.integration.test_heal import FUNCTION, alarm_event, only_incident
from tests.support.pipeline import Pipeline

OTHER_ACCOUNT = "999999999999"


def test_an_alarm_from_another_account_does_not_change_this_accounts_namesake(aws):
    """Expected: an alarm state change from another account (a default bus that receives an
    organisation's events, as centralised monitoring sets up) is refused with a reason, or at
    least investigated as having no target here: its FunctionName names a function in *that*
    account.

    Why it matters: accounts of one organisation routinely deploy the same function names
    (orders-api in dev, staging, prod). An alarm from the staging account would make the prod
    Manager double the timeout of prod's orders-api, which never alarmed.

    Actual: the AlarmStateChange rule (stacks/constructs/event_routes.py) matches any account and
    `intake.parse_alarm` never compares the event's `account` (or the alarm ARN in `resources`)
    with the Manager's own; the FunctionName dimension is taken as a local function.
    """
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    event = copy.deepcopy(alarm_event())
    event["account"] = OTHER_ACCOUNT
    event["resources"] = [f"arn:aws:cloudwatch:us-east-1:{OTHER_ACCOUNT}:alarm:orders-api-Errors"]

    pipeline.invoke("manager", event)  # delivered as the default bus would deliver it to the Manager
    pipeline.run()

    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3
    for incident in pipeline.incidents():
        assert (incident.investigation or {}).get("target") is None, incident.investigation


def test_a_reported_function_arn_of_another_account_does_not_change_this_accounts_namesake(aws):
    """Expected: `resource` given as a function ARN names that function: an ARN in another account
    or Region is not a function Selfheal can read or change here (a gap, nothing changed).

    Why it matters: the README invites `resource` as "a name or an ARN" precisely to be exact; a
    reporter in a shared ops channel sending staging's ARN must not get prod's function changed.

    Actual: `investigate.function_name_of` keeps only the name part of the ARN and drops its
    account and Region, so the same-named local function is investigated, changed and verified.
    """
    pipeline = Pipeline(functions={FUNCTION: {"timeout": 3}})
    pipeline.put(
        "IssueReported",
        {
            "service": FUNCTION,
            "issue_type": "high_error_rate",
            "severity": "high",
            "summary": "staging orders-api times out",
            "resource": f"arn:aws:lambda:eu-west-1:{OTHER_ACCOUNT}:function:{FUNCTION}",
        },
    )
    pipeline.run()

    incident = only_incident(pipeline)
    assert pipeline.function_config(FUNCTION)["timeout_s"] == 3, (incident.status, incident.last_reason)
    assert incident.investigation.get("target") is None, incident.investigation
