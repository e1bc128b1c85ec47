"""End-to-end fixtures: one synthesized app per session (synth is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pytest

# The cost alarm must cross during a single incident.
COST_ALERT_THRESHOLD = "0.00001"
ALERT_EMAIL = "ops@example.com"  # subscribed to the alerts topic: the runtime records the email it cannot send


@pytest.fixture(scope="session")
def e2e_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from selfheal_dev.local.assembly import synthesize

    out = tmp_path_factory.mktemp("e2e-app") / "cdk.out"
    return synthesize(
        out,
        app="tests.e2e.apps:build_app_with_monitoring",
        context={"costAlertThreshold": COST_ALERT_THRESHOLD, "alertEmail": ALERT_EMAIL},
    )
