"""Red-team: QA's verdict on a code fix must mean the fix is proven, whatever the model wrote."""

from __future__ import annotations

from lambdas.qa.validators.code import CodeValidator
from selfheal_core.events import Fix
from tests.support.qa_runner import InProcessRunner
from tests.unit.test_code_validator import EMPTY_LIST_TEST, ISSUE, SERVICE

# The bug is left in place; importing the module disables pytest's test execution, so every
# test "passes" in the runs where this source is on the path (1 and 2), while run 3 (original
# source + new test) genuinely fails and run 4 (original source) is whatever it was.
NEUTERING_SOURCE = (
    "import _pytest.python\n"
    "_pytest.python.Function.runtest = lambda self: None\n"
    "\n"
    + SERVICE["stats.py"]
)


def test_a_fix_whose_source_disables_pytest_is_not_validated() -> None:
    """Expected: a 'fix' that leaves average([]) dividing by zero and instead, at import time,
    replaces pytest's Function.runtest with a no-op is rejected (its new test does not really
    pass with it).

    Why it matters: tamper detection is by path only (tests, conftest, ini files, *.pth,
    sitecustomize, shadowing names) and the code under test runs inside the pytest process
    that writes the junit report QA believes. Model output that patches pytest from the
    service's own module gets a passing QA record ("new test(s) ... fail without it and pass
    with it"), and in semi/full auto a PATCH_READY incident whose patch fixes nothing."""
    fix = Fix(
        kind="code",
        provider="test",
        rationale="guard the empty list",
        risk_level="low",
        files={"stats.py": NEUTERING_SOURCE},
        tests=EMPTY_LIST_TEST,
    )

    result = CodeValidator(InProcessRunner()).validate(fix, ISSUE, SERVICE)

    assert not result.passed, f"QA validated a fix that only disables pytest: {result.reason}"
