"""The local runtime's Lambda control plane and one-time schedules, driven with stock boto3.

The runtime runs the app with the sample workload (`-c sampleWorkload=true`) in a child
process, exactly as `selfheal local up` does. Every value checked here comes from the
synthesized template or from a change made through the Lambda API; nothing is seeded.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

# The runtime runs as a child process here (as `selfheal local up` runs it): slow, so end-to-end.
pytestmark = pytest.mark.e2e

SAMPLE = "sample-orders-dev"


@pytest.fixture(scope="module")
def sample_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from selfheal_dev.local.assembly import synthesize

    return synthesize(tmp_path_factory.mktemp("sample") / "cdk.out", context={"sampleWorkload": "true"})


@pytest.fixture(scope="module")
def runtime(sample_assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.support.harness import RuntimeProcess

    # Alarms are not evaluated here (no incidents, no agent traffic): this is about the Lambda API.
    rt = RuntimeProcess(
        state_dir=tmp_path_factory.mktemp("state"),
        assembly=sample_assembly,
        extra_args=["--quiet", "--alarm-interval", "3600"],
    )
    rt.start(timeout=180)
    yield rt
    leftover = rt.stop()
    assert leftover == [], f"processes left after stop: {leftover}"


@pytest.fixture
def lam(runtime: Any) -> Any:
    return runtime.client("lambda")


def template_function(assembly: Path, name: str) -> dict[str, Any]:
    for path in assembly.glob("*.template.json"):
        for res in json.loads(path.read_text())["Resources"].values():
            if res["Type"] == "AWS::Lambda::Function" and res["Properties"].get("FunctionName") == name:
                return res["Properties"]
    raise AssertionError(f"{name} not in the templates")


def invoke(lam: Any, payload: dict[str, Any], name: str = SAMPLE) -> tuple[bool, Any]:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    body = json.loads(resp["Payload"].read() or b"null")
    return "FunctionError" not in resp, body


def wait_for(check: Callable[[], Any], timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def test_lambda_api_lists_every_template_function_with_its_template_configuration(lam, runtime, sample_assembly):
    # Given the app with the sample workload / When a client lists and reads functions through the Lambda API
    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate() for f in page["Functions"]]
    status = runtime.control("status")["functions"]
    # Then every function the runtime runs is listed, once
    assert sorted(names) == sorted(status) and SAMPLE in names and "selfheal-dev-manager" in names
    # And each configuration is the template's, including a RevisionId
    for name in (SAMPLE, "selfheal-dev-manager"):
        props = template_function(sample_assembly, name)
        config = lam.get_function_configuration(FunctionName=name)
        assert config["Timeout"] == props["Timeout"] and config["MemorySize"] == props.get("MemorySize", 128)
        assert config["Handler"] == props["Handler"] and config["Runtime"] == props["Runtime"]
        assert config["RevisionId"] and config["Version"] == "$LATEST" and config["State"] == "Active"
        assert config["TracingConfig"]["Mode"] == props["TracingConfig"]["Mode"]
    sample = lam.get_function_configuration(FunctionName=SAMPLE)
    assert (sample["Timeout"], sample["MemorySize"]) == (3, 128)
    # And the manager's environment is the template's (as `cdk deploy` would set it)
    manager = lam.get_function(FunctionName="selfheal-dev-manager")["Configuration"]
    assert manager["Environment"]["Variables"]["EVENT_BUS_NAME"] == "agentops-dev"


def test_tags_concurrency_and_event_invoke_config_come_from_the_template(lam):
    # Given the sample function (tagged selfheal:managed, async retries 0 in the template)
    arn = lam.get_function_configuration(FunctionName=SAMPLE)["FunctionArn"]
    # Then its tags are listed, by ARN as ListTags requires, and returned by GetFunction
    tags = lam.list_tags(Resource=arn)["Tags"]
    assert tags["selfheal:managed"] == "true" and tags["project"] == "selfheal"
    assert lam.get_function(FunctionName=SAMPLE)["Tags"] == tags
    # And no reserved concurrency, and the template's event invoke config
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=SAMPLE)
    cfg = lam.get_function_event_invoke_config(FunctionName=SAMPLE)
    assert cfg["MaximumRetryAttempts"] == 0 and cfg["FunctionArn"].endswith(":$LATEST")
    # And an agent keeps its own (2 retries, on-failure queue)
    agent = lam.get_function_event_invoke_config(FunctionName="selfheal-dev-manager")
    assert agent["MaximumRetryAttempts"] == 2 and ":sqs:" in agent["DestinationConfig"]["OnFailure"]["Destination"]


def test_a_new_timeout_applies_to_the_next_invocation(lam):
    # Given the sample at its template timeout of 3 s, and a request that takes 4 s
    before = lam.get_function_configuration(FunctionName=SAMPLE)
    ok, body = invoke(lam, {"sleep_s": 4})
    # When it runs / Then it times out, as on Lambda
    assert not ok and body["errorType"] == "Sandbox.Timedout"
    try:
        # When the timeout is raised to 10 s with the RevisionId just read
        updated = lam.update_function_configuration(FunctionName=SAMPLE, Timeout=10, RevisionId=before["RevisionId"])
        assert updated["Timeout"] == 10 and updated["RevisionId"] != before["RevisionId"]
        # Then the very next invocation of the same request succeeds, and reads show the new value
        ok, body = invoke(lam, {"sleep_s": 4})
        assert ok and body == {"ok": True, "slept_s": 4.0}
        assert lam.get_function_configuration(FunctionName=SAMPLE)["Timeout"] == 10
    finally:
        lam.update_function_configuration(FunctionName=SAMPLE, Timeout=3)


def test_a_stale_revision_id_is_refused_and_changes_nothing(lam):
    # Given a RevisionId read before someone else changed the function
    stale = lam.get_function_configuration(FunctionName=SAMPLE)["RevisionId"]
    lam.update_function_configuration(FunctionName=SAMPLE, Description="changed elsewhere")
    current = lam.get_function_configuration(FunctionName=SAMPLE)
    # When a change is made with the stale RevisionId
    with pytest.raises(ClientError) as err:
        lam.update_function_configuration(FunctionName=SAMPLE, Timeout=10, RevisionId=stale)
    # Then Lambda's PreconditionFailedException (412), and the function is as it was
    assert err.value.response["Error"]["Code"] == "PreconditionFailedException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    after = lam.get_function_configuration(FunctionName=SAMPLE)
    assert after["Timeout"] == current["Timeout"] == 3 and after["RevisionId"] == current["RevisionId"]


def test_a_new_memory_size_starts_a_new_environment_with_it(lam, runtime):
    # Given a warm sample function
    assert invoke(lam, {})[0]
    cold_before = runtime.control("status")["functions"][SAMPLE]["cold_starts"]
    try:
        # When its memory is raised through the Lambda API
        lam.update_function_configuration(FunctionName=SAMPLE, MemorySize=256)
        assert invoke(lam, {})[0]
        # Then the next invocation ran in a new environment, which reports 256 MB
        status = runtime.control("status")["functions"][SAMPLE]
        assert status["cold_starts"] == cold_before + 1 and status["memory_mb"] == 256
        logs = runtime.client("logs")
        reports = wait_for(
            lambda: [
                e["message"]
                for e in logs.filter_log_events(logGroupName=f"/aws/lambda/{SAMPLE}", filterPattern="REPORT")["events"]
                if "Memory Size: 256 MB" in e["message"]
            ]
        )
        assert reports
    finally:
        lam.update_function_configuration(FunctionName=SAMPLE, MemorySize=128)


def test_reserved_concurrency_zero_throttles_and_deleting_it_restores_service(lam):
    # Given reserved concurrency 0 (the function is switched off)
    assert (
        lam.put_function_concurrency(FunctionName=SAMPLE, ReservedConcurrentExecutions=0)[
            "ReservedConcurrentExecutions"
        ]
        == 0
    )
    try:
        assert lam.get_function_concurrency(FunctionName=SAMPLE)["ReservedConcurrentExecutions"] == 0
        # When it is invoked / Then Lambda throttles it
        with pytest.raises(lam.exceptions.TooManyRequestsException):
            lam.invoke(FunctionName=SAMPLE, Payload=b"{}")
    finally:
        lam.delete_function_concurrency(FunctionName=SAMPLE)
    # When the reservation is removed / Then it serves again
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=SAMPLE)
    assert invoke(lam, {})[0]


def test_reserved_concurrency_one_runs_invocations_one_at_a_time(lam, runtime):
    # Given the sample limited to one concurrent execution (and a timeout no load can reach: this
    # test is about concurrency, not about the 3 s timeout)
    timeout = lam.get_function_configuration(FunctionName=SAMPLE)["Timeout"]
    lam.update_function_configuration(FunctionName=SAMPLE, Timeout=60)
    lam.put_function_concurrency(FunctionName=SAMPLE, ReservedConcurrentExecutions=1)
    try:
        since = time.time()
        # When three requests arrive at once (asynchronously)
        for n in range(3):
            lam.invoke(
                FunctionName=SAMPLE, InvocationType="Event", Payload=json.dumps({"sleep_s": 0.5, "n": n}).encode()
            )

        def runs() -> list[dict[str, Any]]:
            done = [
                r
                for r in runtime.control("invocations")["invocations"]
                if r["function"] == SAMPLE and r["enqueued_at"] >= since
            ]
            return done if len(done) == 3 else []

        done = sorted(wait_for(runs), key=lambda r: r["started_at"])
        # Then each started only after the previous one ended: never two at once
        assert all(later["started_at"] >= earlier["ended_at"] for earlier, later in itertools.pairwise(done))
        assert all(r["ok"] for r in done), [r["error"] for r in done]
    finally:
        lam.delete_function_concurrency(FunctionName=SAMPLE)
        lam.update_function_configuration(FunctionName=SAMPLE, Timeout=timeout)


def test_event_invoke_config_changes_govern_the_next_async_invocation(lam, runtime):
    # Given the sample's async retries raised from 0 to 1
    lam.put_function_event_invoke_config(FunctionName=SAMPLE, MaximumRetryAttempts=1)
    try:
        assert lam.get_function_event_invoke_config(FunctionName=SAMPLE)["MaximumRetryAttempts"] == 1
        since = time.time()
        # When a failing request is invoked asynchronously
        lam.invoke(FunctionName=SAMPLE, InvocationType="Event", Payload=json.dumps({"fail": True}).encode())

        # Then it is attempted twice (the first try and one retry), no more
        def attempts() -> list[dict[str, Any]]:
            runs = [
                r
                for r in runtime.control("invocations", None)["invocations"]
                if r["function"] == SAMPLE and r["ended_at"] >= since
            ]
            return runs if len(runs) >= 2 else []

        runs = wait_for(attempts)
        assert runtime.idle(timeout=30)
        runs = [
            r
            for r in runtime.control("invocations")["invocations"]
            if r["function"] == SAMPLE and r["ended_at"] >= since
        ]
        assert sorted(r["attempt"] for r in runs) == [0, 1] and not any(r["ok"] for r in runs)
    finally:
        lam.put_function_event_invoke_config(FunctionName=SAMPLE, MaximumRetryAttempts=0)


def test_tags_can_be_removed_and_restored_through_the_api(lam):
    # Given the managed tag / When it is removed / Then ListTags no longer shows it; restoring it brings it back
    arn = lam.get_function_configuration(FunctionName=SAMPLE)["FunctionArn"]
    lam.untag_resource(Resource=arn, TagKeys=["selfheal:managed"])
    try:
        assert "selfheal:managed" not in lam.list_tags(Resource=arn)["Tags"]
    finally:
        lam.tag_resource(Resource=arn, Tags={"selfheal:managed": "true"})
    assert lam.list_tags(Resource=arn)["Tags"]["selfheal:managed"] == "true"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"Timeout": 0}, "InvalidParameterValueException"),
        ({"Timeout": 901}, "InvalidParameterValueException"),
        ({"MemorySize": 10241}, "InvalidParameterValueException"),
        ({"Role": "arn:aws:iam::123456789012:role/admin"}, "InvalidParameterValueException"),
        ({"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}}, "InvalidParameterValueException"),
    ],
)
def test_hostile_or_unappliable_configuration_is_refused_without_a_change(lam, runtime, kwargs, code):
    # Given the sample's configuration, and a client that skips botocore's own checks (a hostile caller)
    import boto3
    from botocore.config import Config

    raw = boto3.client(
        "lambda",
        endpoint_url=runtime.endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(parameter_validation=False),
    )
    before = lam.get_function_configuration(FunctionName=SAMPLE)
    # When an out-of-range or unappliable change is requested
    with pytest.raises(ClientError) as err:
        raw.update_function_configuration(FunctionName=SAMPLE, **kwargs)
    # Then it is refused and nothing changed (not even the RevisionId)
    assert err.value.response["Error"]["Code"] == code
    after = lam.get_function_configuration(FunctionName=SAMPLE)
    assert after["RevisionId"] == before["RevisionId"] and after["Timeout"] == before["Timeout"]


def test_unknown_functions_qualifiers_and_unsupported_operations_are_errors_not_moto_defaults(lam):
    # Given functions that are not in the template, or a version that does not exist locally
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName="no-such-function")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName=SAMPLE, Qualifier="7")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.list_tags(Resource="arn:aws:lambda:us-east-1:123456789012:function:no-such-function")
    # When someone tries an operation the local API does not emulate / Then it says so, and nothing changes
    with pytest.raises(ClientError) as err:
        lam.delete_function(FunctionName=SAMPLE)
    assert err.value.response["Error"]["Code"] == "UnsupportedOperation"
    assert SAMPLE in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


def zipped(files: dict[str, str]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_a_function_created_through_the_api_is_listed_configured_and_runs(lam, runtime):
    # Given a Python function created with CreateFunction (as a user or a test would, outside the template)
    code = zipped(
        {
            "app.py": "import os\ndef handler(event, context):\n"
            "    return {'echo': event, 'memory': os.environ['AWS_LAMBDA_FUNCTION_MEMORY_SIZE']}\n"
        }
    )
    created = lam.create_function(
        FunctionName="orders-api",
        Runtime="python3.12",
        Handler="app.handler",
        Role="arn:aws:iam::123456789012:role/orders",
        Code={"ZipFile": code},
        Timeout=7,
        MemorySize=192,
        Tags={"team": "orders"},
    )
    # Then it is configured as given, untagged for Selfheal, listed, and it runs like the others
    assert (created["Timeout"], created["MemorySize"], created["RevisionId"]) == (7, 192, created["RevisionId"])
    assert lam.list_tags(Resource=created["FunctionArn"])["Tags"] == {"team": "orders"}
    assert "orders-api" in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    ok, body = invoke(lam, {"n": 1}, name="orders-api")
    assert ok and body == {"echo": {"n": 1}, "memory": "192"}
    # And creating it twice is a conflict
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_function(
            FunctionName="orders-api",
            Runtime="python3.12",
            Handler="app.handler",
            Role="arn:aws:iam::123456789012:role/orders",
            Code={"ZipFile": code},
        )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"Code": {"ZipFile": zipped({"../../escape.py": "x = 1\n"})}}, "escapes"),
        ({"Code": {"ZipFile": b"not a zip"}}, "not a zip"),
        ({"Runtime": "nodejs20.x"}, "Python"),
        ({"Handler": "app.handler; rm -rf /"}, "Handler"),
        ({"FunctionName": "../etc"}, "FunctionName"),
    ],
)
def test_hostile_create_function_requests_are_refused(lam, runtime, overrides, expected):
    # Given a CreateFunction with a zip-slip entry, a non-zip, a runtime we cannot run or hostile names
    request = {
        "FunctionName": "hostile-fn",
        "Runtime": "python3.12",
        "Handler": "app.handler",
        "Role": "arn:aws:iam::123456789012:role/x",
        "Code": {"ZipFile": zipped({"app.py": "x = 1\n"})},
        **overrides,
    }
    # Then it is refused, nothing is written outside the state directory and no function appears
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as err:
        lam.create_function(**request)
    assert expected in err.value.response["Error"]["Message"]
    assert not (runtime.state_dir / "escape.py").exists() and not (runtime.state_dir.parent / "escape.py").exists()
    assert "hostile-fn" not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


def test_changes_are_kept_with_who_made_them(runtime, lam):
    # Given changes made above through the API / Then the runtime kept before/after for each, with the caller
    lam.update_function_configuration(FunctionName=SAMPLE, Description="audited")
    changes = runtime.control("status")["lambda_changes"]
    last = [c for c in changes if c["operation"] == "UpdateFunctionConfiguration"][-1]
    assert last["function"] == SAMPLE and last["after"] == {"Description": "audited"} and last["caller"] == "client"
    # And CloudTrail LookupEvents returns them by resource name, newest first, as an investigation reads them
    trail = runtime.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": SAMPLE}], MaxResults=50
    )["Events"]
    assert trail[0]["EventName"] == "UpdateFunctionConfiguration20150331v2" and trail[0]["Username"] == "client"
    assert json.loads(trail[0]["CloudTrailEvent"])["requestParameters"]["description"] == "audited"
    other = runtime.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": "selfheal-dev-qa"}]
    )["Events"]
    assert other == []


def test_a_timeout_is_written_to_the_function_log_like_lambda(lam, runtime):
    # Given a request longer than the timeout / When it times out
    ok, _ = invoke(lam, {"sleep_s": 4})
    assert not ok
    # Then the function's log group has Lambda's "Task timed out" line (what an investigation looks for)
    logs = runtime.client("logs")
    lines = wait_for(
        lambda: [
            e["message"]
            for e in logs.filter_log_events(logGroupName=f"/aws/lambda/{SAMPLE}", filterPattern='"Task timed out"')[
                "events"
            ]
        ]
    )
    assert any("Task timed out after 3.00 seconds" in line for line in lines)


def test_a_timeout_line_names_the_limit_the_invocation_ran_under_not_a_later_one(lam, runtime):
    import threading

    # Given a request that outlives the 3 s timeout, and the timeout raised to 10 s while it runs
    started = time.time()
    done: list[bool] = []
    request = threading.Thread(target=lambda: done.append(invoke(lam, {"sleep_s": 5})[0]))
    request.start()
    time.sleep(1)
    lam.update_function_configuration(FunctionName=SAMPLE, Timeout=10)
    try:
        request.join(30)

        # Then it timed out at its own 3 s, and Lambda's log line says 3 s (an investigation quotes it)
        assert done == [False]
        logs = runtime.client("logs")
        lines = wait_for(
            lambda: [
                e["message"]
                for e in logs.filter_log_events(
                    logGroupName=f"/aws/lambda/{SAMPLE}",
                    filterPattern='"Task timed out"',
                    startTime=int(started * 1000),
                )["events"]
            ]
        )
        assert lines and all("Task timed out after 3.00 seconds" in line for line in lines), lines
    finally:
        lam.update_function_configuration(FunctionName=SAMPLE, Timeout=3)


# ------------------------------------------------------------------ one-time schedules


def at_expression(seconds_from_now: float) -> str:
    when = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return f"at({when.strftime('%Y-%m-%dT%H:%M:%S')})"


def test_one_time_schedule_puts_its_event_on_the_bus_then_deletes_itself(runtime):
    # Given a listener for a probe detail-type on the agents bus
    scheduler = runtime.client("scheduler")
    probes = runtime.listen("schedule-probe", {"detail-type": ["ScheduleProbe"]}, bus="agentops-dev")
    bus_arn = "arn:aws:events:us-east-1:123456789012:event-bus/agentops-dev"
    # When a one-time schedule 2 s ahead targets the bus (as the Manager creates them), plus one far ahead
    common = {"FlexibleTimeWindow": {"Mode": "OFF"}, "ScheduleExpressionTimezone": "UTC"}
    target = {
        "Arn": bus_arn,
        "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
        "Input": json.dumps({"change_id": "chg-1"}),
        "EventBridgeParameters": {"DetailType": "ScheduleProbe", "Source": "agentops.manager"},
    }
    scheduler.create_schedule(
        Name="probe-soon", ScheduleExpression=at_expression(2), ActionAfterCompletion="DELETE", Target=target, **common
    )
    scheduler.create_schedule(
        Name="probe-later",
        ScheduleExpression=at_expression(3600),
        ActionAfterCompletion="DELETE",
        Target={**target, "Input": json.dumps({"change_id": "chg-later"})},
        **common,
    )
    # Then the event arrives once, with the schedule's Input as its detail and the envelope it named
    [event] = wait_for(probes, timeout=30)
    assert event["detail"] == {"change_id": "chg-1"} and event["source"] == "agentops.manager"
    # And the fired schedule is deleted (ActionAfterCompletion=DELETE); the later one waits, untouched
    names = wait_for(
        lambda: (n := {s["Name"] for s in scheduler.list_schedules()["Schedules"]}) and "probe-soon" not in n and n
    )
    assert "probe-later" in names
    fired = runtime.control("status")["one_time_schedules"]
    assert [f["schedule"] for f in fired] == ["default/probe-soon"] and fired[0]["outcome"] == "delivered"
    time.sleep(2.5)
    assert len(probes()) == 1


def test_one_time_schedule_invokes_a_lambda_target_once_and_disabled_ones_never(runtime):
    # Given a schedule to the sample function kept after completion (NONE), and a disabled one
    scheduler = runtime.client("scheduler")
    arn = runtime.client("lambda").get_function_configuration(FunctionName=SAMPLE)["FunctionArn"]
    since = time.time()
    common = {"FlexibleTimeWindow": {"Mode": "OFF"}, "ActionAfterCompletion": "NONE"}
    scheduler.create_schedule(
        Name="invoke-once",
        ScheduleExpression=at_expression(1),
        **common,
        Target={
            "Arn": arn,
            "RoleArn": "arn:aws:iam::123456789012:role/s",
            "Input": json.dumps({"sleep_s": 0, "from": "schedule"}),
        },
    )
    scheduler.create_schedule(
        Name="invoke-disabled",
        ScheduleExpression=at_expression(1),
        State="DISABLED",
        **common,
        Target={"Arn": arn, "RoleArn": "arn:aws:iam::123456789012:role/s", "Input": "{}"},
    )

    def scheduled_runs() -> list[dict[str, Any]]:
        return [
            r
            for r in runtime.control("invocations")["invocations"]
            if r["function"] == SAMPLE and r["ended_at"] >= since and r["rule"] in ("invoke-once", "invoke-disabled")
        ]

    # Then the function ran once with the Input, and the schedule (NONE) stays but does not fire again
    wait_for(scheduled_runs, timeout=30)
    time.sleep(2)  # several clock ticks later
    runs = scheduled_runs()
    assert [r["rule"] for r in runs] == ["invoke-once"] and runs[0]["ok"]
    assert runs[0]["result"] == {"ok": True, "slept_s": 0.0}
    assert {s["Name"] for s in scheduler.list_schedules()["Schedules"]} >= {"invoke-once", "invoke-disabled"}
