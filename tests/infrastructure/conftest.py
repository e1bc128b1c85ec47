from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest

from stacks.app_builder import build_app


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> dict:
    """Synthesize every stack once (bundling skipped: no pip/Docker in tests), nag included."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(outdir=str(outdir), context={"aws:cdk:bundling-stacks": [], "alertEmail": "ops@example.com"})
    stacks = build_app(app)
    assembly = app.synth()
    return {"app": app, "stacks": stacks, "assembly": assembly, "outdir": Path(outdir)}


@pytest.fixture(scope="session")
def templates(synthesized) -> dict[str, cdk.assertions.Template]:
    return {name: cdk.assertions.Template.from_stack(stack) for name, stack in synthesized["stacks"].items()}


def load_template(outdir: Path, stack_name: str) -> dict:
    return json.loads((outdir / f"{stack_name}.template.json").read_text())
