"""The scheduled metric scan turns threshold breaches (SSM thresholds) into issues."""

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


def test_breaches_become_issues_and_healthy_or_own_functions_do_not():
    cloudwatch = FakeCloudWatch(
        {
            "orders-api": {"Invocations": 200, "Errors": 30, "Throttles": 0, "Duration": 120},
            "search-api": {"Invocations": 500, "Errors": 1, "Throttles": 0, "Duration": 4500},
            "quiet-api": {"Invocations": 100, "Errors": 0, "Throttles": 0, "Duration": 80},
            "selfheal-dev-manager": {"Invocations": 10, "Errors": 10, "Throttles": 0, "Duration": 50},
        }
    )

    intakes = scan_lambda_metrics(ScanThresholds(), exclude_prefix="selfheal-dev-", cloudwatch=cloudwatch)

    by_service = {i.issue.service: i for i in intakes}
    assert set(by_service) == {"orders-api", "search-api"}
    assert by_service["orders-api"].issue.issue_type == "high_error_rate"
    assert by_service["orders-api"].issue.signals["error_rate_pct"] == 15.0
    assert by_service["search-api"].issue.issue_type == "latency"
    assert all(i.origin == "scan" for i in intakes)


def test_thresholds_come_from_the_parameters():
    cloudwatch = FakeCloudWatch({"orders-api": {"Invocations": 200, "Errors": 30, "Throttles": 0, "Duration": 120}})

    lenient = ScanThresholds(error_rate_pct=20.0)

    assert scan_lambda_metrics(lenient, exclude_prefix="selfheal-", cloudwatch=cloudwatch) == []
