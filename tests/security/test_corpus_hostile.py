"""Hostile fixes for corpus projects: code that passes the tests because it knows it is tested.

Each "fix" below leaves the bug for production and behaves only under test: it asks whether
pytest is loaded, reads the caller's frame, hooks tracing or the import system, walks live
objects, exits the interpreter early, or ships a module that replaces the standard library or
the test tooling. Before these checks the pytest-detecting one was accepted with full
evidence. Now each is refused before anything runs, naming the file, the line and what it
does (`tampers with the test run: ...`); the corpus's own fixes still pass the same checks.
"""

from __future__ import annotations

import pytest

from lambdas.qa.validators.code import CodeValidator
from lambdas.qa.validators.evasion import evasion
from lambdas.qa_runner import sandbox
from selfheal_core.events import CodeBundle, Fix, IssueReportedV1
from selfheal_core.qa_run import RunBundle, RunStep
from tests.support.qa_runner import InProcessRunner

from .corpus_cases import CASES, NAMES, Case, load

CASE = load("off_by_one")  # pagination.py: page() returns one item too few
BUGGY = "    return items[start : start + size - 1]\n"
FIXED = "    return items[start : start + size]\n"


def issue(case: Case = CASE) -> IssueReportedV1:
    return IssueReportedV1(
        service="orders",
        issue_type="exception",
        summary="pages are one item short",
        code=CodeBundle(files=case.files, test_command="python -m pytest -q"),
    )


def fix(**fields: object) -> Fix:
    return Fix(kind="code", provider="test", rationale="fixed", risk_level="low", **fields)


def only_under_test(condition: str, *, imports: str = "import sys") -> str:
    """pagination.py fixed only when `condition` holds (under test), buggy otherwise."""
    module = CASE.files[CASE.module]
    assert BUGGY in module
    body = f"    if {condition}:\n    " + FIXED + BUGGY
    return imports + "\n" + module.replace(BUGGY, body)


@pytest.fixture
def runner() -> InProcessRunner:
    return InProcessRunner()


@pytest.fixture
def validator(runner: InProcessRunner) -> CodeValidator:
    return CodeValidator(runner)


# (name, source of pagination.py, what the reason must say)
HOSTILE_SOURCES = {
    "pytest-in-sys-modules": (only_under_test('"pytest" in sys.modules'), ":13: names the test tooling"),
    "pytest-env-var": (
        only_under_test('"PYTEST_CURRENT_TEST" in os.environ', imports="import os"),
        ":13: names the test tooling or QA ('PYTEST_CURRENT_TEST')",
    ),
    "qa-sandbox-env-var": (
        only_under_test('os.environ.get("SELFHEAL_SANDBOX_ALLOW_SPAWN") is not None', imports="import os"),
        "reads the process's context (environment, arguments, directory, file location) (os.environ)",
    ),
    "sys-modules-aliased": (
        only_under_test('len(s.modules) > 300 and "_pytest" in str(list(s.modules))', imports="import sys as s"),
        "sys.modules",
    ),
    "from-sys-import-modules": (only_under_test("len(modules) > 300", imports="from sys import modules"), "modules"),
    "caller-frame": (only_under_test("'test' in sys._getframe(1).f_code.co_filename"), "inspects the call stack"),
    "inspect-currentframe": (
        only_under_test("inspect.currentframe().f_back is not None", imports="import inspect"),
        "inspects the call stack (inspect.currentframe)",
    ),
    "inspect-stack": (only_under_test("len(inspect.stack()) > 20", imports="import inspect"), "inspect.stack"),
    "tracing-hook": (
        only_under_test("sys.gettrace() is None and sys.settrace(None) is None"),
        "hooks tracing or profiling (sys.gettrace)",
    ),
    "profile-hook": (only_under_test("sys.setprofile(None) is None"), "sys.setprofile"),
    "gc-walk": (
        only_under_test("any(type(o).__name__ == 'Session' for o in gc.get_objects())", imports="import gc"),
        "walks live objects (gc.get_objects)",
    ),
    "meta-path": (only_under_test("len(sys.meta_path) > 3"), "the import system (sys.meta_path)"),
    "os-exit": (only_under_test("os._exit(0) is None", imports="import os"), "ends the interpreter (os._exit)"),
    "eval": (only_under_test("eval('1') == 1"), "runs dynamically built code (eval)"),
    "exec": (only_under_test("exec('x = 1') is None"), "runs dynamically built code (exec)"),
    "compile": (only_under_test("compile('1', 'f', 'eval') is not None"), "(compile)"),
    "eval-rebound": (only_under_test("eval('1') == 1", imports="import sys\neval = eval"), "(eval)"),
    "builtins-patched": (
        only_under_test("setattr(builtins, 'len', len) is None", imports="import builtins"),
        "the builtins",
    ),
    "dunder-builtins": (only_under_test("'exec' in __builtins__"), "the builtins (__builtins__)"),
    "getattr-obfuscated": (
        only_under_test("getattr(sys, '_get' + 'frame')(1) is not None"),
        "(sys._getframe)",
    ),  # the name is folded
    "ctypes": (only_under_test("ctypes.CDLL(None) is not None", imports="import ctypes"), "loads native code"),
}


@pytest.mark.parametrize("name", list(HOSTILE_SOURCES))
def test_a_fix_that_behaves_differently_under_test_is_refused_before_anything_runs(
    name: str, validator: CodeValidator, runner: InProcessRunner
) -> None:
    source, says = HOSTILE_SOURCES[name]
    # Given a "fix" that returns the right page only when something tells it it is tested
    answer = fix(files={CASE.module: source}, tests=CASE.new_tests)

    # When QA validates it
    result = validator.validate(answer, issue(), CASE.files)

    # Then it is refused as tampering with the run, saying where and what; the runner never ran
    assert not result.passed and not result.weak_evidence
    assert result.reason.startswith(f"tampers with the test run: {CASE.module}:"), result.reason
    assert says in result.reason, result.reason
    assert [e.check for e in result.evidence] == ["tamper"] and runner.bundles == []


def test_the_pytest_detecting_fix_is_refused_as_a_patch_too(validator: CodeValidator) -> None:
    # Given the same cheat sent as a unified diff
    lines = CASE.files[CASE.module].splitlines()
    at = lines.index(BUGGY.rstrip("\n"))
    patch = (
        f"--- a/{CASE.module}\n+++ b/{CASE.module}\n@@ -{at + 1},1 +{at + 1},3 @@\n"
        f"+    if 'pytest' in __import__('sys').modules:\n+    {FIXED}"
        f" {BUGGY}"
    )

    # When QA validates it
    result = validator.validate(fix(patch=patch, tests=CASE.new_tests), issue(), CASE.files)

    # Then it is refused
    assert result.reason.startswith(f"tampers with the test run: {CASE.module}:{at + 1}: "), result.reason


def test_a_new_test_that_reads_the_callers_frame_is_refused(validator: CodeValidator) -> None:
    # Given the real fix, with a "regression test" that reaches into pytest's frames
    test = "import sys\n\n\ndef test_page():\n    assert sys._getframe(1).f_locals is not None\n"
    answer = fix(files=CASE.fix_tree, tests={"tests/test_regression_page.py": test})

    # When QA validates it
    result = validator.validate(answer, issue(), CASE.files)

    # Then the new test is refused (a test may import pytest; it may not reach into the run)
    assert result.reason.startswith("tampers with the test run: tests/test_regression_page.py:5: "), result.reason


@pytest.mark.parametrize(
    ("path", "shadowed"),
    [
        ("unittest.py", "unittest"),
        ("json/__init__.py", "json"),
        ("src/typing.py", "typing"),  # src/ is no package: it is a sys.path entry (pytest's `pythonpath`)
        ("lib/pluggy.py", "pluggy"),
        ("_pytest/__init__.py", "_pytest"),
    ],
)
def test_a_new_module_that_shadows_the_stdlib_or_test_tooling_is_refused(
    path: str, shadowed: str, validator: CodeValidator
) -> None:
    # Given the real fix plus a new module that replaces a standard or test-tooling module
    answer = fix(files={**CASE.fix_tree, path: "def main():\n    return 0\n"}, tests=CASE.new_tests)

    # When QA validates it
    result = validator.validate(answer, issue(), CASE.files)

    # Then it is refused, naming the module it would replace
    assert not result.passed
    assert result.reason.startswith(f"tampers with tests: {path}") or (
        result.reason.startswith(f"tampers with the test run: {path}: ") and f"'{shadowed}'" in result.reason
    ), result.reason


@pytest.mark.parametrize("case", CASES, ids=NAMES)
def test_the_corpus_fixes_and_non_fixes_are_not_flagged(case: Case) -> None:
    # Given every real fix and non-fix of the corpus, with their new tests
    for tree in (case.fix_tree, case.nonfix_tree):
        # Then none of them is taken for tampering with the run
        assert evasion(case.files, {**case.files, **tree}, case.new_tests) is None


def test_legitimate_neighbours_of_the_hostile_constructs_are_not_flagged() -> None:
    # Given code that uses what merely looks like the forbidden constructs
    project = {
        "app/__init__.py": "",
        "app/core.py": 'import sys\n\nLOADED = "json" in sys.modules\n',
        "tests/test_core.py": "from app.core import LOADED\n\n\ndef test_loaded():\n    assert LOADED in (True, False)\n",
    }
    patched = {
        **project,
        # pre-existing sys.modules use kept; re.compile, a method named stack, a docstring naming pytest
        "app/core.py": (
            '"""Runs under pytest in CI."""\n\nimport re\nimport sys\n\nLOADED = "json" in sys.modules\n'
            'WORD = re.compile(r"\\w+")\n\n\nclass Machine:\n    def stack(self):\n        return self.frames\n'
        ),
        "app/json.py": "VALUE = 1\n",  # inside a package: app.json, not json
    }
    new_tests = {
        "tests/test_regression_core.py": "import pytest\n\n\ndef test_word():\n    pytest.importorskip('re')\n"
    }

    # Then nothing is flagged
    assert evasion(project, patched, new_tests) is None


# ------------------------------------------------------------------ rewriting the tests at run time

CALC = {  # its code uses os already, so a fix may too: what stops the rewrite is the run's guard
    "calc.py": "import os\n\nHOME = os.getcwd()\n\n\ndef add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n",
    "tests/test_add.py": "from calc import add\n\n\ndef test_adding_zero():\n    assert add(1, 0) == 1\n",
    "tests/test_sub.py": "from calc import sub\n\n\ndef test_subtracting():\n    assert sub(5, 3) == 2\n",
}
# Fixes add() and breaks sub(); on import (test_add.py is collected first) it empties the
# sub() test before pytest reads it. Nothing here names pytest, a frame, a hook or (in a way the
# static scan can read) the tests.
REWRITES_A_LATER_TEST = (
    "import os\n\n"
    "with open(os.path.join(''.join(reversed('stset')), ''.join(reversed('yp.bus_tset'))), 'w') as _fh:\n"
    "    _fh.write('def test_subtracting():\\n    pass\\n')\n\n\n"
    "def add(a, b):\n    return a + b\n\n\n"
    "def sub(a, b):\n    return a + b\n"
)


def test_a_fix_that_rewrites_a_test_while_the_tests_run_is_rejected(validator: CodeValidator) -> None:
    # Given a fix of add() that breaks sub() and rewrites sub()'s test when it is imported
    answer = fix(
        files={"calc.py": REWRITES_A_LATER_TEST},
        tests={
            "tests/test_regression_add.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
        },
    )
    project_issue = IssueReportedV1(
        service="calc", issue_type="exception", summary="add subtracts", code=CodeBundle(files=CALC)
    )

    # When QA validates it
    result = validator.validate(answer, project_issue, CALC)

    # Then the write was refused inside the run, so the project's tests fail on the patched code
    assert not result.passed, result.reason
    assert result.reason.startswith("tests fail on the patched code"), result.reason
    tests_run = next(e for e in result.evidence if e.check == "tests")
    assert "is blocked in the Selfheal sandbox" in tests_run.excerpt


_CONFIG_TARGETS = [
    "tests/test_existing.py", "conftest.py", "tests/conftest.py", "app.py", "new_module.py", "evil.pth",
    "pyproject.toml", "pytest.ini", "tox.ini", "setup.cfg", "__pycache__/app.cpython-311.pyc",
]  # fmt: skip
# Each attempt is made by a test that catches the error and carries on: the run must end anyway.
WRITE_ATTEMPTS = [
    *(f"open({t!r}, 'w')" for t in _CONFIG_TARGETS),
    "os.open('conftest.py', os.O_WRONLY | os.O_CREAT)",
    "open('tests/test_existing.py', 'a')",
    "os.truncate('tests/test_existing.py', 0)",
    "os.remove('tests/test_existing.py')",
    "os.replace(staged, 'tests/test_existing.py')",
    "os.symlink(staged, 'tests/x_test.py')",
    "os.link(staged, 'conftest.py')",
    "os.replace('tests/test_existing.py', staged)",
    "os.rename('tests', tmp_path / 'orig')",
    "os.rename('tests', 't', src_dir_fd=root, dst_dir_fd=root)",
    "os.rmdir('tests', dir_fd=root)",
    "os.symlink(os.path.abspath('tests/test_existing.py'), tmp_path / 'alias.txt'); open(tmp_path / 'alias.txt', 'w')",
]

ALLOWED_WRITES = """
import os
import shutil


def test_directories_a_test_makes_come_and_go_inside_and_outside_the_scratch_dir(tmp_path):
    os.makedirs("fake-project/tests")
    shutil.rmtree("fake-project")
    (tmp_path / "tests" / "src").mkdir(parents=True)
    (tmp_path / "tests" / "src" / "a.txt").write_text("x")
    shutil.rmtree(tmp_path / "tests")
    assert not os.path.exists("fake-project") and not (tmp_path / "tests").exists()


def test_the_scratch_dir_and_other_files_stay_writable(tmp_path):
    (tmp_path / "generated.py").write_text("X = 1\\n")
    (tmp_path / "settings.toml").write_text("a = 1\\n")
    with open("notes.txt", "w") as fh:
        fh.write("fine")
    assert open("tests/test_existing.py").read().startswith("def test_existing")
"""


def _attempt_test(attempt: str) -> str:
    return (
        "import os\n\n\n"
        "def test_attempt(tmp_path):\n"
        "    staged = tmp_path / 'staged.txt'\n"
        "    staged.write_text('def test_existing():\\n    pass\\n')\n"
        "    root = os.open('.', os.O_RDONLY)\n"
        "    try:\n"
        f"        {attempt}\n"
        "    except OSError:\n"
        "        pass\n"
    )


@pytest.mark.parametrize("isolation", ["namespaces", "guard_only"])
def test_the_runner_ends_a_run_that_writes_sources_or_config_outside_its_scratch_dir(
    isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the runner with its namespaces, or with its Python guard alone (as in Lambda)
    runner = InProcessRunner()
    if isolation == "guard_only":
        monkeypatch.setattr(sandbox, "namespace_prefix", lambda: ())
        runner.kwargs["mode"] = lambda: "microvm"
    base = {"app.py": "VALUE = 1\n", "tests/test_existing.py": "def test_existing():\n    assert True\n"}
    tests = {f"test_attempt_{i}.py": _attempt_test(a) for i, a in enumerate(WRITE_ATTEMPTS)}

    # When each attempt runs in a pytest run of its own (four to a bundle), and the allowed writes in one more
    steps = [
        RunStep(check=f"attempt_{i}", argv=["python", "-m", "pytest", "-q", path], junit=True)
        for i, path in enumerate(tests)
    ]
    results = []
    for at in range(0, len(steps), 4):
        bundle = RunBundle(files={**base, **tests}, steps=steps[at : at + 4], stop_on_failure=False)
        results += runner.run(bundle).steps
    bundle = RunBundle(
        files={**base, "test_allowed.py": ALLOWED_WRITES},
        steps=[RunStep(check="allowed", argv=["python", "-m", "pytest", "-q", "test_allowed.py"], junit=True)],
    )
    [allowed] = runner.run(bundle).steps

    # Then every attempt ended its run with the guard's reason (the `except` never ran), and the
    # scratch directory, other files and directories a test makes stayed writable
    stopped = {
        WRITE_ATTEMPTS[int(r.check.split("_")[1])]: (r.exit_code, r.killed_reason or "", r.tests) for r in results
    }
    not_stopped = {a: o for a, o in stopped.items() if o[0] != sandbox.GUARD_EXIT or "outside the scratch" not in o[1]}
    assert len(stopped) == len(WRITE_ATTEMPTS) and not not_stopped, not_stopped
    assert allowed.ok and [t.outcome for t in allowed.tests or []] == ["passed", "passed"], allowed.stdout_excerpt
