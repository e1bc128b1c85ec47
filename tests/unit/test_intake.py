import pytest

from lambdas.manager.home import Home
from lambdas.manager.intake import alarm_elsewhere, fingerprint, parse_alarm, parse_issue_reported, parse_scheduled
from selfheal_core.events import InvalidEvent


def alarm_event(name="orders-api-errors", state="ALARM", metric="Errors", dims=None, math=False):
    metric_stat = {
        "metric": {"namespace": "AWS/Lambda", "name": metric, "dimensions": dims or {"FunctionName": "orders-api"}},
        "period": 60,
        "stat": "Sum",
    }
    metrics = (
        [
            {"id": "e1", "expression": "m1/m2*100", "label": "rate", "returnData": True},
            {"id": "m1", "metricStat": metric_stat, "returnData": False},
            {
                "id": "m2",
                "metricStat": {**metric_stat, "metric": {**metric_stat["metric"], "name": "Invocations"}},
                "returnData": False,
            },
        ]
        if math
        else [{"id": "m1", "metricStat": metric_stat, "returnData": True}]
    )
    return {
        "version": "0",
        "id": "7d8a2b1c-0000-4000-8000-000000000001",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2026-11-22T03:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "state": {
                "value": state,
                "reason": "Threshold Crossed",
                "reasonData": '{"recentDatapoints":[12.0],"threshold":5.0}',
                "timestamp": "2026-11-22T03:00:00.000+0000",
            },
            "previousState": {"value": "OK", "reason": "", "timestamp": "2026-11-22T02:55:00.000+0000"},
            "configuration": {"description": "orders API errors", "metrics": metrics},
        },
    }


def test_single_metric_alarm_becomes_a_classified_issue():
    intake = parse_alarm(alarm_event())

    assert intake.origin == "alarm" and intake.alarm_state == "ALARM"
    assert intake.issue.service == "orders-api"
    assert intake.issue.issue_type == "high_error_rate"
    assert intake.issue.severity == "high"
    assert intake.issue.signals == {"latest_datapoint": 12.0, "threshold": 5.0}


def test_metric_math_alarm_uses_the_underlying_metrics():
    intake = parse_alarm(
        alarm_event(name="checkout-throttle-rate", metric="Throttles", math=True, dims={"FunctionName": "checkout"})
    )

    assert intake.issue.issue_type == "throttling"
    assert intake.issue.service == "checkout"


def test_same_alarm_gives_the_same_fingerprint_and_other_alarms_do_not():
    assert parse_alarm(alarm_event()).fingerprint == parse_alarm(alarm_event()).fingerprint
    assert parse_alarm(alarm_event()).fingerprint != parse_alarm(alarm_event(name="other")).fingerprint


def test_names_that_differ_only_in_case_are_different_problems():
    """Lambda function names and alarm names are case-sensitive: folding `Checkout` into
    `checkout` would hand one function's incident to the other's."""
    lower = parse_alarm(alarm_event(name="errors", dims={"FunctionName": "checkout"}))
    upper = parse_alarm(alarm_event(name="errors", dims={"FunctionName": "Checkout"}))
    renamed = parse_alarm(alarm_event(name="Errors", dims={"FunctionName": "checkout"}))

    assert len({lower.fingerprint, upper.fingerprint, renamed.fingerprint}) == 3
    report = {"detail-type": "IssueReported", "source": "acme", "detail": {"issue_type": "memory", "summary": "OOM"}}
    assert (
        parse_issue_reported({**report, "detail": {**report["detail"], "service": "Billing"}}).fingerprint
        != parse_issue_reported({**report, "detail": {**report["detail"], "service": "billing"}}).fingerprint
    )


def test_alarm_without_state_is_rejected():
    event = alarm_event()
    del event["detail"]["state"]
    with pytest.raises(InvalidEvent, match=r"detail\.state"):
        parse_alarm(event)


HOME = Home(account="123456789012", region="us-east-1")


def test_an_alarm_of_this_account_and_region_is_ours():
    assert alarm_elsewhere(alarm_event(), HOME) is None
    # EventBridge always sets these; a field left out is not evidence of anything
    bare = {k: v for k, v in alarm_event().items() if k not in ("account", "region", "resources")}
    assert alarm_elsewhere(bare, HOME) is None


@pytest.mark.parametrize(
    "change, named",
    [
        ({"account": "999999999999"}, "the event names account 999999999999 / Region us-east-1"),
        ({"region": "eu-west-1"}, "the event names account 123456789012 / Region eu-west-1"),
        (
            {"resources": ["arn:aws:cloudwatch:us-east-1:999999999999:alarm:orders-api-errors"]},
            "the alarm ARN names account 999999999999",
        ),
        (
            {"resources": ["arn:aws:cloudwatch:ap-south-1:123456789012:alarm:orders-api-errors"]},
            "Region ap-south-1",
        ),
    ],
)
def test_an_alarm_naming_another_account_or_region_is_not_ours(change, named):
    reason = alarm_elsewhere({**alarm_event(), **change}, HOME)
    assert reason is not None and named in reason and "not this Manager's (account 123456789012" in reason


def test_an_alarm_arn_in_the_detail_is_checked_too():
    event = alarm_event()
    event["detail"]["alarmArn"] = "arn:aws:cloudwatch:us-east-1:999999999999:alarm:orders-api-errors"
    assert "999999999999" in (alarm_elsewhere(event, HOME) or "")


def test_a_manager_that_cannot_tell_its_home_takes_no_alarm_that_names_one():
    unknown = Home.of_context(object())  # a context without invoked_function_arn
    assert unknown == Home("", "") and alarm_elsewhere(alarm_event(), unknown) is not None


def test_home_is_read_from_the_invoked_function_arn():
    class Context:
        invoked_function_arn = "arn:aws:lambda:eu-central-1:210987654321:function:selfheal-prod-manager:live"

    assert Home.of_context(Context()) == Home(account="210987654321", region="eu-central-1")


def test_issue_reported_accepts_plain_detail_and_envelope():
    plain = {
        "detail-type": "IssueReported",
        "source": "acme",
        "detail": {"service": "billing", "issue_type": "memory", "summary": "OOM kills"},
    }
    wrapped = {
        "detail-type": "IssueReported",
        "source": "acme",
        "detail": {
            "metadata": {"incident_id": "ext", "correlation_id": "c1", "producer": "acme", "event_version": "1"},
            "data": plain["detail"],
        },
    }

    assert parse_issue_reported(plain).issue == parse_issue_reported(wrapped).issue
    assert parse_issue_reported(plain).fingerprint == fingerprint("billing", "memory", None)


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"event_version": "1"},
        {"event_version": 1},
        {"event_version": "1", "trace_id": "t-9", "sent_at": "yesterday"},
        {"incident_id": "ext", "producer": "acme"},
    ],
)
def test_a_producer_envelope_needs_only_its_event_version(metadata):
    """A producer has no incident or correlation id of ours to give, nor our producer name."""
    fields = {"service": "billing", "issue_type": "memory", "summary": "OOM kills"}
    event = {"detail-type": "IssueReported", "source": "acme", "detail": {"metadata": metadata, "data": fields}}

    assert parse_issue_reported(event).issue == parse_issue_reported({**event, "detail": fields}).issue


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        ({"metadata": "v1", "data": {}}, "needs a metadata object and data"),
        ({"data": {"service": "b", "issue_type": "memory", "summary": "s"}}, "needs a metadata object and data"),
        ({"metadata": {"event_version": "1"}}, "needs a metadata object and data"),
        ({"metadata": {"event_version": "2"}, "data": {}}, "unsupported event_version '2'"),
        ({"metadata": {"event_version": "1"}, "data": {"service": "b"}}, "IssueReported v1 is invalid: issue_type"),
        ({"metadata": {"event_version": "1"}, "data": {}, "extra": 1}, "only metadata and data"),
    ],
)
def test_a_producer_envelope_that_cannot_be_read_is_refused_with_the_reason(detail, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parse_issue_reported({"detail-type": "IssueReported", "source": "acme", "detail": detail})


def test_malformed_issue_is_rejected_with_reason():
    with pytest.raises(InvalidEvent, match="summary"):
        parse_issue_reported({"detail-type": "IssueReported", "detail": {"service": "x", "issue_type": "latency"}})


def test_a_replayed_report_has_the_delivery_key_of_the_original():
    from lambdas.manager.intake import delivery_key

    original = {"id": "a", "source": "acme", "time": "2026-11-27T10:00:00Z", "detail": {"service": "x", "n": 1}}
    replayed = {**original, "id": "b", "replay-name": "r1", "detail": {"n": 1, "service": "x"}}
    later = {**original, "id": "c", "time": "2026-11-27T10:05:00Z"}
    assert delivery_key(original) == delivery_key(replayed)
    assert delivery_key(original) != delivery_key(later)


def test_a_lambda_insights_alarm_names_its_function_by_the_function_name_dimension():
    # Lambda has no memory metric of its own: memory alarms are on LambdaInsights, whose dimension
    # is `function_name`.
    event = alarm_event(name="orders-api-memory", metric="memory_utilization", dims={"function_name": "orders-api"})
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["namespace"] = "LambdaInsights"

    intake = parse_alarm(event)

    assert intake.issue.issue_type == "memory"
    assert intake.issue.service == "orders-api"
    assert intake.alarm_function == "orders-api"


@pytest.mark.parametrize(
    ("dims", "target"),
    [
        ({"FunctionName": "orders-api", "Resource": "orders-api:prod"}, "orders-api:prod"),
        ({"FunctionName": "orders-api", "ExecutedVersion": "7"}, "orders-api:7"),
        ({"FunctionName": "orders-api", "Resource": "orders-api"}, "orders-api"),
    ],
)
def test_an_alias_or_version_alarm_names_the_qualified_function(dims, target):
    intake = parse_alarm(alarm_event(dims=dims))

    assert intake.issue.service == "orders-api"
    assert intake.alarm_function == target


def test_a_metric_math_alarm_over_two_aliases_has_no_single_target():
    event = alarm_event(
        name="orders-errors", math=True, dims={"FunctionName": "orders-api", "Resource": "orders-api:a"}
    )
    metrics = event["detail"]["configuration"]["metrics"]
    metrics[2]["metricStat"]["metric"] = {
        **metrics[2]["metricStat"]["metric"],
        "dimensions": {"FunctionName": "orders-api", "Resource": "orders-api:b"},
    }

    assert parse_alarm(event).alarm_function is None


def test_a_metric_math_alarm_over_two_functions_has_no_single_target():
    event = alarm_event(name="fleet-errors", math=True)
    metrics = event["detail"]["configuration"]["metrics"]
    metrics[2]["metricStat"]["metric"] = {**metrics[2]["metricStat"]["metric"], "dimensions": {"FunctionName": "b"}}

    intake = parse_alarm(event)

    assert intake.alarm_function is None
    assert any("orders-api" in line and "b" in line for line in intake.issue.evidence)


def test_a_composite_alarm_is_an_issue_without_a_target():
    event = alarm_event(name="checkout-errors-composite")
    event["detail"]["configuration"] = {
        "alarmRule": 'ALARM("orders-api-errors") OR ALARM("payments-errors")',
        "actionsSuppressor": "",
        "actionsSuppressorWaitPeriod": 0,
        "actionsSuppressorExtensionPeriod": 0,
    }

    intake = parse_alarm(event)

    assert intake.alarm_function is None
    assert intake.issue.issue_type == "high_error_rate"


@pytest.mark.parametrize(
    ("description", "severity"),
    [
        ("checkout requests are slow", "medium"),
        ("latency higher than usual, below the paging bar", "medium"),
        ("not critical: p99 above 3 s", "medium"),
        ("non-critical path; high priority", "high"),
        ("Severity: CRITICAL - page the on-call", "critical"),
        ("sev1 orders down", "critical"),
        ("SEV 1: orders down", "critical"),
        ("P2 - checkout", "high"),
        ("low priority", "low"),
        ("severity: low", "low"),
        # "high" and "low" describing the metric are no severity
        ("p99 is high while the success rate is low", "medium"),
        ("no critical " * 20_000, "medium"),  # bounded: read in linear time, whatever its length
    ],
)
def test_severity_is_read_from_whole_words_and_a_negation_is_not_a_claim(description, severity):
    event = alarm_event(name="orders-api-p99", metric="Duration")
    event["detail"]["configuration"]["description"] = description

    assert parse_alarm(event).issue.severity == severity


@pytest.mark.parametrize(
    ("name", "severity"),
    [
        ("orders_api_critical_latency", "critical"),
        ("OrdersApiCriticalLatency", "critical"),
        ("orders-api-sev1-duration", "critical"),
        ("orders-api-high-priority-p99", "high"),
        ("orders-api-sev-low-p99", "low"),
        # what the alarm measures is no severity
        ("OrdersHighLatency", "medium"),
        ("orders-api-low-throughput", "medium"),
        ("orders-api-slow-p99", "medium"),
        ("orders-api-noncritical-p99", "medium"),
    ],
)
def test_severity_is_read_from_the_alarm_name_whatever_its_case_style(name, severity):
    assert parse_alarm(alarm_event(name=name, metric="Duration")).issue.severity == severity


def test_low_in_an_error_alarms_description_does_not_demote_it():
    event = alarm_event()
    event["detail"]["configuration"]["description"] = "Errors while the success rate is low"

    assert parse_alarm(event).issue.severity == "high"


@pytest.mark.parametrize("source", ["acme.monitoring", "aws.cloudwatch.fake", None])
def test_an_alarm_or_a_schedule_from_any_other_source_is_a_forgery(source):
    """A producer may put any detail-type on the bus; the Unrouted rule brings it to the Manager."""
    alarm = {**alarm_event(), "source": source}
    scheduled = {"detail-type": "Scheduled Event", "source": source, "detail": {}}

    with pytest.raises(InvalidEvent, match=r"aws\.cloudwatch only"):
        parse_alarm(alarm)
    with pytest.raises(InvalidEvent, match=r"aws\.events only"):
        parse_scheduled(scheduled)
    parse_scheduled({**scheduled, "source": "aws.events"})


@pytest.mark.parametrize("where", ["query", "metric"])
def test_an_alarm_over_another_accounts_metrics_is_not_ours(where):
    """Cross-account observability: the monitoring account's alarm names the source account's function."""
    event = alarm_event()
    query = event["detail"]["configuration"]["metrics"][0]
    (query if where == "query" else query["metricStat"]["metric"])["accountId"] = "999999999999"

    assert "a metric names account 999999999999" in (alarm_elsewhere(event, HOME) or "")
    query.pop("accountId", None)
    query["metricStat"]["metric"].pop("accountId", None)
    query["accountId"] = "123456789012"
    assert alarm_elsewhere(event, HOME) is None


def test_a_lambda_insights_alarm_on_a_version_names_the_version():
    intake = parse_alarm(alarm_event(metric="memory_utilization", dims={"function_name": "orders-api", "version": "3"}))

    assert intake.alarm_function == "orders-api:3"


@pytest.mark.parametrize("metric", ["DeadLetterErrors", "SignatureValidationErrors", "4XXError"])
def test_an_alarm_on_a_failure_no_runbook_fixes_is_unknown_whatever_its_name(metric):
    assert parse_alarm(alarm_event(name="orders-api-errors", metric=metric)).issue.issue_type == "unknown"


def test_fields_cannot_run_into_each_other_in_the_fingerprint():
    assert fingerprint("checkout", "high_error_rate", "x|y") != fingerprint("checkout|high_error_rate|x", "y", None)


def test_a_math_alarm_over_a_queue_and_a_function_concerns_the_function():
    event = alarm_event(math=True)
    queue_metric = {"namespace": "AWS/SQS", "name": "ApproximateAgeOfOldestMessage", "dimensions": {"QueueName": "q"}}
    event["detail"]["configuration"]["metrics"][1]["metricStat"]["metric"] = queue_metric

    intake = parse_alarm(event)

    assert intake.alarm_function == "orders-api" and intake.issue.service == "orders-api"


def test_an_alarm_that_opened_its_incident_before_the_upgrade_still_finds_it_on_ok():
    """Fingerprints became exact and JSON-encoded: the OK looks under the old one too."""
    from lambdas.manager.intake import legacy_fingerprint
    from lambdas.manager.logic import _incident_of_alarm

    ok = parse_alarm(alarm_event(name="Orders-Errors", state="OK", dims={"FunctionName": "Orders-API"}))
    old = legacy_fingerprint("Orders-API", "high_error_rate", "Orders-Errors")

    class Locks:
        def __init__(self, held: dict[str, str]) -> None:
            self.held = held

        def open_incident_for(self, fingerprint: str) -> str | None:
            return self.held.get(fingerprint)

    class Ports:
        def __init__(self, held: dict[str, str]) -> None:
            self.incidents = Locks(held)

    assert old != ok.fingerprint
    assert _incident_of_alarm(ok, Ports({old: "inc-old"})) == (old, "inc-old")
    assert _incident_of_alarm(ok, Ports({ok.fingerprint: "inc-new", old: "inc-old"})) == (ok.fingerprint, "inc-new")
    assert _incident_of_alarm(ok, Ports({})) == (ok.fingerprint, None)


def insights_alarm(query: str) -> dict:
    event = alarm_event(name="orders-api-p95")
    event["detail"]["configuration"]["metrics"] = [
        {"id": "q1", "expression": query, "period": 60, "label": "p95", "returnData": True}
    ]
    return event


@pytest.mark.parametrize(
    ("query", "issue_type", "target"),
    [
        (
            "SELECT AVG(Duration) FROM SCHEMA(\"AWS/Lambda\", FunctionName) WHERE FunctionName = 'orders-api'",
            "latency",
            "orders-api",
        ),
        ("SELECT SUM(Errors) FROM \"AWS/Lambda\" WHERE FunctionName='orders-api'", "high_error_rate", "orders-api"),
        # LambdaInsights names the function `function_name`
        (
            "SELECT MAX(memory_utilization) FROM SCHEMA(\"LambdaInsights\", function_name) WHERE function_name = 'fli'",
            "memory",
            "fli",
        ),
        # a fleet, or one function among others: no single target
        ('SELECT MAX(Duration) FROM SCHEMA("AWS/Lambda", FunctionName) GROUP BY FunctionName', "latency", None),
        ("SELECT SUM(Errors) FROM \"AWS/Lambda\" WHERE FunctionName != 'orders-api'", "high_error_rate", None),
        (
            "SELECT SUM(Errors) FROM \"AWS/Lambda\" WHERE FunctionName = 'a' OR FunctionName = 'b'",
            "high_error_rate",
            None,
        ),
    ],
)
def test_a_metrics_insights_alarm_is_read_from_its_query(query, issue_type, target):
    intake = parse_alarm(insights_alarm(query))

    assert intake.issue.issue_type == issue_type
    assert intake.alarm_function == target
