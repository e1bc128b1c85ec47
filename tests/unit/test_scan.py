"""The scheduled metric scan turns threshold breaches (SSM thresholds) into issues."""

from datetime import UTC, datetime, timedelta

from botocore.exceptions import ClientError

from lambdas.manager.scan import scan_lambda_metrics
from selfheal_core.config import ScanThresholds


class FakeCloudWatch:
    def __init__(self, values: dict[str, dict[str, float]]) -> None:
        self.values = values  # function -> metric -> value

    def list_metrics(self, **_):
        return {"Metrics": [{"Dimensions": [{"Name": "FunctionName", "Value": f}]} for f in self.values]}

    def get_metric_data(self, MetricDataQueries, **_):  # noqa: N803 - boto3's parameter name
        results = []
        for query in MetricDataQueries:
            stat = query["MetricStat"]
            function = stat["Metric"]["Dimensions"][0]["Value"]
            value = self.values[function].get(stat["Metric"]["MetricName"])
            results.append({"Id": query["Id"], "Values": [] if value is None else [value]})
        return {"MetricDataResults": results}


class FakeLambda:
    """GetFunctionConfiguration's LastModified as Lambda writes it; an absent function is denied."""

    def __init__(self, last_modified: dict[str, datetime]) -> None:
        self.last_modified = last_modified
        self.reads: list[str] = []

    def get_function_configuration(self, FunctionName):  # noqa: N803 - boto3's parameter name
        self.reads.append(FunctionName)
        if FunctionName not in self.last_modified:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetFunctionConfiguration")
        stamp = self.last_modified[FunctionName].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        return {"FunctionName": FunctionName, "LastModified": stamp}


def test_breaches_become_issues_and_healthy_or_own_functions_do_not():
    cloudwatch = FakeCloudWatch(
        {
            "orders-api": {"Invocations": 200, "Errors": 30, "Throttles": 0, "Duration": 120},
            "search-api": {"Invocations": 500, "Errors": 1, "Throttles": 0, "Duration": 4500},
            "quiet-api": {"Invocations": 100, "Errors": 0, "Throttles": 0, "Duration": 80},
            "selfheal-dev-manager": {"Invocations": 10, "Errors": 10, "Throttles": 0, "Duration": 50},
        }
    )

    intakes = scan_lambda_metrics(
        ScanThresholds(), exclude_prefix="selfheal-dev-", cloudwatch=cloudwatch, lambda_client=FakeLambda({})
    )

    by_service = {i.issue.service: i for i in intakes}
    assert set(by_service) == {"orders-api", "search-api"}
    assert by_service["orders-api"].issue.issue_type == "high_error_rate"
    assert by_service["orders-api"].issue.signals["error_rate_pct"] == 15.0
    assert by_service["search-api"].issue.issue_type == "latency"
    assert all(i.origin == "scan" for i in intakes)


def test_thresholds_come_from_the_parameters():
    cloudwatch = FakeCloudWatch({"orders-api": {"Invocations": 200, "Errors": 30, "Throttles": 0, "Duration": 120}})

    lenient = ScanThresholds(error_rate_pct=20.0)

    assert (
        scan_lambda_metrics(lenient, exclude_prefix="selfheal-", cloudwatch=cloudwatch, lambda_client=FakeLambda({}))
        == []
    )


def test_a_function_changed_inside_the_window_is_left_to_the_next_scan():
    """Its window mixes errors from before a fix with figures after it: judging it now would reopen
    a just-healed function on the errors the fix ended. Functions changed earlier, and functions
    whose configuration cannot be read, are reported as before."""
    breaching = {"Invocations": 200, "Errors": 30, "Throttles": 0, "Duration": 120}
    cloudwatch = FakeCloudWatch(
        {"healed-api": breaching, "old-api": breaching, "unreadable-api": breaching, "quiet-api": {"Invocations": 9}}
    )
    now = datetime.now(UTC)
    lam = FakeLambda(
        {
            "healed-api": now - timedelta(minutes=2),
            "old-api": now - timedelta(hours=3),
            "quiet-api": now - timedelta(minutes=1),
        }
    )

    intakes = scan_lambda_metrics(
        ScanThresholds(), exclude_prefix="selfheal-", cloudwatch=cloudwatch, lambda_client=lam
    )

    assert sorted(i.issue.service for i in intakes) == ["old-api", "unreadable-api"]
    assert "quiet-api" not in lam.reads  # only breaching functions cost a read


def test_a_change_just_before_the_window_still_counts():
    """CloudWatch rounds the window's start down to the minute: a change a few seconds before it
    may still have datapoints from before it in the window."""
    cloudwatch = FakeCloudWatch({"orders-api": {"Invocations": 200, "Errors": 30, "Throttles": 0, "Duration": 120}})
    lam = FakeLambda({"orders-api": datetime.now(UTC) - timedelta(minutes=5, seconds=20)})

    assert (
        scan_lambda_metrics(ScanThresholds(), exclude_prefix="selfheal-", cloudwatch=cloudwatch, lambda_client=lam)
        == []
    )
