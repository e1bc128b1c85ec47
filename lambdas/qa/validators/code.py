"""Code fixes are proven, not claimed: apply, compile and test them in the sandbox, twice.

The fix is applied to a copy of the code; the tests run on the patched tree and then on the
unpatched tree. A fix passes only when its tree compiles, the project's tests and the fix's
new tests pass with it, and the tests fail without it (otherwise they prove nothing:
`weak_evidence`). Patches go through a small strict applier (`apply_patch`).
"""

from __future__ import annotations

import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from selfheal_core.events import Evidence, Fix, IssueReportedV1

from ..sandbox import SandboxLimits, SandboxRun, run_in_sandbox
from .base import ValidationResult

DEFAULT_TEST_COMMAND = "python -m pytest -q"
EXCERPT_CHARS = 3_900  # Evidence.excerpt holds 4,000
MAX_TREE_BYTES = 20 * 1024 * 1024

Sandbox = Callable[[Path, Sequence[str], SandboxLimits], SandboxRun]


class FixError(ValueError):
    """The fix cannot even be laid out on disk (bad path, patch that does not apply)."""


# ------------------------------------------------------------------------- patch applier

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class _Hunk:
    old_start: int
    old: list[str]
    new: list[str]


def _header_path(line: str) -> str | None:
    path = line[4:].split("\t")[0].strip()
    if path == "/dev/null":
        return None
    return path[2:] if path.startswith(("a/", "b/")) else path


def _parse_hunk(lines: list[str], i: int, header: re.Match[str]) -> tuple[_Hunk, int]:
    old_count = int(header[2]) if header[2] is not None else 1
    new_count = int(header[4]) if header[4] is not None else 1
    old: list[str] = []
    new: list[str] = []
    while len(old) < old_count or len(new) < new_count:
        if i >= len(lines):
            raise FixError(f"hunk {header[0]} ends before its {old_count}/{new_count} lines")
        line = lines[i]
        i += 1
        if line.startswith("\\"):  # "\ No newline at end of file": the file's own ending is kept
            continue
        tag, text = (line[:1], line[1:]) if line else (" ", "")  # editors drop the space of blank context
        if tag in " -":
            old.append(text)
        if tag in " +":
            new.append(text)
        if tag not in " -+":
            raise FixError(f"unexpected line inside hunk {header[0]}: {line[:80]!r}")
    if len(old) != old_count or len(new) != new_count:
        raise FixError(f"hunk {header[0]} has {len(old)}/{len(new)} lines, its header says {old_count}/{new_count}")
    while i < len(lines) and lines[i].startswith("\\"):
        i += 1
    return _Hunk(int(header[1]), old, new), i


def parse_patch(patch: str) -> list[tuple[str | None, str | None, list[_Hunk]]]:
    """File sections of a unified diff as (old path, new path, hunks); None is /dev/null."""
    lines = patch.splitlines()
    sections: list[tuple[str | None, str | None, list[_Hunk]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            old, new = _header_path(line), _header_path(lines[i + 1])
            i += 2
            hunks = []
            while i < len(lines) and (header := _HUNK_HEADER.match(lines[i])):
                hunk, i = _parse_hunk(lines, i + 1, header)
                hunks.append(hunk)
            if not hunks:
                raise FixError(f"no hunks for {new or old}")
            sections.append((old, new, hunks))
        elif line.startswith(("GIT binary patch", "Binary files", "rename from", "copy from")):
            raise FixError(f"not supported in a patch: {line[:80]!r}")
        elif line.startswith(("@@", "+", "-", " ")):
            # A line a hunk should have consumed: the hunk's header counts are wrong.
            raise FixError(f"line outside any hunk (wrong hunk line counts?): {line[:80]!r}")
        else:
            i += 1  # diff --git, index, mode lines, blank lines
    if not sections:
        raise FixError("the patch has no ---/+++ file sections")
    return sections


def _find(source: list[str], old: list[str], want: int, start: int) -> int | None:
    """Where `old` matches exactly, nearest to the stated line (like git apply: offset, no fuzz)."""
    if not old:
        return want if start <= want <= len(source) else None
    candidates = range(start, len(source) - len(old) + 1)
    for at in sorted(candidates, key=lambda p: abs(p - want)):
        if source[at:at + len(old)] == old:
            return at
    return None


def _apply_hunks(source: list[str], hunks: list[_Hunk], path: str) -> list[str]:
    out: list[str] = []
    pos = 0
    for number, hunk in enumerate(hunks, start=1):
        # "-l,0" inserts after line l; otherwise the hunk starts at line l (1-based).
        want = hunk.old_start if not hunk.old else max(hunk.old_start - 1, 0)
        at = _find(source, hunk.old, want, pos)
        if at is None:
            raise FixError(f"{path}: hunk {number} (@@ -{hunk.old_start}) does not match: "
                           "its context or removed lines differ from the file")
        out += source[pos:at] + hunk.new
        pos = at + len(hunk.old)
    return out + source[pos:]


def apply_patch(files: dict[str, str], patch: str) -> dict[str, str]:
    """Apply a unified diff to in-memory files; any mismatch raises FixError with the reason."""
    result = dict(files)
    for old, new, hunks in parse_patch(patch):
        name = new or old or "?"
        if old is not None and new is not None and old != new:
            raise FixError(f"renames are not supported ({old} -> {new})")
        if old is None:
            if new in result:
                raise FixError(f"{new} is created by the patch but already exists")
            source, ends_with_newline = [], True
        else:
            if old not in result:
                raise FixError(f"{old} is not a file of the project")
            text = result[old]
            ends_with_newline = text.endswith("\n")
            source = text.split("\n")[:-1] if ends_with_newline else text.split("\n")
        lines = _apply_hunks(source, hunks, name)
        if new is None:
            if lines:
                raise FixError(f"{old} is deleted by the patch but {len(lines)} line(s) remain")
            del result[name]
            continue
        result[new] = "\n".join(lines) + ("\n" if ends_with_newline and lines else "")
    return result


# ----------------------------------------------------------------------------- validator


def patched_files(code_files: dict[str, str], fix: Fix) -> dict[str, str]:
    """The project as the fix would leave it, new tests included."""
    if bool(fix.patch) == bool(fix.files):
        raise FixError("a code fix carries exactly one of 'patch' or 'files'")
    files = apply_patch(code_files, fix.patch) if fix.patch else {**code_files, **fix.files}
    if clash := sorted(set(fix.tests) & set(files)):
        raise FixError(f"new tests would replace existing files: {clash}")
    return {**files, **fix.tests}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    if sum(len(text) for text in files.values()) > MAX_TREE_BYTES:
        raise FixError(f"the code is larger than {MAX_TREE_BYTES} bytes")
    root.mkdir(parents=True)
    base = root.resolve()
    for path, text in files.items():
        target = (base / path).resolve()
        if path.startswith("/") or ".." in path.split("/") or not target.is_relative_to(base) or target == base:
            raise FixError(f"path {path!r} escapes the project directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


PYTEST_TESTS_FAILED = 1


def command_argv(test_command: str) -> list[str]:
    """The test command with `python`/`pytest` bound to this interpreter (which has pytest)."""
    try:
        argv = shlex.split(test_command)
    except ValueError as exc:
        raise FixError(f"cannot parse the test command {test_command!r}: {exc}") from exc
    if not argv:
        raise FixError("the test command is empty")
    if argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    if argv[0] == "pytest":
        return [sys.executable, "-m", "pytest", *argv[1:]]
    # The command arrives in an event anyone with PutEvents may send; outside Python the
    # sandbox's audit-hook guard does not apply, so nothing else runs.
    raise FixError(f"test command must start with python, python3 or pytest, not {argv[0]!r}")


def _shown(argv: Sequence[str]) -> str:
    return shlex.join(["python" if arg == sys.executable else arg for arg in argv])


def _evidence(check: str, run: SandboxRun, passed: bool) -> Evidence:
    output = "\n".join(part for part in (run.stdout_excerpt, run.stderr_excerpt) if part.strip())
    note = f"[{run.killed_reason}]\n" if run.killed_reason else ""
    excerpt = note + output[-(EXCERPT_CHARS - len(note)):]
    return Evidence(check=check, passed=passed, command=_shown(run.command), exit_code=run.exit_code,
                    duration_ms=run.duration_ms, excerpt=excerpt)


def _last_line(run: SandboxRun) -> str:
    lines = [line for line in (run.stdout_excerpt + "\n" + run.stderr_excerpt).splitlines() if line.strip()]
    return run.killed_reason or (lines[-1][:300] if lines else f"exit code {run.exit_code}")


class CodeValidator:
    def __init__(self, limits: SandboxLimits | None = None, sandbox: Sandbox = run_in_sandbox, *,
                 total_seconds: float = 150.0) -> None:
        self.limits = limits or SandboxLimits()
        self.sandbox = sandbox
        # All runs of one validation share this budget, so QA ends before its Lambda timeout.
        self.total_seconds = total_seconds

    def validate(self, fix: Fix, issue: IssueReportedV1, code_files: dict[str, str]) -> ValidationResult:
        if fix.kind != "code":
            return ValidationResult(False, f"the code validator cannot validate a {fix.kind!r} fix")
        try:
            patched = patched_files(code_files, fix)
            argv = command_argv(issue.code.test_command if issue.code else DEFAULT_TEST_COMMAND)
        except FixError as exc:
            return ValidationResult(False, f"the fix cannot be applied: {exc}",
                                    [Evidence(check="apply", passed=False, excerpt=str(exc)[:EXCERPT_CHARS])])
        changed = sorted(p for p in patched if code_files.get(p) != patched[p])
        evidence = [Evidence(check="apply", passed=True, excerpt=f"changed or added: {', '.join(changed)}"[:EXCERPT_CHARS])]
        with tempfile.TemporaryDirectory(prefix="selfheal-qa-") as tmp:
            try:
                patched_dir = write_tree(Path(tmp) / "patched", patched)
                original_dir = write_tree(Path(tmp) / "original", {**code_files, **fix.tests})
            except (FixError, OSError) as exc:
                return ValidationResult(False, f"the fix cannot be laid out: {exc}",
                                        [*evidence, Evidence(check="apply", passed=False, excerpt=str(exc)[:EXCERPT_CHARS])])
            return self._run_checks(argv, sorted(fix.tests), patched_dir, original_dir, evidence)

    def _run_checks(self, argv: list[str], new_tests: list[str], patched_dir: Path, original_dir: Path,
                    evidence: list[Evidence]) -> ValidationResult:
        new_tests_argv = [sys.executable, "-m", "pytest", "-q", *new_tests]
        deadline = time.monotonic() + self.total_seconds

        def run(check: str, workdir: Path, command: list[str], want_success: bool = True) -> SandboxRun:
            left = max(deadline - time.monotonic(), 1.0)
            result = self.sandbox(workdir, command, replace(self.limits, wall_seconds=min(self.limits.wall_seconds, left)))
            evidence.append(_evidence(check, result, result.ok if want_success else result.exit_code == PYTEST_TESTS_FAILED))
            return result

        compiled = run("compile", patched_dir, [sys.executable, "-m", "compileall", "-q", "-x", r"/\.tmp/", "."])
        if not compiled.ok:
            return ValidationResult(False, f"the patched code does not compile: {_last_line(compiled)}", evidence)
        tests = run("tests", patched_dir, argv)
        if not tests.ok:
            return ValidationResult(False, f"tests fail on the patched code: {_last_line(tests)}", evidence)
        if new_tests:
            added = run("new_tests", patched_dir, new_tests_argv)
            if not added.ok:
                return ValidationResult(False, f"the fix's new tests fail on the patched code: {_last_line(added)}", evidence)
        # Without the fix the same tests must fail; the new tests are the likeliest to, so they go first.
        for check, command in ([("new_tests_unpatched", new_tests_argv)] if new_tests else []) + [("tests_unpatched", argv)]:
            # Exit 1 = pytest ran and tests failed; collection errors (2), time-outs or a missing
            # module only the fix adds do not show that the fix changes behaviour.
            if run(check, original_dir, command, want_success=False).exit_code == PYTEST_TESTS_FAILED:
                return ValidationResult(True, "compiles; tests pass with the fix and fail without it", evidence)
        return ValidationResult(False, "weak evidence: the tests also pass on the unpatched code, so they do not show "
                                       "that the fix changes anything", evidence, weak_evidence=True)
