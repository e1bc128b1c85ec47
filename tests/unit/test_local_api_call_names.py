"""How the local runtime names the API calls it counts (`selfheal local` api-calls, the bench's table)."""

from __future__ import annotations

import io

from selfheal_dev.local.runtime import LocalRuntime


def name(method: str, path: str, **environ: str) -> str:
    return LocalRuntime._action({"REQUEST_METHOD": method, "PATH_INFO": path, **environ})


def test_rest_json_calls_are_named_by_method_and_resource_not_by_the_resource_name() -> None:
    # Given EventBridge Scheduler calls (REST-JSON) on two schedules
    created = {name("POST", f"/schedules/selfheal-dev-verify-inc-{n}") for n in ("4b633", "9f1c2")}
    # Then every CreateSchedule call is counted on one row, apart from the other methods
    assert created == {"POST /schedules"}
    assert name("DELETE", "/schedules/selfheal-dev-verify-inc-4b633?groupName=default") == "DELETE /schedules"
    assert name("GET", "/schedule-groups") == "GET /schedule-groups"
    # And an API version leading the path is kept with the resource after it
    assert name("GET", "/2015-03-31/functions/f/configuration") == "GET /2015-03-31/functions"


def test_json_query_and_s3_calls_keep_their_operation_names() -> None:
    assert name("POST", "/", HTTP_X_AMZ_TARGET="DynamoDB_20120810.TransactWriteItems") == "TransactWriteItems"
    assert name("GET", "/", QUERY_STRING="Action=DescribeAlarms&Version=2010-08-01") == "DescribeAlarms"
    body = b"Action=Publish&TopicArn=t"
    form = {"CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body))}
    assert LocalRuntime._action(
        {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "wsgi.input": io.BytesIO(body), **form}
    ) == ("Publish")
    assert name("PUT", "/bucket/key", **{"selfheal.service": "s3"}) == "PutObject"
