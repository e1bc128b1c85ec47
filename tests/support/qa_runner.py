"""The QA runner called in-process, through the same JSON contract as `lambda:Invoke`.

Each `run()` is one runner invocation: the runner lays the bundle out in a directory of its
own and removes it afterwards, as the real function does. Bundles and replies are kept so
tests can check what QA sent (one tree per run) and what came back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lambdas.qa_runner.logic import run_bundle
from selfheal_core.qa_run import RunBundle, RunReply


@dataclass
class InProcessRunner:
    bundles: list[dict[str, Any]] = field(default_factory=list)
    replies: list[RunReply] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to run_bundle (sandbox=, mode=)

    def run(self, bundle: RunBundle) -> RunReply:
        wire = json.loads(json.dumps(bundle.model_dump(mode="json")))
        self.bundles.append(wire)
        reply = RunReply.model_validate_json(json.dumps(run_bundle(wire, **self.kwargs)))
        self.replies.append(reply)
        return reply
