"""The Lambda layers, one per need, bundled on this machine with pip (no Docker engine needed).

Every function carries the core layer (Powertools, pydantic, selfheal_core, agentops_monitoring);
the rest go only where they run (LAYER_NEEDS). Lambda downloads and unpacks every layer before
init, and init is billed, so the Manager and QA carry 20 MB instead of 98.
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from .. import constants

LAYERS_DIR = Path(__file__).resolve().parents[2] / "layers"
CORE = "common"
LAYER_DIR = LAYERS_DIR / CORE
# Extra layers (layers/<name>/requirements.txt) by function package; every function has the core.
# AgentOps traces run only in the Engineer: it makes the model calls its spans describe, and the
# SDK's 41 MB would take the Manager past its size goal (docs/decision_log.md).
LAYER_NEEDS: dict[str, tuple[str, ...]] = {
    "engineer": ("anthropic", "agentops"),
    "qa_runner": ("pytest",),
}
DESCRIPTIONS = {
    CORE: "Selfheal core: event contract, stores, monitoring, Powertools, pydantic",
    "anthropic": "Anthropic SDK (the Engineer's model calls)",
    "agentops": "AgentOps SDK (the Engineer's traces)",
    "pytest": "pytest (the QA runner's test runs)",
}


def below(name: str) -> list[str]:
    """The layers a function carries before this one (the core first); the same in every function."""
    orders = {(CORE, *needs[: needs.index(name)]) for needs in LAYER_NEEDS.values() if name in needs}
    if len(orders) > 1:
        raise ValueError(f"layer {name} follows different layers in different functions: {sorted(orders)}")
    return list(orders.pop()) if orders else []


def pip_install(names: list[str], target: Path) -> None:
    """One resolution of these layers' requirements together, for the Lambda platform."""
    requirements = [arg for name in names for arg in ("--requirement", str(LAYERS_DIR / name / "requirements.txt"))]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--disable-pip-version-check",
            *requirements,
            "--target",
            str(target),
            "--platform",
            constants.PIP_PLATFORM,
            "--python-version",
            constants.RUNTIME.name.removeprefix("python"),
            "--implementation",
            "cp",
            "--only-binary=:all:",
        ],
        check=True,
    )


def bundle_layer(name: str, output_dir: Path) -> None:
    """Install layers/<name>/requirements.txt into output_dir/python, minus what the layers below hold.

    Lambda unpacks a function's layers into one /opt/python, in order. The layer is resolved
    together with the layers below it, so what they share has one version, held once, below.
    """
    target = output_dir / "python"
    target.mkdir(parents=True, exist_ok=True)
    under = below(name)
    pip_install([*under, name], target)
    if under:
        with tempfile.TemporaryDirectory() as base:
            pip_install(under, Path(base))
            _drop_what_is_below(target, Path(base), name)
    if name == CORE:
        for package in (LAYERS_DIR / CORE / "python").iterdir():
            if package.is_dir() and not package.name.startswith((".", "__")):
                shutil.copytree(
                    package,
                    target / package.name,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
    compile_bytecode(target)


def _drop_what_is_below(target: Path, below_dir: Path, name: str) -> None:
    """Remove from `target` what the layers below (installed in `below_dir`) hold, file by file.

    By its RECORD, so namespace packages such as opentelemetry/ stay shared. Lambda does not
    promise which of two copies wins, so the layers of a function never share a file: a version
    the layers below resolve differently once this layer joins them is an error to pin away.
    """
    installed = {d.name.rsplit("-", 1)[0]: d.name for d in target.glob("*.dist-info")}
    for dist_info in below_dir.glob("*.dist-info"):
        record = target / dist_info.name / "RECORD"
        if not record.exists():
            project = dist_info.name.rsplit("-", 1)[0]
            if project in installed:
                raise RuntimeError(
                    f"layer {name} needs {installed[project]}, the layers below hold "
                    f"{dist_info.name}: pin one version in layers/*/requirements.txt"
                )
            continue
        for line in record.read_text().splitlines():
            path = (target / line.split(",")[0]).resolve()
            if path.is_relative_to(target.resolve()) and path.is_file():
                path.unlink()
        shutil.rmtree(target / dist_info.name, ignore_errors=True)
    for directory in sorted((d for d in target.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()


def compile_bytecode(directory: Path) -> None:
    """Ship bytecode: /opt and /var/task are read-only, so without it every cold start compiles every module.

    unchecked-hash: valid whatever the file times in the zip (CDK normalizes them).
    """
    compileall.compile_dir(
        str(directory), quiet=2, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    def __init__(self, name: str) -> None:
        self.name = name

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:  # noqa: ARG002
        bundle_layer(self.name, Path(output_dir))
        return True


def layer(scope: Construct, construct_id: str, name: str) -> lambda_.LayerVersion:
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=lambda_.Code.from_asset(
            str(LAYERS_DIR / name),
            bundling=BundlingOptions(
                # Only used if local bundling reports it cannot run; never on our machines.
                image=constants.RUNTIME.bundling_image,
                local=PipLocalBundling(name),
                command=[
                    "bash",
                    "-c",
                    "pip install -r requirements.txt -t /asset-output/python"
                    + (" && cp -r python/* /asset-output/python/" if name == CORE else ""),
                ],
            ),
        ),
        compatible_runtimes=[constants.RUNTIME],
        compatible_architectures=[constants.ARCHITECTURE],
        description=DESCRIPTIONS[name],
    )


class FunctionLayers(Construct):
    """The core layer and the extra layers; `for_function(package)` is what one function carries."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.core = layer(self, "Layer", CORE)  # "Layer": the core layer keeps its logical id
        self.extras = {
            name: layer(self, name.title(), name) for name in sorted({n for v in LAYER_NEEDS.values() for n in v})
        }

    def for_function(self, package: str) -> list[lambda_.ILayerVersion]:
        return [self.core, *(self.extras[name] for name in LAYER_NEEDS.get(package, ()))]
