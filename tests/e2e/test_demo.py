"""`selfheal demo` (what `make demo` runs) completes offline and shows what the pipeline did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_to_completion_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    env = {**os.environ, "SELFHEAL_STATE_DIR": str(tmp_path / "state"), "SELFHEAL_DEMO_PORT": "0"}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "selfheal", "demo", "--out", str(out), "--storm", "200"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
        check=False,
    )
    output = proc.stdout
    assert proc.returncode == 0, f"{output[-4000:]}\n{proc.stderr[-4000:]}"

    summary = json.loads((out / "summary.json").read_text())
    assert "error" not in summary
    # every step of the scenario is visible in the output
    for heading in (
        "1. IssueReported",
        "2. CloudWatch alarm",
        "3. alarm storm",
        "4. a malformed IssueReported",
        "5. heal: sample-orders-dev",
        "6. roll back: sample-orders-dev",
        "== incidents",
        "== rejected events",
        "== notifications",
        "== costs",
        "== dashboards",
    ):
        assert heading in output
    # the storm folds into one incident; the malformed event is rejected with a reason
    incidents = summary["incidents"]
    storm = [i for i in incidents if i["service"] == "inventory-api"]
    assert len(storm) == 1 and storm[0]["duplicates"] == 199
    assert {i["service"] for i in incidents} == {"checkout", "orders-api", "inventory-api", "sample-orders-dev"}
    assert summary["rejected"] and summary["rejected"][0]["reason"]
    assert summary["checks"]["all_settled"] is True
    assert summary["checks"]["put_metric_data_calls"] == 0
    # each incident's timeline is printed with decisions and their reasoning
    for incident in incidents:
        assert f"Incident {incident['incident_id']}" in output
    assert "MANAGER  triage" in output and "thought:" in output
    assert "Total over 1 day(s):" in output
    # the real function: healed (3 -> 10 s, RESOLVED), then a change that did not help rolled back (ESCALATED at 3 s)
    assert summary["checks"]["heal_resolved_at_10s"] is True, summary["heal"]
    assert summary["checks"]["rollback_escalated_back_at_3s"] is True, summary["rollback"]
    assert summary["heal"]["timeouts_seen"] == [3, 10] and summary["rollback"]["timeouts_seen"] == [3, 10, 3]
    assert summary["heal"]["alarm"] == "OK" and summary["rollback"]["alarm"] == "ALARM"
    assert "$ aws lambda get-function-configuration --function-name sample-orders-dev" in output
    for kind in ("MANAGER  investigate", "MANAGER  apply", "MANAGER  verify", "MANAGER  rollback"):
        assert kind in output, kind
    # the run says how its time was spent (figures, not asserted: tests never time the machine)
    assert summary["total_s"] >= summary["pipeline_s"] > 0
    for d in summary["dashboards"]:
        assert Path(d["png"]).stat().st_size > 10_000
