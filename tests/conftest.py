"""Shared test set-up: a fixed test environment for the agents, set before any handler import."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

TEST_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto's fake credentials
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "ENVIRONMENT": "test",
    "EVENT_BUS_NAME": "agentops-test",
    "DECISIONS_TABLE_NAME": "agent-decisions-test",
    "MONITORING_TABLE_NAME": "agent-monitoring-test",
    "IDEMPOTENCY_TABLE_NAME": "selfheal-idempotency-test",
    "VALIDATIONS_TABLE_NAME": "agent-validations-test",
    "ARTIFACTS_BUCKET": "selfheal-test-artifacts",
    "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:selfheal-test-alerts",
    "SECRET_NAME": "selfheal/test/agentops",
    "ANTHROPIC_SECRET_NAME": "selfheal/test/anthropic",
    "PARAMETER_PREFIX": "/selfheal/test/",
    "EVENT_BUS_ARN": "arn:aws:events:us-east-1:123456789012:event-bus/agentops-test",
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/selfheal-test-scheduler",
    "PARAMETERS_MAX_AGE": "0",
    "POWERTOOLS_SERVICE_NAME": "selfheal-tests",
    "POWERTOOLS_METRICS_NAMESPACE": "AgentOps/Events",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
}
for _key, _value in TEST_ENV.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

# In-process moto gets the local runtime's fixes too (selfheal_dev/local/moto_patches.py): without
# them every TransactWriteItems deep-copies whole tables, so long runs (the intake fuzz, the fault
# suite) slowed down and grew in memory quadratically.
from selfheal_dev.local import moto_patches  # noqa: E402

moto_patches.install()

import moto  # noqa: E402,F401 - registers moto's botocore hooks before any client exists

from selfheal_dev.local import lambda_revisions  # noqa: E402

lambda_revisions.install()  # moto functions get a RevisionId that UpdateFunctionConfiguration checks

EVENTS_DIR = Path(__file__).parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """Sample events live in tests/events/<name>.json (real AWS shapes)."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


@pytest.fixture
def lambda_context() -> Any:
    from tests.support.context import FakeLambdaContext

    return FakeLambdaContext()
