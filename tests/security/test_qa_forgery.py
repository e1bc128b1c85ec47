"""Fixes that forge a green run from inside it (red-team round 4).

A fix's code runs in the same process as the project's tests, so whatever pytest can do, it
can: rewrite the JUnit report at exit and leave with status 0, hide code from QA's scan behind
a coding declaration, swap tests/ for its own copy, change the data or the doctests the tests
check, or turn a hanging test into a skip when the original run leaves no report to compare
with. Each of these passed QA with full evidence; each is now refused or weak evidence, and
the ordinary fixes beside them still pass the same checks.
"""

from __future__ import annotations

import json

import pytest

from lambdas.qa.validators.code import CodeValidator
from lambdas.qa.validators.evasion import evasion
from selfheal_core.events import CodeBundle, Fix, IssueReportedV1
from selfheal_core.qa_run import RunLimits
from tests.support.qa_runner import InProcessRunner

from .corpus_cases import load

CASE = load("off_by_one")  # pagination.py: page() returns one item too few
BUGGY = "    return items[start : start + size - 1]\n"
FIXED = "    return items[start : start + size]\n"


def fix(**fields: object) -> Fix:
    return Fix(kind="code", provider="test", rationale="fixed", risk_level="low", **fields)


def issue(files: dict[str, str], summary: str = "pages are one item short") -> IssueReportedV1:
    return IssueReportedV1(
        service="orders",
        issue_type="exception",
        summary=summary,
        code=CodeBundle(files=files, test_command="python -m pytest -q"),
    )


def still_buggy(appended: str, *, prefix: str = "") -> dict[str, str]:
    """The case's project with pagination.py left buggy plus `appended` (and `prefix` on top)."""
    module = CASE.files[CASE.module]
    assert BUGGY in module
    return {**CASE.files, CASE.module: prefix + module + appended}


# The report forger, as the red team sent it: at exit, strip the failures from the JUnit report
# pytest was told to write (its path is in sys.argv) and leave with status 0.
FORGE_AT_EXIT = """
import atexit, posix, re, sys
def _done():
    for a in sys.argv:
        if a.startswith("--junitxml="):
            p = a.split("=", 1)[1]; x = open(p).read()
            x = re.sub(r"<failure.*?</failure>", "", x, flags=re.S)
            open(p, "w").write(x)
    getattr(posix, "_exit")(0)
atexit.register(_done)
"""


@pytest.mark.parametrize(
    ("appended", "says"),
    [
        (FORGE_AT_EXIT.replace("sys.argv", "['--junitxml=reports/junit.xml']"), "(posix._exit)"),
        ("import posix\nposix.__dict__['_exit'](0)\n", "(.__dict__)"),
        ("import atexit\natexit.register(print)\n", "(atexit)"),
        ("import pickle\npickle.loads(b'cposix\\n_exit\\n(I0\\ntR.')\n", "(pickle)"),
        ("import runpy\nrunpy.run_path('notes.txt')\n", "(runpy)"),
        ("import importlib\nimportlib.import_module(''.join(reversed('niam.tsetyp_')))\n", "(importlib)"),
        ("import weakref\n_keep = weakref.finalize(object, print)\n", "(weakref)"),
        ("import unittest\n", "(unittest)"),
    ],
)
def test_a_fix_that_brings_a_capability_the_project_code_never_had_is_refused(appended: str, says: str) -> None:
    # Given a "fix" that leaves the bug and imports what could end or rewrite the run
    patched = still_buggy(appended)

    # Then QA refuses it before anything runs, naming what it reaches for first
    found = evasion(CASE.files, patched, CASE.new_tests)
    assert found is not None and says in found, found


def test_the_report_forger_is_refused_by_the_validator_before_the_runner_runs() -> None:
    runner = InProcessRunner()
    answer = fix(files={CASE.module: still_buggy(FORGE_AT_EXIT)[CASE.module]}, tests=CASE.new_tests)

    result = CodeValidator(runner).validate(answer, issue(CASE.files), CASE.files)

    assert not result.passed and not result.weak_evidence
    assert result.reason.startswith("tampers with the test run: pagination.py:"), result.reason
    assert "(sys.argv)" in result.reason, result.reason  # the first of what it adds, in source order
    assert runner.bundles == []


LIBRARY_PATCHES = {
    "assignment": "import unittest\n\nunittest.TestCase.assertEqual = lambda *a, **k: None\n",
    "from-import": "from unittest import TestCase\n\nTestCase.assertTrue = lambda *a, **k: None\n",
    "setattr": "import unittest\n\nsetattr(unittest.TestCase, 'assertEqual', lambda *a, **k: None)\n",
    "augmented": "import sys\n\nsys.argv += ['--forged']\n",
    "deleted": "import json\n\ndel json.JSONDecodeError\n",
}


@pytest.mark.parametrize("name", list(LIBRARY_PATCHES))
def test_a_fix_that_patches_a_library_module_is_refused_even_where_the_project_imports_it(name: str) -> None:
    # Given a project whose code imports unittest, sys and json already (so importing them is no news)
    project = {**CASE.files, "support.py": "import json\nimport sys\nimport unittest\n"}
    # When a fix patches one of them
    patched = {**project, CASE.module: LIBRARY_PATCHES[name] + project[CASE.module]}

    found = evasion(project, patched, CASE.new_tests)

    assert found is not None and "patches a library module" in found, found


@pytest.mark.parametrize(
    "condition",
    [
        '"AWS_LAMBDA_FUNCTION_NAME" not in os.environ',
        'any(k.startswith("TSETYP"[::-1]) for k in os.environ)',
        'os.getenv("CI") is not None',
        '"tsetyp"[::-1] in " ".join(sys.argv)',
        'not os.getcwd().startswith("/var/task")',
        '"/var/task" not in __file__',
        '"py" in open("/proc/self/cmdline").read()',
        'str(pathlib.Path.cwd()) != "/var/task"',
    ],
)
def test_a_fix_that_reads_the_process_context_to_tell_a_test_run_is_refused(condition: str) -> None:
    # Given a project whose code already uses os, sys and pathlib (so importing them is no news)
    project = {**CASE.files, "support.py": "import os\nimport pathlib\nimport sys\n\nNAME = os.name\n"}
    # When the "fix" returns the right page only where the process looks like a test run
    module = project[CASE.module]
    body = f"    if {condition}:\n    " + FIXED + BUGGY
    patched = {**project, CASE.module: "import os\nimport pathlib\nimport sys\n" + module.replace(BUGGY, body)}

    found = evasion(project, patched, CASE.new_tests)

    assert found is not None and "reads the process's context" in found, found


def test_a_new_test_may_find_its_files_and_read_the_environment() -> None:
    new_tests = {
        "tests/test_paths_regression.py": "import os\n\nHERE = os.path.dirname(__file__)\n\n\n"
        "def test_here():\n    assert os.environ.get('HOME') is not None or HERE\n"
    }
    assert evasion(CASE.files, CASE.files, new_tests) is None


@pytest.mark.parametrize(
    "hidden",
    [
        "# -*- coding: utf-7 -*-\n# note +AAo-import os+ADs- os.+AF8-exit(0)\n",
        # str.splitlines breaks at a form feed, Python's reader does not: the declaration is on line 2
        "# header\x0c\n# coding: utf-7\n# +AAo-print('hidden code ran')\n",
        "# header\u2028\n# coding: utf-7\n# +AAo-print('hidden code ran')\n",
    ],
    ids=["line-1", "form-feed", "line-separator"],
)
def test_a_coding_declaration_that_hides_code_from_the_scan_is_refused(hidden: str) -> None:
    # `+AAo-` is a newline in UTF-7: Python runs what QA reads as a comment
    found = evasion(CASE.files, still_buggy("", prefix=hidden), CASE.new_tests)
    assert found is not None and "a coding declaration of utf-7" in found, found


def test_a_declaration_the_file_already_had_is_kept_when_it_reads_ascii_as_ascii() -> None:
    old = {**CASE.files, CASE.module: "# -*- coding: latin-1 -*-\n" + CASE.files[CASE.module]}
    fixed = {**old, CASE.module: old[CASE.module].replace(BUGGY, FIXED)}
    assert evasion(old, fixed, CASE.new_tests) is None


@pytest.mark.parametrize(
    ("appended", "says"),
    [
        ("import typing\n_m = typing.sys.modules\n", "sys.modules"),
        ("import random\nrandom._os.environ.get('CI')\n", "os.environ"),
        ("import contextlib\ngetattr(contextlib.sys, 'exi' + 't')(0)\n", "(sys)"),
        ("import uuid\nuuid.os.getcwd()\n", "os.getcwd"),
        ("import json\ngetattr(json, ''.join(reversed('redoced')))\n", "getattr(json, ...)"),
    ],
)
def test_a_standard_module_reached_through_another_is_judged_as_itself(appended: str, says: str) -> None:
    # `typing.sys` is sys: no import of sys is needed to reach it
    found = evasion(CASE.files, still_buggy(appended), CASE.new_tests)
    assert found is not None and says in found, found


REPROBE = {
    "cr-only-line": ("\r# coding: utf-7\r# +AAo-print('HIDDEN RAN')\r", "a coding declaration of utf-7"),
    "builtins-by-vars": ("import json\n_bi = vars(json)['__builtins__']\n", "vars(json, ...)"),
    "builtins-by-name": ("import json\n_bi = json.__dict__\n", "(.__dict__)"),
    "print-self": ("_os = print.__self__.__import__('os')\n", "(.__self__)"),
    "function-globals": ("import json\n_g = json.dumps.__globals__\n", "(.__globals__)"),
    "subclasses": ("_c = object.__subclasses__()\n", "(.__subclasses__)"),
    "from-allowed-import-os": ("from logging import os\n_e = os.environ\n", "os.environ"),
    "from-allowed-import-sys": ("from logging import sys\n_a = sys.argv\n", "sys.argv"),
    "from-allowed-import-atexit": ("from logging import atexit\n", "(atexit)"),
    "submodule-chain": ("import email.utils\n_e = email.utils.os.environ\n", "os.environ"),
    "getattr-constant-module": ("import logging\n_s = getattr(logging, 'sys')\n", "(sys)"),
    "getattr-constant-frame": ("def f():\n    yield\n_fr = getattr(f(), 'gi_frame')\n", "gi_frame"),
    "handler-module": (
        "import logging\n_p = any(type(h).__module__ == 'x' for h in logging.getLogger().handlers)\n",
        "(.__module__)",
    ),
    "deep-expression": ("_x = " + "+".join(["1"] * 3000) + "\n", "nested too deeply to check"),
}


@pytest.mark.parametrize("name", list(REPROBE))
def test_routes_around_the_tracked_names_are_refused(name: str) -> None:
    appended, says = REPROBE[name]
    prefix, appended = (appended, "") if name == "cr-only-line" else ("", appended)
    found = evasion(CASE.files, still_buggy(appended, prefix=prefix), CASE.new_tests)
    assert found is not None and says in found, found


def test_a_reached_module_counts_as_imported_for_the_capability_rule() -> None:
    found = evasion(CASE.files, still_buggy("import logging\n_hook = logging.atexit.register\n"), CASE.new_tests)
    assert found is not None and "(atexit)" in found, found


def test_a_byte_order_mark_no_longer_blinds_the_scan() -> None:
    found = evasion(CASE.files, still_buggy("import os\nos._exit(0)\n", prefix="\ufeff"), CASE.new_tests)
    assert found is not None and "ends the interpreter (os._exit)" in found, found


def test_a_fix_may_not_change_the_data_its_tests_read() -> None:
    # Given a QuixBugs-style project whose test reads its cases from a JSON file
    project = {
        "stats.py": "def mean(xs):\n    return sum(xs) // len(xs)\n",
        "json_testcases/mean.json": json.dumps([[[2, 4], 3], [[1, 2], 1.5]]) + "\n",
        "tests/test_mean.py": (
            "import json\nfrom stats import mean\n\n\ndef test_mean():\n"
            "    for args, want in json.load(open('json_testcases/mean.json')):\n        assert mean(args) == want\n"
        ),
    }
    # When the "fix" rewrites the expected value to what the bug returns
    answer = fix(
        files={"json_testcases/mean.json": json.dumps([[[2, 4], 3], [[1, 2], 1]]) + "\n"},
        tests={
            "tests/test_mean_regression.py": "from stats import mean\n\n\ndef test_two():\n    assert mean([2, 4]) == 3\n"
        },
    )
    runner = InProcessRunner()

    result = CodeValidator(runner).validate(answer, issue(project, "mean rounds down"), project)

    assert result.reason == "tampers with tests: json_testcases/mean.json" and runner.bundles == []


def test_a_fix_may_not_change_a_doctest_example_but_may_add_one_or_fix_the_code() -> None:
    source = 'def add(a, b):\n    """Sum.\n\n    >>> add(2, 3)\n    5\n    """\n    return a - b\n'
    project = {"calc.py": source, "pytest.ini": "[pytest]\naddopts = --doctest-modules\n"}
    runner = InProcessRunner()

    tampered = fix(files={"calc.py": source.replace("    5\n", "    -1\n")}, tests={})
    result = CodeValidator(runner).validate(tampered, issue(project, "add subtracts"), project)
    assert result.reason == "tampers with tests: calc.py" and runner.bundles == []

    # A real fix keeps the example and may add another: it goes on to the runs
    added = source.replace("    5\n", "    5\n    >>> add(0, 0)\n    0\n").replace("a - b", "a + b")
    result = CodeValidator(runner).validate(fix(files={"calc.py": added}, tests={}), issue(project), project)
    assert not result.reason.startswith("tampers"), result.reason
    assert runner.bundles


SEARCH = '''def find(xs, x):
    """Index of x in the sorted list xs, or -1."""
    lo, hi = 0, len(xs)
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] == x:
            return mid
        if xs[mid] < x:
            lo = mid  # the bug: never advances, so a missing item loops forever
        else:
            hi = mid
    return -1
'''
HANGS = {
    "search.py": SEARCH,
    "tests/test_search.py": (
        "import pytest\n\nimport search\n\n\ndef test_found():\n    assert search.find([1, 3, 5], 3) == 1\n\n\n"
        "def test_missing():\n    if getattr(search, 'LEGACY', False):\n        pytest.skip('legacy search')\n"
        "    assert search.find([1, 3, 5], 4) == -1\n"
    ),
}
# Ends the loop with a wrong answer, and sets the flag that makes the project's test skip itself.
WRONG_BUT_ENDS = SEARCH.replace("lo = mid  #", "return 0  #") + "\nLEGACY = True\n"
ENDS_IN_TIME = """import threading

from search import find


def test_a_missing_item_does_not_hang():
    worker = threading.Thread(target=find, args=([1, 3, 5], 4), daemon=True)
    worker.start()
    worker.join(1.0)
    assert not worker.is_alive(), "find() hangs on a missing item"
"""


def test_when_the_original_run_leaves_no_report_a_test_the_fix_skips_is_weak_evidence() -> None:
    # Given a bug that hangs, so the original run times out without a report
    answer = fix(files={"search.py": WRONG_BUT_ENDS}, tests={"test_search_regression.py": ENDS_IN_TIME})
    # The hanging runs take the whole limit; the regression test's own run (a daemon thread spinning
    # beside pytest's teardown) needs a few seconds on a loaded machine: 4 s was flaky in CI.
    validator = CodeValidator(InProcessRunner(), RunLimits(wall_seconds=10, cpu_seconds=10))

    # When QA validates a "fix" under which the project's failing test skips itself
    result = validator.validate(answer, issue(HANGS, "search hangs on a missing id"), HANGS)

    # Then nothing shows that test passes now: weak evidence, never a pass
    assert not result.passed and result.weak_evidence, result.reason
    assert "the original run wrote no report" in result.reason and "test_missing" in result.reason, result.reason


def test_prose_beside_the_fix_and_docstrings_without_doctests_may_change() -> None:
    project = {
        "calc.py": 'def add(a, b):\n    """Sum.\n\n    >>> add(2, 3)\n    -1\n    """\n    return a - b\n',
        "CHANGELOG.md": "# Changes\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    }
    fixed = project["calc.py"].replace("    -1\n", "    5\n").replace("a - b", "a + b")
    answer = fix(files={"calc.py": fixed, "CHANGELOG.md": "# Changes\n- add adds\n"}, tests={})
    result = CodeValidator(InProcessRunner()).validate(answer, issue(project, "add subtracts"), project)
    assert not result.reason.startswith("tampers"), result.reason


def test_ordinary_fixes_still_pass_the_static_checks() -> None:
    project = {
        **CASE.files,
        "settings.py": "LIMIT = 10\n",
        "app/__init__.py": "",
        "app/io_helpers.py": "import os\n\nROOT = os.getcwd()\n",
    }
    module = CASE.files[CASE.module].replace(BUGGY, FIXED)
    patched = {
        **project,
        # new computation imports, a relative import, an own module's attribute set, os (the project uses it)
        CASE.module: "from __future__ import annotations\n\nimport math\nfrom collections import Counter\n"
        "from urllib.parse import unquote_plus\n\n"
        "import settings\n\nsettings.LIMIT = math.floor(10.5)\n_SEEN = Counter()\n_KEY = unquote_plus('a+b')\n"
        "\n\ndef _page_of(cursor):\n    return cursor.skip(10)\n" + module,
        "app/core.py": "import os\n\nfrom . import io_helpers\n\nPATH = os.path.join(io_helpers.ROOT, 'x')\n",
    }
    assert evasion(project, patched, CASE.new_tests) is None


ORDINARY_METHODS = """
import warnings, errno
class Point:
    def __init__(self, x):
        self.x = x
    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__
    def __repr__(self):
        warnings.warn("deprecated", DeprecationWarning)
        return f"{type(self).__module__}.{self.__class__.__module__}({self.x}, {errno.ENOENT})"
"""


def test_ordinary_methods_reading_their_own_instance_and_computation_imports_are_not_refused() -> None:
    """What bug-corpus fixes do every day: compare instances by `__dict__`, name the class's
    module in a repr, warn, use errno's constants."""
    assert evasion(CASE.files, still_buggy(ORDINARY_METHODS), CASE.new_tests) is None


@pytest.mark.parametrize(
    "appended",
    [
        "import posix\nclass P:\n    def m(self):\n        return posix.__dict__['_exit']\n",
        "def g(self):\n    return self.__dict__\n",  # a function, not a method: `self` is any argument
        "class P:\n    def m(self, other):\n        return other.__dict__\n",  # not a comparison
        "class P:\n    def m(self):\n        return self.m.__globals__\n",
    ],
)
def test_special_attributes_off_the_own_instance_are_still_refused(appended: str) -> None:
    found = evasion(CASE.files, still_buggy(appended), CASE.new_tests)
    assert found is not None and "special attribute" in found, found
