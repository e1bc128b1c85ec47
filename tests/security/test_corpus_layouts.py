"""Project layouts of third-party bug corpora (BugsInPy, QuixBugs, Defects4J-style ports) through QA.

test_corpus.py gives every case its three verdicts (fix validated, buggy code and non-fix
rejected); here is what each layout adds: a `src/` package whose fix re-exports a new name,
a fix that must touch two files, a unittest-style suite, tests beside the code.
"""

from __future__ import annotations

import pytest

from lambdas.qa.validators.code import CodeValidator, grafted_original
from selfheal_core.events import CodeBundle, Fix, IssueReportedV1
from tests.support.qa_runner import InProcessRunner

from .corpus_cases import NAMES, Case, load

LAYOUTS = ["gcd_src_layout", "mean_two_files", "sieve_unittest", "shunting_yard_beside"]


def issue_for(case: Case) -> IssueReportedV1:
    return IssueReportedV1(
        service=case.name.replace("_", "-"),
        issue_type="exception",
        summary="wrong results",
        code=CodeBundle(files=case.files, test_command="python -m pytest -q"),
    )


def fix(**fields: object) -> Fix:
    return Fix(kind="code", provider="test", rationale="see the diff", risk_level="low", **fields)


@pytest.fixture
def runner() -> InProcessRunner:
    return InProcessRunner()


@pytest.fixture
def validator(runner: InProcessRunner) -> CodeValidator:
    return CodeValidator(runner)


def test_the_corpus_holds_each_layout_as_trees() -> None:
    # Given the corpus as loaded
    cases = {name: load(name) for name in LAYOUTS}

    # Then every layout is a case, read from its fix/, nonfix/ and new_tests/ trees
    assert set(LAYOUTS) <= set(NAMES)
    gcd, mean, sieve, beside = (cases[name] for name in LAYOUTS)
    assert "pyproject.toml" in gcd.files and set(gcd.fix_tree) == {"src/mathx/__init__.py", "src/mathx/gcd.py"}
    assert set(mean.fix_tree) == {"stats/center.py", "stats/spread.py"} and set(mean.nonfix_tree) == {"stats/center.py"}
    assert "unittest.TestCase" in sieve.files[sieve.test_file]
    assert beside.test_files == ["test_shunting_yard.py"]
    assert list(beside.new_tests) == ["test_regression_shunting_yard.py"]


def test_the_graft_carries_a_name_re_exported_on_an_existing_import_line() -> None:
    # Given the src/ package's fix: a new `lcm` in gcd.py, re-exported on __init__'s existing import line
    case = load("gcd_src_layout")
    patched = {**case.files, **case.fix_tree}

    # When the original source is grafted with the names the fix adds
    grafted = grafted_original(case.files, patched)

    # Then the package still exports the original `gcd` and now `lcm` too; gcd itself is the buggy one
    init = grafted["src/mathx/__init__.py"]
    assert init.startswith(case.files["src/mathx/__init__.py"].rstrip("\n"))
    assert "from .gcd import lcm" in init
    assert "return gcd(a % b, b)" in grafted["src/mathx/gcd.py"] and "def lcm(" in grafted["src/mathx/gcd.py"]


def test_a_src_layout_fix_is_proven_on_the_bug_not_on_an_import_error(
    validator: CodeValidator, runner: InProcessRunner
) -> None:
    # Given the src/ package's fix, which adds and re-exports `lcm`
    case = load("gcd_src_layout")

    # When QA validates it
    result = validator.validate(fix(files=case.fix_tree, tests=case.new_tests), issue_for(case), case.files)

    # Then it is proven: without the fix the gcd test fails on the bug itself (not on importing lcm)
    assert result.passed, result.reason
    unpatched = next(s for r in runner.replies for s in r.steps if s.check == "new_tests_unpatched")
    outcomes = {t.id.split("::")[-1]: t for t in unpatched.tests or []}
    assert outcomes["test_gcd_of_two_multiples_of_seven"].reproduces
    assert "RecursionError" in outcomes["test_gcd_of_two_multiples_of_seven"].message


def test_a_fix_of_one_of_the_two_files_is_rejected(validator: CodeValidator) -> None:
    # Given a change to the mean only, when variance repeats the same integer division
    case = load("mean_two_files")

    # When QA validates it
    result = validator.validate(fix(files=case.nonfix_tree, tests=case.new_tests), issue_for(case), case.files)

    # Then the variance regression test names the half that was left
    assert not result.passed
    assert result.reason.startswith("the fix's new tests do not all pass on the patched code: not passing:")
    assert "test_variance_keeps_the_fraction" in result.reason and "test_mean_keeps_the_fraction" not in result.reason


def test_a_unittest_suite_is_counted_test_by_test(validator: CodeValidator, runner: InProcessRunner) -> None:
    # Given the sieve's unittest-style suite and its fix
    case = load("sieve_unittest")

    # When QA validates the fix
    result = validator.validate(fix(files=case.fix_tree, tests=case.new_tests), issue_for(case), case.files)

    # Then it passes, and the project's run reported each TestCase method (so none can go missing)
    assert result.passed, result.reason
    tests_run = next(s for r in runner.replies for s in r.steps if s.check == "tests")
    assert {t.id for t in tests_run.tests or []} == {
        "tests.test_sieve.SieveTest::test_no_primes_below_two",
        "tests.test_sieve.SieveTest::test_the_result_is_sorted",
    }
    assert "SieveRegressionTest::test_primes_up_to_ten" in result.reason


def test_a_test_file_beside_the_code_is_protected_like_one_in_tests(validator: CodeValidator) -> None:
    # Given the non-fix with the test beside the module emptied
    case = load("shunting_yard_beside")
    answer = fix(files={**case.nonfix_tree, "test_shunting_yard.py": "def test_ok():\n    assert True\n"})

    # When QA validates it
    result = validator.validate(answer, issue_for(case), case.files)

    # Then it is refused as tampering before anything runs
    assert result.reason == "tampers with tests: test_shunting_yard.py"
    assert [e.check for e in result.evidence] == ["tamper"]


# ------------------------------------------------------------------ when pytest itself stops

KEY = "AKIA" + "IOSFODNN7" + "CANARY1"  # built at run time: no credential-shaped literal in the repository


def test_a_collection_error_of_the_projects_tests_is_quoted(validator: CodeValidator) -> None:
    # Given a src/ fix whose package re-exports a name its module does not define
    case = load("gcd_src_layout")
    init = case.fix_tree["src/mathx/__init__.py"].replace("import gcd, lcm", "import gcd, gcd_all, lcm")
    broken = {**case.fix_tree, "src/mathx/__init__.py": init}

    # When QA validates it
    result = validator.validate(fix(files=broken, tests=case.new_tests), issue_for(case), case.files)

    # Then the reason quotes pytest's own error, without the runner's paths
    assert result.reason.startswith("tests fail on the patched code: pytest stopped: errors during collection"), (
        result.reason
    )
    assert (
        "ERROR collecting tests/test_gcd.py: ImportError: cannot import name 'gcd_all' from 'mathx.gcd'"
        in result.reason
    )
    assert "selfheal-run-" not in result.reason and len(result.reason) <= 1000


def test_a_usage_error_is_quoted(validator: CodeValidator) -> None:
    # Given a test command naming a test file the project does not have
    case = load("sieve_unittest")
    wrong = IssueReportedV1(
        service="sieve",
        issue_type="exception",
        summary="no primes",
        code=CodeBundle(files=case.files, test_command="python -m pytest -q tests/test_primes.py"),
    )

    # When QA validates the real fix
    result = validator.validate(fix(files=case.fix_tree, tests=case.new_tests), wrong, case.files)

    # Then the reason is pytest's own usage error
    assert result.reason == (
        "tests fail on the patched code: pytest stopped: usage error: "
        "ERROR: file or directory not found: tests/test_primes.py"
    ), result.reason


def test_a_new_test_that_does_not_collect_is_quoted_and_scrubbed(validator: CodeValidator) -> None:
    # Given the real fix with a regression test that breaks at import, carrying a credential
    case = load("shunting_yard_beside")
    broken = f"raise ImportError('cannot load the fixture for {KEY}')\n"

    # When QA validates it
    result = validator.validate(
        fix(files=case.fix_tree, tests={"test_regression_shunting_yard.py": broken}), issue_for(case), case.files
    )

    # Then the reason quotes the error with the credential redacted
    assert result.reason.startswith(
        "the fix's new tests do not all pass on the patched code: pytest stopped: errors during collection"
    ), result.reason
    assert "ImportError: cannot load the fixture for [REDACTED]" in result.reason and KEY not in result.reason
