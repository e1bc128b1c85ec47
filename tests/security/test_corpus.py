"""The corpus through QA's CodeValidator, with the runner in-process (namespaces on this machine).

For every bug kind (off-by-one, wrong operator, missing base case, wrong loop bounds) and
layout (src/ package, a fix across two files, unittest suite, tests beside the code): the
real fix is accepted, the buggy code itself and a change that does not fix the bug are
rejected, and a "fix" that tampers with the tests is rejected before anything runs.
"""

from __future__ import annotations

import pytest

from lambdas.qa.validators.code import CodeValidator
from selfheal_core.events import CodeBundle, Fix, IssueReportedV1
from tests.support.qa_runner import InProcessRunner

from .corpus_cases import CASES, NAMES, Case

pytestmark = pytest.mark.parametrize("case", CASES, ids=NAMES)


def issue_for(case: Case) -> IssueReportedV1:
    return IssueReportedV1(
        service=case.name.replace("_", "-"),
        issue_type="exception",
        severity="high",
        summary=f"wrong results from {', '.join(case.fix_tree)}",
        code=CodeBundle(files=case.files, test_command="python -m pytest -q"),
    )


def fix(**fields: object) -> Fix:
    return Fix(kind="code", provider="test", rationale="see the diff", risk_level="low", **fields)


@pytest.fixture(scope="module")
def validator() -> CodeValidator:
    return CodeValidator(InProcessRunner())


def test_the_real_fix_is_accepted(case: Case, validator: CodeValidator) -> None:
    # Given the real fix and a regression test
    answer = fix(files=case.fix_tree, tests=case.new_tests)

    # When QA validates it
    result = validator.validate(answer, issue_for(case), case.files)

    # Then it passes on evidence: the new test fails on the original and passes on the fix
    assert result.passed and not result.weak_evidence, (result.reason, [e.excerpt[-300:] for e in result.evidence])
    checks = {e.check: e for e in result.evidence}
    assert checks["new_tests_unpatched"].exit_code == 1 and checks["new_tests"].exit_code == 0
    assert {e.isolation for e in result.evidence if e.check != "apply"} == {"namespaces"}


def test_the_buggy_code_is_rejected(case: Case, validator: CodeValidator) -> None:
    # Given the regression tests with the code as it is (the fix's files, unchanged)
    answer = fix(files=case.buggy_tree, tests=case.new_tests)

    # When QA validates it
    result = validator.validate(answer, issue_for(case), case.files)

    # Then it is rejected: the project's tests (where they catch the bug) or the regression tests fail on it
    assert not result.passed, result.reason
    assert result.reason.startswith(("tests fail on the patched code", "the fix's new tests do not all pass")), (
        result.reason
    )


def test_a_change_that_does_not_fix_the_bug_is_rejected(case: Case, validator: CodeValidator) -> None:
    # Given a plausible change that leaves the bug (with the same regression tests)
    answer = fix(files=case.nonfix_tree, tests=case.new_tests)

    # When QA validates it
    result = validator.validate(answer, issue_for(case), case.files)

    # Then it is rejected: the regression test (or the project's tests) fail with it
    assert not result.passed, result.reason
    assert result.reason.startswith(("tests fail on the patched code", "the fix's new tests do not all pass")), (
        result.reason
    )


def test_a_fix_that_rewrites_the_tests_is_rejected_before_anything_runs(case: Case, validator: CodeValidator) -> None:
    # Given the non-fix with the project's test file rewritten to trivial asserts
    trivial = "def test_everything_is_fine():\n    assert True\n"
    answer = fix(
        files={**case.nonfix_tree, case.test_file: trivial},
        tests={path: "def test_fixed():\n    assert 1 == 1\n" for path in case.new_tests},
    )

    # When QA validates it
    result = validator.validate(answer, issue_for(case), case.files)

    # Then it is rejected as tampering, and no run was made
    assert result.reason == f"tampers with tests: {case.test_file}"
    assert [e.check for e in result.evidence] == ["tamper"]
