"""Parsing of EventBridge Scheduler one-time expressions and Lambda routes (local runtime)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from selfheal_dev.local.lambda_api import LambdaControlPlane
from selfheal_dev.local.router import at_time


def test_at_expression_is_read_in_its_timezone():
    # Given the same wall-clock time in UTC and in Paris (UTC+1 in November)
    utc = at_time("at(2026-11-27T12:00:00)", "UTC")
    paris = at_time("at(2026-11-27T12:00:00)", "Europe/Paris")
    # Then they are an hour apart, and UTC is the default
    assert utc == datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp()
    assert paris == utc - 3600
    assert at_time("at(2026-11-27T12:00:00)") == utc


@pytest.mark.parametrize(
    "expression",
    [
        "rate(5 minutes)",
        "cron(0 12 * * ? *)",
        "at(2026-13-40T99:00:00)",
        "at(2026-11-27 12:00:00)",
        "at(2026-11-27T12:00:00); rm -rf /",
        "",
    ],
)
def test_anything_but_a_valid_at_expression_is_not_a_one_time_schedule(expression):
    assert at_time(expression) is None


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/2015-03-31/functions/", ("ListFunctions", None)),
        (
            "GET",
            "/2015-03-31/functions/sample-orders-dev/configuration",
            ("GetFunctionConfiguration", "sample-orders-dev"),
        ),
        (
            "PUT",
            "/2015-03-31/functions/sample-orders-dev/configuration",
            ("UpdateFunctionConfiguration", "sample-orders-dev"),
        ),
        (
            "GET",
            "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Ax",
            ("ListTags", "arn:aws:lambda:us-east-1:1:function:x"),
        ),
        ("PUT", "/2017-10-31/functions/x/concurrency", ("PutFunctionConcurrency", "x")),
        ("POST", "/2015-03-31/functions", ("CreateFunction", None)),  # served here, never by moto
        ("DELETE", "/2015-03-31/functions/x", ("Unsupported", None)),
        ("POST", "/2015-03-31/functions/x/invocations", None),  # Invoke: served by the worker pools
        ("GET", "/2015-03-31/functions/x/aliases", ("Unsupported", None)),
    ],
)
def test_lambda_rest_paths_map_to_operations(method, path, expected):
    assert LambdaControlPlane.route(method, path) == expected


def test_cloudtrail_lookup_refuses_malformed_attributes_instead_of_failing():
    # Given a hostile LookupEvents body / Then a client error (400), never a server error
    from selfheal_dev.local.lambda_api import LambdaApiError

    plane = LambdaControlPlane(host=None)  # type: ignore[arg-type]
    for body in (
        {"LookupAttributes": ["ResourceName"]},
        {"LookupAttributes": [{}, {}]},
        {"LookupAttributes": "x"},
        {"MaxResults": 0},
    ):
        with pytest.raises(LambdaApiError) as err:
            plane.lookup_events(body)
        assert err.value.status == 400
    assert plane.lookup_events({}) == {"Events": []}
