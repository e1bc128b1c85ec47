"""A fix cannot make the tests lie: the five cheats seen in the wild, and a few more.

Each cheat below was accepted before this check existed (the fix could replace or delete
tests and their configuration, and "fails without the fix" ran on a tree without the fix's
own conftest.py). Now a fix that creates, changes or deletes a test file, a conftest.py,
pytest/tox/setup.cfg configuration, a [tool.pytest] section, sitecustomize/usercustomize, a
*.pth file or a path outside the project is rejected with `tampers with tests: <path>`,
before anything runs. The pre-existing tests then run from an untouched copy.
"""

from __future__ import annotations

import pytest

from lambdas.qa.validators.code import CodeValidator
from selfheal_core.events import CodeBundle, Fix, IssueReportedV1
from tests.support.qa_runner import InProcessRunner

from .corpus_cases import load

CASE = load("wrong_operator")
MODULE, TEST_FILE = CASE.module, CASE.test_file
NEW_TEST = {CASE.new_test_path: CASE.new_test}


def issue(files: dict[str, str] | None = None, test_command: str = "python -m pytest -q") -> IssueReportedV1:
    return IssueReportedV1(
        service="shipping",
        issue_type="exception",
        summary="orders of 50.00 pay shipping",
        code=CodeBundle(files=files or CASE.files, test_command=test_command),
    )


def fix(**fields: object) -> Fix:
    return Fix(kind="code", provider="test", rationale="fixed", risk_level="low", **fields)


@pytest.fixture
def runner() -> InProcessRunner:
    return InProcessRunner()


@pytest.fixture
def validator(runner: InProcessRunner) -> CodeValidator:
    return CodeValidator(runner)


def _diff_delete(path: str, text: str) -> str:
    lines = text.splitlines()
    return f"--- a/{path}\n+++ /dev/null\n@@ -1,{len(lines)} +0,0 @@\n" + "".join(f"-{line}\n" for line in lines)


def _diff_xfail(path: str, text: str) -> str:
    lines = text.splitlines()
    body = []
    for line in lines:
        if line.startswith("def test_"):
            body.append("+@__import__('pytest').mark.xfail")
        body.append(f" {line}")
    added = sum(1 for b in body if b.startswith("+"))
    return f"--- a/{path}\n+++ b/{path}\n@@ -1,{len(lines)} +1,{len(lines) + added} @@\n" + "\n".join(body) + "\n"


SKIP_ALL = (
    "import pytest\n\n\ndef pytest_collection_modifyitems(items):\n"
    "    for item in items:\n        item.add_marker(pytest.mark.skip(reason='fine'))\n"
)

CHEATS = {
    # 1. rewrite the test file to trivial asserts
    "rewrite-tests": (
        fix(files={MODULE: CASE.nonfix, TEST_FILE: "def test_ok():\n    assert True\n"}, tests=NEW_TEST),
        TEST_FILE,
    ),
    # 2. mark the tests xfail (with a diff)
    "xfail-tests": (fix(patch=_diff_xfail(TEST_FILE, CASE.files[TEST_FILE]), tests=NEW_TEST), TEST_FILE),
    # 3. delete the test file with a diff
    "delete-tests": (fix(patch=_diff_delete(TEST_FILE, CASE.files[TEST_FILE]), tests=NEW_TEST), TEST_FILE),
    # 4. a pytest.ini that ignores the tests
    "pytest-ini-ignore": (
        fix(files={MODULE: CASE.fix, "pytest.ini": "[pytest]\naddopts = --ignore=tests\n"}, tests=NEW_TEST),
        "pytest.ini",
    ),
    # 5. a conftest.py that skips everything
    "conftest-skip-all": (
        fix(
            files={
                MODULE: CASE.nonfix,
                "conftest.py": (
                    "import pytest\n\n\ndef pytest_collection_modifyitems(items):\n"
                    "    for item in items:\n        item.add_marker(pytest.mark.skip(reason='fine'))\n"
                ),
            },
            tests=NEW_TEST,
        ),
        "conftest.py",
    ),
    # and their relatives
    "conftest-as-new-test": (
        fix(files={MODULE: CASE.fix}, tests={"tests/conftest.py": "collect_ignore = ['test_shipping.py']\n"}),
        "tests/conftest.py",
    ),
    "tox-ini": (
        fix(files={MODULE: CASE.fix, "tox.ini": "[pytest]\naddopts = -p no:python\n"}, tests=NEW_TEST),
        "tox.ini",
    ),
    "setup-cfg": (
        fix(files={MODULE: CASE.fix, "setup.cfg": "[tool:pytest]\naddopts = --co\n"}, tests=NEW_TEST),
        "setup.cfg",
    ),
    "pyproject-pytest-section": (
        fix(
            files={MODULE: CASE.fix, "pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-k nothing'\n"},
            tests=NEW_TEST,
        ),
        "pyproject.toml",
    ),
    "sitecustomize": (
        fix(files={MODULE: CASE.fix, "sitecustomize.py": "import os\nos._exit(0)\n"}, tests=NEW_TEST),
        "sitecustomize.py",
    ),
    "pth-file": (fix(files={MODULE: CASE.fix, "evil.pth": "import os; os._exit(0)\n"}, tests=NEW_TEST), "evil.pth"),
    "shadow-pytest": (fix(files={MODULE: CASE.fix, "pytest.py": "raise SystemExit(0)\n"}, tests=NEW_TEST), "pytest.py"),
    "new-test-replaces-existing": (
        fix(files={MODULE: CASE.fix}, tests={TEST_FILE: "def test_ok():\n    pass\n"}),
        TEST_FILE,
    ),
    "new-test-not-a-test-file": (fix(files={MODULE: CASE.fix}, tests={"helpers.py": "X = 1\n"}), "helpers.py"),
    "path-outside": (fix(files={MODULE: CASE.fix, "../escape.py": "x = 1\n"}, tests=NEW_TEST), "../escape.py"),
    "absolute-path": (fix(files={MODULE: CASE.fix, "/etc/cron.d/evil": "x\n"}, tests=NEW_TEST), "/etc/cron.d/evil"),
    # a second spelling of a protected file: checked by name, written by the file system as the file
    "conftest-trailing-slash": (
        fix(files={MODULE: CASE.nonfix, "conftest.py/": SKIP_ALL}, tests=NEW_TEST),
        "conftest.py/",
    ),
    "conftest-dot-part": (fix(files={MODULE: CASE.nonfix, "conftest.py/.": SKIP_ALL}, tests=NEW_TEST), "conftest.py/."),
    "conftest-leading-dot": (
        fix(files={MODULE: CASE.nonfix, "./conftest.py": SKIP_ALL}, tests=NEW_TEST),
        "./conftest.py",
    ),
    "conftest-doubled-slash": (
        fix(files={MODULE: CASE.fix}, tests={**NEW_TEST, "tests//conftest.py": SKIP_ALL}),
        "tests//conftest.py",
    ),
}


@pytest.mark.parametrize("name", list(CHEATS))
def test_a_fix_that_touches_the_tests_is_rejected_before_anything_runs(
    name: str, validator: CodeValidator, runner: InProcessRunner
) -> None:
    answer, path = CHEATS[name]

    # When QA validates a fix that creates, changes or deletes test infrastructure
    result = validator.validate(answer, issue(), CASE.files)

    # Then it is rejected naming the path, and the runner was never invoked
    assert not result.passed and not result.weak_evidence
    assert result.reason == f"tampers with tests: {path}"
    assert runner.bundles == []


def test_an_unchanged_copy_of_a_test_file_in_files_is_not_tampering(validator: CodeValidator) -> None:
    # Given the real fix, with the existing test file echoed back unchanged (models do that)
    answer = fix(files={MODULE: CASE.fix, TEST_FILE: CASE.files[TEST_FILE]}, tests=NEW_TEST)

    # Then it is validated on its merits
    result = validator.validate(answer, issue(), CASE.files)
    assert result.passed, result.reason


def test_a_pyproject_change_outside_the_pytest_section_is_allowed(validator: CodeValidator) -> None:
    # Given a project with a pyproject.toml whose pytest section the fix leaves alone
    pyproject = "[project]\nname = 'shipping'\nversion = '1.0'\n\n[tool.pytest.ini_options]\naddopts = '-q'\n"
    files = {**CASE.files, "pyproject.toml": pyproject}
    answer = fix(files={MODULE: CASE.fix, "pyproject.toml": pyproject.replace("1.0", "1.1")}, tests=NEW_TEST)

    # Then it is not tampering
    result = validator.validate(answer, issue(files), files)
    assert result.passed, result.reason


def test_a_new_test_that_writes_into_the_original_tree_proves_nothing(
    validator: CodeValidator, runner: InProcessRunner
) -> None:
    # Given a non-fix whose "regression test" passes anywhere, and tries to break the original
    # tree (the sibling directory it used to share a parent with, or any QA tree in /tmp)
    sabotage = (
        "import glob, os\n\n\n"
        "def test_sabotage():\n"
        "    broken = 'def shipping_cost(subtotal):\\n    raise AssertionError(\"sabotaged\")\\n'\n"
        "    targets = [p for p in glob.glob('../original/*.py') + glob.glob('/tmp/selfheal-*/*/*.py')\n"
        "               + glob.glob('/tmp/selfheal-*/*.py') if not os.path.basename(p).startswith('test')]\n"
        "    for target in targets:\n"
        "        try:\n"
        "            os.makedirs(os.path.dirname(target), exist_ok=True)\n"
        "            with open(target, 'w') as fh:\n"
        "                fh.write(broken)\n"
        "        except OSError:\n"
        "            pass\n"
    )
    answer = fix(files={MODULE: CASE.nonfix}, tests={"tests/test_sabotage.py": sabotage})

    # When QA validates it
    result = validator.validate(answer, issue(), CASE.files)

    # Then the first write outside the run's scratch directory ended the run that tried it, so
    # the fix is rejected before its test could run on the original; every run had a tree of its own
    # (it finds the code's files by listing: a test naming them would be refused before it runs)
    assert not result.passed and "selfheal sandbox stopped the run" in result.reason, result.reason
    assert len(runner.bundles) == 2  # patched, patched + new tests


@pytest.mark.parametrize(
    "command",
    [
        "python -S -c \"print(open('/proc/1/environ').read())\"",
        "python -I -m pytest",
        "python -E -m pytest -q",
        "python -c 'import os'",
        "python -m pytest -p no:python",
        "python -m pytest --rootdir=/ -q",
        "python -m pytest /etc",
        "python -m pytest ../other",
        "python -m pytest -q; cat /proc/1/environ",
        "sh -c 'python -m pytest'",
    ],
)
def test_a_test_command_other_than_pytest_with_paths_is_refused_whoever_sent_it(
    command: str, validator: CodeValidator, runner: InProcessRunner
) -> None:
    # Given an IssueReported whose test command carries interpreter flags or other options
    result = validator.validate(fix(files={MODULE: CASE.fix}, tests=NEW_TEST), issue(test_command=command), CASE.files)

    # Then the fix is not validated with it, and nothing ran
    assert not result.passed
    assert result.reason.startswith("the test command is refused")
    assert runner.bundles == []


@pytest.mark.parametrize(
    "command",
    ["pytest", "python3 -m pytest -x -q tests", "python -m pytest -k 'ships and not small' tests/test_shipping.py"],
)
def test_allowed_test_commands_run(command: str, validator: CodeValidator) -> None:
    result = validator.validate(fix(files={MODULE: CASE.fix}, tests=NEW_TEST), issue(test_command=command), CASE.files)

    assert result.passed, result.reason


def test_test_files_named_by_the_projects_own_python_files_setting_are_protected(validator: CodeValidator) -> None:
    # Given a project whose pytest.ini names its test files check_*.py
    files = {
        CASE.module: CASE.files[CASE.module],
        "pytest.ini": "[pytest]\npython_files = check_*.py\n",
        "check_shipping.py": CASE.files[TEST_FILE],
    }

    # When a fix rewrites that test file
    answer = fix(
        files={CASE.module: CASE.nonfix, "check_shipping.py": "def test_ok():\n    assert True\n"}, tests=NEW_TEST
    )
    result = validator.validate(answer, issue(files), files)

    # Then it is tampering
    assert result.reason == "tampers with tests: check_shipping.py"


@pytest.mark.parametrize(
    "path", ["__pycache__/test_shipping.cpython-311-pytest-9.2.0.pyc", "shipping.pyc", "tests/__pycache__/x.pyc"]
)
def test_bytecode_caches_are_protected(path: str, validator: CodeValidator) -> None:
    result = validator.validate(fix(files={CASE.module: CASE.fix, path: "x"}, tests=NEW_TEST), issue(), CASE.files)

    assert result.reason == f"tampers with tests: {path}"


# A plugin that reports every failing test as passed, shipped as "source" and loaded by a
# configuration file pytest 9 reads before pyproject.toml/tox.ini/setup.cfg.
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
def test_a_pytest_toml_that_loads_a_plugin_is_tampering(config_name: str, validator: CodeValidator) -> None:
    from tests.unit.test_code_validator import EMPTY_LIST_TEST, ISSUE, SERVICE

    answer = fix(
        files={config_name: '[pytest]\naddopts = ["-p", "ci_helpers"]\n', "ci_helpers.py": PASS_EVERYTHING_PLUGIN},
        tests=EMPTY_LIST_TEST,
    )

    result = validator.validate(answer, ISSUE, SERVICE)

    assert not result.passed
    assert result.reason == f"tampers with tests: {config_name}"


@pytest.mark.parametrize(
    ("config_name", "config"),
    [
        ("pytest.toml", '[pytest]\npython_files = ["check_*.py"]\n'),
        (".pytest.toml", '[pytest]\npython_files = "check_*.py"\n'),
        ("pyproject.toml", '[tool.pytest]\npython_files = ["check_*.py"]\n'),  # pytest 9's TOML mode
    ],
)
def test_test_files_named_by_a_projects_toml_configuration_are_protected(config_name: str, config: str) -> None:
    from lambdas.qa.validators.code import tampered_path

    project = {
        config_name: config,
        CASE.module: CASE.files[CASE.module],
        "check_shipping.py": CASE.files[TEST_FILE],
    }
    answer = fix(files={"check_shipping.py": "def test_ok():\n    assert True\n"}, tests=NEW_TEST)

    assert tampered_path(project, answer) == "check_shipping.py"
