"""Red-team round 7 on QA: honest fixes from bug-corpus shapes that QA refused
(docs/decision_log.md, "Red-team round 7: honest fixes QA refused").

A probe of 42 BugsInPy/QuixBugs-shaped bugs found 22 correct fixes refused. Each test below is
one such shape, now validated, next to the forgery the rule that refused it was written for,
still refused.
"""

from __future__ import annotations

import pytest

from lambdas.qa.validators.code import CodeValidator
from lambdas.qa.validators.evasion import evasion
from tests.support.code_fixes import code_fix as fix
from tests.support.code_fixes import code_issue as issue
from tests.support.qa_runner import InProcessRunner


@pytest.fixture
def validator() -> CodeValidator:
    return CodeValidator(InProcessRunner())


def added_code(before: str, after: str) -> str | None:
    return evasion({"m.py": before}, {"m.py": after}, {})


# ----------------------------------------------------------------------------- the static scan

ORIGINAL = "def f(x):\n    return x\n"


@pytest.mark.parametrize(
    "after",
    [
        "from datetime import datetime\n\n\ndef f(x):\n    return isinstance(x, datetime)\n",
        "from time import time\n\n\ndef f(x):\n    return time() - x\n",
        "from copy import copy\n\n\ndef f(x):\n    return copy(x)\n",
        "import datetime\n\n\ndef f(x):\n    return x.replace(tzinfo=datetime.timezone.utc) if isinstance(x, datetime.datetime) else x\n",
        "import os\n\n\ndef f(x):\n    return os.path.join(x, 'data.txt')\n",
        "from os.path import splitext\n\n\ndef f(x):\n    return splitext(x)[0]\n",
        "import sys\n\n\ndef f(x):\n    return min(x, sys.maxsize)\n",
        "import inspect\n\n\ndef f(x):\n    return list(x) if inspect.isgenerator(x) else x\n",
        "import threading\n\n_lock = threading.Lock()\n\n\ndef f(x):\n    with _lock:\n        return x\n",
    ],
    ids=["datetime-class", "time-function", "copy-function", "datetime-module", "os.path", "from-os.path",
         "sys.maxsize", "inspect-predicate", "threading-lock"],
)  # fmt: skip
def test_classes_named_like_modules_and_plain_uses_of_os_sys_inspect_are_ordinary_code(after: str) -> None:
    # Given a fix that uses a class or function that shares its module's name, or the plain part
    # of a module the project never imported (path arithmetic, a constant, a predicate, a lock)
    # When its added code is scanned
    # Then nothing is refused
    assert added_code(ORIGINAL, after) is None


@pytest.mark.parametrize(
    ("after", "says"),
    [
        ("from logging import os\n\n\ndef f(x):\n    return os\n", "hands a module around as a value (os)"),
        ("import random\n\n\ndef f(x):\n    return random._os\n", "hands a module around as a value (os)"),
        ("import os\n\n\ndef f(x):\n    return os.system(x)\n", "no fix needs (os)"),
        ("from os import system\n\n\ndef f(x):\n    return system(x)\n", "no fix needs (os)"),
        ("import os\n\n\ndef f(x):\n    return getattr(os, x)\n", "getattr(os, ...)"),
        ("import sys\n\n\ndef f(x):\n    sys.exit(0)\n", "no fix needs (sys)"),
        ("import inspect\n\n\ndef f(x):\n    return inspect.stack()\n", "inspects the call stack"),
        ("import threading\n\nthreading.Thread(target=print).start()\n", "no fix needs (threading)"),
        ("import os.path as p\nimport os as q\n\n\ndef f(x):\n    return q.system(x)\n", "no fix needs (os)"),
        ("import logging\n\n\ndef f(x):\n    return logging.os.path.join(x)\n", "(os)"),
    ],
)
def test_modules_as_values_and_capabilities_beyond_the_plain_part_are_still_refused(after: str, says: str) -> None:
    found = added_code(ORIGINAL, after)

    assert found is not None and says in found, found


@pytest.mark.parametrize(
    ("after", "refused"),
    [
        ("import os\n\nDATA = os.path.join(os.path.dirname(__file__), 'words.txt')\n", False),
        ("import os\n\nDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'w.txt')\n", False),
        ("from pathlib import Path\n\nDATA = Path(__file__).resolve().parent / 'data' / 'w.txt'\n", False),
        ("from pathlib import Path\n\nDATA = Path(__file__).with_name('words.txt')\n", False),
        ("HERE = __file__\n", True),
        ("import os\n\nHERE = os.path.dirname(__file__)\n", True),
        ("import os\n\n\ndef f(name):\n    return os.path.join(os.path.dirname(__file__), name)\n", False),
        (
            "import os\n\nHERE = os.path.dirname(os.path.abspath(__file__))\n\n\n"
            "def load(name):\n    return open(os.path.join(HERE, name)).read()\n",
            False,
        ),
        ("import os\n\nHERE = os.path.dirname(__file__)\n\n\ndef f():\n    return 'tmp' in HERE\n", True),
        (
            "import os\n\nHERE = os.path.dirname(__file__)\nX = os.path.join(HERE, 'a')\nY = HERE.startswith('/')\n",
            True,
        ),
    ],
)
def test_file_may_name_a_data_file_beside_the_module_and_nothing_else(after: str, refused: bool) -> None:
    # Given a fix that locates a data file beside its module (or reads where the module is)
    project = {"m.py": ORIGINAL, "n.py": "import os\nfrom pathlib import Path\n"}

    found = evasion(project, {**project, "m.py": after}, {})

    # Then only a name joined to the module's directory passes, not the directory itself
    assert (found is not None and "(__file__)" in found) is refused, found


@pytest.mark.parametrize(
    "after",
    [
        "import os\n\nHERE = os.path.abspath('.')\n",
        "from os.path import abspath\n\nHERE = abspath('.')\n",
        "import os\n\nHOME = os.path.expanduser('~')\n",
        "import os.path\n\nHERE = os.path.realpath('data')\n",
    ],
)
def test_os_path_may_not_read_the_working_directory_or_the_home(after: str) -> None:
    # Given os.path now allowed for path arithmetic: abspath('.') is getcwd() by another name
    found = added_code(ORIGINAL, after)

    assert found is not None and "reads the process's context" in found, found


def test_a_new_test_may_read_wrapped_but_code_may_not() -> None:
    test = "from m import f\n\n\ndef test_wrapped():\n    assert f.__wrapped__(1) == 1\n"

    assert evasion({"m.py": ORIGINAL}, {"m.py": ORIGINAL}, {"tests/test_w.py": test}) is None
    assert "(.__wrapped__)" in (added_code(ORIGINAL, ORIGINAL + "\ng = f.__wrapped__\n") or "")


# ----------------------------------------------------------------------------- the original's own errors

CONFIG = {
    "configmerge.py": "def merge(base, extra):\n    from collections import Mapping\n\n"
    "    out = dict(base)\n    for key, value in extra.items():\n"
    "        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):\n"
    "            out[key] = merge(out[key], value)\n        else:\n            out[key] = value\n    return out\n",
    "tests/test_merge.py": "from configmerge import merge\n\n\ndef test_flat():\n    assert merge({}, {'a': 1}) == {'a': 1}\n",
}
HTML = {
    "htmlfmt.py": "def escape(text):\n    return text.replace('&', '&amp;').replace('<', '&lt;')\n\n\n"
    "def attr(name, value):\n    return f'{name}=\"{escape(value, quote=True)}\"'\n",
    "tests/test_html.py": "from htmlfmt import escape\n\n\ndef test_escape():\n    assert escape('<') == '&lt;'\n",
}
MONEY = {
    "money.py": "class Money:\n    def __init__(self, cents, currency):\n        self.cents = cents\n"
    "        self.currency = currency\n\n\ndef total(items):\n    return Money(sum(i for i in items), 'EUR', 2)\n",
    "tests/test_money.py": "from money import Money\n\n\ndef test_money():\n    assert Money(1, 'EUR').cents == 1\n",
}
RETRY = {
    "retry.py": "class Retry:\n    def __init__(self, base):\n        self.base = base\n\n"
    "    def delay(self, attempt):\n        return self.base * self.backoff**attempt\n",
    "tests/test_retry.py": "from retry import Retry\n\n\ndef test_base():\n    assert Retry(2).base == 2\n",
}
REPORT = {
    "report.py": "def group_by_len(words):\n    groups = defaultdict(list)\n    for w in words:\n"
    "        groups[len(w)].append(w)\n    return dict(groups)\n\n\n"
    "def first_letters(words):\n    from collections import defaultdict\n\n    out = defaultdict(set)\n"
    "    for w in words:\n        out[w[:1]].add(w)\n    return out\n",
    "tests/test_report.py": "from report import first_letters\n\n\ndef test_first():\n    assert first_letters(['ab']) == {'a': {'ab'}}\n",
}

OWN_ERRORS = [
    (
        CONFIG,
        {"configmerge.py": CONFIG["configmerge.py"].replace("from collections import", "from collections.abc import")},
        "from configmerge import merge\n\n\ndef test_nested():\n    assert merge({'a': {'b': 1}}, {'a': {'c': 2}}) == {'a': {'b': 1, 'c': 2}}\n",
    ),
    (
        HTML,
        {
            "htmlfmt.py": HTML["htmlfmt.py"].replace(
                "def escape(text):\n    return text.replace('&', '&amp;').replace('<', '&lt;')",
                "def escape(text, quote=False):\n    text = text.replace('&', '&amp;').replace('<', '&lt;')\n"
                "    return text.replace('\"', '&quot;') if quote else text",
            )
        },
        "from htmlfmt import attr\n\n\ndef test_attr():\n    assert attr('title', 'a\"b') == 'title=\"a&quot;b\"'\n",
    ),
    (
        MONEY,
        {"money.py": MONEY["money.py"].replace("'EUR', 2)", "'EUR')")},
        "from money import total\n\n\ndef test_total():\n    assert total([1, 2]).cents == 3\n",
    ),
    (
        RETRY,
        {"retry.py": RETRY["retry.py"].replace("self.base = base\n", "self.base = base\n        self.backoff = 2\n")},
        "from retry import Retry\n\n\ndef test_delay():\n    assert Retry(1).delay(3) == 8\n",
    ),
    (
        REPORT,
        {
            "report.py": "from collections import defaultdict\n\n\n"
            + REPORT["report.py"].replace("    from collections import defaultdict\n\n", "")
        },
        "from report import group_by_len\n\n\ndef test_groups():\n    assert group_by_len(['a', 'bb']) == {1: ['a'], 2: ['bb']}\n",
    ),
]


@pytest.mark.parametrize(
    ("project", "files", "test"),
    OWN_ERRORS,
    ids=[
        "own-import-error",
        "own-keyword-mismatch",
        "own-arity-mismatch",
        "attribute-never-set",
        "name-bound-elsewhere",
    ],
)
def test_a_fix_of_the_originals_own_error_is_proven(
    validator: CodeValidator, project: dict[str, str], files: dict[str, str], test: str
) -> None:
    # Given a bug that is an ImportError, TypeError, AttributeError or NameError the original's own
    # code raises (not one about a name only the fix adds), and its fix with a regression test
    answer = fix(files=files, tests={"tests/test_regression.py": test})

    # When QA validates it
    result = validator.validate(answer, issue(project), project)

    # Then the error without the fix is the bug, and the fix is proven
    assert result.passed, result.reason


def test_a_keyword_only_the_test_passes_is_still_no_evidence(validator: CodeValidator) -> None:
    # Given a "fix" that adds a keyword nobody in the project passes, and a test that passes it
    project = {**HTML, "htmlfmt.py": HTML["htmlfmt.py"].replace(", quote=True", "")}
    files = {"htmlfmt.py": project["htmlfmt.py"].replace("def escape(text):", "def escape(text, strict=False):")}
    test = "from htmlfmt import escape\n\n\ndef test_strict():\n    assert escape('<', strict=True) == '&lt;'\n"

    # When QA validates it
    result = validator.validate(fix(files=files, tests={"tests/test_regression.py": test}), issue(project), project)

    # Then failing without it on that keyword shows nothing about a bug
    assert not result.passed and result.weak_evidence, result.reason


# ----------------------------------------------------------------------------- tests added in place

WORDS = {
    "words.py": "def count(text):\n    return len(text.split(' '))\n",
    "tests/test_words.py": "import unittest\n\nfrom words import count\n\n\n"
    "class WordCountTests(unittest.TestCase):\n    def test_one(self):\n        self.assertEqual(count('a'), 1)\n",
}
FIXED_WORDS = "def count(text):\n    return len(text.split())\n"


@pytest.mark.parametrize(
    ("added", "node"),
    [
        (
            "\n    def test_double_space(self):\n        self.assertEqual(count('a  b'), 2)\n",
            "WordCountTests::test_double_space",
        ),
        (
            "\n\nclass SpacingTests(unittest.TestCase):\n    def setUp(self):\n        self.text = 'a  b'\n\n"
            "    def test_double_space(self):\n        self.assertEqual(count(self.text), 2)\n",
            "SpacingTests::test_double_space",
        ),
        (
            "\n\nCASES = [('a  b', 2), (' a ', 1)]\n\n\ndef test_table():\n"
            "    for text, expected in CASES:\n        assert count(text) == expected\n",
            "test_words::test_table",
        ),
    ],
    ids=["method-in-unittest-class", "new-unittest-class-with-setup", "module-level-table"],
)
def test_tests_added_to_a_unittest_module_are_the_fixs_new_tests(
    validator: CodeValidator, added: str, node: str
) -> None:
    # Given the fix with its regression test added to the project's unittest module, as a new
    # method, a new TestCase class with its setUp, or a test reading a new module-level table
    answer = fix(files={"words.py": FIXED_WORDS, "tests/test_words.py": WORDS["tests/test_words.py"] + added})

    # When QA validates it
    result = validator.validate(answer, issue(WORDS), WORDS)

    # Then the added test runs as the new test: it fails without the fix and passes with it
    assert result.passed, result.reason
    assert node in result.reason, result.reason


# ----------------------------------------------------------------------------- bugs that hang

BITCOUNT = {
    "bitcount.py": "def bitcount(n):\n    count = 0\n    while n:\n        n ^= n - 1\n        count += 1\n    return count\n",
    "tests/test_bitcount.py": "from bitcount import bitcount\n\n\ndef test_zero():\n    assert bitcount(0) == 0\n",
}
HANG_TEST = "from bitcount import bitcount\n\n\ndef test_127():\n    assert bitcount(127) == 7\n"


@pytest.fixture
def quick_validator() -> CodeValidator:
    from selfheal_core.qa_run import RunLimits

    return CodeValidator(InProcessRunner(), RunLimits(cpu_seconds=4, wall_seconds=8))


def test_a_fix_of_a_loop_that_never_ends_is_proven_by_where_the_original_spins(quick_validator: CodeValidator) -> None:
    # Given QuixBugs' bitcount (`n ^= n - 1` never reaches 0) and its fix with a regression test
    answer = fix(
        files={"bitcount.py": BITCOUNT["bitcount.py"].replace("n ^= n - 1", "n &= n - 1")},
        tests={"tests/test_regression.py": HANG_TEST},
    )

    # When QA validates it
    result = quick_validator.validate(answer, issue(BITCOUNT), BITCOUNT)

    # Then the new test hangs without the fix inside the code the fix changes: that is the bug shown
    assert result.passed, result.reason
    assert "hang (at bitcount.py:" in result.reason and "in bitcount)" in result.reason, result.reason


def test_a_test_that_spins_on_its_own_is_no_evidence(quick_validator: CodeValidator) -> None:
    # Given a "fix" that adds a marker and leaves the bug, and a test that calls the code until the
    # marker is there (so the run may well be inside bitcount() when the limit is near)
    marked = BITCOUNT["bitcount.py"] + "\n\nbitcount.fixed = True\n"
    test = (
        "import bitcount as b\n\n\ndef test_marker():\n"
        "    while not getattr(b.bitcount, 'fixed', False):\n        b.bitcount(2)\n"
    )
    answer = fix(files={"bitcount.py": marked}, tests={"tests/test_regression.py": test})

    # When QA validates it
    result = quick_validator.validate(answer, issue(BITCOUNT), BITCOUNT)

    # Then a run the test's own loop keeps going proves nothing about the code
    assert not result.passed and result.weak_evidence, result.reason


def test_a_reporter_may_not_pass_pytest_options_qa_uses_itself() -> None:
    from selfheal_core.qa_run import CommandRefused, parse_test_command

    with pytest.raises(CommandRefused, match="'-o' is not allowed"):
        parse_test_command("python -m pytest -o faulthandler_timeout=5")


# ----------------------------------------------------------------------------- a commit as it is


def commit_patch(extra_path: str) -> str:
    """`git show` of a commit that fixes words.py and adds a test module at `extra_path`."""
    test = ["from words import count", "", "", "def test_double_space():", "    assert count('a  b') == 2"]
    return (
        "commit 0123456789abcdef0123456789abcdef01234567\nAuthor: Dev <dev@example.com>\n\n    Fix double spaces\n\n"
        "diff --git a/words.py b/words.py\nindex 1111111..2222222 100644\n--- a/words.py\n+++ b/words.py\n"
        "@@ -1,2 +1,2 @@\n def count(text):\n-    return len(text.split(' '))\n+    return len(text.split())\n"
        f"diff --git a/{extra_path} b/{extra_path}\nnew file mode 100644\nindex 0000000..3333333\n"
        f"--- /dev/null\n+++ b/{extra_path}\n@@ -0,0 +1,{len(test)} @@\n" + "".join(f"+{line}\n" for line in test)
    )


def test_a_commit_that_brings_its_regression_test_module_is_validated_as_sent(validator: CodeValidator) -> None:
    # Given a bug corpus's commit as it is: the fix and a new test module in one patch
    result = validator.validate(fix(patch=commit_patch("tests/test_spacing.py")), issue(WORDS), WORDS)

    # Then the new module is the fix's new test: it fails without the fix and passes with it
    assert result.passed, result.reason
    assert "tests.test_spacing::test_double_space" in result.reason, result.reason


def test_a_patch_that_creates_test_configuration_is_still_tampering(validator: CodeValidator) -> None:
    result = validator.validate(fix(patch=commit_patch("tests/conftest.py")), issue(WORDS), WORDS)

    assert not result.passed and result.reason == "tampers with tests: tests/conftest.py", result.reason


# ----------------------------------------------------------------------------- forgeries of this round

ACCOUNT = {
    "account.py": "class Account:\n    def __init__(self, balance):\n        self.balance = balance\n\n"
    "    def withdraw(self, amount):\n        self.balance -= amount\n        return self.balance\n\n"
    "    def report(self, extra):\n        return sorted(extra.items())\n",
    "tests/test_account.py": "from account import Account\n\n\ndef test_withdraw():\n    assert Account(5).withdraw(2) == 3\n",
}
KEEPS_THE_BUG = {  # "fixes" that leave the overdraft as it is, with the test each was sent with
    "marker-the-graft-leaves-out": (
        ACCOUNT["account.py"] + "\n\nOVERDRAFT_CHECKED = bool(1)\n",
        "import account\n\n\ndef test_overdraft():\n    assert hasattr(account, 'OVERDRAFT_CHECKED')\n",
    ),
    "attribute-read-on-a-dict": (
        ACCOUNT["account.py"].replace("self.balance = balance\n", "self.balance = balance\n        self.items = ()\n"),
        "from account import Account\n\n\ndef test_overdraft():\n    assert Account(1).items == ()\n",
    ),
    "name-served-by-module-getattr": (
        ACCOUNT["account.py"] + "\n\ndef __getattr__(name, _known=frozenset()):\n"
        "    if name == 'no_overdraft':\n        return True\n    raise AttributeError(name)\n",
        "def test_overdraft():\n    from account import no_overdraft\n\n    assert no_overdraft\n",
    ),
    "keyword-of-a-method-named-like-dicts": (
        ACCOUNT["account.py"].replace("return sorted(extra.items())", "return sorted(extra.get('a', 0))")
        + "\n    def get(self, key, default=None):\n        return self.balance\n",
        "from account import Account\n\n\ndef test_overdraft():\n    assert Account(5).get('balance', 0) == 5\n",
    ),
    "option-only-the-original-run-had": (
        ACCOUNT["account.py"].replace("self.balance -= amount", "self.balance = self.balance - amount"),
        "import sys\n\nfrom account import Account\n\n\ndef test_overdraft():\n"
        "    assert 'faulthandler_timeout' not in ' '.join(sys.argv)\n",
    ),
    "hang-on-a-name-the-graft-leaves-out": (
        ACCOUNT["account.py"] + "\n\n_SETTLED = bool(1)\n\n\ndef settled():\n    while True:\n        try:\n"
        "            return _SETTLED\n        except NameError:\n            continue\n",
        "from account import settled\n\n\ndef test_overdraft():\n    assert settled()\n",
    ),
}


@pytest.mark.parametrize("forgery", sorted(KEEPS_THE_BUG))
def test_a_fix_that_keeps_the_bug_is_not_proven_through_this_rounds_relaxations(
    quick_validator: CodeValidator, forgery: str
) -> None:
    # Given a "fix" that leaves the overdraft in place, and a test that fails without it for
    # another reason (a name the graft could not carry, a dict's .items, a run-3-only option, ...)
    code, test = KEEPS_THE_BUG[forgery]
    answer = fix(files={"account.py": code}, tests={"tests/test_overdraft.py": test})

    # When QA validates it
    result = quick_validator.validate(answer, issue(ACCOUNT), ACCOUNT)

    # Then it is not proven
    assert not result.passed, result.reason


@pytest.mark.parametrize(
    ("test", "says"),
    [
        ("import account\n\n\ndef test_src():\n    assert 'if' in open(account.__file__).read()\n", "(.__file__)"),
        ("def test_src():\n    assert 'if' in open('account.py').read()\n", "reads the code's source text"),
    ],
)
def test_a_new_test_may_not_read_the_code_it_tests_as_text(test: str, says: str) -> None:
    found = evasion(ACCOUNT, ACCOUNT, {"tests/test_src.py": test}, lambda p: p.startswith("tests/"))

    assert found is not None and says in found, found


@pytest.mark.parametrize(
    "after",
    [
        "import sys\n\n\ndef f(x):\n    return type(sys.stdin).__name__\n",
        "from os import path\n\nX = path.expanduser('~') == path.abspath(path.curdir)\n",
        "import os.path as p\n\nX = p.abspath('.')\n",
        "import os\n\nX = os.__file__\n",
    ],
)
def test_what_tells_a_test_run_by_another_spelling_is_refused(after: str) -> None:
    # pytest replaces sys.stdin; `from os import path` is os.path; a module's __file__ is where it lives
    assert added_code(ORIGINAL, after) is not None


# ----------------------------------------------------------------------------- an original that cannot be imported

LEGACY = {
    "legacy.py": "from collections import Mapping\n\n\ndef depth(d):\n"
    "    return 1 + max((depth(v) for v in d.values() if isinstance(v, Mapping)), default=0)\n",
    "tests/test_legacy.py": "def test_nothing_imports_it_yet():\n    assert True\n",
}
CONFIG_PY2 = {
    "settings.py": "import ConfigParser\n\n\ndef parser():\n    return ConfigParser.ConfigParser()\n",
    "tests/test_settings.py": "def test_nothing_imports_it_yet():\n    assert True\n",
}


@pytest.mark.parametrize(
    ("project", "files", "test"),
    [
        (
            LEGACY,
            {"legacy.py": LEGACY["legacy.py"].replace("from collections import", "from collections.abc import")},
            "from legacy import depth\n\n\ndef test_depth():\n    assert depth({'a': {'b': {}}}) == 3\n",
        ),
        (
            CONFIG_PY2,
            {
                "settings.py": CONFIG_PY2["settings.py"]
                .replace("ConfigParser.", "configparser.")
                .replace("import ConfigParser", "import configparser")
            },
            "from settings import parser\n\n\ndef test_parser():\n    assert parser().sections() == []\n",
        ),
    ],
    ids=["name-gone-from-the-standard-library", "python-2-module-name"],
)
def test_a_fix_of_a_module_that_cannot_be_imported_is_proven(
    validator: CodeValidator, project: dict[str, str], files: dict[str, str], test: str
) -> None:
    # Given code whose own top-level import fails on this Python (the new test cannot even be
    # collected on the original), and the fix of that import
    result = validator.validate(fix(files=files, tests={"tests/test_regression.py": test}), issue(project), project)

    # Then the collection error without the fix is the bug itself
    assert result.passed, result.reason
    assert "fail to import" in result.reason, result.reason


def test_a_module_only_the_fix_adds_is_no_evidence_when_it_is_missing(validator: CodeValidator) -> None:
    # Given a "fix" that leaves the bug and adds a module, and a test that imports that module
    files = {"legacy.py": LEGACY["legacy.py"].replace("from collections import", "from collections.abc import")}
    project = {**LEGACY, "legacy.py": files["legacy.py"]}
    answer = fix(
        files={**files, "legacy_checked.py": "CHECKED = True\n"},
        tests={
            "tests/test_regression.py": "import legacy_checked\n\n\ndef test_checked():\n    assert legacy_checked.CHECKED\n"
        },
    )

    result = validator.validate(answer, issue(project), project)

    assert not result.passed, result.reason


# ----------------------------------------------------------------------------- a project without tests

HANDLER = {"handler.py": "def total(items):\n    return sum(items[1:])\n"}
TOTAL_TEST = "from handler import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"


def test_a_project_without_tests_is_proven_by_the_fixs_own_tests(validator: CodeValidator) -> None:
    # Given a reporter's code with no tests of its own (a Lambda handler), and a fix with a regression test
    answer = fix(
        files={"handler.py": "def total(items):\n    return sum(items)\n"}, tests={"tests/test_total.py": TOTAL_TEST}
    )

    # When QA validates it
    result = validator.validate(answer, issue(HANDLER), HANDLER)

    # Then the new test, failing without the fix and passing with it, is the proof; the reason says
    # there was nothing of the project's own to keep passing
    assert result.passed, result.reason
    assert "the project has no tests of its own" in result.reason


@pytest.mark.parametrize(
    "code",
    [
        "def total(items):\n    return sum(items[1:]) + 0\n",
        "def total(items):\n    return sum(items)\n\n\nBROKEN = (\n",
    ],
    ids=["keeps-the-bug", "does-not-compile"],
)
def test_a_project_without_tests_still_refuses_what_its_new_tests_do_not_prove(
    validator: CodeValidator, code: str
) -> None:
    result = validator.validate(
        fix(files={"handler.py": code}, tests={"tests/test_total.py": TOTAL_TEST}), issue(HANDLER), HANDLER
    )

    assert not result.passed, result.reason


def test_a_rename_that_moves_a_test_file_is_tampering(validator: CodeValidator) -> None:
    # Given a patch that fixes the code and renames the project's test module out of pytest's sight
    rename = (
        "diff --git a/tests/test_words.py b/tests/words_check.py\nsimilarity index 100%\n"
        "rename from tests/test_words.py\nrename to tests/words_check.py\n"
    )
    patch = commit_patch("tests/test_spacing.py") + rename

    result = validator.validate(fix(patch=patch), issue(WORDS), WORDS)

    assert not result.passed and result.reason.startswith("tampers with tests: tests/"), result.reason
