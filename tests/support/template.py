"""Fixtures read from the synthesized CDK app, not copied from it: tables and Lambda routes.

The app is synthesized once per version of its sources (stacks/, the catalog) into
.pytest_cache/selfheal-assembly/<hash>/, in a child process so jsii stays out of the tests;
later runs read the cached templates in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from selfheal_core import catalog

ROOT = Path(__file__).resolve().parents[2]
ENV = "dev"  # the environment the templates are synthesized for; tests map the names onto their own
_SOURCES = ("stacks", "layers/common/python/selfheal_core/catalog.py")
_SYNTH = (
    "import sys, aws_cdk as cdk\n"
    "from stacks.app_builder import build_app\n"
    "app = cdk.App(outdir=sys.argv[1], context={'aws:cdk:bundling-stacks': []})\n"
    "build_app(app)\n"
    "app.synth()\n"
)


def _source_hash() -> str:
    digest = hashlib.sha256()
    for source in _SOURCES:
        path = ROOT / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def assembly_dir() -> Path:
    """The cloud assembly of the current sources, synthesized when not cached yet."""
    cached = ROOT / ".pytest_cache" / "selfheal-assembly" / _source_hash()
    if (cached / "manifest.json").exists():
        return cached
    staging = cached.with_name(f"{cached.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    proc = subprocess.run(
        [sys.executable, "-c", _SYNTH, str(staging)], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"synth for the test fixtures failed:\n{proc.stderr[-4000:]}")
    try:
        staging.rename(cached)
    except OSError:  # another test process cached the same sources first
        shutil.rmtree(staging, ignore_errors=True)
    return cached


@lru_cache(maxsize=1)
def templates() -> dict[str, dict[str, Any]]:
    """Stack key ("data", "pipeline") -> its synthesized template."""
    names = catalog.stack_names(ENV)
    out = assembly_dir()
    return {key: json.loads((out / f"{names[key]}.template.json").read_text()) for key in ("data", "pipeline")}


def _resources(stack: str, resource_type: str) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in templates()[stack]["Resources"].items() if r["Type"] == resource_type}


def table_definitions() -> dict[str, dict[str, Any]]:
    """Table name in the template -> the CreateTable arguments that make the same table (keys, indexes, billing)."""
    tables = {}
    for props in _resources("data", "AWS::DynamoDB::GlobalTable").values():
        args: dict[str, Any] = {k: props[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode")}
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = [
                {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
                for index in props["GlobalSecondaryIndexes"]
            ]
        tables[props["TableName"]] = args
    return tables


@dataclass(frozen=True)
class LambdaRoute:
    rule: str  # logical id of the rule
    on_default_bus: bool  # False: the agents bus
    pattern: dict[str, Any]
    agent: str


def lambda_routes() -> list[LambdaRoute]:
    """Every event-pattern rule that delivers to an agent function, as the template defines it."""
    agent_of = {
        lid: agent
        for lid, props in _resources("pipeline", "AWS::Lambda::Function").items()
        for agent in catalog.AGENTS
        if props.get("FunctionName") == catalog.function_name(ENV, agent)
    }
    routes = []
    for lid, props in _resources("pipeline", "AWS::Events::Rule").items():
        if "EventPattern" not in props:
            continue  # schedules
        for target in props["Targets"]:
            agent = agent_of.get(target["Arn"].get("Fn::GetAtt", [""])[0]) if isinstance(target["Arn"], dict) else None
            if agent:
                pattern = _pseudo_resolved(props["EventPattern"])
                routes.append(LambdaRoute(lid, props.get("EventBusName") == "default", pattern, agent))
    return routes


# moto's account (every moto event carries it) and the tests' Region (tests/conftest.py).
PSEUDO = {"AWS::AccountId": "123456789012", "AWS::Region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}


def _pseudo_resolved(value: Any) -> Any:
    """A pattern with the account and Region refs of an environment-agnostic stack filled in."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in PSEUDO:
            return PSEUDO[value["Ref"]]
        return {k: _pseudo_resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pseudo_resolved(v) for v in value]
    return value
