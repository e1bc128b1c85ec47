"""The shared Lambda layer, bundled on this machine with pip (no Docker engine needed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from .. import constants

LAYER_DIR = Path(__file__).resolve().parents[2] / "layers" / "common"


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """Installs the layer's requirements for the Lambda platform, then copies our packages."""

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:  # noqa: ARG002
        target = Path(output_dir) / "python"
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
                "--requirement", str(LAYER_DIR / "requirements.txt"),
                "--target", str(target),
                "--platform", constants.PIP_PLATFORM,
                "--python-version", constants.RUNTIME.name.removeprefix("python"),
                "--implementation", "cp", "--only-binary=:all:",
            ],
            check=True,
        )
        for package in (LAYER_DIR / "python").iterdir():
            if package.is_dir() and not package.name.startswith((".", "__")):
                shutil.copytree(package, target / package.name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return True


class CommonLayer(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(
                str(LAYER_DIR),
                bundling=BundlingOptions(
                    # Only used if local bundling reports it cannot run; never on our machines.
                    image=constants.RUNTIME.bundling_image,
                    local=PipLocalBundling(),
                    command=["bash", "-c", "pip install -r requirements.txt -t /asset-output/python && cp -r python/* /asset-output/python/"],
                ),
            ),
            compatible_runtimes=[constants.RUNTIME],
            compatible_architectures=[constants.ARCHITECTURE],
            description="Selfheal shared code: event contract, stores, monitoring, Powertools",
        )
