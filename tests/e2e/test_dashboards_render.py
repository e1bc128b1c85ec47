"""`selfheal dashboards render`: one PNG and one HTML page per dashboard of the app."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from tests.support.harness import RuntimeProcess

pytestmark = pytest.mark.e2e


def _titles(body: dict) -> list[str]:
    return [w["properties"]["title"] for w in body["widgets"] if w.get("properties", {}).get("title")]


def test_every_dashboard_renders_with_its_widget_titles(e2e_assembly: Path, tmp_path: Path) -> None:
    with RuntimeProcess(
        state_dir=tmp_path / "state", assembly=e2e_assembly, extra_args=["--quiet", "--alarm-interval", "1"]
    ) as rt:
        # Given some data: one incident through the pipeline
        rt.client("events").put_events(
            Entries=[
                {
                    "EventBusName": "agentops-dev",
                    "Source": "com.example.tests",
                    "DetailType": "IssueReported",
                    "Detail": json.dumps(
                        {"service": "render-api", "issue_type": "high_error_rate", "summary": "5xx at 9 %"}
                    ),
                }
            ]
        )
        assert rt.idle(timeout=90)
        cw = rt.client("cloudwatch")
        names = [d["DashboardName"] for d in cw.list_dashboards()["DashboardEntries"]]
        assert names, "the app has no dashboard"
        bodies = {n: json.loads(cw.get_dashboard(DashboardName=n)["DashboardBody"]) for n in names}

        # When they are rendered
        out = tmp_path / "dashboards"
        result = json.loads(rt.selfheal("dashboards", "render", "--out", str(out), "--hours", "1", "--json").stdout)

    # Then each has a PNG of a real size and an HTML page naming every widget
    rendered = {d["name"]: d for d in result["dashboards"]}
    assert set(rendered) == set(names)
    for name, body in bodies.items():
        png, page = Path(rendered[name]["png"]), Path(rendered[name]["html"])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 20_000
        text = page.read_text()
        assert name in text
        for title in _titles(body):
            assert html.escape(title) in text, f"widget {title!r} missing from {page}"
        assert rendered[name]["widgets"] == len(body["widgets"])
