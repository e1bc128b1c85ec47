"""The synthesized cloud assembly, read the way CloudFormation would deploy it.

`synthesize()` runs the CDK app (bundling skipped) into a directory; `Assembly.load()` reads
manifest.json, orders the stacks by dependency and resolves every intrinsic function
(Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::If, Fn::ImportValue, pseudo
parameters) against deterministic physical names, so the local runtime knows the exact table
names, ARNs, handler strings and environments `cdk deploy` would create.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
DEFAULT_APP = "stacks.app_builder:build_app"


class AssemblyError(RuntimeError):
    pass


# ------------------------------------------------------------------------------ synthesis


def synthesize(outdir: Path, *, app: str = DEFAULT_APP, context: dict[str, str] | None = None) -> Path:
    """Synthesize every stack into `outdir` in a child process (jsii/node stay out of the runtime)."""
    outdir = Path(outdir).resolve()
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": os.environ.get(
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20"
        ),
    }
    cmd = [sys.executable, "-m", "selfheal_dev.local.synth", str(outdir), "--app", app]
    for key, value in (context or {}).items():
        cmd += ["-c", f"{key}={value}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise AssemblyError(f"cdk synth failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return outdir


# ------------------------------------------------------------------------------ model


@dataclass
class Resource:
    stack: str
    logical_id: str
    type: str
    properties: dict[str, Any]  # resolved
    metadata: dict[str, Any]
    physical_id: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.stack}/{self.logical_id}"


@dataclass
class Stack:
    name: str
    template: dict[str, Any]
    dependencies: list[str]
    outputs: dict[str, Any] = field(default_factory=dict)


def _short_hash(*parts: str, length: int = 12) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length].upper()


def generated_name(stack: str, logical_id: str, max_len: int = 64, lower: bool = False) -> str:
    """CloudFormation-style `<stack>-<logical>-<suffix>` name (deterministic here)."""
    suffix = _short_hash(stack, logical_id)
    base = f"{stack}-{logical_id}"[: max_len - len(suffix) - 1]
    name = f"{base}-{suffix}"
    return name.lower() if lower else name


def arn(service: str, resource: str, *, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{account}:{resource}"


def _name_and_attrs(
    stack: str, logical_id: str, rtype: str, props: dict[str, Any], endpoint: str = "http://127.0.0.1:4566"
) -> tuple[str, dict[str, str]]:
    """Physical id (what Ref returns) and the attributes Fn::GetAtt may ask for."""
    p = props
    if rtype == "AWS::DynamoDB::Table" or rtype == "AWS::DynamoDB::GlobalTable":
        name = p.get("TableName") or generated_name(stack, logical_id, 255)
        a = arn("dynamodb", f"table/{name}")
        return name, {"Arn": a, "StreamArn": f"{a}/stream/2025-01-01T00:00:00.000"}
    if rtype == "AWS::SQS::Queue":
        name = p.get("QueueName") or generated_name(stack, logical_id, 80)
        url = f"{endpoint.rstrip('/')}/{ACCOUNT}/{name}"
        return url, {"Arn": arn("sqs", name), "QueueName": name, "QueueUrl": url}
    if rtype == "AWS::SNS::Topic":
        name = p.get("TopicName") or generated_name(stack, logical_id, 256)
        a = arn("sns", name)
        return a, {"TopicArn": a, "TopicName": name}
    if rtype == "AWS::Events::EventBus":
        name = p["Name"]
        return name, {"Arn": arn("events", f"event-bus/{name}"), "Name": name}
    if rtype == "AWS::Events::Archive":
        name = p.get("ArchiveName") or generated_name(stack, logical_id, 48)
        return name, {"Arn": arn("events", f"archive/{name}"), "ArchiveName": name}
    if rtype == "AWS::Events::Rule":
        name = p.get("Name") or generated_name(stack, logical_id, 64)
        bus = p.get("EventBusName") or "default"
        bus = bus.rsplit("/", 1)[-1]
        resource = f"rule/{name}" if bus == "default" else f"rule/{bus}/{name}"
        # CloudFormation: Ref of a rule on a custom bus is "<bus>|<rule>" (CDK splits it back).
        ref = name if bus == "default" else f"{bus}|{name}"
        return ref, {"Arn": arn("events", resource), "RuleName": name, "EventBusName": bus}
    if rtype == "AWS::Lambda::Function":
        name = p.get("FunctionName") or generated_name(stack, logical_id, 64)
        return name, {"Arn": arn("lambda", f"function:{name}")}
    if rtype == "AWS::Lambda::Url":
        # Served by the local runtime on its own port (see runtime.FUNCTION_URL_PREFIX).
        url_id = _short_hash(stack, logical_id, length=32).lower()
        return url_id, {"FunctionUrl": f"{endpoint.rstrip('/')}/_selfheal/url/{url_id}/", "FunctionArn": ""}
    if rtype == "AWS::Lambda::LayerVersion":
        name = p.get("LayerName") or generated_name(stack, logical_id, 64)
        a = arn("lambda", f"layer:{name}:1")
        return a, {"LayerVersionArn": a}
    if rtype == "AWS::Logs::LogGroup":
        name = p.get("LogGroupName") or generated_name(stack, logical_id, 512)
        return name, {"Arn": arn("logs", f"log-group:{name}:*")}
    if rtype == "AWS::S3::Bucket":
        name = p.get("BucketName") or generated_name(stack, logical_id, 63, lower=True)
        return name, {
            "Arn": f"arn:{PARTITION}:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{REGION}.amazonaws.com",
        }
    if rtype == "AWS::SecretsManager::Secret":
        name = p.get("Name") or generated_name(stack, logical_id, 256)
        a = arn("secretsmanager", f"secret:{name}-{_short_hash(name, length=6)}")
        return a, {"Id": a, "Name": name}
    if rtype == "AWS::SSM::Parameter":
        name = p.get("Name") or f"CFN-{generated_name(stack, logical_id, 128)}"
        return name, {"Type": p.get("Type", "String"), "Value": str(p.get("Value", ""))}
    if rtype == "AWS::CloudWatch::Alarm":
        name = p.get("AlarmName") or generated_name(stack, logical_id, 255)
        return name, {"Arn": arn("cloudwatch", f"alarm:{name}")}
    if rtype == "AWS::CloudWatch::Dashboard":
        name = p.get("DashboardName") or generated_name(stack, logical_id, 255)
        return name, {}
    if rtype == "AWS::KMS::Key":
        key_id = str(_uuid_from(stack, logical_id))
        return key_id, {"Arn": arn("kms", f"key/{key_id}"), "KeyId": key_id}
    if rtype == "AWS::IAM::Role":
        name = p.get("RoleName") or generated_name(stack, logical_id, 64)
        return name, {
            "Arn": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
            "RoleId": f"AROA{_short_hash(name, length=17)}",
        }
    if rtype == "AWS::IAM::ManagedPolicy":
        name = p.get("ManagedPolicyName") or generated_name(stack, logical_id, 128)
        a = f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{name}"
        return a, {"PolicyArn": a}
    if rtype == "AWS::Scheduler::Schedule":
        name = p.get("Name") or generated_name(stack, logical_id, 64)
        return name, {"Arn": arn("scheduler", f"schedule/default/{name}")}
    # Anything else: a stable opaque id and an ARN-looking Arn attribute.
    pid = generated_name(stack, logical_id, 128)
    service = rtype.split("::")[1].lower() if rtype.count("::") >= 2 else "unknown"
    return pid, {"Arn": arn(service, pid)}


def _uuid_from(*parts: str) -> str:
    h = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


NO_VALUE = object()


class Resolver:
    """Resolves intrinsic functions inside one stack."""

    def __init__(
        self, stack: Stack, resources: dict[str, Resource], exports: dict[str, Any], conditions: dict[str, bool]
    ):
        self.stack = stack
        self.resources = resources  # logical id -> Resource (names filled in)
        self.exports = exports
        self.conditions = conditions
        self.parameters = {name: spec.get("Default", "") for name, spec in stack.template.get("Parameters", {}).items()}

    def pseudo(self, name: str) -> Any:
        return {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::StackName": self.stack.name,
            "AWS::StackId": arn("cloudformation", f"stack/{self.stack.name}/{_uuid_from(self.stack.name)}"),
            "AWS::NoValue": NO_VALUE,
            "AWS::NotificationARNs": [],
        }.get(name, KeyError)

    def ref(self, name: str) -> Any:
        value = self.pseudo(name)
        if value is not KeyError:
            return value
        if name in self.resources:
            return self.resources[name].physical_id
        if name in self.parameters:
            return self.parameters[name]
        raise AssemblyError(f"{self.stack.name}: Ref to unknown {name!r}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        res = self.resources.get(logical_id)
        if res is None:
            raise AssemblyError(f"{self.stack.name}: GetAtt on unknown {logical_id!r}")
        if attribute in res.attributes:
            return res.attributes[attribute]
        return res.attributes.get("Arn", res.physical_id)

    def sub(self, template: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(self.resolve(variables[expr]))
            if "." in expr and not expr.startswith("AWS::"):
                logical, attribute = expr.split(".", 1)
                return str(self.get_att(logical, attribute))
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", replace, template)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            out = [self.resolve(v) for v in node]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if fn == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(self.resolve(i)) for i in self.resolve(items))
            if fn == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                return self.sub(arg[0], arg[1])
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if fn == "Fn::Split":
                sep, value = arg
                return str(self.resolve(value)).split(sep)
            if fn == "Fn::ImportValue":
                name = self.resolve(arg)
                if name not in self.exports:
                    raise AssemblyError(f"{self.stack.name}: import of unknown export {name!r}")
                return self.exports[name]
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.conditions.get(cond, False) else no)
            if fn == "Fn::GetAZs":
                return [f"{REGION}{z}" for z in "abc"]
            if fn == "Fn::Base64":
                import base64

                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
            if fn == "Fn::ToJsonString":
                return json.dumps(self.resolve(arg))
            if fn in ("Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not", "Condition"):
                return self.condition(node)
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def condition(self, node: Any) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return bool(a == b)
            if fn == "Fn::And":
                return all(self.condition(x) for x in arg)
            if fn == "Fn::Or":
                return any(self.condition(x) for x in arg)
            if fn == "Fn::Not":
                return not self.condition(arg[0])
            if fn == "Condition":
                return self.conditions.get(arg, False)
        return bool(self.resolve(node))


class Assembly:
    """All stacks of a cloud assembly, resolved; resources listed in deployment order."""

    def __init__(self, directory: Path, stacks: list[Stack], resources: list[Resource]):
        self.directory = directory
        self.stacks = stacks
        self.resources = resources

    # ---------------------------------------------------------------------- load
    @classmethod
    def load(cls, directory: Path | str, endpoint: str = "http://127.0.0.1:4566") -> Assembly:
        directory = Path(directory).resolve()
        manifest_path = directory / "manifest.json"
        if not manifest_path.exists():
            raise AssemblyError(f"no cloud assembly at {directory} (manifest.json missing)")
        manifest = json.loads(manifest_path.read_text())
        raw: dict[str, Stack] = {}
        for name, artifact in manifest.get("artifacts", {}).items():
            if artifact.get("type") != "aws:cloudformation:stack":
                continue
            props = artifact.get("properties", {})
            template = json.loads((directory / props["templateFile"]).read_text())
            stack_name = props.get("stackName", name)
            deps = [
                d
                for d in artifact.get("dependencies", [])
                if manifest["artifacts"].get(d, {}).get("type") == "aws:cloudformation:stack"
            ]
            raw[name] = Stack(stack_name, template, deps)
        ordered = _toposort(raw)
        exports: dict[str, Any] = {}
        resources: list[Resource] = []
        for artifact_id in ordered:
            stack = raw[artifact_id]
            resources.extend(cls._resolve_stack(stack, exports, endpoint))
        return cls(directory, [raw[a] for a in ordered], resources)

    @staticmethod
    def _resolve_stack(stack: Stack, exports: dict[str, Any], endpoint: str) -> list[Resource]:
        template = stack.template
        shells: dict[str, Resource] = {}
        resolver = Resolver(stack, shells, exports, {})
        for cond_name, cond in template.get("Conditions", {}).items():
            try:
                resolver.conditions[cond_name] = resolver.condition(cond)
            except AssemblyError:
                resolver.conditions[cond_name] = False
        defs = template.get("Resources", {})
        active = {
            lid: d
            for lid, d in defs.items()
            if not d.get("Condition") or resolver.conditions.get(d["Condition"], False)
        }
        # Pass 1: names. Name properties may reference pseudo parameters or other names, so iterate.
        pending = dict(active)
        for _ in range(len(pending) + 1):
            progressed = False
            for lid, d in list(pending.items()):
                props = d.get("Properties", {})
                try:
                    name_props = {k: resolver.resolve(v) for k, v in props.items() if _is_name_property(k)}
                except AssemblyError:
                    continue
                physical, attrs = _name_and_attrs(stack.name, lid, d["Type"], name_props, endpoint)
                shells[lid] = Resource(stack.name, lid, d["Type"], {}, d.get("Metadata", {}), physical, attrs)
                del pending[lid]
                progressed = True
            if not pending or not progressed:
                break
        for lid, d in pending.items():  # circular naming: fall back to generated names
            physical, attrs = _name_and_attrs(stack.name, lid, d["Type"], {}, endpoint)
            shells[lid] = Resource(stack.name, lid, d["Type"], {}, d.get("Metadata", {}), physical, attrs)
        # Pass 2: properties.
        for lid, d in active.items():
            shells[lid].properties = resolver.resolve(d.get("Properties", {}))
        for out_name, out in template.get("Outputs", {}).items():
            if out.get("Condition") and not resolver.conditions.get(out["Condition"], False):
                continue
            value = resolver.resolve(out["Value"])
            stack.outputs[out_name] = value
            export = out.get("Export", {}).get("Name")
            if export is not None:
                exports[resolver.resolve(export)] = value
        return [shells[lid] for lid in active]

    # ---------------------------------------------------------------------- queries
    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]

    def asset_dir(self, resource: Resource) -> Path | None:
        """Code asset directory of a function or layer (resource metadata, else the asset manifest)."""
        path = resource.metadata.get("aws:asset:path")
        if path:
            return (self.directory / path).resolve()
        code = resource.properties.get("Code") or resource.properties.get("Content") or {}
        key = str(code.get("S3Key", ""))
        asset_hash = key.split(".")[0]
        for manifest in self.directory.glob("*.assets.json"):
            files = json.loads(manifest.read_text()).get("files", {})
            if asset_hash in files:
                return (self.directory / files[asset_hash]["source"]["path"]).resolve()
        return None

    def outputs(self) -> dict[str, dict[str, Any]]:
        return {s.name: dict(s.outputs) for s in self.stacks}


_NAME_PROPS = {
    "TableName",
    "QueueName",
    "TopicName",
    "Name",
    "FunctionName",
    "LayerName",
    "LogGroupName",
    "BucketName",
    "AlarmName",
    "ArchiveName",
    "DashboardName",
    "RoleName",
    "ManagedPolicyName",
    "EventBusName",
}


def _is_name_property(key: str) -> bool:
    return key in _NAME_PROPS


def _toposort(stacks: dict[str, Stack]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, trail: tuple[str, ...] = ()) -> None:
        if name in seen:
            return
        if name in trail:
            raise AssemblyError(f"stack dependency cycle: {' -> '.join((*trail, name))}")
        for dep in stacks[name].dependencies:
            if dep in stacks:
                visit(dep, (*trail, name))
        seen.add(name)
        order.append(name)

    for name in stacks:
        visit(name)
    return order
