"""Hostile or sloppy model output must not make the applied change differ from the validated one."""

from __future__ import annotations

import pytest
from moto import mock_aws

from tests.integration.test_claude_chain import FAKE_ANTHROPIC_KEY
from tests.integration.test_heal import FUNCTION, Dependant, alarm_event, only_incident
from tests.support.anthropic_server import AnthropicTestServer, tool_use
from tests.support.pipeline import Pipeline


@pytest.fixture
def server(monkeypatch):
    with AnthropicTestServer() as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.base_url)
        yield srv


@pytest.mark.parametrize(
    "setting, proposed, start",
    [
        ("timeout_s", 3.9, {"timeout": 3}),  # validated 3 -> 3.9 s; Lambda would get int(3.9) = 3: no change
        ("memory_mb", 767.5, {"memory": 512}),  # validated 767.5 MB; Lambda would get 767
    ],
)
def test_the_value_applied_is_the_value_qa_validated(server, setting, proposed, start):
    """Expected: what reaches the function is exactly what QA validated and what FixApplied tells
    dependants; a fractional value for an integral Lambda setting (whole seconds, whole MB) is
    either refused by QA or never announced as applied.

    Why it matters: the model's tool schema says `"proposed": {"type": "number"}`, QA's policy checks
    only the bounds and the step factor, and the apply writes `int(value)`. A model answering
    "timeout 3 -> 3.9 s" is validated, "applied" (UpdateFunctionConfiguration Timeout=3: nothing
    changes), announced as `after: 3.9`, and verified as if the fix had been tried. What was
    validated is not what was applied, and the record says otherwise.

    Actual: `heal._write` truncates with `int(v)`; `qa/validators/policy.py` has no integrality
    check; `heal.plan_change` records `float(c.proposed)`.
    """
    with mock_aws():
        pipeline = Pipeline(
            parameters={"engineer-provider": "anthropic", "automation-level": "full_auto"},
            secret={"anthropic_api_key": FAKE_ANTHROPIC_KEY},
            functions={FUNCTION: start},
        )
        dependant = Dependant(pipeline)
        server.script.append(
            tool_use(
                {
                    "changes": [{"setting": setting, "target": FUNCTION, "proposed": proposed}],
                    "risk_level": "low",
                    "rationale": "a little more headroom",
                }
            )
        )
        pipeline.put_raw_event(alarm_event())
        pipeline.run()

        incident = only_incident(pipeline)
        config = pipeline.function_config(FUNCTION)
        for event in dependant.events():
            if event["type"] == "FixApplied":
                for change in event["changes"]:
                    assert config[change["setting"]] == change["after"], (incident.status, event, config)
