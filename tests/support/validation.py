"""The CDK validation report of a synth (cdk-nag packs and CloudFormation Validate), read strictly."""

from __future__ import annotations

import json
from pathlib import Path


def assert_validation_passed(outdir: Path) -> None:
    """A missing report fails: it means no validation plugin ran on this synth."""
    report = json.loads((Path(outdir) / "validation-report.json").read_text())
    assert report["pluginReports"], "no validation plugin reported"
    violations = [v["ruleName"] for p in report["pluginReports"] for v in p.get("violations", [])]
    assert violations == []
    assert {p["pluginName"]: p["conclusion"] for p in report["pluginReports"]} == {
        p["pluginName"]: "success" for p in report["pluginReports"]
    }
