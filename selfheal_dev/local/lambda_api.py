"""The Lambda control plane of the local runtime: the template's functions, as the Lambda API shows them.

moto's Lambda backend knows nothing of the functions the runtime runs (they are worker
pools, see functions.py), has no RevisionId and would try to reach Docker to run them, so
the runtime serves these operations itself, from the synthesized template:

  ListFunctions, GetFunction, GetFunctionConfiguration, UpdateFunctionConfiguration,
  CreateFunction (a Python zip, inline or from the emulator's S3: it runs like the others),
  ListTags, TagResource, UntagResource, GetFunctionConcurrency, PutFunctionConcurrency,
  DeleteFunctionConcurrency, Get/Put/Update/DeleteFunctionEventInvokeConfig.

A change made here applies to the next invocation in the worker pools, as on AWS:
- Timeout: read by the pool for every invocation;
- MemorySize, Environment: warm workers of the old configuration are retired, the next
  invocation starts a new one with AWS_LAMBDA_FUNCTION_MEMORY_SIZE and the new variables;
- reserved concurrency: the pool's size (0 throttles the function);
- event invoke config: the retries, maximum age and on-failure queue of asynchronous
  (`--invocation-type Event`) invocations.

UpdateFunctionConfiguration honours `RevisionId` (a stale one gets
PreconditionFailedException, HTTP 412) and gives the function a new RevisionId. Settings the
runtime cannot apply locally (role, runtime, layers, VPC, ...) are refused rather than
stored and ignored. No IAM is evaluated locally: any caller may call these operations.
Every change is kept in `changes` (who, what, before, after) and served as CloudTrail
`LookupEvents` management events (the local trail holds the Lambda API's changes only).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from .assembly import ACCOUNT, REGION, Assembly, Resource
from .functions import FunctionSpec, access_key_for

if TYPE_CHECKING:
    from .platform import FunctionHost

FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
HANDLER = re.compile(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*")
MAX_ZIP_BYTES = 50 * 1024 * 1024  # Lambda's limit for a zip uploaded directly
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
UNRESERVED_MINIMUM = 100  # Lambda keeps this much of the account's concurrency unreserved
ACCOUNT_CONCURRENCY = 1000
TIMEOUT_RANGE = (1, 900)
MEMORY_RANGE = (128, 10240)
RETRY_RANGE = (0, 2)
EVENT_AGE_RANGE = (60, 21600)
DEFAULT_ASYNC_RETRIES = 2
DEFAULT_ASYNC_MAX_AGE_S = 21600
# CloudTrail's names for the Lambda API's write operations.
TRAIL_EVENT_NAMES = {
    "UpdateFunctionConfiguration": "UpdateFunctionConfiguration20150331v2",
    "PutFunctionConcurrency": "PutFunctionConcurrency20171031",
    "DeleteFunctionConcurrency": "DeleteFunctionConcurrency20171031",
    "PutFunctionEventInvokeConfig": "PutFunctionEventInvokeConfig20190925",
    "DeleteFunctionEventInvokeConfig": "DeleteFunctionEventInvokeConfig20190925",
    "TagResource": "TagResource20170331v2",
    "CreateFunction": "CreateFunction20150331",
    "UntagResource": "UntagResource20170331v2",
}
UPDATABLE = {"FunctionName", "RevisionId", "Timeout", "MemorySize", "Description", "Environment"}


class LambdaApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found(message: str) -> LambdaApiError:
    return LambdaApiError(404, "ResourceNotFoundException", message)


def _invalid(message: str) -> LambdaApiError:
    return LambdaApiError(400, "InvalidParameterValueException", message)


def _lambda_time(epoch: float) -> str:
    """LastModified as Lambda writes it: 2026-11-27T11:43:15.123+0000."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _code_digest(spec: FunctionSpec) -> tuple[str, int]:
    """CodeSha256 (base64 of SHA-256, like Lambda) and CodeSize of the function's code asset."""
    digest = hashlib.sha256()
    size = 0
    root = spec.code_dir
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            data = path.read_bytes()
            digest.update(str(path.relative_to(root)).encode() + b"\0" + data)
            size += len(data)
    return base64.b64encode(digest.digest()).decode(), size


def _int_in(body: dict[str, Any], key: str, bounds: tuple[int, int]) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{key} must be an integer")
    low, high = bounds
    if not low <= value <= high:
        raise _invalid(f"{key} must be between {low} and {high}: {value}")
    return value


@dataclass
class LiveFunction:
    """One function's current configuration (the template's, then whatever the API changed)."""

    spec: FunctionSpec
    role: str
    runtime: str
    description: str
    architectures: list[str]
    layers: list[str]
    tracing_mode: str
    logging_config: dict[str, Any]
    ephemeral_storage_mb: int
    tags: dict[str, str]
    code_sha256: str
    code_size: int
    reserved_concurrency: int | None
    event_invoke: dict[str, Any] | None
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_modified: float = field(default_factory=time.time)

    @property
    def arn(self) -> str:
        return self.spec.arn

    def configuration(self) -> dict[str, Any]:
        spec = self.spec
        timeout = spec.timeout_s
        config: dict[str, Any] = {
            "FunctionName": spec.name,
            "FunctionArn": spec.arn,
            "Runtime": self.runtime,
            "Role": self.role,
            "Handler": spec.handler,
            "CodeSize": self.code_size,
            "Description": self.description,
            "Timeout": int(timeout) if float(timeout).is_integer() else timeout,
            "MemorySize": spec.memory_mb,
            "LastModified": _lambda_time(self.last_modified),
            "CodeSha256": self.code_sha256,
            "Version": "$LATEST",
            "Environment": {"Variables": dict(spec.environment)},
            "TracingConfig": {"Mode": self.tracing_mode},
            "RevisionId": self.revision_id,
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": list(self.architectures),
            "EphemeralStorage": {"Size": self.ephemeral_storage_mb},
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": dict(self.logging_config),
        }
        if self.layers:
            config["Layers"] = [{"Arn": arn, "CodeSize": 0} for arn in self.layers]
        if spec.tenant_isolation:
            config["TenancyConfig"] = {"TenantIsolationMode": spec.tenant_isolation}
        return config


Route = tuple[str, re.Pattern[str], str]
ROUTES: list[Route] = [
    ("GET", re.compile(r"^/2015-03-31/functions/?$"), "ListFunctions"),
    ("POST", re.compile(r"^/2015-03-31/functions/?$"), "CreateFunction"),
    ("GET", re.compile(r"^/2015-03-31/functions/([^/]+)/configuration$"), "GetFunctionConfiguration"),
    ("PUT", re.compile(r"^/2015-03-31/functions/([^/]+)/configuration$"), "UpdateFunctionConfiguration"),
    ("GET", re.compile(r"^/2015-03-31/functions/([^/]+)$"), "GetFunction"),
    ("GET", re.compile(r"^/2017-03-31/tags/(.+)$"), "ListTags"),
    ("POST", re.compile(r"^/2017-03-31/tags/(.+)$"), "TagResource"),
    ("DELETE", re.compile(r"^/2017-03-31/tags/(.+)$"), "UntagResource"),
    ("GET", re.compile(r"^/2019-09-30/functions/([^/]+)/concurrency$"), "GetFunctionConcurrency"),
    ("PUT", re.compile(r"^/2017-10-31/functions/([^/]+)/concurrency$"), "PutFunctionConcurrency"),
    ("DELETE", re.compile(r"^/2017-10-31/functions/([^/]+)/concurrency$"), "DeleteFunctionConcurrency"),
    ("GET", re.compile(r"^/2019-09-25/functions/([^/]+)/event-invoke-config$"), "GetFunctionEventInvokeConfig"),
    ("PUT", re.compile(r"^/2019-09-25/functions/([^/]+)/event-invoke-config$"), "PutFunctionEventInvokeConfig"),
    ("POST", re.compile(r"^/2019-09-25/functions/([^/]+)/event-invoke-config$"), "UpdateFunctionEventInvokeConfig"),
    ("DELETE", re.compile(r"^/2019-09-25/functions/([^/]+)/event-invoke-config$"), "DeleteFunctionEventInvokeConfig"),
]
# Any other Lambda REST path (create/delete functions, aliases, versions, URLs, ...).
LAMBDA_PATH = re.compile(r"^/20\d\d-\d\d-\d\d/(functions|tags|layers|event-source-mappings|account-settings)")


class LambdaControlPlane:
    def __init__(self, host: FunctionHost) -> None:
        self.host = host
        self.functions: dict[str, LiveFunction] = {}
        self.changes: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ set-up
    def load(self, assembly: Assembly, specs: dict[str, FunctionSpec]) -> None:
        resources = {r.physical_id: r for r in assembly.of_type("AWS::Lambda::Function")}
        invoke_configs = {
            str(r.properties.get("FunctionName", "")).split(":")[-1]: r
            for r in assembly.of_type("AWS::Lambda::EventInvokeConfig")
        }
        for name, spec in specs.items():
            res = resources.get(name)
            self.functions[name] = self._live(spec, res, invoke_configs.get(name))

    def _live(self, spec: FunctionSpec, res: Resource | None, invoke: Resource | None) -> LiveFunction:
        p = res.properties if res is not None else {}
        tags = {str(t["Key"]): str(t["Value"]) for t in p.get("Tags", []) if isinstance(t, dict) and "Key" in t}
        if res is not None:  # what CloudFormation adds to every resource it creates
            tags.setdefault("aws:cloudformation:stack-name", res.stack)
            tags.setdefault("aws:cloudformation:logical-id", res.logical_id)
        sha, size = _code_digest(spec)
        event_invoke = None
        if invoke is not None:
            ip = invoke.properties
            event_invoke = {
                "MaximumRetryAttempts": int(ip.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES)),
                "MaximumEventAgeInSeconds": int(ip.get("MaximumEventAgeInSeconds", DEFAULT_ASYNC_MAX_AGE_S)),
                "DestinationConfig": {
                    "OnSuccess": dict((ip.get("DestinationConfig") or {}).get("OnSuccess") or {}),
                    "OnFailure": dict((ip.get("DestinationConfig") or {}).get("OnFailure") or {}),
                },
                "LastModified": time.time(),
            }
            if "MaximumRetryAttempts" not in ip:
                del event_invoke["MaximumRetryAttempts"]
            if "MaximumEventAgeInSeconds" not in ip:
                del event_invoke["MaximumEventAgeInSeconds"]
        reserved = p.get("ReservedConcurrentExecutions")
        return LiveFunction(
            spec=spec,
            role=str(p.get("Role", f"arn:aws:iam::{ACCOUNT}:role/{spec.name}")),
            runtime=spec.runtime,
            description=str(p.get("Description", "")),
            architectures=list(p.get("Architectures") or ["x86_64"]),
            layers=[str(arn) for arn in p.get("Layers", [])],
            tracing_mode=str((p.get("TracingConfig") or {}).get("Mode", "PassThrough")),
            logging_config={"LogFormat": "Text", **(p.get("LoggingConfig") or {}), "LogGroup": spec.log_group},
            ephemeral_storage_mb=int((p.get("EphemeralStorage") or {}).get("Size", 512)),
            tags=tags,
            code_sha256=sha,
            code_size=size,
            reserved_concurrency=int(reserved) if reserved is not None else None,
            event_invoke=event_invoke,
        )

    # ------------------------------------------------------------------ queries the runtime uses
    def async_policy(self, name: str) -> tuple[int, float, str | None]:
        """Retries, maximum event age and on-failure queue of an asynchronous invocation."""
        live = self.functions.get(name)
        cfg = (live.event_invoke if live else None) or {}
        destination = ((cfg.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        on_failure = destination if isinstance(destination, str) and ":sqs:" in destination else None
        return (
            int(cfg.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES)),
            float(cfg.get("MaximumEventAgeInSeconds", DEFAULT_ASYNC_MAX_AGE_S)),
            on_failure,
        )

    def pool_size(self, name: str, default: int) -> int:
        live = self.functions.get(name)
        if live is None or live.reserved_concurrency is None:
            return default
        return live.reserved_concurrency

    # ------------------------------------------------------------------ HTTP
    @staticmethod
    def route(method: str, path: str) -> tuple[str, str | None] | None:
        """The operation for a Lambda REST request, or None when it is not one."""
        for verb, pattern, operation in ROUTES:
            m = pattern.match(path)
            if m and verb == method:
                return operation, (unquote(m.group(1)) if m.groups() else None)
        if LAMBDA_PATH.match(path) and not path.endswith("/invocations"):
            return "Unsupported", None
        return None

    def handle(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        operation: str,
        target: str | None,
        caller: str,
    ) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            try:
                body = json.loads(raw) if raw else {}
            except ValueError as exc:
                raise _invalid(f"request body is not JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise _invalid("request body must be a JSON object")
            status, payload = self._dispatch(operation, target, body, query, caller)
        except LambdaApiError as exc:
            return self._error(start_response, exc)
        data = b"" if payload is None else json.dumps(payload, default=str).encode()
        reason = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content"}[status]
        start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    @staticmethod
    def _error(start_response: Callable[..., Any], exc: LambdaApiError) -> list[bytes]:
        body = json.dumps({"Type": "User", "message": exc.message, "Message": exc.message}).encode()
        reason = {
            400: "Bad Request",
            404: "Not Found",
            409: "Conflict",
            412: "Precondition Failed",
            429: "Too Many Requests",
            501: "Not Implemented",
        }.get(exc.status, "Error")
        start_response(
            f"{exc.status} {reason}",
            [("Content-Type", "application/json"), ("X-Amzn-ErrorType", exc.code), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _dispatch(
        self, operation: str, target: str | None, body: dict[str, Any], query: dict[str, list[str]], caller: str
    ) -> tuple[int, Any]:
        if operation == "Unsupported":
            raise LambdaApiError(
                501,
                "UnsupportedOperation",
                "the local runtime's Lambda API serves the template's functions only "
                "(list/get, configuration, tags, concurrency, event invoke config, invoke)",
            )
        if operation == "ListFunctions":
            return 200, self._list(query)
        if operation == "CreateFunction":
            return 201, self._create(body, caller)
        if operation in ("ListTags", "TagResource", "UntagResource"):
            live = self._function(target or "", allow_qualifier=False)
            if operation == "ListTags":
                return 200, {"Tags": dict(live.tags)}
            if operation == "TagResource":
                self._tag(live, body, caller)
            else:
                self._untag(live, query.get("tagKeys", []), caller)
            return 204, None
        qualifiers = query.get("Qualifier") or []
        qualifier = qualifiers[0] if qualifiers else None
        live = self._function(target or "", qualifier=qualifier)
        if operation == "GetFunctionConfiguration":
            return 200, live.configuration()
        if operation == "GetFunction":
            out: dict[str, Any] = {
                "Configuration": live.configuration(),
                "Code": {"RepositoryType": "S3", "Location": live.spec.code_dir.as_uri()},
                "Tags": dict(live.tags),
            }
            if live.reserved_concurrency is not None:
                out["Concurrency"] = {"ReservedConcurrentExecutions": live.reserved_concurrency}
            return 200, out
        if operation == "UpdateFunctionConfiguration":
            return 200, self._update_configuration(live, body, caller)
        if operation == "GetFunctionConcurrency":
            if live.reserved_concurrency is None:
                return 200, {}
            return 200, {"ReservedConcurrentExecutions": live.reserved_concurrency}
        if operation == "PutFunctionConcurrency":
            return 200, self._put_concurrency(live, body, caller)
        if operation == "DeleteFunctionConcurrency":
            self._set_concurrency(live, None, caller, "DeleteFunctionConcurrency")
            return 204, None
        if operation == "GetFunctionEventInvokeConfig":
            return 200, self._event_invoke_view(live)
        if operation in ("PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig"):
            return 200, self._put_event_invoke(live, body, caller, merge=operation.startswith("Update"))
        if operation == "DeleteFunctionEventInvokeConfig":
            self._event_invoke_view(live)  # 404 when there is none, like Lambda
            self._record(caller, operation, live, {"EventInvokeConfig": live.event_invoke}, {"EventInvokeConfig": None})
            live.event_invoke = None
            return 204, None
        raise LambdaApiError(501, "UnsupportedOperation", operation)

    # ------------------------------------------------------------------ operations
    def _function(self, identifier: str, *, qualifier: str | None = None, allow_qualifier: bool = True) -> LiveFunction:
        name = identifier
        if identifier.startswith("arn:"):
            parts = identifier.split(":")
            if len(parts) < 7 or parts[2] != "lambda" or parts[5] != "function":
                raise _invalid(f"not a function ARN: {identifier}")
            name = parts[6]
            if len(parts) > 7:
                qualifier = parts[7]
        elif ":function:" in identifier:  # 123456789012:function:name[:qualifier]
            rest = identifier.split(":function:", 1)[1].split(":")
            name, qualifier = rest[0], (rest[1] if len(rest) > 1 else qualifier)
        elif ":" in identifier:  # name:qualifier
            name, qualifier = identifier.split(":", 1)
        live = self.functions.get(name)
        if live is None:
            raise _not_found(f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
        if qualifier not in (None, "", "$LATEST") and allow_qualifier:
            raise _not_found(f"Function not found: {live.arn}:{qualifier} (the local runtime runs $LATEST only)")
        return live

    def _create(self, body: dict[str, Any], caller: str) -> dict[str, Any]:
        """A function created through the API: unpacked under the state directory, run by a new pool."""
        name = body.get("FunctionName")
        if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
            raise _invalid("FunctionName must be 1 to 64 letters, digits, '-' or '_'")
        runtime = body.get("Runtime")
        if not isinstance(runtime, str) or not runtime.startswith("python3"):
            raise _invalid("the local runtime runs Python functions only (Runtime python3.x)")
        if body.get("PackageType", "Zip") != "Zip" or body.get("Layers") or body.get("VpcConfig"):
            raise _invalid("the local runtime cannot apply container images, layers or VPC settings")
        handler = body.get("Handler")
        if not isinstance(handler, str) or not HANDLER.fullmatch(handler):
            raise _invalid("Handler must look like module.function")
        role = body.get("Role")
        if not isinstance(role, str) or not role.startswith("arn:"):
            raise _invalid("Role must be a role ARN")
        timeout = _int_in(body, "Timeout", TIMEOUT_RANGE) if "Timeout" in body else 3
        memory = _int_in(body, "MemorySize", MEMORY_RANGE) if "MemorySize" in body else 128
        variables = (
            ((body.get("Environment") or {}).get("Variables") or {})
            if isinstance(body.get("Environment"), dict)
            else {}
        )
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in variables.items()):
            raise _invalid("Environment.Variables must map strings to strings")
        tags = body.get("Tags") or {}
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise _invalid("Tags must map strings to strings")
        archive = self._code_archive(body.get("Code"))
        with self._lock:
            if name in self.functions:
                raise LambdaApiError(409, "ResourceConflictException", f"Function already exist: {name}")
            code_dir = self.host.state_dir / "functions" / name
            _unzip(archive, code_dir)
            spec = FunctionSpec(
                name=name,
                arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
                logical_key=f"api/{name}",
                handler=handler,
                timeout_s=float(timeout),
                memory_mb=memory,
                environment=dict(variables),
                code_dir=code_dir,
                layer_dirs=[],
                log_group=f"/aws/lambda/{name}",
                access_key=access_key_for(name),
                runtime=runtime,
            )
            sha, size = _code_digest(spec)
            live = LiveFunction(
                spec=spec,
                role=role,
                runtime=runtime,
                description=str(body.get("Description", ""))[:256],
                architectures=list(body.get("Architectures") or ["x86_64"]),
                layers=[],
                tracing_mode=str((body.get("TracingConfig") or {}).get("Mode", "PassThrough")),
                logging_config={"LogFormat": "Text", "LogGroup": spec.log_group},
                ephemeral_storage_mb=512,
                tags=dict(tags),
                code_sha256=sha,
                code_size=size,
                reserved_concurrency=None,
                event_invoke=None,
            )
            self.functions[name] = live
            self._record(caller, "CreateFunction", live, {}, {"Timeout": timeout, "MemorySize": memory})
        self.host.add_function(spec)
        return live.configuration()

    def _code_archive(self, code: Any) -> bytes:
        if not isinstance(code, dict):
            raise _invalid("Code must give ZipFile, or S3Bucket and S3Key")
        if code.get("ZipFile"):
            try:
                data = base64.b64decode(code["ZipFile"], validate=True)
            except (ValueError, TypeError) as exc:
                raise _invalid("Code.ZipFile is not base64") from exc
        elif code.get("S3Bucket") and code.get("S3Key"):
            try:
                data = bytes(self.host.backend("s3").get_object(code["S3Bucket"], code["S3Key"]).value)
            except Exception as exc:
                raise _invalid(f"cannot read s3://{code['S3Bucket']}/{code['S3Key']}: {exc}") from exc
        else:
            raise _invalid("Code must give ZipFile, or S3Bucket and S3Key")
        if len(data) > MAX_ZIP_BYTES:
            raise LambdaApiError(413, "RequestEntityTooLargeException", "the zip is larger than 50 MB")
        return data

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        names = sorted(self.functions)
        try:
            start = int((query.get("Marker") or ["0"])[0])
            limit = int((query.get("MaxItems") or ["50"])[0])
        except ValueError as exc:
            raise _invalid(f"invalid Marker or MaxItems: {exc}") from exc
        limit = max(1, min(limit, 50))
        start = max(0, start)
        page = names[start : start + limit]
        out: dict[str, Any] = {"Functions": [self.functions[n].configuration() for n in page]}
        if start + limit < len(names):
            out["NextMarker"] = str(start + limit)
        return out

    def _update_configuration(self, live: LiveFunction, body: dict[str, Any], caller: str) -> dict[str, Any]:
        unsupported = sorted(k for k in body if k not in UPDATABLE)
        if unsupported:
            raise _invalid(
                f"the local runtime cannot apply {', '.join(unsupported)}; it applies Timeout, MemorySize, "
                "Environment and Description"
            )
        changes: dict[str, Any] = {}
        if "Timeout" in body:
            changes["Timeout"] = _int_in(body, "Timeout", TIMEOUT_RANGE)
        if "MemorySize" in body:
            changes["MemorySize"] = _int_in(body, "MemorySize", MEMORY_RANGE)
        if "Description" in body:
            if not isinstance(body["Description"], str) or len(body["Description"]) > 256:
                raise _invalid("Description must be a string of at most 256 characters")
            changes["Description"] = body["Description"]
        if "Environment" in body:
            variables = (
                (body["Environment"] or {}).get("Variables", {}) if isinstance(body["Environment"], dict) else None
            )
            if not isinstance(variables, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
            ):
                raise _invalid("Environment.Variables must map strings to strings")
            if any(k.startswith("AWS_") for k in variables):
                raise _invalid("Lambda reserves environment variables starting with AWS_")
            changes["Environment"] = dict(variables)
        with self._lock:  # check-and-set: two updates with the same RevisionId cannot both pass
            expected = body.get("RevisionId")
            if expected is not None and expected != live.revision_id:
                raise LambdaApiError(
                    412,
                    "PreconditionFailedException",
                    "The Revision Id provided does not match the latest Revision Id. "
                    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
                )
            before = {
                "Timeout": live.configuration()["Timeout"],
                "MemorySize": live.spec.memory_mb,
                "Description": live.description,
                "Environment": dict(live.spec.environment),
            }
            spec = live.spec
            if "Timeout" in changes:
                spec.timeout_s = float(changes["Timeout"])
            if "MemorySize" in changes:
                spec.memory_mb = changes["MemorySize"]
            if "Description" in changes:
                live.description = changes["Description"]
            if "Environment" in changes:
                spec.environment = changes["Environment"]
            live.revision_id = str(uuid.uuid4())
            live.last_modified = time.time()
            self._record(caller, "UpdateFunctionConfiguration", live, {k: before[k] for k in changes}, changes)
        pool = self.host.pools.get(spec.name)
        if pool is not None and ({"MemorySize", "Environment"} & changes.keys()):
            pool.reconfigured()
        return live.configuration()

    def _put_concurrency(self, live: LiveFunction, body: dict[str, Any], caller: str) -> dict[str, Any]:
        value = body.get("ReservedConcurrentExecutions")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _invalid("ReservedConcurrentExecutions must be an integer >= 0")
        reserved_elsewhere = sum(f.reserved_concurrency or 0 for n, f in self.functions.items() if n != live.spec.name)
        if reserved_elsewhere + value > ACCOUNT_CONCURRENCY - UNRESERVED_MINIMUM:
            raise _invalid(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{UNRESERVED_MINIMUM}]."
            )
        self._set_concurrency(live, value, caller, "PutFunctionConcurrency")
        return {"ReservedConcurrentExecutions": value}

    def _set_concurrency(self, live: LiveFunction, value: int | None, caller: str, operation: str) -> None:
        with self._lock:
            before = live.reserved_concurrency
            live.reserved_concurrency = value
            self._record(
                caller,
                operation,
                live,
                {"ReservedConcurrentExecutions": before},
                {"ReservedConcurrentExecutions": value},
            )
        pool = self.host.pools.get(live.spec.name)
        if pool is not None:
            pool.set_concurrency(self.pool_size(live.spec.name, self.host.default_concurrency))

    def _event_invoke_view(self, live: LiveFunction) -> dict[str, Any]:
        if live.event_invoke is None:
            raise _not_found(f"The function {live.arn} doesn't have an EventInvokeConfig")
        return {"FunctionArn": f"{live.arn}:$LATEST", **live.event_invoke}

    def _put_event_invoke(
        self, live: LiveFunction, body: dict[str, Any], caller: str, *, merge: bool
    ) -> dict[str, Any]:
        if body.get("Qualifier") not in (None, "", "$LATEST"):
            raise _not_found(f"{live.arn}:{body['Qualifier']} (the local runtime runs $LATEST only)")
        base = dict(live.event_invoke or {}) if merge else {}
        if merge and live.event_invoke is None:
            raise _not_found(f"The function {live.arn} doesn't have an EventInvokeConfig")
        if "MaximumRetryAttempts" in body:
            base["MaximumRetryAttempts"] = _int_in(body, "MaximumRetryAttempts", RETRY_RANGE)
        if "MaximumEventAgeInSeconds" in body:
            base["MaximumEventAgeInSeconds"] = _int_in(body, "MaximumEventAgeInSeconds", EVENT_AGE_RANGE)
        if "DestinationConfig" in body:
            dest = body["DestinationConfig"]
            if not isinstance(dest, dict):
                raise _invalid("DestinationConfig must be an object")
            base["DestinationConfig"] = {
                "OnSuccess": dict(dest.get("OnSuccess") or {}),
                "OnFailure": dict(dest.get("OnFailure") or {}),
            }
        base.setdefault("DestinationConfig", {"OnSuccess": {}, "OnFailure": {}})
        base["LastModified"] = time.time()
        with self._lock:
            self._record(
                caller,
                "PutFunctionEventInvokeConfig",
                live,
                {"EventInvokeConfig": live.event_invoke},
                {"EventInvokeConfig": base},
            )
            live.event_invoke = base
        return self._event_invoke_view(live)

    def _tag(self, live: LiveFunction, body: dict[str, Any], caller: str) -> None:
        tags = body.get("Tags")
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise _invalid("Tags must map strings to strings")
        if any(k.lower().startswith("aws:") for k in tags):
            raise _invalid("tag keys starting with aws: are reserved")
        with self._lock:
            before = {k: live.tags.get(k) for k in tags}
            live.tags.update(tags)
            self._record(caller, "TagResource", live, {"Tags": before}, {"Tags": dict(tags)})

    def _untag(self, live: LiveFunction, keys: list[str], caller: str) -> None:
        if any(k.lower().startswith("aws:") for k in keys):
            raise _invalid("tag keys starting with aws: are reserved")
        with self._lock:
            before = {k: live.tags.get(k) for k in keys}
            for key in keys:
                live.tags.pop(key, None)
            self._record(caller, "UntagResource", live, {"Tags": before}, {"Tags": dict.fromkeys(keys)})

    # ------------------------------------------------------------------ CloudTrail
    def lookup_events(self, body: dict[str, Any]) -> dict[str, Any]:
        """CloudTrail LookupEvents over the recorded changes (newest first, as CloudTrail returns them)."""
        attributes = body.get("LookupAttributes") or []
        if not isinstance(attributes, list) or len(attributes) > 1 or not all(isinstance(a, dict) for a in attributes):
            raise _invalid("LookupAttributes takes at most one attribute")

        def number(key: str, default: float) -> float:
            value = body.get(key)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default

        start, end = number("StartTime", 0.0), number("EndTime", time.time() + 1)
        limit = int(number("MaxResults", 50))
        if not 1 <= limit <= 50:
            raise _invalid("MaxResults must be between 1 and 50")
        matching = []
        for change in reversed(self.changes):
            if not start <= change["epoch"] <= end:
                continue
            event_name = TRAIL_EVENT_NAMES.get(change["operation"], change["operation"])
            if attributes:
                key, value = attributes[0].get("AttributeKey"), attributes[0].get("AttributeValue")
                if key == "ResourceName" and value not in (change["function"], change["function_arn"]):
                    continue
                if key == "EventName" and value != event_name:
                    continue
                if key == "Username" and value != change["caller"]:
                    continue
                if key not in ("ResourceName", "EventName", "Username"):
                    continue
            resources = [{"ResourceType": "AWS::Lambda::Function", "ResourceName": change["function"]}]
            record = {
                "eventVersion": "1.08",
                "eventTime": change["time"],
                "eventSource": "lambda.amazonaws.com",
                "eventName": event_name,
                "awsRegion": REGION,
                "userIdentity": {"type": "AssumedRole", "principalId": change["caller"]},
                "requestParameters": {"functionName": change["function"], **_jsonable(change["after"])},
                "responseElements": {"revisionId": change["revision_id"]},
                "eventID": change["event_id"],
                "readOnly": False,
                "eventType": "AwsApiCall",
                "managementEvent": True,
                "recipientAccountId": ACCOUNT,
            }
            matching.append(
                {
                    "EventId": change["event_id"],
                    "EventName": event_name,
                    "ReadOnly": "false",
                    "EventTime": change["epoch"],
                    "EventSource": "lambda.amazonaws.com",
                    "Username": change["caller"],
                    "Resources": resources,
                    "CloudTrailEvent": json.dumps(record, default=str),
                }
            )
            if len(matching) >= limit:
                break
        return {"Events": matching}

    def _record(
        self, caller: str, operation: str, live: LiveFunction, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        when = time.time()
        self.changes.append(
            {
                "time": datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds"),
                "epoch": when,
                "event_id": str(uuid.uuid4()),
                "caller": caller,
                "operation": operation,
                "function": live.spec.name,
                "function_arn": live.arn,
                "before": before,
                "after": after,
                "revision_id": live.revision_id,
            }
        )
        summary = ", ".join(f"{k} {before.get(k)!r} -> {v!r}" for k, v in after.items() if k != "EventInvokeConfig")
        self.host.log_platform(f"{operation} {live.spec.name} by {caller}" + (f": {summary}" if summary else ""))


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """requestParameters keys in CloudTrail's camelCase (timeout, memorySize, ...)."""
    return {k[:1].lower() + k[1:]: v for k, v in value.items()}


def _unzip(data: bytes, target: Path) -> None:
    """Unpack a function zip, refusing entries that would land outside `target` or blow up in size."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise _invalid("Code.ZipFile is not a zip archive") from exc
    root = target.resolve()
    total = 0
    members = archive.infolist()
    for info in members:
        destination = (root / info.filename).resolve()
        if destination != root and root not in destination.parents:
            raise _invalid(f"zip entry escapes the function directory: {info.filename!r}")
        total += info.file_size
    if total > MAX_UNZIPPED_BYTES:
        raise LambdaApiError(413, "RequestEntityTooLargeException", "unzipped code is larger than 250 MB")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for info in members:
        if info.is_dir():
            continue
        destination = root / info.filename
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(archive.read(info))
