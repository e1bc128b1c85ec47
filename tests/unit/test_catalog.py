"""The catalog is the one home of names, statuses, sources, routes and defaults; what reads it agrees with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from selfheal import cli
from selfheal_core import catalog
from selfheal_core.catalog import CONTEXT_DEFAULTS, SETTLED, TERMINAL, Status, unknown_context_problem
from selfheal_core.config import RuntimeParameters, ScanThresholds
from selfheal_core.events import DetailType, InvalidEvent, parse_detail

ROOT = Path(__file__).resolve().parents[2]


def test_awaiting_approval_is_settled_but_never_final():
    assert Status.AWAITING_APPROVAL in SETTLED
    assert Status.AWAITING_APPROVAL not in TERMINAL
    assert TERMINAL < SETTLED


def test_every_routed_and_notified_detail_type_is_in_the_contract():
    routed = {dt for route in catalog.AGENT_ROUTES for dt in route.detail_types}
    assert routed | set(catalog.NOTIFY_DETAIL_TYPES) <= {d.value for d in DetailType}
    assert {route.agent for route in catalog.AGENT_ROUTES} <= set(catalog.AGENTS)


def test_a_step_from_the_wrong_agent_is_refused_by_the_contract_the_routes_define():
    detail = {"metadata": {"incident_id": "i-1", "correlation_id": "c-1", "producer": "qa"}, "data": {}}
    with pytest.raises(InvalidEvent, match="must come from"):
        parse_detail("FixProposed", detail, source=catalog.AGENT_SOURCES["qa"])


def test_recipients_follow_the_routes_and_notifications_go_to_people():
    assert catalog.RECIPIENTS["FixProposed"] == "qa"
    assert catalog.RECIPIENTS["FixRejected"] == "engineer"
    # FixRolledBack was missing from the hand-kept copy; the notify route sends it to people.
    assert catalog.RECIPIENTS["FixRolledBack"] == catalog.OPERATOR


def test_agent_fallbacks_are_the_context_defaults():
    params = RuntimeParameters()
    assert params.automation_level == CONTEXT_DEFAULTS["automationLevel"]
    assert params.engineer_provider == CONTEXT_DEFAULTS["engineerProvider"]
    assert params.engineer_model == CONTEXT_DEFAULTS["engineerModel"]
    assert params.manager_model == CONTEXT_DEFAULTS["managerModel"]
    assert params.max_fix_attempts == CONTEXT_DEFAULTS["maxFixAttempts"]
    assert params.daily_llm_budget_usd == CONTEXT_DEFAULTS["dailyLlmBudgetUsd"]
    assert params.verify_window_seconds == CONTEXT_DEFAULTS["verifyWindowSeconds"]
    assert ScanThresholds().model_dump() == catalog.DEFAULT_SCAN_THRESHOLDS


def test_cdk_json_keeps_only_cdk_feature_flags():
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    assert context, "cdk.json lost its feature flags"
    assert [k for k in context if k in CONTEXT_DEFAULTS] == []


def test_the_readme_documents_every_context_key_and_no_other():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Context keys", 1)[1].split("\n###", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)?", table, flags=re.M))
    keys = {k for pair in documented for k in pair if k}
    assert keys == set(CONTEXT_DEFAULTS)


def test_a_misspelt_context_key_is_refused_with_the_known_keys():
    problem = unknown_context_problem({"engineerProvidr": "anthropic", "environment": "dev"})
    assert problem is not None
    assert "engineerProvidr" in problem
    assert "engineerProvider" in problem.split("known keys:", 1)[1]
    assert "environment," not in problem.split("known keys:", 1)[0]


def test_cdk_own_context_keys_pass():
    cdk_keys = json.loads((ROOT / "cdk.json").read_text())["context"]
    cdk_keys |= {
        "aws:cdk:bundling-stacks": [],
        "aws:cdk:enable-path-metadata": True,
        "aws-cdk:enableDiffNoFail": True,
        "availability-zones:account=123456789012:region=eu-west-1": ["eu-west-1a"],
        "acknowledged-issue-numbers": [],
        catalog.LOCAL_SYNTH_MARKER: True,
        **CONTEXT_DEFAULTS,
    }
    assert unknown_context_problem(cdk_keys) is None


def test_local_up_refuses_a_misspelt_key_before_starting_anything(tmp_path, capsys):
    code = cli.main(["local", "up", "-c", "engineerProvidr=anthropic", "--state-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "engineerProvidr" in err and "engineerProvider" in err
    assert list(tmp_path.iterdir()) == []  # no runtime, no synth


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("costAlertThreshold=nan", "costAlertThreshold must be a finite number > 0"),
        ("costAlertThreshold=lots", "costAlertThreshold must be a number, not 'lots'"),
        ("automationLevel=bogus", "automationLevel must be one of"),
        ("allowUnisolatedQa=maybe", "allowUnisolatedQa must be true or false, not 'maybe'"),
        ("verifyWindowSeconds=5", "verifyWindowSeconds must be between 30 and 86400"),
    ],
)
def test_local_up_refuses_a_bad_value_with_one_line_before_starting_anything(tmp_path, capsys, value, says):
    code = cli.main(["local", "up", "-c", value, "--state-dir", str(tmp_path)])

    assert code == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []  # no runtime, no synth


@pytest.mark.parametrize("detach", [[], ["--detach"]])
def test_local_up_on_a_port_in_use_exits_2_with_one_line_in_the_background_too(tmp_path, capsys, detach):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["local", "up", "--port", str(port), "--state-dir", str(tmp_path), *detach])
    assert code == 2
    out = capsys.readouterr()
    assert f"{port} is in use" in out.out + out.err and "Traceback" not in out.err
    assert list(tmp_path.iterdir()) == []  # nothing started


def test_the_readme_event_types_table_lists_every_detail_type_of_the_contract():
    from selfheal_core.events import DATA_MODELS

    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Event types", 1)[1].split("\n###", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", table, flags=re.M)
    documented = {t for cell in first_cells for t in re.findall(r"`(\w+)`", cell)}
    assert documented == set(DATA_MODELS)


def test_the_readme_verb_table_names_every_operator_verb():
    from selfheal.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Operator CLI", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    first_cells = [re.split(r"(?<!\\)\|", row)[1] for row in rows]  # `\|` inside a cell is no column
    documented = {verb for cell in first_cells for verb in re.findall(r"`(\w+)", cell)}
    parser = build_parser()
    [verbs] = [a.choices for a in parser._actions if isinstance(a.choices, dict)]
    assert set(verbs) <= documented, set(verbs) - documented
