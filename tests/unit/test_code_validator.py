"""QA proves a code fix through the runner: it applies, compiles, passes with the fix, fails without.

The runner is called in-process here (tests/support/qa_runner.py) through the same JSON
contract as its `lambda:Invoke`; each run lays out its own tree.
"""

from __future__ import annotations

import pytest

from lambdas.qa.validators.code import CodeValidator, FixError, apply_patch
from selfheal_core.events import CodeBundle, Fix, IssueReportedV1
from selfheal_core.qa_run import RunBundle, RunLimits, RunReply, StepResult, TestCase
from tests.support.qa_runner import InProcessRunner

# A small service with a real bug: average([]) raises ZeroDivisionError.
SERVICE = {
    "stats.py": (
        "def average(values):\n"
        "    return sum(values) / len(values)\n"
        "\n"
        "\n"
        "def handler(event, context):\n"
        '    return {"average": average(event["values"])}\n'
    ),
    "tests/test_stats.py": (
        "from stats import average, handler\n"
        "\n"
        "\n"
        "def test_average_of_values():\n"
        "    assert average([1, 2, 3]) == 2\n"
        "\n"
        "\n"
        "def test_handler_returns_the_average():\n"
        '    assert handler({"values": [2, 4]}, None) == {"average": 3}\n'
    ),
}
GOOD_PATCH = """\
--- a/stats.py
+++ b/stats.py
@@ -1,2 +1,4 @@
 def average(values):
+    if not values:
+        return 0.0
     return sum(values) / len(values)
"""
EMPTY_LIST_TEST = {
    "tests/test_empty_values.py": (
        "from stats import handler\n"
        "\n"
        "\n"
        "def test_empty_list_averages_to_zero():\n"
        '    assert handler({"values": []}, None) == {"average": 0.0}\n'
    )
}
ISSUE = IssueReportedV1(
    service="stats-api",
    issue_type="exception",
    summary="ZeroDivisionError: division by zero in average()",
    code=CodeBundle(files=SERVICE, test_command="python -m pytest -q"),
)


def code_fix(**fields: object) -> Fix:
    return Fix(kind="code", provider="test", rationale="guard the empty list", risk_level="low", **fields)


@pytest.fixture(scope="module")
def validator() -> CodeValidator:
    return CodeValidator(InProcessRunner())


def test_a_good_patch_with_a_reproducing_test_passes(validator: CodeValidator) -> None:
    result = validator.validate(code_fix(patch=GOOD_PATCH, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert result.passed, result.reason
    assert not result.weak_evidence
    checks = {e.check: e for e in result.evidence}
    assert list(checks) == ["apply", "compile", "tests", "new_tests", "new_tests_unpatched", "tests_unpatched"]
    assert all(e.passed for e in result.evidence)
    assert checks["tests"].command == "python -m pytest -q"
    # The project's own tests ran without the fix's new test beside them.
    assert checks["tests"].exit_code == 0 and "2 passed" in checks["tests"].excerpt
    assert checks["new_tests"].exit_code == 0 and "1 passed" in checks["new_tests"].excerpt
    assert checks["new_tests_unpatched"].exit_code == 1
    assert "ZeroDivisionError" in checks["new_tests_unpatched"].excerpt
    assert all(e.duration_ms is not None for e in result.evidence[1:])
    assert {e.isolation for e in result.evidence[1:]} <= {"namespaces", "none"}


def test_a_good_fix_as_whole_files_passes(validator: CodeValidator) -> None:
    fixed = SERVICE["stats.py"].replace("    return sum", "    if not values:\n        return 0.0\n    return sum")

    result = validator.validate(code_fix(files={"stats.py": fixed}, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert result.passed, result.reason


def test_a_patch_that_does_not_compile_is_rejected(validator: CodeValidator) -> None:
    broken = GOOD_PATCH.replace("+    if not values:", "+    if not values")

    result = validator.validate(code_fix(patch=broken, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert not result.passed
    assert "does not compile" in result.reason
    assert result.evidence[-1].check == "compile" and not result.evidence[-1].passed
    assert "SyntaxError" in result.evidence[-1].excerpt


def test_a_patch_that_breaks_existing_tests_is_rejected(validator: CodeValidator) -> None:
    wrong = (
        "--- a/stats.py\n+++ b/stats.py\n@@ -1,2 +1,2 @@\n def average(values):\n"
        "-    return sum(values) / len(values)\n+    return sum(values) / (len(values) or 1) + 1\n"
    )

    result = validator.validate(code_fix(patch=wrong, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert not result.passed
    assert "tests fail on the patched code" in result.reason
    failed = [e for e in result.evidence if not e.passed]
    assert [e.check for e in failed] == ["tests"] and failed[0].exit_code == 1


def test_a_patch_that_does_not_apply_is_rejected_with_the_reason(validator: CodeValidator) -> None:
    stale = GOOD_PATCH.replace(" def average(values):", " def average(numbers):")

    result = validator.validate(code_fix(patch=stale, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert not result.passed
    assert "cannot be applied" in result.reason and "does not match" in result.reason
    assert [e.check for e in result.evidence] == ["apply"]


def test_tests_that_also_pass_without_the_fix_are_weak_evidence(validator: CodeValidator) -> None:
    unrelated_test = {
        "tests/test_more.py": "from stats import average\n\n\ndef test_one():\n    assert average([5]) == 5\n"
    }

    result = validator.validate(code_fix(patch=GOOD_PATCH, tests=unrelated_test), ISSUE, SERVICE)

    assert not result.passed
    assert result.weak_evidence
    assert "no new test fails on what it checks without the fix" in result.reason
    assert [e.check for e in result.evidence][-1] == "new_tests_unpatched"


def test_new_tests_that_fail_with_the_fix_are_rejected(validator: CodeValidator) -> None:
    wrong_expectation = {
        "tests/test_empty_values.py": EMPTY_LIST_TEST["tests/test_empty_values.py"].replace("0.0", "None")
    }

    result = validator.validate(code_fix(patch=GOOD_PATCH, tests=wrong_expectation), ISSUE, SERVICE)

    assert not result.passed
    assert "new tests do not all pass on the patched code" in result.reason


@pytest.mark.parametrize("path", ["../escape.py", "/etc/cron.d/evil", "a/../../escape.py"])
def test_paths_escaping_the_project_are_rejected(validator: CodeValidator, path: str) -> None:
    result = validator.validate(code_fix(files={path: "x = 1\n"}, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert not result.passed
    assert result.reason == f"tampers with tests: {path}"


def test_new_tests_may_not_replace_existing_tests(validator: CodeValidator) -> None:
    result = validator.validate(
        code_fix(patch=GOOD_PATCH, tests={"tests/test_stats.py": "def test_nothing():\n    pass\n"}), ISSUE, SERVICE
    )

    assert not result.passed
    assert result.reason == "tampers with tests: tests/test_stats.py"


class ScriptedRunner:
    """Answers each invocation from what the tree holds: the bug is there unless stats.py is fixed."""

    def __init__(self) -> None:
        self.bundles: list[RunBundle] = []

    def run(self, bundle: RunBundle) -> RunReply:
        self.bundles.append(bundle)
        fixed = "if not values" in bundle.files["stats.py"]
        steps = []
        for step in bundle.steps:
            new = step.argv[-1].startswith("tests/test_empty")
            fails = new and not fixed
            tests = [
                TestCase(
                    id="tests.test_empty_values::test_empty_list_averages_to_zero" if new else "tests.test_stats::t",
                    outcome="failed" if fails else "passed",
                    message="ZeroDivisionError: division" if fails else "",
                )
            ]
            steps.append(
                StepResult(
                    check=step.check,
                    argv=step.argv,
                    exit_code=int(fails),
                    duration_ms=5.0,
                    tests=tests if step.junit else None,
                )
            )
        return RunReply(isolation="microvm", steps=steps)


def test_each_run_is_its_own_invocation_with_one_tree_and_a_share_of_one_time_budget() -> None:
    # Given a runner that records every bundle
    runner = ScriptedRunner()
    validator = CodeValidator(runner, RunLimits(wall_seconds=30), total_seconds=5)

    # When a good fix is validated
    result = validator.validate(code_fix(patch=GOOD_PATCH, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    # Then it passes after four invocations: patched (compile + tests), patched + new tests,
    # original + new tests, original alone; each bundle carries one whole tree and nothing else
    assert result.passed, result.reason
    trees = [
        ("fixed" if "if not values" in b.files["stats.py"] else "original", sorted(b.files)) for b in runner.bundles
    ]
    assert trees == [
        ("fixed", ["stats.py", "tests/test_stats.py"]),
        ("fixed", ["stats.py", "tests/test_empty_values.py", "tests/test_stats.py"]),
        ("original", ["stats.py", "tests/test_empty_values.py", "tests/test_stats.py"]),
        ("original", ["stats.py", "tests/test_stats.py"]),
    ]
    assert [[s.check for s in b.steps] for b in runner.bundles] == [
        ["compile", "tests"],
        ["new_tests"],
        ["new_tests_unpatched"],
        ["tests_unpatched"],
    ]
    assert all(s.argv[0] == "python" for b in runner.bundles for s in b.steps)  # bound by the runner
    assert all(b.limits.wall_seconds <= 5 for b in runner.bundles)
    assert {e.isolation for e in result.evidence[1:]} == {"microvm"}


def test_the_isolation_of_every_run_is_reported_to_the_metric_hook() -> None:
    # Given a validator whose on_run hook records modes
    modes: list[str] = []
    validator = CodeValidator(ScriptedRunner(), on_run=modes.append)

    # When it validates a good fix
    validator.validate(code_fix(patch=GOOD_PATCH, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    # Then every invocation reported its isolation mode
    assert modes == ["microvm"] * 4


# --------------------------------------------------------------------- the patch applier


def test_patch_applies_at_an_offset_when_the_context_matches() -> None:
    shifted = "# header\n# more\n" + SERVICE["stats.py"]

    patched = apply_patch({"stats.py": shifted}, GOOD_PATCH)

    assert patched["stats.py"].startswith("# header\n# more\ndef average(values):\n    if not values:\n")
    assert patched["stats.py"].endswith('return {"average": average(event["values"])}\n')


def test_patch_creates_and_deletes_files() -> None:
    patch = (
        "--- /dev/null\n+++ b/pkg/new.py\n@@ -0,0 +1,2 @@\n+A = 1\n+B = 2\n"
        "--- a/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone = True\n"
    )

    patched = apply_patch({"old.py": "gone = True\n"}, patch)

    assert patched == {"pkg/new.py": "A = 1\nB = 2\n"}


@pytest.mark.parametrize(
    "patch, reason",
    [
        (GOOD_PATCH.replace("@@ -1,2 +1,4 @@", "@@ -1,2 +1,3 @@"), "its header says 2/3"),
        (GOOD_PATCH + "+    print('dropped?')\n", "line outside any hunk"),
        (GOOD_PATCH.replace("@@ -1,2 +1,4 @@", "@@ -1,3 +1,5 @@"), "ends before"),
        (
            GOOD_PATCH.replace("a/stats.py", "a/other.py").replace("b/stats.py", "b/other.py"),
            "not a file of the project",
        ),
        ("just some prose, no diff", "no ---/\\+\\+\\+ file sections"),
        ("--- a/stats.py\n+++ b/stats2.py\n@@ -1 +1 @@\n-x\n+y\n", "does not match"),  # renamed, stale hunk
    ],
)
def test_malformed_or_stale_patches_raise_with_a_reason(patch: str, reason: str) -> None:
    with pytest.raises(FixError, match=reason):
        apply_patch(SERVICE, patch)


@pytest.mark.parametrize("command", ["sh -c 'cat /proc/$PPID/environ'", "curl http://example.com", "bash run_tests.sh"])
def test_test_commands_other_than_python_or_pytest_are_refused(validator: CodeValidator, command: str) -> None:
    issue = ISSUE.model_copy(update={"code": CodeBundle(files=SERVICE, test_command=command)})

    result = validator.validate(code_fix(patch=GOOD_PATCH, tests=EMPTY_LIST_TEST), issue, SERVICE)

    assert not result.passed
    assert result.reason.startswith("the test command is refused")
    assert [e.check for e in result.evidence] == ["command"]


def test_a_pre_existing_test_module_that_could_not_even_be_collected_before_may_pass_after(
    validator: CodeValidator,
) -> None:
    # Given a reported project whose test imports the function the fix is asked to add, and
    # whose total([]) is None (the bug the new test shows: a missing name alone proves nothing)
    files = {
        "stats.py": "def total(values):\n    return sum(values) if values else None\n",
        "tests/test_stats.py": "from stats import average\n\n\ndef test_average():\n    assert average([2, 4]) == 3\n",
    }
    issue = ISSUE.model_copy(update={"code": CodeBundle(files=files, test_command="python -m pytest -q")})
    fixed = (
        "def total(values):\n    return sum(values)\n"
        "\n\ndef average(values):\n    return sum(values) / len(values) if values else 0.0\n"
    )
    new_test = {
        "tests/test_total_empty.py": "from stats import total\n\n\ndef test_empty():\n    assert total([]) == 0\n"
    }

    # When the fix adds it (the module errored at collection before, passes after)
    result = validator.validate(code_fix(files={"stats.py": fixed}, tests=new_test), issue, files)

    # Then the collection error before is not a "missing" test after
    assert result.passed, result.reason
    assert {e.check: e.exit_code for e in result.evidence}["tests_unpatched"] == 2


MARKER_TESTS = {
    # the missing name, checked without raising AttributeError
    "getattr-marker": "import stats\n\n\ndef test_the_empty_list_bug_is_fixed():\n    assert getattr(stats, 'FIXED', False)\n",
    "hasattr-marker": "import stats\n\n\ndef test_the_empty_list_bug_is_fixed():\n    assert hasattr(stats, 'FIXED')\n",
    # the fix's text, not its behaviour
    "source-text": (
        "import pathlib\n\n\ndef test_the_empty_list_bug_is_fixed():\n"
        "    assert 'FIXED' in pathlib.Path('stats.py').read_text()\n"
    ),
    # a module the fix adds
    "new-module": (
        "import importlib.util\n\n\ndef test_the_empty_list_bug_is_fixed():\n"
        "    assert importlib.util.find_spec('stats_fixed') is not None\n"
    ),
}


@pytest.mark.parametrize("variant", list(MARKER_TESTS))
def test_a_new_test_that_only_checks_for_what_the_fix_adds_is_weak_evidence(
    validator: CodeValidator, variant: str
) -> None:
    # Given a "fix" that adds a marker and a module but leaves average([]) dividing by zero
    files = {"stats.py": "FIXED = True\n\n" + SERVICE["stats.py"], "stats_fixed.py": "DONE = 1\n"}

    result = validator.validate(
        code_fix(files=files, tests={"tests/test_fixed.py": MARKER_TESTS[variant]}), ISSUE, SERVICE
    )

    # Then its test passes on the original source plus only what the fix adds: it proves nothing
    # (a test reading the module as text is refused before it runs)
    if variant == "source-text":
        assert not result.passed and "reads the code's source text" in result.reason, result.reason
        assert "('stats.py')" in result.reason
        return
    assert not result.passed and result.weak_evidence, result.reason
    assert "plus only the names the fix adds" in result.reason


def test_a_fix_that_adds_a_helper_is_still_proven_by_a_test_of_the_old_behaviour(validator: CodeValidator) -> None:
    # Given a real fix that adds an import, a decorated helper and a constant, and uses them
    fixed = (
        "from __future__ import annotations\n\nimport functools\n\nEMPTY_AVERAGE = 0.0\n\n\n"
        "@functools.lru_cache(maxsize=1)\ndef _empty() -> float:\n    return EMPTY_AVERAGE\n\n\n"
        + SERVICE["stats.py"].replace("    return sum", "    if not values:\n        return _empty()\n    return sum")
    )

    result = validator.validate(code_fix(files={"stats.py": fixed}, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    # Then the grafted names do not fix the original: its test still fails there, on the bug
    assert result.passed, result.reason
    [unpatched] = [e for e in result.evidence if e.check == "new_tests_unpatched"]
    assert "ZeroDivisionError" in unpatched.excerpt


def test_the_graft_adds_only_statements_that_bind_new_names() -> None:
    from lambdas.qa.validators.code import grafted_original

    original = "import math\n\nLIMIT = 1\n\n\ndef average(values):\n    return sum(values) / len(values)\n"
    patched = (
        "from __future__ import annotations\nimport math\nimport functools\n\nLIMIT = 2\nFIXED = True\n"
        "LIMIT, OTHER = 3, 4\nfrom os import *\n\n\n@functools.cache\ndef helper(x):\n    return x\n\n\n"
        "def average(values):\n    return 0.0\n"
    )

    tree = grafted_original(
        {"m.py": original, "data.txt": "a"}, {"m.py": patched, "data.txt": "b", "new.py": "N = 1\n"}
    )

    assert (
        tree["m.py"]
        == original + "\n\nimport functools\n\n\nFIXED = True\n\n\n@functools.cache\ndef helper(x):\n    return x\n"
    )
    assert tree["data.txt"] == "a" and tree["new.py"] == "N = 1\n"
    # a module that does not parse is left as it was
    assert grafted_original({"m.py": "def (:\n"}, {"m.py": "X = 1\n"})["m.py"] == "def (:\n"


def test_a_patch_applies_to_a_crlf_file_and_keeps_its_line_ends() -> None:
    """Windows line ends: the patch's lines come split without their CR (LF or CRLF patch alike)."""
    crlf = {"stats.py": SERVICE["stats.py"].replace("\n", "\r\n")}

    for patch in (GOOD_PATCH, GOOD_PATCH.replace("\n", "\r\n")):
        patched = apply_patch(crlf, patch)["stats.py"]
        assert patched.startswith("def average(values):\r\n    if not values:\r\n        return 0.0\r\n")
        assert "\n" not in patched.replace("\r\n", "")


def test_a_diff_between_two_trees_names_the_project_paths() -> None:
    """`diff -ru buggy/ fixed/`: one file under two top directories is that file (as patch -p1)."""
    tree_diff = GOOD_PATCH.replace("--- a/stats.py", "--- buggy/stats.py\t2026-11-29 10:00:00").replace(
        "+++ b/stats.py", "+++ fixed/stats.py\t2026-11-29 10:01:00"
    )

    assert apply_patch(SERVICE, tree_diff)["stats.py"] == apply_patch(SERVICE, GOOD_PATCH)["stats.py"]


def test_a_diff_between_two_trees_that_touches_a_test_is_still_tampering(validator: CodeValidator) -> None:
    weakened = (
        "--- buggy/tests/test_stats.py\n+++ fixed/tests/test_stats.py\n@@ -4,2 +4,2 @@\n"
        " def test_average_of_values():\n-    assert average([1, 2, 3]) == 2\n+    assert True\n"
    )

    result = validator.validate(code_fix(patch=GOOD_PATCH + weakened, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert not result.passed and "tests/test_stats.py" in result.reason, result.reason


def test_a_lone_carriage_return_inside_a_patch_line_is_refused() -> None:
    """`+b = 3\\rimport os`: split as Python reads it, QA scanned `b = 3` and dropped the rest as
    noise, while `git apply` kept both statements on one line that Python runs as two."""
    hidden = GOOD_PATCH.replace("+        return 0.0\n", "+        return 0.0\rimport os\n")
    with pytest.raises(FixError, match="carriage return"):
        apply_patch(SERVICE, hidden)


def test_a_form_feed_stays_inside_its_line_as_git_reads_it() -> None:
    fed = GOOD_PATCH.replace("+        return 0.0\n", "+        return 0.0  \x0c# page\n")
    assert "return 0.0  \x0c# page\n" in apply_patch(SERVICE, fed)["stats.py"]


def test_git_prefixed_paths_in_two_directories_are_a_rename_not_one_file() -> None:
    """`a/src/x.py` -> `b/lib/x.py` is git's rename; stripping a further directory would make it x.py."""
    moved = "--- a/src/stats.py\n+++ b/lib/stats.py\n@@ -1 +1 @@\n-x\n+y\n"

    assert apply_patch({"src/stats.py": "x\n"}, moved) == {"lib/stats.py": "y\n"}
    with pytest.raises(FixError, match=r"renamed to lib/stats\.py, which already exists"):
        apply_patch({"src/stats.py": "x\n", "lib/stats.py": "z\n"}, moved)


@pytest.mark.parametrize("changed", [False, True])
def test_a_git_rename_moves_the_file_with_or_without_changes(changed: bool) -> None:
    # Given `git diff -M` output for `git mv src/stats.py lib/stats.py` (100% similar: no ---/+++),
    # or a rename with an edit
    header = "diff --git a/src/stats.py b/lib/stats.py\n"
    if changed:
        body = "similarity index 80%\nrename from src/stats.py\nrename to lib/stats.py\nindex 1..2 100644\n"
        body += "--- a/src/stats.py\n+++ b/lib/stats.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = 3\n"
    else:
        body = "similarity index 100%\nrename from src/stats.py\nrename to lib/stats.py\n"

    patched = apply_patch({"src/stats.py": "x = 1\ny = 2\n", "a.py": ""}, header + body)

    # Then the old path is gone and the new one holds the content
    assert patched == {"lib/stats.py": "x = 1\ny = 3\n" if changed else "x = 1\ny = 2\n", "a.py": ""}


@pytest.mark.parametrize(
    "shape",
    ["backup-copy", "absolute-trees", "format-patch", "git-show", "quoted-name"],
)
def test_the_diff_shapes_people_and_tools_write_apply_like_git_diff(shape: str) -> None:
    files = SERVICE
    expected = apply_patch(SERVICE, GOOD_PATCH)["stats.py"]
    if shape == "backup-copy":  # diff -u stats.py.orig stats.py
        patch = GOOD_PATCH.replace("--- a/stats.py", "--- stats.py.orig\t2026-11-29").replace(
            "+++ b/stats.py", "+++ stats.py"
        )
    elif shape == "absolute-trees":  # diff -u /abs/buggy/stats.py /abs/fixed/stats.py
        patch = GOOD_PATCH.replace("--- a/stats.py", "--- /tmp/w/buggy/stats.py").replace(
            "+++ b/stats.py", "+++ /tmp/w/fixed/stats.py"
        )
    elif shape == "format-patch":  # a commit message with list items, and git's signature after the diff
        patch = (
            "From 3f2a Mon Sep 17 00:00:00 2001\nSubject: [PATCH] average of nothing\n\n"
            "- average([]) raised\n+ now 0.0\n---\n stats.py | 2 ++\n\n"
            f"diff --git a/stats.py b/stats.py\nindex 1..2 100644\n{GOOD_PATCH}-- \n2.39.2\n\n"
        )
    elif shape == "git-show":  # an indented commit message first
        patch = f"commit 3f2a\nAuthor: A <a@b>\n\n    Fix average()\n    \n    - of nothing\n\n{GOOD_PATCH}"
    else:  # git's C-quoted spelling of a non-ASCII name
        files = {"café.py": SERVICE["stats.py"]}
        expected = apply_patch({"stats.py": SERVICE["stats.py"]}, GOOD_PATCH)["stats.py"]
        patch = GOOD_PATCH.replace("a/stats.py", '"a/caf\\303\\251.py"').replace("b/stats.py", '"b/caf\\303\\251.py"')
    assert apply_patch(files, patch)[next(iter(files)) if shape == "quoted-name" else "stats.py"] == expected


def test_new_files_written_by_diff_n_and_empty_ones_written_by_git_are_created() -> None:
    # Given `diff -ruN` (a new file is an empty one dated 1970) and git's empty new file (no hunks)
    patch = (
        "diff -ruN buggy/helpers.py fixed/helpers.py\n"
        "--- buggy/helpers.py\t1970-01-01 00:00:00.000000000 +0000\n+++ fixed/helpers.py\t2026-11-29 10:00:00\n"
        "@@ -0,0 +1,2 @@\n+def half(x):\n+    return x / 2\n"
        "diff --git a/pkg/__init__.py b/pkg/__init__.py\nnew file mode 100644\nindex 0000000..e69de29\n"
    )

    # Then both exist after the patch, the empty one empty
    patched = apply_patch(SERVICE, patch)
    assert patched["helpers.py"] == "def half(x):\n    return x / 2\n"
    assert patched["pkg/__init__.py"] == ""
