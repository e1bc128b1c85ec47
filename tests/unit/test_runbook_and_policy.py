import pytest

from lambdas.engineer.providers.base import FixRequest, ProviderError
from lambdas.engineer.providers.runbook import RUNBOOKS, RunbookProvider
from lambdas.qa.validators.policy import PolicyValidator
from selfheal_core.events import ConfigChange, Fix, IssueReportedV1, IssueType


def issue(issue_type="latency", **kw):
    return IssueReportedV1(service="orders-api", issue_type=issue_type, summary="s", **kw)


def request(issue_, attempt=1):
    return FixRequest(incident_id="inc-1", correlation_id="c", attempt=attempt, issue=issue_)


@pytest.mark.parametrize("issue_type", sorted(RUNBOOKS))
def test_every_runbook_fix_passes_policy(issue_type):
    fix = RunbookProvider().propose(request(issue(issue_type))).fix

    result = PolicyValidator().validate(fix, issue(issue_type), {})

    assert fix.kind == "config" and fix.rationale and fix.risk_level
    assert result.passed, result.reason


def test_runbook_uses_current_value_from_signals_and_retries_more_conservatively():
    first = RunbookProvider().propose(request(issue(signals={"memory_mb": 512}))).fix.changes[0]
    second = RunbookProvider().propose(request(issue(signals={"memory_mb": 512}), attempt=2)).fix.changes[0]

    assert (first.current, first.proposed) == (512, 1024)
    assert 512 < second.proposed < first.proposed


def test_runbook_refuses_code_and_unknown_issues():
    with pytest.raises(ProviderError) as unknown:
        RunbookProvider().propose(request(issue(IssueType.UNKNOWN.value)))
    with pytest.raises(ProviderError) as code:
        RunbookProvider().propose(request(issue("exception", code={"files": {"app.py": "x = 1"}})))
    assert unknown.value.category == code.value.category == "unsupported"


def _fix(*changes):
    return Fix(kind="config", provider="test", rationale="r", risk_level="low", changes=list(changes))


def test_policy_rejects_out_of_bounds_other_targets_and_huge_steps():
    validator = PolicyValidator()
    out_of_bounds = validator.validate(_fix(ConfigChange(setting="timeout_s", target="orders-api", proposed=3600)), issue(), {})
    other_target = validator.validate(_fix(ConfigChange(setting="memory_mb", target="payments", current=256, proposed=512)), issue(), {})
    huge_step = validator.validate(_fix(ConfigChange(setting="memory_mb", target="orders-api", current=128, proposed=4096)), issue(), {})
    no_change = validator.validate(_fix(), issue(), {})

    assert not out_of_bounds.passed and "[1, 900]" in out_of_bounds.reason
    assert not other_target.passed and "payments" in other_target.reason
    assert not huge_step.passed and "x32.00" in huge_step.reason
    assert not no_change.passed
    assert all(e.check for e in huge_step.evidence)


def test_policy_measures_the_step_from_observed_signals_not_from_the_claim():
    observed = issue(signals={"memory_mb": 128.0})
    inflated_claim = _fix(ConfigChange(setting="memory_mb", target="orders-api", current=3000, proposed=4096))
    unknown = _fix(ConfigChange(setting="memory_mb", target="orders-api", proposed=4096))

    assert not PolicyValidator().validate(inflated_claim, observed, {}).passed
    result = PolicyValidator().validate(unknown, issue(), {})
    assert not result.passed and "unknown" in result.reason
