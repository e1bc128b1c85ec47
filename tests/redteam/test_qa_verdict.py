"""Red-team: QA's verdict on a code fix must mean the fix is proven, whatever the model wrote."""

from __future__ import annotations

import pytest

from lambdas.qa.validators.code import CodeValidator
from selfheal_core.events import Fix
from tests.support.qa_runner import InProcessRunner
from tests.unit.test_code_validator import EMPTY_LIST_TEST, ISSUE, SERVICE

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


# A pytest plugin that reports every failing test as passed, loaded by a configuration file
# pytest 9 reads (`pytest.toml`, `.pytest.toml`) but the tamper list does not know.
PASS_EVERYTHING_PLUGIN = (
    "import pytest\n\n\n"
    "@pytest.hookimpl(wrapper=True)\n"
    "def pytest_runtest_makereport(item, call):\n"
    "    report = yield\n"
    "    if report.when == 'call' and report.failed:\n"
    "        report.outcome = 'passed'\n"
    "        report.longrepr = None\n"
    "    return report\n"
)


@pytest.mark.parametrize("config_name", ["pytest.toml", ".pytest.toml"])
def test_a_pytest_toml_that_loads_a_plugin_is_tampering(config_name: str) -> None:
    """Expected: a fix that adds `pytest.toml` (or `.pytest.toml`) is rejected as
    `tampers with tests: pytest.toml`, like pytest.ini, tox.ini, setup.cfg and [tool.pytest].

    Why it matters: the runner's pytest is 9.2, which reads these TOML files before
    pyproject.toml/tox.ini/setup.cfg; lambdas/qa/validators/code.py `_CONFIG_FILES` omits them.
    Here the file loads a plugin module shipped as "source" that turns every failing test into a
    pass: the bug is untouched, yet QA records "new test(s) ... fail without it and pass with it"
    (the unpatched run has neither file, so its failure is genuine)."""
    fix = Fix(
        kind="code",
        provider="test",
        rationale="guard the empty list",
        risk_level="low",
        files={
            config_name: '[pytest]\naddopts = ["-p", "ci_helpers"]\n',
            "ci_helpers.py": PASS_EVERYTHING_PLUGIN,
        },
        tests=EMPTY_LIST_TEST,
    )

    result = CodeValidator(InProcessRunner()).validate(fix, ISSUE, SERVICE)

    assert not result.passed, f"QA validated a fix that only loads a pass-everything plugin: {result.reason}"
    assert result.reason == f"tampers with tests: {config_name}"


def test_test_files_named_by_a_projects_pytest_toml_are_protected() -> None:
    """Expected: when the project's own `pytest.toml` sets `python_files = ["check_*.py"]`, a fix
    that rewrites `check_stats.py` tampers with the tests, as it would if the same setting were
    in pytest.ini, tox.ini, setup.cfg or pyproject.toml.

    Why it matters: project_test_patterns reads python_files from every pytest config file but
    pytest 9's pytest.toml/.pytest.toml, so such a project's tests count as source: the fix's
    rewritten copy replaces the "untouched" project tests in every run, and a failing
    pre-existing test can be made to pass by editing the test."""
    from lambdas.qa.validators.code import tampered_path

    project = {
        "pytest.toml": '[pytest]\npython_files = ["check_*.py"]\n',
        "stats.py": SERVICE["stats.py"],
        "check_stats.py": "from stats import average\n\n\ndef test_empty():\n    assert average([]) == 0.0\n",
    }
    fix = Fix(
        kind="code",
        provider="test",
        rationale="fixed",
        risk_level="low",
        files={"check_stats.py": "def test_empty():\n    assert True\n"},
        tests=EMPTY_LIST_TEST,
    )

    assert tampered_path(project, fix) == "check_stats.py"
