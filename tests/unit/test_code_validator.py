"""QA proves a code fix in the sandbox: it applies, compiles, passes with the fix, fails without."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest


from lambdas.qa.validators.code import CodeValidator, FixError, apply_patch
from selfheal_core.events import CodeBundle, Fix, IssueReportedV1

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
    service="stats-api", issue_type="exception", summary="ZeroDivisionError: division by zero in average()",
    code=CodeBundle(files=SERVICE, test_command="python -m pytest -q"),
)


def code_fix(**fields: object) -> Fix:
    return Fix(kind="code", provider="test", rationale="guard the empty list", risk_level="low", **fields)


@pytest.fixture(scope="module")
def validator() -> CodeValidator:
    return CodeValidator()


def test_a_good_patch_with_a_reproducing_test_passes(validator: CodeValidator) -> None:
    result = validator.validate(code_fix(patch=GOOD_PATCH, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert result.passed, result.reason
    assert not result.weak_evidence
    checks = {e.check: e for e in result.evidence}
    assert list(checks) == ["apply", "compile", "tests", "new_tests", "new_tests_unpatched"]
    assert all(e.passed for e in result.evidence)
    assert checks["tests"].command == "python -m pytest -q"
    assert checks["tests"].exit_code == 0 and "3 passed" in checks["tests"].excerpt
    assert checks["new_tests_unpatched"].exit_code == 1
    assert "ZeroDivisionError" in checks["new_tests_unpatched"].excerpt
    assert all(e.duration_ms is not None for e in result.evidence[1:])


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
    unrelated_test = {"tests/test_more.py": "from stats import average\n\n\ndef test_one():\n    assert average([5]) == 5\n"}

    result = validator.validate(code_fix(patch=GOOD_PATCH, tests=unrelated_test), ISSUE, SERVICE)

    assert not result.passed
    assert result.weak_evidence
    assert "also pass on the unpatched code" in result.reason
    assert [e.check for e in result.evidence][-2:] == ["new_tests_unpatched", "tests_unpatched"]


def test_new_tests_that_fail_with_the_fix_are_rejected(validator: CodeValidator) -> None:
    wrong_expectation = {"tests/test_empty_values.py": EMPTY_LIST_TEST["tests/test_empty_values.py"].replace("0.0", "None")}

    result = validator.validate(code_fix(patch=GOOD_PATCH, tests=wrong_expectation), ISSUE, SERVICE)

    assert not result.passed
    assert "tests fail on the patched code" in result.reason


@pytest.mark.parametrize("path", ["../escape.py", "/etc/cron.d/evil", "a/../../escape.py"])
def test_paths_escaping_the_project_are_rejected(validator: CodeValidator, path: str) -> None:
    result = validator.validate(code_fix(files={path: "x = 1\n"}, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert not result.passed
    assert "escapes the project" in result.reason


def test_new_tests_may_not_replace_existing_tests(validator: CodeValidator) -> None:
    result = validator.validate(
        code_fix(patch=GOOD_PATCH, tests={"tests/test_stats.py": "def test_nothing():\n    pass\n"}), ISSUE, SERVICE)

    assert not result.passed
    assert "replace existing files" in result.reason


def test_every_run_uses_this_interpreter_and_shares_one_time_budget() -> None:
    calls: list[tuple[str, list[str], SandboxLimits]] = []

    def fake_sandbox(workdir: Path, command: Sequence[str], limits: SandboxLimits) -> SandboxRun:
        calls.append((workdir.name, list(command), limits))
        failed = workdir.name == "original"  # the bug is still there without the fix
        return SandboxRun(list(command), int(failed), 5.0, "", "", False, None)

    validator = CodeValidator(SandboxLimits(wall_seconds=30), sandbox=fake_sandbox, total_seconds=5)
    result = validator.validate(code_fix(patch=GOOD_PATCH, tests=EMPTY_LIST_TEST), ISSUE, SERVICE)

    assert result.passed
    assert [tree for tree, _, _ in calls] == ["patched", "patched", "patched", "original"]
    assert all(command[0] == sys.executable for _, command, _ in calls)
    assert all(limits.wall_seconds <= 5 for _, _, limits in calls)


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
        (GOOD_PATCH.replace("a/stats.py", "a/other.py").replace("b/stats.py", "b/other.py"), "not a file of the project"),
        ("just some prose, no diff", "no ---/\\+\\+\\+ file sections"),
        ("--- a/stats.py\n+++ b/stats2.py\n@@ -1 +1 @@\n-x\n+y\n", "renames are not supported"),
    ],
)
def test_malformed_or_stale_patches_raise_with_a_reason(patch: str, reason: str) -> None:
    with pytest.raises(FixError, match=reason):
        apply_patch(SERVICE, patch)


@pytest.mark.parametrize("command", ["sh -c 'cat /proc/$PPID/environ'", "curl http://example.com", "bash run_tests.sh"])
def test_test_commands_other_than_python_or_pytest_are_refused(command):
    from lambdas.qa.validators.code import FixError, command_argv

    with pytest.raises(FixError, match="must start with python"):
        command_argv(command)
