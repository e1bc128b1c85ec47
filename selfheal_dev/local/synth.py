"""`python -m selfheal_dev.local.synth OUTDIR [--app module:function] [-c key=value ...]`.

Synthesizes every stack with bundling skipped and asset metadata on (the local runtime
reads each function's code asset path from it). Runs in its own process so the runtime
never loads jsii/node.
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="selfheal_dev.local.synth")
    parser.add_argument("outdir")
    parser.add_argument(
        "--app", default="stacks.app_builder:build_app", help="module:function(app) that adds the stacks"
    )
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    import aws_cdk as cdk

    # The marker tells stacks/settings.py this assembly is for the local runtime, never deployed
    # (it is what lets `-c allowUnisolatedQa=true` through).
    context: dict[str, Any] = {
        "aws:cdk:bundling-stacks": [],
        "aws:cdk:enable-asset-metadata": True,
        "selfheal:localSynth": True,
    }
    for item in args.context:
        key, _, value = item.partition("=")
        context[key] = _value(value)
    module_name, _, func_name = args.app.partition(":")
    build = getattr(importlib.import_module(module_name), func_name or "build_app")
    app = cdk.App(context=context, outdir=args.outdir)
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
