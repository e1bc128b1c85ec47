"""Where the operator verbs talk to, and with which credentials.

`connect()` decides: `--endpoint-url`, else a running `selfheal local up` of this project,
else the default AWS credential chain. Everything goes through one boto3 session held by the
`Target`; nothing is written to `os.environ` (child processes, such as the demo's function
workers, must not inherit an operator's endpoint). Resource names come from the stacks'
outputs (the local runtime reports them in its status), falling back to the naming
convention for `--env`.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from selfheal_core import catalog as names

# Any key works locally; this one names the operator in the runtime's caller log.
LOCAL_CLIENT_KEY = "ASIALOCALOPERATOR00"
LOCAL_CLIENT_SECRET = "selfheal-local"  # noqa: S105 - the local emulator accepts any secret


class OperatorError(RuntimeError):
    """A problem the operator can fix; the message says how."""


class UsageError(OperatorError):
    """The command line asks for something that cannot be done (exit 2, as argparse's own errors)."""


class EndpointSession(boto3.Session):
    """A boto3 session whose clients and resources default to one endpoint URL (LocalStack,
    the local runtime), the way AWS_ENDPOINT_URL would, without touching the environment."""

    def __init__(self, *, endpoint_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint_url = endpoint_url

    def client(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().client(*args, **kwargs)

    def resource(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().resource(*args, **kwargs)


@dataclass
class Target:
    env: str
    region: str
    endpoint_url: str | None
    local: bool
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    session: boto3.Session | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = EndpointSession(endpoint_url=self.endpoint_url, region_name=self.region)

    def boto(self) -> boto3.Session:
        assert self.session is not None  # set in __post_init__
        return self.session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.boto().client(service, region_name=self.region)
        return self._clients[service]

    def use_for_layer(self) -> None:
        """The layer's stores (selfheal_core.aws) build clients from boto3's default session:
        make it this target's, so IncidentStore & co. read the same account and endpoint."""
        from selfheal_core import aws as core_aws

        boto3.DEFAULT_SESSION = self.boto()
        core_aws.reset_clients()

    def output(self, key: str) -> Any:
        for outputs in self.outputs.values():
            if key in outputs:
                return outputs[key]
        return None

    # ------------------------------------------------------------------ names
    @property
    def bus(self) -> str:
        return self.output("EventBusName") or names.bus_name(self.env)

    @property
    def decisions_table(self) -> str:
        return self.output("DecisionsTableName") or names.decisions_table_name(self.env)

    @property
    def monitoring_table(self) -> str:
        return self.output("MonitoringTableName") or names.monitoring_table_name(self.env)

    @property
    def alerts_topic_arn(self) -> str | None:
        return self.output("AlertsTopicArn")

    def function(self, agent: str) -> str:
        return self.output(f"{agent.title()}FunctionName") or names.function_name(self.env, agent)

    def describe(self) -> dict[str, Any]:
        return {"env": self.env, "region": self.region, "endpoint_url": self.endpoint_url, "local": self.local}


def connect(
    *,
    endpoint_url: str | None,
    env: str,
    region: str | None,
    state_dir: Path | None = None,
    session: boto3.Session | None = None,
) -> Target:
    """A `Target` for `env`. Give `session` to use your own credentials; by default the
    standard chain (locally: any configured credentials, else a placeholder key)."""
    region = region or (session.region_name if session else None) or _default_region()
    local_status: dict[str, Any] | None = None
    if endpoint_url is None:
        running = find_running(state_dir)
        if running:
            endpoint_url = running["endpoint"]
    if endpoint_url:
        try:
            local_status = control(endpoint_url, "status", timeout=5)
        except (urllib.error.URLError, OSError, ValueError):  # any other endpoint (LocalStack, a proxy...) is fine too
            local_status = None
        region = "us-east-1" if local_status else region
    if session is None:
        session = EndpointSession(endpoint_url=endpoint_url, region_name=region)
        if endpoint_url and session.get_credentials() is None:
            # Local emulators accept any credentials; give boto3 some when none are configured.
            session = EndpointSession(
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=LOCAL_CLIENT_KEY,
                aws_secret_access_key=LOCAL_CLIENT_SECRET,
            )
    target = Target(env=env, region=region, endpoint_url=endpoint_url, local=local_status is not None, session=session)
    target.outputs = local_status.get("outputs", {}) if local_status else _cloudformation_outputs(target)
    target.use_for_layer()
    return target


def _default_region() -> str:
    return os.environ.get("AWS_REGION") or boto3.Session().region_name or "us-east-1"


def _cloudformation_outputs(target: Target) -> dict[str, dict[str, Any]]:
    from botocore.exceptions import BotoCoreError, ClientError

    outputs: dict[str, dict[str, Any]] = {}
    try:
        cfn = target.client("cloudformation")
        for stack in names.stack_names(target.env).values():
            try:
                described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
            except ClientError:  # a stack that is not deployed has no outputs
                continue
            outputs[stack] = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    except BotoCoreError:  # no credentials yet: the naming convention still works
        pass
    return outputs


# ============================================================================ the local runtime, as a client


def project_root(start: Path | None = None) -> Path:
    """Nearest directory holding cdk.json (the CDK app), else the current directory."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "cdk.json").exists():
            return candidate
    return here


def default_state_dir() -> Path:
    return Path(os.environ.get("SELFHEAL_STATE_DIR") or project_root() / ".selfheal")


def control(endpoint: str, route: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    """Call a /_selfheal/ control route of a running local runtime."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - http(s) endpoint of the local runtime
        f"{endpoint.rstrip('/')}/_selfheal/{route}",
        data=data,
        method="POST" if data is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - local endpoint only
        return json.loads(resp.read() or b"null")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; treat it as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def find_running(state_dir: Path | None = None) -> dict[str, Any] | None:
    """The runtime started from this project, if it is up and answering."""
    state_dir = state_dir or default_state_dir()
    path = state_dir / "runtime.json"
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError:
        return None
    if not pid_alive(int(state.get("pid", 0))):
        return None
    try:
        control(state["endpoint"], "status", timeout=3)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return dict(state)


def local_control(target: Target, route: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    if not target.local or not target.endpoint_url:
        raise OperatorError(f"'{route}' needs the local runtime (selfheal local up)")
    return control(target.endpoint_url, route, body, timeout=timeout)


def wait_idle(target: Target, timeout: float = 60.0, quiet: float = 1.0) -> bool:
    return bool(local_control(target, "idle", {"timeout": timeout, "quiet": quiet}, timeout=timeout + 10).get("idle"))


def local_invocations(target: Target, since: float = 0.0) -> list[dict[str, Any]]:
    return list(local_control(target, f"invocations?since={since}").get("invocations", []))


def api_calls(target: Target) -> dict[str, Any]:
    return dict(local_control(target, "api-calls"))
