"""Red-team: QA's verdict on a code fix must mean the fix is proven, whatever the model wrote."""

from __future__ import annotations

import pytest

from lambdas.qa.validators.code import CodeValidator
from selfheal_core.events import Fix
from tests.support.qa_runner import InProcessRunner
from tests.unit.test_code_validator import ISSUE, SERVICE

MARKER_TESTS = {
    # the missing name, checked without raising AttributeError
    "getattr-marker": "import stats\n\n\ndef test_the_empty_list_bug_is_fixed():\n    assert getattr(stats, 'FIXED', False)\n",
    # the fix's text, not its behaviour
    "source-text": (
        "import pathlib\n\n\ndef test_the_empty_list_bug_is_fixed():\n"
        "    assert 'FIXED' in pathlib.Path('stats.py').read_text()\n"
    ),
}


@pytest.mark.parametrize("variant", list(MARKER_TESTS))
def test_a_new_test_that_only_checks_for_a_marker_the_fix_adds_is_weak_evidence(variant: str) -> None:
    """Expected: a 'fix' that adds `FIXED = True` to stats.py and leaves average([]) dividing by
    zero, with a new test `assert getattr(stats, "FIXED", False)` (or one that greps the source for it), is weak evidence: the test
    fails without the fix only because a name the fix adds is missing.

    Why it matters: TestCase.reproduces refuses "a name that only the fix adds" by matching the
    failure message (ImportError, NameError, "module ... has no attribute"). Checking the name
    with getattr/hasattr turns the same missing name into a plain AssertionError, so QA records
    "new test(s) ... fail without it and pass with it" for a fix that changes no behaviour."""
    fix = Fix(
        kind="code",
        provider="test",
        rationale="guard the empty list",
        risk_level="low",
        files={"stats.py": "FIXED = True\n\n" + SERVICE["stats.py"]},
        tests={"tests/test_fixed.py": MARKER_TESTS[variant]},
    )

    result = CodeValidator(InProcessRunner()).validate(fix, ISSUE, SERVICE)

    assert not result.passed, f"QA validated a fix that changes no behaviour: {result.reason}"
