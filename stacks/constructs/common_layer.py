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


def pip_install(requirements: Path, target: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
            "--requirement", str(requirements),
            "--target", str(target),
            "--platform", constants.PIP_PLATFORM,
            "--python-version", constants.RUNTIME.name.removeprefix("python"),
            "--implementation", "cp", "--only-binary=:all:",
        ],
        check=True,
    )


def bundle_layer(name: str, output_dir: Path) -> None:
    """Install layers/<name>/requirements.txt into output_dir/python, minus what the core layer holds."""
    source = LAYERS_DIR / name
    target = output_dir / "python"
    target.mkdir(parents=True, exist_ok=True)
    pip_install(source / "requirements.txt", target)
    if name == CORE:
        for package in (source / "python").iterdir():
            if package.is_dir() and not package.name.startswith((".", "__")):
                shutil.copytree(package, target / package.name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        # Layers are unpacked into one /opt/python: a second copy of pydantic would only add size.
        with tempfile.TemporaryDirectory() as core:
            pip_install(LAYERS_DIR / CORE / "requirements.txt", Path(core))
            for entry in Path(core).iterdir():
                if (target / entry.name).is_dir():
                    shutil.rmtree(target / entry.name)
                elif (target / entry.name).exists():
                    (target / entry.name).unlink()
    compile_bytecode(target)


def compile_bytecode(directory: Path) -> None:
    """Ship bytecode: /opt and /var/task are read-only, so without it every cold start compiles every module.

    unchecked-hash: valid whatever the file times in the zip (CDK normalizes them).
    """
    compileall.compile_dir(str(directory), quiet=2, workers=0,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


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
                command=["bash", "-c", "pip install -r requirements.txt -t /asset-output/python"
                         + (" && cp -r python/* /asset-output/python/" if name == CORE else "")],
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
        self.extras = {name: layer(self, name.title(), name) for name in sorted({n for v in LAYER_NEEDS.values() for n in v})}

    def for_function(self, package: str) -> list[lambda_.ILayerVersion]:
        return [self.core, *(self.extras[name] for name in LAYER_NEEDS.get(package, ()))]
