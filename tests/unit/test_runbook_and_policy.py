import pytest

from lambdas.engineer.providers.base import FixRequest, ProviderError
from lambdas.engineer.providers.runbook import RUNBOOKS, RunbookProvider
from lambdas.qa.validators.policy import PolicyValidator
from selfheal_core.events import ConfigChange, Fix, Investigation, IssueReportedV1, IssueType

READ = {"memory_mb": 128.0, "timeout_s": 3.0, "reserved_concurrency": 10.0, "max_retries": 2.0}


def issue(issue_type="latency", **kw):
    return IssueReportedV1(service="orders-api", issue_type=issue_type, summary="s", **kw)


def investigated(target="orders-api", **values):
    return Investigation(target=target, revision_id="r1", managed=True, values=values or dict(READ))


def request(issue_, attempt=1, investigation=None):
    return FixRequest(
        incident_id="inc-1",
        correlation_id="c",
        attempt=attempt,
        issue=issue_,
        investigation=investigation if investigation is not None else investigated(),
    )


@pytest.mark.parametrize("issue_type", sorted(RUNBOOKS))
def test_every_runbook_fix_passes_policy(issue_type):
    fix = RunbookProvider().propose(request(issue(issue_type))).fix

    result = PolicyValidator(investigation=investigated()).validate(fix, issue(issue_type), {})

    assert fix.kind == "config" and fix.rationale and fix.risk_level
    assert result.passed, result.reason


@pytest.mark.parametrize("issue_type", sorted(RUNBOOKS))
@pytest.mark.parametrize("small", [1.0, 2.0, 3.0])
def test_a_runbooks_first_proposal_from_a_small_value_passes_policy(issue_type, small):
    # Given a function read with a small value of the runbook's setting (a 1 s timeout, a reservation of 2)
    setting = RUNBOOKS[issue_type].setting
    values = {**READ, setting: max(small, 128.0) if setting == "memory_mb" else small}

    # When the runbook proposes its first change
    fix = RunbookProvider().propose(request(issue(issue_type), investigation=investigated(**values))).fix

    # Then QA's step limit holds it: no attempt is spent on a step QA must refuse
    result = PolicyValidator(investigation=investigated(**values)).validate(fix, issue(issue_type), {})
    assert result.passed, result.reason


def test_runbook_uses_the_investigated_value_and_retries_more_conservatively():
    # Given a reporter who claims 4096 MB while the function was read at 512 MB
    claimed = issue(signals={"memory_mb": 4096})
    first = RunbookProvider().propose(request(claimed, investigation=investigated(memory_mb=512.0))).fix.changes[0]
    second = (
        RunbookProvider()
        .propose(request(claimed, attempt=2, investigation=investigated(memory_mb=512.0)))
        .fix.changes[0]
    )

    # Then the step is measured from the reading, never the claim, and the retry is smaller
    assert (first.current, first.proposed, first.target) == (512, 1024, "orders-api")
    assert 512 < second.proposed < first.proposed


@pytest.mark.parametrize(
    "inv, named",
    [
        (
            Investigation(
                gaps=[
                    "no Lambda target: the alarm's metrics name no single function (FunctionName or function_name dimension)"
                ]
            ),
            "FunctionName",
        ),
        (
            Investigation(target="orders-api", gaps=["GetFunctionConfiguration orders-api: permission denied"]),
            "permission denied",
        ),
        (
            Investigation(target="orders-api", values={"timeout_s": 30.0}, unset=["reserved_concurrency"]),
            "not configured",
        ),
    ],
)
def test_runbook_never_assumes_a_value_it_did_not_read(inv, named):
    # Given an investigation without the value the runbook would change (throttling -> concurrency; latency -> memory)
    issue_type = "throttling" if "reserved_concurrency" in inv.unset else "latency"

    # When the runbook is asked for a fix
    with pytest.raises(ProviderError) as refused:
        RunbookProvider().propose(
            request(issue(issue_type, signals={"memory_mb": 128.0, "reserved_concurrency": 5.0}), investigation=inv)
        )

    # Then it proposes nothing and names the gap (no "assumed default")
    assert refused.value.category == "unsupported"
    assert named in refused.value.reason


def test_runbook_without_any_investigation_proposes_nothing():
    with pytest.raises(ProviderError, match="did not investigate"):
        RunbookProvider().propose(FixRequest(incident_id="i", correlation_id="c", attempt=1, issue=issue()))


def test_runbook_refuses_code_and_unknown_issues():
    with pytest.raises(ProviderError) as unknown:
        RunbookProvider().propose(request(issue(IssueType.UNKNOWN.value)))
    with pytest.raises(ProviderError) as code:
        RunbookProvider().propose(request(issue("exception", code={"files": {"app.py": "x = 1"}})))
    assert unknown.value.category == code.value.category == "unsupported"


def _fix(*changes):
    return Fix(kind="config", provider="test", rationale="r", risk_level="low", changes=list(changes))


def test_policy_rejects_out_of_bounds_other_targets_and_huge_steps():
    validator = PolicyValidator(investigation=investigated())
    out_of_bounds = validator.validate(
        _fix(ConfigChange(setting="timeout_s", target="orders-api", proposed=3600)), issue(), {}
    )
    other_target = validator.validate(
        _fix(ConfigChange(setting="memory_mb", target="payments", current=256, proposed=512)), issue(), {}
    )
    huge_step = validator.validate(
        _fix(ConfigChange(setting="memory_mb", target="orders-api", current=128, proposed=4096)), issue(), {}
    )
    no_change = validator.validate(_fix(), issue(), {})

    assert not out_of_bounds.passed and "[1, 900]" in out_of_bounds.reason
    assert not other_target.passed and "payments" in other_target.reason
    assert not huge_step.passed and "x32.00" in huge_step.reason
    assert not no_change.passed
    assert all(e.check for e in huge_step.evidence)


def test_policy_measures_the_step_from_the_investigation_not_from_claims():
    # Given a function read at 128 MB, and a proposer and a reporter who both claim 3000 MB
    claimed = issue(signals={"memory_mb": 3000.0})
    inflated_claim = _fix(ConfigChange(setting="memory_mb", target="orders-api", current=3000, proposed=4096))

    # Then the claim is refused for what it is, and the x32 step from the reading is refused too
    result = PolicyValidator(investigation=investigated(memory_mb=128.0)).validate(inflated_claim, claimed, {})
    assert not result.passed and "starts memory_mb at 3000, but the function reads 128" in result.reason
    no_claim = _fix(ConfigChange(setting="memory_mb", target="orders-api", proposed=4096))
    result = PolicyValidator(investigation=investigated(memory_mb=128.0)).validate(no_claim, claimed, {})
    assert not result.passed and "x32.00" in result.reason

    # And with no investigation, or one that could not read the setting, nothing is in policy
    unread = Investigation(target="orders-api", gaps=["GetFunctionConfiguration orders-api: permission denied"])
    for inv in (None, unread):
        result = PolicyValidator(investigation=inv).validate(inflated_claim, claimed, {})
        assert not result.passed and "unknown" in result.reason


def test_policy_scope_is_the_investigated_function_not_the_service_name():
    # Given a service whose function has another name (IssueReported resource = function ARN)
    inv = investigated(target="orders-fn")
    to_function = _fix(ConfigChange(setting="memory_mb", target="orders-fn", proposed=256))
    to_service = _fix(ConfigChange(setting="memory_mb", target="orders-api", proposed=256))

    assert PolicyValidator(investigation=inv).validate(to_function, issue(), {}).passed
    refused = PolicyValidator(investigation=inv).validate(to_service, issue(), {})
    assert not refused.passed and "investigated function 'orders-fn'" in refused.reason


def test_policy_refuses_an_unbounded_step_from_zero_instead_of_calling_it_unknown():
    # Given a function read with no retries and a proposal to add one
    inv = investigated(max_retries=0.0)
    result = PolicyValidator(investigation=inv).validate(
        _fix(ConfigChange(setting="max_retries", target="orders-api", proposed=1)), issue(), {}
    )
    # Then the refusal says why (a factor from 0), not "unknown"
    assert not result.passed and "step from 0" in result.reason and "unknown" not in result.reason


@pytest.mark.parametrize(
    ("label", "setting", "proposed", "recorded"),
    [
        ("low", "memory_mb", 256, "low"),  # a raise within x2
        ("low", "memory_mb", 96, "medium"),  # lowers a limit (also below x0.75)
        ("low", "timeout_s", 2.9, "medium"),  # lowers a limit by a little
        ("low", "memory_mb", 512, "medium"),  # a x4 step: within policy, not unattended
        ("low", "max_retries", 1, "medium"),  # not a limit, but a x0.5 step
        ("low", "reserved_concurrency", 8, "medium"),
        ("high", "memory_mb", 256, "high"),  # the proposer's label is a floor
    ],
)
def test_qa_records_the_higher_of_its_own_risk_and_the_proposers(label, setting, proposed, recorded):
    from lambdas.qa.risk import assess

    fix = Fix(
        kind="config",
        provider="test",
        rationale="r",
        risk_level=label,
        changes=[ConfigChange(setting=setting, target="orders-api", proposed=proposed)],
    )

    assessment = assess(fix, investigated())

    assert assessment.level.value == recorded
    assert assessment.evidence().excerpt.startswith(f"risk {recorded}:")


def test_qa_calls_a_code_fix_or_a_step_of_unknown_size_at_least_medium():
    from lambdas.qa.risk import assess

    code = Fix(kind="code", provider="test", rationale="r", risk_level="low", files={"a.py": "x = 1\n"})
    unread = _fix(ConfigChange(setting="memory_mb", target="orders-api", proposed=256))

    assert assess(code, None).level.value == "medium"
    assert assess(unread, Investigation(target="orders-api")).level.value == "medium"
    assert "step size is unknown" in assess(unread, None).evidence().excerpt
