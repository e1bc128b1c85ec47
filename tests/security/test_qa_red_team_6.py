"""Red-team round 6 on QA: forgeries through aliases and built strings, markers, a sandbox that
could be asked, and the original's own NameError (docs/decision_log.md, "Red-team round 6").

Each forgery below was accepted with full evidence; each is now refused or weak evidence, and
the correct fixes beside them (a missing import, a typo'd name, a removed module attribute),
which were refused as weak evidence, now pass.
"""

from __future__ import annotations

import pytest

from lambdas.qa.validators.code import CodeValidator, changes_no_code, grafted_original
from lambdas.qa.validators.evasion import evasion
from selfheal_core.events import Fix
from tests.support.code_fixes import code_fix as fix
from tests.support.code_fixes import code_issue as issue
from tests.support.qa_runner import InProcessRunner

from .corpus_cases import load

CASE = load("off_by_one")  # pagination.py: page() returns one item too few
BUGGY = "    return items[start : start + size - 1]\n"
FIXED = "    return items[start : start + size]\n"


def fixed_plus(appended: str) -> dict[str, str]:
    """The case's project with the bug fixed and `appended` to the module."""
    return {**CASE.files, CASE.module: CASE.files[CASE.module].replace(BUGGY, FIXED) + appended}


# The report forger as it was sent: reach pytest's report class through another module's `sys`
# and a name built at run time, and turn every failure into a pass.
FORGER = """
import logging
def _forge():
    lg = logging
    rep = lg.sys.modules.get("_py" + "test.reports")
    rep.TestReport.from_item_and_call = staticmethod(lambda item, call: None)
"""


@pytest.mark.parametrize(
    ("appended", "says"),
    [
        (FORGER, "hands a module around as a value (logging)"),
        ("import logging\n_m = [logging][0].sys.modules\n", "hands a module around as a value (logging)"),
        ("import logging\n_m = getattr(logging.root, 'sys')\n", "(sys)"),
        ("_x = None\n_m = _x.sys.modules\n", "(sys.modules)"),  # whatever `_x` is, `.sys` is the module
        ("import json\n_r = {'a': json}\n", "hands a module around as a value (json)"),
        ("_name = '_py' + 'test.reports'\n", "names the test tooling or QA ('_pytest.reports')"),
        ("_name = f\"{'_py'}test\"\n", "names the test tooling or QA"),
        ("_name = '.'.join(['_pytest', 'reports'])\n", "names the test tooling or QA"),
        ("import urllib.request\n", "(urllib.request)"),
        ("from urllib import request\n", "(urllib.request)"),
        ("import logging.handlers\n", "(logging.handlers)"),
        ("_d = globals().update(page=None)\n", "reads or changes a module's namespace (globals())"),
        ("def _f():\n    return vars()\n", "(vars())"),
        ("_expected = open('tests/test_pagination.py').read()\n", "reads the project's tests"),
    ],
)
def test_a_fix_that_reaches_around_the_scan_is_refused_before_anything_runs(appended: str, says: str) -> None:
    found = evasion(CASE.files, fixed_plus(appended), CASE.new_tests)
    assert found is not None and says in found, found


def test_ordinary_code_and_tests_still_pass_the_new_rules() -> None:
    # Given a fix that builds strings, reads attributes of what it is given and logs, and a new
    # test that patches a standard module's function as tests do
    appended = (
        "import logging\nimport re\n\n_LOG = logging.getLogger(__name__)\n_WORD = re.compile('[a-z]+' + '-?')\n\n\n"
        "def describe(obj, name):\n    _LOG.info('%s: %s', name, getattr(obj, name, None))\n"
        "    return 'page ' + str(getattr(obj, 'number', 0)) + ' of ' + 'results'[::-1][::-1]\n"
    )
    new_test = (
        "import time\n\nfrom pagination import page\n\n\ndef test_a_page(monkeypatch):\n"
        "    monkeypatch.setattr(time, 'time', lambda: 0)\n    assert page([1, 2, 3], 0, 2) == [1, 2]\n"
    )
    # Then nothing is refused
    assert evasion(CASE.files, fixed_plus(appended), {"tests/test_regression_page.py": new_test}) is None


ACCOUNT = {
    "account.py": (
        "class Account:\n    def __init__(self, balance):\n        self.balance = balance\n\n"
        "    def withdraw(self, amount):\n        self.balance -= amount\n        return self.balance\n"
    ),
    "tests/test_account.py": "from account import Account\n\n\ndef test_withdraw():\n    assert Account(5).withdraw(2) == 3\n",
}


@pytest.fixture
def validator() -> CodeValidator:
    return CodeValidator(InProcessRunner())


@pytest.mark.parametrize(
    ("added", "test"),
    [
        ("    def can_withdraw(self, amount):\n        return True\n", "assert Account(1).can_withdraw(5)"),
        (
            "    def checked(self, amount, strict=True):\n        return amount\n",
            "assert Account(1).withdraw(5, strict=True) or True",
        ),
    ],
    ids=["marker-method", "marker-keyword"],
)
def test_a_test_of_a_name_the_fix_adds_is_weak_evidence(validator: CodeValidator, added: str, test: str) -> None:
    # Given a "fix" that leaves the overdraft bug and adds a method (or a keyword), and a test of it
    patched = ACCOUNT["account.py"] + "\n" + added
    if "strict" in test:
        patched = patched.replace("def withdraw(self, amount):", "def withdraw(self, amount, strict=False):")
    answer = fix(
        files={"account.py": patched},
        tests={"tests/test_overdraft.py": f"from account import Account\n\n\ndef test_overdraft():\n    {test}\n"},
    )

    # When QA validates it
    result = validator.validate(answer, issue(ACCOUNT), ACCOUNT)

    # Then the failure without the fix (no such attribute, no such keyword) shows nothing about the bug
    assert not result.passed and result.weak_evidence, result.reason


STATS = {
    "stats.py": "def mean(values):\n    total = sum(values)\n    return totl / len(values)\n\n\n"
    "def hyp(a, b):\n    return math.sqrt(a * a + b * b)\n",
    "tests/test_stats.py": "def test_nothing_yet():\n    assert True\n",
}


@pytest.mark.parametrize(
    ("fixed", "test"),
    [
        (
            STATS["stats.py"].replace("totl", "total"),
            "from stats import mean\n\n\ndef test_mean():\n    assert mean([1, 3]) == 2\n",
        ),
        (
            "import math\n\n\n" + STATS["stats.py"],
            "from stats import hyp\n\n\ndef test_hyp():\n    assert hyp(3, 4) == 5\n",
        ),
    ],
    ids=["typo-name", "missing-import"],
)
def test_a_fix_of_the_originals_own_name_error_is_proven(validator: CodeValidator, fixed: str, test: str) -> None:
    # Given a bug that is a NameError in the original (a typo, a missing import) and its fix
    answer = fix(files={"stats.py": fixed}, tests={"tests/test_regression.py": test})

    # When QA validates it
    result = validator.validate(answer, issue(STATS), STATS)

    # Then the NameError without the fix is the bug itself (the import is not grafted onto the original)
    assert result.passed, result.reason


def test_a_fix_that_changes_only_comments_changes_no_code(validator: CodeValidator) -> None:
    # Given a comment-only "fix" and a test that reads the source for it
    module = CASE.files[CASE.module].replace(BUGGY, "    # pages fixed (issue 42)\n" + BUGGY)
    reads_source = (
        "import pagination\n\n\ndef test_issue_42():\n"
        "    with open(pagination.__file__) as source:\n        assert 'issue 42' in source.read()\n"
    )
    answer = fix(files={CASE.module: module}, tests={"tests/test_issue_42.py": reads_source})

    # Then QA refuses it before running anything: the syntax tree is the original's
    result = validator.validate(answer, issue(CASE.files), CASE.files)
    # (the test reading the module as text is refused by the scan too: either way, nothing is proven)
    assert not result.passed and result.reason.startswith(("the fix changes no code", "tampers with the test run")), (
        result.reason
    )
    assert not changes_no_code(CASE.files, fixed_plus(""))


def test_what_the_fix_adds_cannot_change_the_originals_objects_in_the_graft() -> None:
    # Given a no-op "fix" whose added statements and new module would break the original when
    # appended to it (and so make a test fail there, as if it reproduced a bug)
    patched = {
        **ACCOUNT,
        "account.py": "_BROKEN = setattr(Account, 'withdraw', None) if False else None\n"
        + ACCOUNT["account.py"]
        + "\n\n@(lambda f: setattr(Account, 'withdraw', f) or f)\ndef _refund(self, amount):\n    return 0\n\n\n"
        "_LIMIT = 10\n\n\ndef helper():\n    return _LIMIT\n",
        "sabotage.py": "import account\n\n_X = setattr(account.Account, 'withdraw', lambda self, amount: -1)\nY = 1\n",
    }

    # When QA builds the original with only the names the fix adds
    grafted = grafted_original(ACCOUNT, patched)

    # Then inert definitions are carried, and nothing that runs code at import is
    assert "def helper" in grafted["account.py"] and "_LIMIT = 10" in grafted["account.py"]
    assert "setattr" not in grafted["account.py"] and "setattr" not in grafted["sabotage.py"]
    assert "Y = 1" in grafted["sabotage.py"]


def test_a_fix_that_swallows_the_sandboxs_refusal_is_stopped_with_its_run(validator: CodeValidator) -> None:
    # Given a correct fix that also phones home, catching the error the sandbox raised before
    beacon = (
        "import socket\n\n\ndef _beacon():\n    try:\n        socket.create_connection(('192.0.2.1', 80), timeout=0.2)\n"
        "    except OSError:\n        pass\n\n\n_beacon()\n"
    )
    files = {**CASE.files, "net.py": "import socket\n\nHOST = socket.gethostname\n"}  # the project uses socket
    answer = fix(files={CASE.module: beacon + CASE.files[CASE.module].replace(BUGGY, FIXED)}, tests=CASE.new_tests)

    # When QA validates it
    result = validator.validate(answer, issue(files), files)

    # Then the first attempt ended the run, so the project's tests never passed with the fix
    assert not result.passed and "selfheal sandbox stopped the run: network access" in result.reason, result.reason


def test_a_function_imported_by_name_is_not_taken_for_the_builtin_of_that_name() -> None:
    # `from re import compile` is re.compile, not the builtin that builds code
    appended = "from re import compile\n\n_WORD = compile(r'\\w+')\n"
    assert evasion(CASE.files, fixed_plus(appended), CASE.new_tests) is None
    assert evasion(CASE.files, fixed_plus("_code = compile('1', 'x', 'eval')\n"), CASE.new_tests) is not None


def test_a_new_test_may_be_named_as_pytest_finds_it_by_default(validator: CodeValidator) -> None:
    # Given the case's fix with its regression test named *_test.py (pytest's other default pattern)
    [(path, text)] = CASE.new_tests.items()
    answer = fix(files=fixed_plus(""), tests={path.replace("test_regression_off_by_one", "off_by_one_test"): text})

    # Then it is a new test like any other
    result = validator.validate(answer, issue(CASE.files), CASE.files)
    assert result.passed, result.reason


IN_PLACE = "tests/test_pagination.py"


def with_test_file(text: str) -> Fix:
    return fix(files={CASE.module: fixed_plus("")[CASE.module], IN_PLACE: text})


def test_a_fix_may_add_its_tests_to_a_test_module_the_project_has(validator: CodeValidator) -> None:
    # Given the fix, with its regression test added to the project's own test module (as in
    # BugsInPy and most pull requests), in a class of its own and with an import of its own
    added = (
        "\n\nimport math\n\n\nclass TestFullPages:\n    def test_a_full_page_has_size_items(self):\n"
        "        assert len(page(list(range(10)), 1, 3)) == math.floor(3.5)\n"
    )
    answer = with_test_file(CASE.files[IN_PLACE] + added)

    # When QA validates it
    result = validator.validate(answer, issue(CASE.files), CASE.files)

    # Then the added test is the new test: it fails without the fix and passes with it
    assert result.passed, result.reason
    assert "TestFullPages::test_a_full_page_has_size_items fail without it" in result.reason, result.reason


@pytest.mark.parametrize(
    "change",
    [
        "existing-test-edited",
        "existing-test-shadowed",
        "module-patched",
        "imported-name-rebound",
    ],
)
def test_anything_but_added_tests_in_a_test_module_is_still_tampering(validator: CodeValidator, change: str) -> None:
    original = CASE.files[IN_PLACE]
    first_test = original[original.index("def test") :].split("(")[0].removeprefix("def ")
    new_test = "\n\ndef test_new_one():\n    assert page([1, 2, 3], 0, 2) == [1, 2]\n"
    text = {
        "existing-test-edited": original.replace("assert ", "assert True or ", 1) + new_test,
        "existing-test-shadowed": original + new_test + f"\n\ndef {first_test}():\n    pass\n",
        # New fixtures, helpers and tables are additions (test_qa_bug_corpus_7.py); changing what is there is not.
        "module-patched": original + "\n\nimport pagination\npagination.page = lambda *a: [1, 2]\n" + new_test,
        "imported-name-rebound": original + "\n\npage = None\n" + new_test,
    }[change]

    result = validator.validate(with_test_file(text), issue(CASE.files), CASE.files)

    assert not result.passed and result.reason == f"tampers with tests: {IN_PLACE}", result.reason


# The second probe of this round: routes around the rules above.
@pytest.mark.parametrize(
    ("appended", "says"),
    [
        (
            "from logging import getLogger\n_m = getattr(getLogger, '__GLOBALS__'.lower())['sys'].modules\n",
            "special attribute",
        ),
        ("_n = '_pyt%s.reports' % 'est'\n", "names the test tooling or QA ('_pytest.reports')"),
        ("_n = '{}test'.format('_py')\n", "names the test tooling or QA"),
        ("import typing\n\n\ndef _where(m: \"__import__('sys').modules\"):\n    pass\n", "(__import__)"),
        ("import string\n_f = string.Formatter().get_field('0.__globals__[sys]', (print,), {})\n", "special attribute"),
        ("import operator\n_g = operator.attrgetter('__globals__.get')\n", "special attribute"),
    ],
)
def test_a_name_built_or_hidden_in_a_string_is_still_read(appended: str, says: str) -> None:
    found = evasion(CASE.files, fixed_plus(appended), CASE.new_tests)
    assert found is not None and says in found, found


def test_ordinary_attributes_named_like_modules_and_test_words_in_code_pass() -> None:
    appended = "def label(device, config):\n    return f'{device.os} {config.gc}'\n\n\nSOURCE_DIRS = ('src', 'tests')\n"
    assert evasion(CASE.files, fixed_plus(appended), CASE.new_tests) is None


@pytest.mark.parametrize(
    ("added_to_account", "test"),
    [
        ("    def can_withdraw(self, amount):\n        return True\n", "assert hasattr(Account, 'can_withdraw')"),
        ("    LIMIT = 0\n", "assert getattr(Account, 'LIMIT', None) == 0"),
    ],
    ids=["method-by-hasattr", "class-attribute"],
)
def test_a_member_the_fix_adds_to_a_class_is_on_the_original_too(
    validator: CodeValidator, added_to_account: str, test: str
) -> None:
    # Given a "fix" that only adds a member to the class, and a test that only looks for it
    answer = fix(
        files={"account.py": ACCOUNT["account.py"] + added_to_account},
        tests={"tests/test_marker.py": f"from account import Account\n\n\ndef test_marker():\n    {test}\n"},
    )

    # Then the test passes on the original plus what the fix adds: weak evidence
    result = validator.validate(answer, issue(ACCOUNT), ACCOUNT)
    assert not result.passed and result.weak_evidence, result.reason


def test_a_graft_never_runs_an_assignment_to_an_attribute_or_a_decorator_of_the_fixs_own() -> None:
    patched = {
        **ACCOUNT,
        "account.py": ACCOUNT["account.py"]
        + "\n\n_saved = Account.withdraw\n_off = Account.withdraw = lambda self, amount: -1\nAccount.withdraw = _saved\n\n\n"
        "def cache(f):\n    Account.withdraw = None\n    return f\n\n\n@cache\ndef _helper():\n    return 1\n",
    }
    grafted = grafted_original(ACCOUNT, patched)["account.py"]
    assert "_off =" not in grafted and "@cache" not in grafted
    assert "_saved = Account.withdraw" in grafted and "def cache" in grafted  # inert: bound, nothing run


def test_a_new_test_that_reads_the_source_text_is_refused() -> None:
    reads = "import inspect\n\nimport pagination\n\n\ndef test_text():\n    assert 'size' in inspect.getsource(pagination)\n"
    found = evasion(CASE.files, fixed_plus(""), {"tests/test_text.py": reads})
    assert found is not None and "reads the code's source text" in found, found
