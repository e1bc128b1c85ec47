"""Code fixes are proven, not claimed, by runs the fix cannot influence.

QA never executes fix code: every run is a bundle sent to the QA runner function (one
synchronous invocation, one fresh tenant, one tree), so no writable directory is shared
between the patched and the original tree. A fix is rejected before anything runs when it
touches the tests or their configuration (`tampers with tests: <path>`), when it adds code
that could tell a test run from production or a module that replaces a standard one
(`tampers with the test run: <path>:<line>: ...`, see `evasion`), or when the test command is
not `python -m pytest` with paths, -q, -x or -k EXPR. Then:

1. patched source + an untouched copy of the project's tests and configuration: compiles,
   and the project's tests pass (the pytest report must list every pre-existing test);
2. the same + the fix's new tests: every new test passes;
3. original source + only the names the fix adds (`grafted_original`; a new name on an
   existing import line is carried as an import of its own) + the new tests: at
   least one new test fails (pytest exit 1) on an assertion or the bug's own exception; an
   import, name or collection error proves nothing, and a test that only checks for what the
   fix adds passes here - otherwise `weak_evidence`;
4. original source alone: every pre-existing test that failed before passes in run 1; when
   that run writes no report (it hung or crashed), every test of run 1 must have passed.

Patches go through a small strict applier (`apply_patch`).
"""

from __future__ import annotations

import ast
import builtins
import configparser
import contextlib
import doctest
import fnmatch
import functools
import re
import shlex
import textwrap
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from selfheal_core.diffs import patch_lines, path_problem, section_paths, unquoted
from selfheal_core.events import Evidence, Fix, IssueReportedV1, describe_validation_error
from selfheal_core.qa_run import (
    CommandRefused,
    RunBundle,
    RunLimits,
    RunReply,
    RunStep,
    StepResult,
    TestCase,
    parse_test_command,
)
from selfheal_core.redact import scrub

from .base import ValidationResult
from .evasion import evasion
from .runner import Runner, RunnerError
from .signatures import broken_calls

DEFAULT_TEST_COMMAND = "python -m pytest -q"
EXCERPT_CHARS = 3_900  # Evidence.excerpt holds 4,000
MAX_TREE_BYTES = 5 * 1024 * 1024  # a synchronous invocation carries at most 6 MB


class FixError(ValueError):
    """The fix cannot even be laid out on disk (bad path, patch that does not apply)."""


# ------------------------------------------------------------------------- patch applier

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class _Hunk:
    old_start: int
    old: list[str]
    new: list[str]


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
    lines = patch_lines(patch)
    if any("\r" in line for line in lines):
        # Python reads a lone CR as a line break, git as text: what QA scans would not be what runs.
        raise FixError("a patch line holds a carriage return inside it")
    lines = _diff_part(lines)
    sections: list[tuple[str | None, str | None, list[_Hunk]]] = []
    git_header: tuple[str, str] | None = None  # `diff --git a/x b/x` not yet followed by ---/+++
    renamed: dict[str, str] = {}  # its `rename from` / `rename to`: a pure rename has no ---/+++
    i = 0
    while i < len(lines):
        line = lines[i]
        if _starts_section(lines, i):
            git_header, renamed = None, {}
            section, i = _parse_section(lines, i)
            sections.append(section)
            continue
        if line.startswith(("GIT binary patch", "Binary files", "copy from")):
            raise FixError(f"not supported in a patch: {line[:80]!r}")
        if line.startswith(("@@", "+", "-", " ")):
            # A line a hunk should have consumed: the hunk's header counts are wrong.
            raise FixError(f"line outside any hunk (wrong hunk line counts?): {line[:80]!r}")
        if line.startswith("diff --git "):
            _header_only(sections, git_header, renamed)
            git_header, renamed = (line, ""), {}
        elif git_header is not None and line.startswith(("new file mode", "deleted file mode")):
            git_header = (git_header[0], line.split()[0])
        elif git_header is not None and line.startswith(("rename from ", "rename to ")):
            _, which, path = line.split(" ", 2)
            renamed[which] = unquoted(path)
        i += 1  # index, mode and similarity lines, blank lines
    _header_only(sections, git_header, renamed)
    if not sections:
        raise FixError("the patch has no ---/+++ file sections")
    return sections


def _parse_section(lines: list[str], i: int) -> tuple[tuple[str | None, str | None, list[_Hunk]], int]:
    old, new = section_paths(lines[i], lines[i + 1])
    i += 2
    hunks = []
    while i < len(lines) and (header := _HUNK_HEADER.match(lines[i])):
        hunk, i = _parse_hunk(lines, i + 1, header)
        hunks.append(hunk)
    if not hunks:
        raise FixError(f"no hunks for {new or old}")
    return (old, new, hunks), i


def _starts_section(lines: list[str], i: int) -> bool:
    return lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def _diff_part(lines: list[str]) -> list[str]:
    """From the first file header to git format-patch's signature (`-- `): a commit message
    before it (git format-patch, git show) is prose, not a hunk."""
    start = next(
        (i for i, line in enumerate(lines) if line.startswith("diff --git ") or _starts_section(lines, i)), len(lines)
    )
    end = next((i for i in range(start, len(lines)) if lines[i] == "-- "), len(lines))
    return lines[start:end]


_GIT_HEADER = re.compile(r"^diff --git a/(\S+) b/(\S+)$")


def _header_only(
    sections: list[tuple[str | None, str | None, list[_Hunk]]],
    git_header: tuple[str, str] | None,
    renamed: dict[str, str],
) -> None:
    """git writes no ---/+++ lines for an empty file it creates or deletes (only `diff --git` and
    `new file mode` or `deleted file mode`), nor for a file it renames unchanged (`rename from`,
    `rename to`)."""
    if "from" in renamed and "to" in renamed:
        sections.append((renamed["from"], renamed["to"], []))
        return
    if git_header is None or not git_header[1] or not (named := _GIT_HEADER.match(git_header[0])):
        return
    path = named[2] if named[1] == named[2] else None
    if path is None:
        raise FixError(f"not supported in a patch: {git_header[0][:80]!r}")
    sections.append((None, path, []) if git_header[1] == "new" else (path, None, []))


def _find(source: list[str], old: list[str], want: int, start: int) -> int | None:
    """Where `old` matches exactly, nearest to the stated line (like git apply: offset, no fuzz)."""
    if not old:
        return want if start <= want <= len(source) else None
    candidates = range(start, len(source) - len(old) + 1)
    for at in sorted(candidates, key=lambda p: abs(p - want)):
        if source[at : at + len(old)] == old:
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
            raise FixError(
                f"{path}: hunk {number} (@@ -{hunk.old_start}) does not match: "
                "its context or removed lines differ from the file"
            )
        out += source[pos:at] + hunk.new
        pos = at + len(hunk.old)
    return out + source[pos:]


def apply_patch(files: dict[str, str], patch: str) -> dict[str, str]:
    """Apply a unified diff to in-memory files; any mismatch raises FixError with the reason."""
    result = dict(files)
    for old, new, hunks in parse_patch(patch):
        name = new or old or "?"
        if old is not None and new is not None and old != new and new in result:
            raise FixError(f"{old} is renamed to {new}, which already exists")
        if old is not None and old not in result and all(h.old_start == 0 and not h.old for h in hunks):
            old = None  # `diff -N`: a file that did not exist is an empty one dated 1970
        if old is None and new in result:
            raise FixError(f"{new} is created by the patch but already exists")
        if old is not None and old not in result:
            raise FixError(f"{old} is not a file of the project")
        source, ends_with_newline, newline = _lines_of(result[old] if old is not None else "")
        lines = _apply_hunks(source, hunks, name)
        if new is None:
            if lines:
                raise FixError(f"{old} is deleted by the patch but {len(lines)} line(s) remain")
            del result[name]
            continue
        result[new] = newline.join(lines) + (newline if ends_with_newline and lines else "")
        if old is not None and old != new:
            del result[old]  # a rename: `git mv`, with or without changes
    return result


def _lines_of(text: str) -> tuple[list[str], bool, str]:
    """A file's lines as a patch names them, whether it ends with a newline, and its newline. A CRLF
    file: the patch's lines were split without their CR; matched without it, joined with it."""
    ends_with_newline = text.endswith("\n") or not text
    source = text.split("\n")[:-1] if text.endswith("\n") else (text.split("\n") if text else [])
    body = source if text.endswith("\n") else source[:-1]
    newline = "\r\n" if body and all(line.endswith("\r") for line in body) else "\n"
    if newline == "\r\n":
        source = [line.removesuffix("\r") for line in source]
    return source, ends_with_newline, newline


# ---------------------------------------------------------------------- test tampering

# Every file pytest reads its configuration from by name (pytest 9: `CONFIG_LOADERS_BY_NAME`,
# pyproject.toml aside: only its [tool.pytest] tables count), and conftest.py.
_TOML_CONFIG_FILES = {"pytest.toml", ".pytest.toml"}
_INI_CONFIG_FILES = {"pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg"}
_CONFIG_FILES = {"conftest.py", *_TOML_CONFIG_FILES, *_INI_CONFIG_FILES}
_CUSTOMIZE = {"sitecustomize", "usercustomize"}
# Top-level names that would shadow pytest or what it imports (`python -m pytest` puts the
# project first on sys.path): a `pytest.py` in the tree would replace the test runner.
_SHADOWS = {"pytest", "_pytest", "py", "pluggy", "iniconfig", "packaging"}


def _outside(path: str) -> bool:
    """Not a project path in its one spelling (selfheal_core.diffs.path_problem)."""
    return path_problem(path) is not None


def project_test_patterns(code_files: dict[str, str]) -> tuple[str, ...]:
    """`python_files` globs the project's own pytest configuration adds to test_*.py / *_test.py."""
    found: list[str] = []
    for path, text in code_files.items():
        name = path.split("/")[-1]
        if name == "pyproject.toml":
            section = _pytest_section(text)
            if isinstance(section, dict):  # [tool.pytest.ini_options] (INI mode) or [tool.pytest] (TOML mode)
                found += _python_files(section.get("ini_options", section))
        elif name in _TOML_CONFIG_FILES:
            try:
                found += _python_files(tomllib.loads(text).get("pytest"))
            except tomllib.TOMLDecodeError:
                continue
        elif name in _INI_CONFIG_FILES:
            parser = configparser.ConfigParser(interpolation=None, strict=False)
            try:
                parser.read_string(text)
            except configparser.Error:
                continue
            for section_name in ("pytest", "tool:pytest"):
                if parser.has_option(section_name, "python_files"):
                    found += parser.get(section_name, "python_files").split()
    return tuple(found)


def _python_files(table: Any) -> list[str]:
    """`python_files` of a parsed TOML table: a list of globs, or one whitespace-separated string."""
    value = table.get("python_files", []) if isinstance(table, dict) else []
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value] if isinstance(value, list) else []


def is_test_file(path: str, patterns: tuple[str, ...] = ()) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return (
        (name.startswith("test_") and name.endswith(".py"))
        or name.endswith("_test.py")
        or any(part in ("tests", "test") for part in parts[:-1])
        or any(fnmatch.fnmatch(name, p) for p in patterns)
    )


def is_test_infrastructure(path: str, patterns: tuple[str, ...] = ()) -> bool:
    """Tests, their configuration, and what Python or pytest load before any test runs."""
    parts = path.split("/")
    name = parts[-1]
    return (
        is_test_file(path, patterns)
        or name in _CONFIG_FILES
        or name.endswith((".pth", ".pyc", ".pyo"))
        or "__pycache__" in parts
        or any(part.removesuffix(".py") in _CUSTOMIZE for part in parts)
        or parts[0].removesuffix(".py") in _SHADOWS
    )


def _pytest_section(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return tomllib.loads(text).get("tool", {}).get("pytest")
    except tomllib.TOMLDecodeError:
        return "<unparsable>"


# Prose a fix may update beside the code (a changelog line): no test reads it unless doctests run.
_DOC_NAMES = ("readme", "changelog", "changes", "history", "authors", "contributing", "news")


def _is_prose(path: str) -> bool:
    name = path.split("/")[-1].lower()
    return name.endswith((".md", ".rst")) or name.startswith(_DOC_NAMES) or path.split("/")[0] == "docs"


def _runs_doctests(code_files: dict[str, str]) -> bool:
    """Does the project's pytest configuration collect doctests (in modules or text files)?"""
    return any("--doctest" in text for path, text in code_files.items() if path.split("/")[-1] in _CONFIG_FILES)


def _tampers(path: str, before: str | None, after: str | None, patterns: tuple[str, ...], doctests: bool) -> bool:
    """Does creating, changing or deleting `path` (None = absent) touch the tests? `doctests`: the
    configuration collects doctests, so docstring examples and text files are tests too."""
    if before == after:
        return False
    if _outside(path) or is_test_infrastructure(path, patterns):
        return True
    if path.split("/")[-1] == "pyproject.toml":
        return _pytest_section(before) != _pytest_section(after) or _pytest_section(after) == "<unparsable>"
    if before is not None and not path.endswith(".py"):
        # A data or golden file the tests read (json_testcases/*.json) is their input; prose is not.
        return doctests or not _is_prose(path)
    return doctests and before is not None and not _doctest_examples(before) <= _doctest_examples(after or "")


def _doctest_examples(text: str) -> Counter[tuple[str, str]]:
    """The docstring examples of a module (`>>> add(2, 3)` / `5`): tests, wherever they are written."""
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Counter()
    found: Counter[tuple[str, str]] = Counter()
    parser = doctest.DocTestParser()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring and ">>>" in docstring:
                with contextlib.suppress(ValueError):
                    found.update((e.source, e.want) for e in parser.get_examples(docstring))
    return found


def added_tests(before: str, after: str) -> list[str] | None:
    """The tests a change to a test module adds, as node id suffixes (`test_x`, `TestC::test_x`),
    when adding is all it does, else None: new test functions, fixtures and helpers, imports, new
    test classes (`Test*` or a `TestCase` subclass, which pytest collects whatever its name) with
    their setUp, new methods in a test class, and new module-level tables bound without a call
    (a `parametrize` table). Nothing that was there changes: the project's run keeps the original
    file, the new tests run apart by node id."""
    try:
        old, new = ast.parse(before.removeprefix("\ufeff")), ast.parse(after.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    imports = {ast.dump(s) for s in old.body if isinstance(s, ast.Import | ast.ImportFrom)}
    classes = {s.name: s for s in old.body if isinstance(s, ast.ClassDef)}
    bound = set().union(*(_binds(s) for s in old.body))
    found: list[str] = []

    def strip(body: list[ast.stmt], had: list[ast.stmt], prefix: str) -> list[ast.stmt]:
        names = {s.name for s in had if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        kept: list[ast.stmt] = []
        for stmt in body:
            name = getattr(stmt, "name", "")
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and name not in names:
                found.extend([prefix + name] if name.startswith("test") else [])  # a new test, fixture or helper
            elif not prefix and isinstance(stmt, ast.ClassDef) and name in classes and _collected_class(stmt):
                stmt.body = strip(stmt.body, classes[name].body, f"{name}::")
                kept.append(stmt)
            elif prefix or not _added_to_module(stmt, imports, bound, found):
                kept.append(stmt)
        return kept

    new.body = strip(new.body, old.body, "")
    return found if found and ast.dump(new) == ast.dump(old) else None


def _added_to_module(stmt: ast.stmt, imports: set[str], bound: set[str], found: list[str]) -> bool:
    """Is the module-level statement an addition: a new import, a new test class (its tests go
    to `found`), or a new table bound without a call?"""
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return ast.dump(stmt) not in imports
    if isinstance(stmt, ast.ClassDef) and stmt.name not in bound and _collected_class(stmt):
        tests = [
            f"{stmt.name}::{m.name}"
            for m in stmt.body
            if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef) and m.name.startswith("test")
        ]
        found.extend(tests)
        return bool(tests)
    return isinstance(stmt, ast.Assign | ast.AnnAssign) and _inert(stmt) and not (_binds(stmt) & bound)


def _collected_class(cls: ast.ClassDef) -> bool:
    """Does pytest collect the class's tests: named Test*, or a unittest TestCase by any name."""
    bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in cls.bases}
    return cls.name.startswith("Test") or any(b.endswith("TestCase") for b in bases)


def tests_added_in_place(code_files: dict[str, str], patched: dict[str, str]) -> dict[str, list[str]]:
    """Project test modules the fix only adds tests to: path -> the added tests."""
    patterns = project_test_patterns(code_files)
    found = {}
    for path, text in patched.items():
        before = code_files.get(path)
        test_module = path.endswith(".py") and path.split("/")[-1] != "conftest.py" and is_test_file(path, patterns)
        if test_module and before is not None and before != text and (tests := added_tests(before, text)):
            found[path] = tests
    return found


def tampered_path(code_files: dict[str, str], fix: Fix) -> str | None:
    """The first path by which the fix would change the tests or how they run, else None.
    Adding test functions to a test module is no change to the tests (`added_tests`)."""
    patterns = project_test_patterns(code_files)
    doctests = _runs_doctests(code_files)
    patched = patched_files(code_files, fix)
    added = {**tests_added_in_place(code_files, patched), **tests_created(code_files, fix, patched)}
    if fix.patch:
        sections = parse_patch(fix.patch)
        paths = sorted({p for old, new, _ in sections for p in (old, new) if p is not None})
        for path in [p for p in paths if p not in added]:
            # A patch section always creates, changes or deletes its file.
            if (
                _outside(path)
                or is_test_infrastructure(path, patterns)
                or _tampers(path, code_files.get(path), patched.get(path), patterns, doctests)
            ):
                return path
    for path, text in sorted(fix.files.items()):
        if path not in added and (_outside(path) or _tampers(path, code_files.get(path), text, patterns, doctests)):
            return path
    return next((path for path in sorted(fix.tests) if not _new_test_module(path, code_files)), None)


def _new_test_module(path: str, code_files: dict[str, str]) -> bool:
    """New tests are new test_*.py or *_test.py files, nothing else."""
    name = path.split("/")[-1]
    return not (
        _outside(path)
        or path in code_files
        or not (name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py")))
        or "__pycache__" in path.split("/")
        or any(part.removesuffix(".py") in _CUSTOMIZE | _SHADOWS for part in path.split("/"))
    )


def tests_created(code_files: dict[str, str], fix: Fix, patched: dict[str, str]) -> dict[str, str]:
    """New test modules the fix's patch creates (a commit with its regression test, as `git show`
    or BugsInPy give it): they are the fix's new tests, as if sent in `Fix.tests`."""
    if not fix.patch:
        return {}
    return {p: t for p, t in patched.items() if p not in code_files and _new_test_module(p, code_files)}


# ----------------------------------------------------------------------------- validator


def patched_files(code_files: dict[str, str], fix: Fix) -> dict[str, str]:
    """The project's source as the fix would leave it (new tests not included)."""
    if bool(fix.patch) == bool(fix.files):
        raise FixError("a code fix carries exactly one of 'patch' or 'files'")
    return apply_patch(code_files, fix.patch) if fix.patch else {**code_files, **fix.files}


def _binds(stmt: ast.stmt) -> set[str]:
    """Module-level names a top-level statement binds ("*" for a star import)."""
    names: set[str] = set()
    stack: list[ast.AST] = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)  # its body binds its own names, not the module's
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    return names


# Decorators that only wrap what they decorate (a fix's own decorator could do anything).
_WRAPPING_DECORATORS = frozenset(
    {"dataclass", "staticmethod", "classmethod", "property", "cache", "lru_cache", "cached_property",
     "abstractmethod", "contextmanager", "overload", "unique", "total_ordering", "final", "runtime_checkable"}
)  # fmt: skip


def _inert(stmt: ast.stmt, own: frozenset[str] = frozenset()) -> bool:
    """Does running the statement (at import) call nothing but a wrapping decorator, and bind
    nothing but names? What the graft adds must not change the original's objects:
    `_X = setattr(Account, "withdraw", bad)`, `_X = Account.withdraw = bad`, a class body or a
    default value that does, or a decorator the module defines itself (`own`)."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        for decorator in stmt.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            named = call.func if call else decorator
            name = named.attr if isinstance(named, ast.Attribute) else getattr(named, "id", "")
            wrapping = name in _WRAPPING_DECORATORS and not (isinstance(named, ast.Name) and name in own)
            if not wrapping or (call and not _calls_nothing(*call.args, *call.keywords)):
                return False
        if isinstance(stmt, ast.ClassDef):
            return _calls_nothing(*stmt.bases, *stmt.keywords) and all(_inert(s, own) for s in stmt.body)
        args = stmt.args
        annotations = [a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if a.annotation]
        return _calls_nothing(*args.defaults, *(d for d in args.kw_defaults if d), *annotations, stmt.returns)
    if isinstance(stmt, ast.Import | ast.ImportFrom | ast.Pass):
        return True
    if isinstance(stmt, ast.Expr):  # a docstring
        return isinstance(stmt.value, ast.Constant)
    if isinstance(stmt, ast.Assign | ast.AnnAssign):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names_only = all(
            isinstance(n, ast.Name | ast.Tuple | ast.List | ast.Starred)
            for t in targets
            for n in ast.walk(t)
            if not isinstance(n, ast.expr_context)
        )
        return names_only and _calls_nothing(stmt.value, *targets)
    return False


def _calls_nothing(*nodes: ast.AST | None) -> bool:
    """No call runs when these are evaluated (a lambda's body does not run)."""
    stack = [n for n in nodes if n is not None]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Call | ast.Await | ast.Yield | ast.YieldFrom | ast.NamedExpr):
            return False
        if not isinstance(node, ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))
    return True


def _added_statements(original: str, patched: str) -> list[str]:
    """Source of the patched module's top-level statements that bind only names the original
    does not bind (a new constant, function, class or import), in order; [] when either side
    does not parse."""
    try:
        before, after = ast.parse(original), ast.parse(patched)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    # A binding of a name the original reads anywhere is the fix itself (`import math` where
    # `math.sqrt` raised NameError, also when another function imports `math` locally), not a
    # name the fix adds: it stays out of the graft.
    reads = {n.id for n in ast.walk(before) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    existing = set().union(*(_binds(stmt) for stmt in before.body)) | reads
    own = frozenset().union(*(_binds(stmt) for stmt in after.body))
    lines = patched.splitlines(keepends=True)
    added: list[str] = []
    for stmt in after.body:
        names = _binds(stmt)
        future = isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"
        if isinstance(stmt, ast.Import | ast.ImportFrom) and not future and "*" not in names:
            # `from .gcd import gcd, lcm` where `gcd` was imported before: carry the import of `lcm`
            # alone, or a test importing the package's new name fails on an ImportError.
            if new := [a for a in stmt.names if (a.asname or a.name).split(".")[0] not in existing]:
                node = (
                    ast.Import(names=new)
                    if isinstance(stmt, ast.Import)
                    else ast.ImportFrom(stmt.module, new, stmt.level)
                )
                added.append(ast.unparse(node))
            continue
        if not names or "*" in names or names & existing or future or not _inert(stmt, own):
            continue
        segment = ast.get_source_segment(patched, stmt) or ""
        decorators = getattr(stmt, "decorator_list", [])
        if decorators:  # the statement's own position starts at `def`/`class`, after its decorators
            segment = "".join(lines[min(d.lineno for d in decorators) - 1 : stmt.lineno - 1]) + segment
        added.append(segment)
    return added


@dataclass(frozen=True)
class _Names:
    """What a module's code names, for judging a failure that quotes a name."""

    defined: frozenset[str]  # functions, classes, attributes and variables it binds
    params: frozenset[str]
    signatures: frozenset[tuple[str, tuple[str, ...]]]  # (function, its parameters)
    unbound: frozenset[str]  # names it reads and never binds: NameErrors waiting to happen
    self_reads: frozenset[str]  # `Retry.backoff`: `self.backoff` read in Retry's methods (`__init__` forgot it)
    imported: frozenset[str]  # what it imports: names (`Mapping` of `from collections import Mapping`), modules

    def __or__(self, other: _Names) -> _Names:
        return _Names(*(a | b for a, b in zip(vars(self).values(), vars(other).values(), strict=True)))


_NO_NAMES = _Names(*[frozenset()] * 6)


@functools.lru_cache(maxsize=256)
def _fix_names(text: str) -> _Names:
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _NO_NAMES
    defined: set[str] = set()
    params: set[str] = set()
    signatures: set[tuple[str, tuple[str, ...]]] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            names = tuple(x.arg for x in [*a.posonlyargs, *a.args, *([a.vararg] if a.vararg else []), *a.kwonlyargs])
            params.update(names, *([a.kwarg.arg] if a.kwarg else []))
            if not isinstance(node, ast.Lambda):
                defined.add(node.name)
                signatures.add((node.name, names))
        elif isinstance(node, ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
            defined.add(node.attr)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)

        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    unbound = (read - defined - params | _unbound_in_functions(tree)) - set(dir(builtins))
    return _Names(
        frozenset(defined),
        frozenset(params),
        frozenset(signatures),
        frozenset(unbound),
        frozenset(_self_reads(tree)),
        frozenset(_imported(tree)),
    )


def _imported(tree: ast.Module) -> set[str]:
    """The modules a module imports (absolutely) and the names it imports from them."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.update(alias.name for alias in node.names)
            found.update([node.module] if node.module and not node.level else [])
    return found


def _self_reads(tree: ast.Module) -> set[str]:
    """`Class.attr` for each `self.attr` a method of the class reads."""
    reads: set[str] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for method in (m for m in cls.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)):
            first = (method.args.posonlyargs + method.args.args)[:1]
            reads.update(
                f"{cls.name}.{node.attr}"
                for node in ast.walk(method)
                if first
                and isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Load)
                and isinstance(node.value, ast.Name)
                and node.value.id == first[0].arg
            )
    return reads


def _unbound_in_functions(tree: ast.Module) -> set[str]:
    """Names a top-level function or method reads that neither it nor the module binds: the
    NameError of `defaultdict` in one function while another imports it locally."""
    module = set().union(*(_binds(stmt) for stmt in tree.body))
    module |= {n for g in ast.walk(tree) if isinstance(g, ast.Global) for n in g.names}
    functions = [
        f
        for top in tree.body
        for f in ([top] if not isinstance(top, ast.ClassDef) else top.body)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    unbound: set[str] = set()
    for function in functions:
        reads: set[str] = set()
        local: set[str] = set()  # nested scopes' bindings count as its own: never claimed unbound
        for node in ast.walk(function):
            if isinstance(node, ast.Name):
                (reads if isinstance(node.ctx, ast.Load) else local).add(node.id)
            elif isinstance(node, ast.arg):
                local.add(node.arg)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                local.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.ExceptHandler):
                local.add(node.name or "")
        unbound |= reads - local - module
    return unbound


def _code_names(files: dict[str, str], patterns: tuple[str, ...]) -> _Names:
    names = _NO_NAMES
    for path, text in files.items():
        if path.endswith(".py") and not is_test_infrastructure(path, patterns):
            names = names | _fix_names(text)
    return names


# A failure that quotes a name (JUnit's message: the crash's first line).
_NAMED_FAILURE = re.compile(
    r"(?:NameError: name '(?P<unbound>[^']+)' is not defined"
    r"|AttributeError: (?:'(?P<owner>[^']+)' object )?.*?has no attribute '(?P<attribute>[^']+)'"
    r"|TypeError: .*got an unexpected keyword argument '(?P<keyword>[^']+)'"
    r"|TypeError: (?:[\w.]+\.)?(?P<function>\w+)\(\) (?:takes|missing|got) "
    r"|ImportError: cannot import name '(?P<imported>[^']+)'"
    r"|ModuleNotFoundError: No module named '(?P<module>[^']+)')"
)


@dataclass(frozen=True)
class FixNames:
    """Which names the fix brings, so a test that fails on the original only for lack of one
    (`'Account' object has no attribute 'can_withdraw'`, a keyword argument the fix adds) does not
    count as reproducing the bug, while the original's own NameError or a missing attribute the
    fix does not define does."""

    original: _Names
    patched: _Names
    # What the original's own calls get wrong (functions, keywords): a TypeError quoting one is the bug's.
    broken: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
    # Names the fix adds that the graft leaves out (`MARKER = bool(1)`), with the grafted definitions
    # that read one; and what each new test reads (`tests.test_x::test_y` -> identifiers).
    missing: frozenset[str] = frozenset()
    reads: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        code_files: dict[str, str],
        patched: dict[str, str],
        patterns: tuple[str, ...],
        *,
        grafted: dict[str, str] | None = None,
        tests: dict[str, str] | None = None,
    ) -> FixNames:
        code = {p: t for p, t in code_files.items() if p.endswith(".py") and not is_test_infrastructure(p, patterns)}
        changed = {p: t for p, t in patched.items() if p.endswith(".py") and code_files.get(p) != t}
        return cls(
            _code_names(code_files, patterns),
            _code_names(patched, patterns),
            broken_calls(code),
            _left_out(code_files, changed, grafted or {}),
            _test_reads(tests or {}),
        )

    def reproduces(self, case: TestCase) -> bool:
        if self.missing & self.reads.get(re.sub(r"\[.*\]$", "", case.id), frozenset()):
            return False  # it reads a name the original lacks only because the graft could not carry it
        if case.outcome != "failed" or (named := _NAMED_FAILURE.match(case.message)) is None:
            return case.reproduces
        if named["unbound"]:
            return named["unbound"] in self.original.unbound
        if named["module"]:  # a module the original imports and the fix no longer does (`import ConfigParser`)
            module = named["module"]
            return module in self.original.imported and module not in self.patched.imported
        if named["imported"]:  # the original's own import (`from collections import Mapping`), not a new name
            imported = named["imported"]
            return imported in self.original.imported and imported not in self.patched.defined - self.original.defined
        if named["attribute"]:  # one the class's own methods read on self is the bug's, not a new marker
            attribute = named["attribute"]
            return (
                f"{named['owner']}.{attribute}" in self.original.self_reads
                or attribute not in self.patched.defined - self.original.defined
            )
        functions, keywords = self.broken
        if named["keyword"]:
            return named["keyword"] in keywords or named["keyword"] not in self.patched.params - self.original.params
        function = named["function"]
        return function in functions or {s for s in self.original.signatures if s[0] == function} == {
            s for s in self.patched.signatures if s[0] == function
        }


def _member_names(text: str | None) -> set[str]:
    """Names a module binds at its top level and in its classes' bodies."""
    try:
        tree = ast.parse((text or "").removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names = set().union(*(_binds(stmt) for stmt in tree.body))
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        names |= set().union(*(_binds(stmt) for stmt in cls.body))
    return names


def _left_out(code_files: dict[str, str], changed: dict[str, str], grafted: dict[str, str]) -> frozenset[str]:
    """What the fix adds that the graft could not carry (it calls something), and the grafted
    definitions that read such a name (`def settled(): return _SETTLED`): on the original these
    are missing or broken for that reason alone, so a test reading one shows nothing."""
    missing: set[str] = set()
    readers: dict[str, set[str]] = {}
    for path, text in changed.items():
        before, carried = _member_names(code_files.get(path)), _member_names(grafted.get(path))
        missing |= _member_names(text) - carried - before
        try:
            tree = ast.parse(grafted.get(path, "").removeprefix("\ufeff"))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            for name in _binds(node) & (carried - before):
                readers.setdefault(name, set()).update(_identifiers(node))
    while grown := {name for name, read in readers.items() if read & missing and name not in missing}:
        missing |= grown
    return frozenset(missing)


def _identifiers(node: ast.AST) -> set[str]:
    """The names, attributes and identifier-like strings (`getattr(m, "X")`) code reads."""
    found: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            found.add(n.id)
        elif isinstance(n, ast.Attribute):
            found.add(n.attr)
        elif isinstance(n, ast.alias):
            found.add((n.asname or n.name).split(".")[0])
            found.add(n.name.split(".")[-1])
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier():
            found.add(n.value)
    return found


def _test_reads(tests: dict[str, str]) -> dict[str, frozenset[str]]:
    """`module.path[.Class]::test` (a JUnit id without its parameters) -> what the test reads,
    with what its module's own code outside the tests reads (imports, fixtures, helpers)."""
    reads: dict[str, frozenset[str]] = {}
    for path, text in tests.items():
        try:
            tree = ast.parse(text.removeprefix("\ufeff"))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        module = path.removesuffix(".py").replace("/", ".")
        tests_in = [(module, n) for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            tests_in += [
                (f"{module}.{cls.name}", m) for m in cls.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
        shared = set().union(
            *(
                _identifiers(n)
                for n in tree.body
                if not (isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test"))
            )
        )
        for owner, function in tests_in:
            reads[f"{owner}::{function.name}"] = frozenset(_identifiers(function) | shared)
    return reads


def changes_no_code(code_files: dict[str, str], patched: dict[str, str]) -> bool:
    """Does the fix leave every module's syntax tree as it was (comments, layout, docstrings)?"""
    changed = [p for p in patched.keys() | code_files.keys() if code_files.get(p) != patched.get(p)]
    if not changed or any(not p.endswith(".py") or p not in code_files or p not in patched for p in changed):
        return False
    return all(_code_only(code_files[p]) == _code_only(patched[p]) is not None for p in changed)


def _code_only(text: str) -> str | None:
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            body[0] = ast.Pass()  # type: ignore[index]
    return ast.dump(tree)


def _with_added_members(original: str, patched: str) -> str:
    """The original module with the members the fix adds to its classes (a new method, a class
    attribute), when binding them runs no code: a test of such a marker (`hasattr(Account,
    "can_withdraw")`) finds it on the original too, so it proves nothing."""
    try:
        before, after = ast.parse(original), ast.parse(patched)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return original
    classes = {c.name: c for c in before.body if isinstance(c, ast.ClassDef)}
    patched_lines = patched.splitlines(keepends=True)
    inserts: list[tuple[int, str]] = []
    for cls in (c for c in after.body if isinstance(c, ast.ClassDef) and c.name in classes):
        old = classes[cls.name]
        had = set().union(*(_binds(m) for m in old.body))
        own = frozenset().union(*(_binds(m) for m in cls.body))
        indent = " " * old.body[0].col_offset
        added = ""
        for member in cls.body:
            names = _binds(member)
            if names and not names & had and _inert(member, own):
                first = min([member.lineno, *(d.lineno for d in getattr(member, "decorator_list", []))])
                segment = "".join(patched_lines[first - 1 : member.end_lineno])
                added += "\n" + textwrap.indent(textwrap.dedent(segment), indent).rstrip("\n") + "\n"
        if added and old.end_lineno is not None:
            inserts.append((old.end_lineno, added))
    lines = original.splitlines(keepends=True)
    for end, added in sorted(inserts, reverse=True):
        if end and not lines[end - 1].endswith("\n"):
            lines[end - 1] += "\n"
        lines[end:end] = [added]
    return "".join(lines)


def grafted_original(code_files: dict[str, str], patched: dict[str, str]) -> dict[str, str]:
    """The original source plus only what the fix adds by name: the new top-level names of the
    modules it changes (appended to the original module), the new members of their classes, and
    the names of the modules it creates, each only when binding it runs no code (`_inert`), and
    the other files it creates. A new test
    that fails here fails on the behaviour the original has, not on a marker the fix adds, and
    nothing the fix adds can change the original's objects."""
    tree = dict(code_files)
    for path, text in patched.items():
        before = code_files.get(path)
        if before is None and not path.endswith(".py"):
            tree[path] = text
        elif before is None:  # a new module: its inert statements, like those added to a module
            tree[path] = "\n\n\n".join(_added_statements("", text)) + "\n"
        elif before != text and path.endswith(".py"):
            with_members = _with_added_members(before, text)
            added = _added_statements(before, text)
            tree[path] = (with_members.rstrip("\n") + "\n\n\n" + "\n\n\n".join(added) + "\n") if added else with_members
    return tree


def _check_size(files: dict[str, str]) -> None:
    if sum(len(text) for text in files.values()) > MAX_TREE_BYTES:
        raise FixError(f"the code is larger than {MAX_TREE_BYTES} bytes")


def _shown(argv: list[str]) -> str:
    return shlex.join(argv)


def _evidence(run: StepResult, passed: bool, isolation: str) -> Evidence:
    output = "\n".join(part for part in (run.stdout_excerpt, run.stderr_excerpt) if part.strip())
    note = f"[{run.killed_reason}]\n" if run.killed_reason else ""
    excerpt = note + output[-(EXCERPT_CHARS - len(note)) :]
    return Evidence(
        check=run.check,
        passed=passed,
        command=_shown(run.argv),
        exit_code=run.exit_code,
        duration_ms=run.duration_ms,
        excerpt=excerpt,
        isolation=isolation,
    )


def _last_line(run: StepResult) -> str:
    lines = [line for line in (run.stdout_excerpt + "\n" + run.stderr_excerpt).splitlines() if line.strip()]
    return run.killed_reason or (lines[-1][:300] if lines else f"exit code {run.exit_code}")


PYTEST_TESTS_FAILED = 1
PYTEST_INTERRUPTED = 2  # a collection error, among others
PYTEST_NO_TESTS = 5
# faulthandler's dump of a test that outran `faulthandler_timeout`: the innermost frame first.
_DUMPED_FRAME = re.compile(r'\(most recent call first\):\n\s+File "(?P<path>[^"]+)", line (?P<line>\d+) in (?P<fn>\S+)')


def _runs_to_an_end(test: str) -> bool:
    """No `while`, no endless iterator (`itertools.count`, `cycle`, `repeat`, `iter(f, sentinel)`):
    whatever spins in such a test's run is the code it calls."""
    try:
        tree = ast.parse(test.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.While):
            return False
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("count", "cycle", "repeat") or (name == "iter" and len(node.args) > 1):
                return False
    return True


_COLLECTION_IMPORT_ERROR = re.compile(
    r"^E\s+((?:ImportError: cannot import name|ModuleNotFoundError: No module named) '[^']+')", re.MULTILINE
)


def _import_errors(run: StepResult) -> list[str]:
    """The import errors that stopped pytest's collection (the original's module failed to import)."""
    if run.exit_code != PYTEST_INTERRUPTED:
        return []
    return _COLLECTION_IMPORT_ERROR.findall(run.stdout_excerpt + "\n" + run.stderr_excerpt)


def hangs_in(run: StepResult, fixed_code: set[str]) -> str | None:
    """Where a run the limits ended was spinning, when that is inside a module the fix changes
    (`bitcount.py:4 in bitcount`): the original's own loop, which the fix ends. None otherwise: a
    test waiting on a marker spins in the test file, and a run that ended by itself did not hang."""
    if not (run.timed_out or run.killed_reason):
        return None
    for frame in _DUMPED_FRAME.finditer(run.stderr_excerpt):
        path = frame["path"].replace("\\", "/")
        module = next((p for p in sorted(fixed_code) if path == p or path.endswith("/" + p)), None)
        if module is not None:
            return f"{module}:{frame['line']} in {frame['fn']}"
    return None


# pytest's own exit codes when it could not run the tests as asked.
_PYTEST_STOPPED = {2: "errors during collection", 3: "internal error", 4: "usage error", 5: "no tests collected"}
_COLLECTING = re.compile(r"^_+ (ERROR collecting .+?) _+$")
_EXCEPTION = re.compile(r"^E\s+([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)")
_OWN_ERROR = re.compile(r"^(?:ERROR: .+|INTERNALERROR> \S*(?:Error|Exception)\b.*|\S+: error: .+)")
_RUN_DIR = re.compile(r"/\S*?selfheal-run-[^/\s]+/project/")  # the runner's tree: noise, not evidence
QUOTED_ERRORS = 3


def _pytest_stopped(run: StepResult) -> str | None:
    """pytest's own error lines (which module failed to collect and why, a usage error), when
    pytest stopped before running the tests as asked; scrubbed and bounded."""
    label = _PYTEST_STOPPED.get(run.exit_code)
    if label is None or run.killed_reason:
        return None
    quotes: list[str] = []
    collecting = ""
    for line in (run.stdout_excerpt + "\n" + run.stderr_excerpt).splitlines():
        if header := _COLLECTING.match(line):
            collecting = header[1] + ": "
        elif (exception := _EXCEPTION.match(line)) and collecting:
            quotes.append(collecting + exception[1])
            collecting = ""  # the first exception of a module's report is its cause
        elif own := _OWN_ERROR.match(line):
            quotes.append(own[0])
    # Cut before the patterns run: each `/` of a long token starts a scan of the rest of it.
    shown = [scrub(_RUN_DIR.sub("", q.strip()[:2000]))[:300] for q in dict.fromkeys(quotes)]
    more = f" (and {len(shown) - QUOTED_ERRORS} more)" if len(shown) > QUOTED_ERRORS else ""
    return f"pytest stopped: {label}: {'; '.join(shown[:QUOTED_ERRORS]) or _last_line(run)}{more}"


def _outcome(run: StepResult) -> str:
    """What a pytest step ended with, for a reason: pytest's own error, else its last line."""
    return _pytest_stopped(run) or _last_line(run)


COMPILE_ARGV = ["python", "-m", "compileall", "-q", "-x", r"/\.tmp/", "."]


class _Refused(Exception):
    def __init__(self, result: ValidationResult) -> None:
        super().__init__(result.reason)
        self.result = result


@dataclass
class _Session:
    """The runs of one validation: a shared time budget and the evidence gathered so far."""

    runner: Runner
    limits: RunLimits
    deadline: float
    evidence: list[Evidence]
    on_run: Callable[[str], None]

    def run(
        self, files: dict[str, str], steps: list[RunStep], judge: Callable[[StepResult], bool] = lambda r: r.ok
    ) -> list[StepResult]:
        """One runner invocation; `judge` says whether a step's result supports the fix."""
        left = max(self.deadline - time.monotonic(), 1.0)
        # Each step of the invocation gets its share of what is left of the budget.
        limits = self.limits.model_copy(update={"wall_seconds": min(self.limits.wall_seconds, left / len(steps))})
        try:
            bundle = RunBundle(files=files, steps=steps, limits=limits)
        except ValidationError as exc:  # e.g. more files than the runner takes: a verdict, not a crash
            reason = f"the code cannot be run: {describe_validation_error(exc)}"
            raise _Refused(ValidationResult(False, reason[:1000], self.evidence)) from exc
        try:
            reply: RunReply = self.runner.run(bundle)
        except RunnerError as exc:
            raise _Refused(ValidationResult(False, str(exc)[:1000], self.evidence)) from exc
        self.on_run(reply.isolation)
        if reply.refused:
            self.evidence.append(
                Evidence(
                    check=steps[0].check, passed=False, excerpt=reply.refused[:EXCERPT_CHARS], isolation=reply.isolation
                )
            )
            raise _Refused(ValidationResult(False, reply.refused[:1000], self.evidence))
        for result in reply.steps:
            self.evidence.append(_evidence(result, judge(result), reply.isolation))
        return reply.steps


def _shown_without_fix(
    s: _Session,
    new_tests_argv: list[str],
    tree: dict[str, str],
    code_files: dict[str, str],
    patched_tree: dict[str, str],
    names: FixNames,
    new_test_files: list[str],
) -> tuple[str | None, StepResult]:
    """Run the new tests on the original (plus the names the fix adds): what they show without the
    fix (`a, b fail`; `t.py fail to import (...)` on the original's own import; or `t.py hang (at
    m.py:4 in f)` inside code the fix changes: pytest's faulthandler dumps where, before the limits
    end the run; only for tests without a loop of their own that could be what spins, calling the
    code until a marker appears), or None when they show nothing."""
    fixed_code = {p for p in patched_tree if p.endswith(".py") and code_files.get(p) != patched_tree[p]}

    def failing(r: StepResult) -> list[str]:
        return [t.id for t in r.tests or [] if names.reproduces(t)] if r.exit_code == PYTEST_TESTS_FAILED else []

    [run] = s.run(
        tree,
        [RunStep(check="new_tests_unpatched", argv=new_tests_argv, junit=True)],
        judge=lambda r: bool(failing(r) or _import_errors(r)) or hangs_in(r, fixed_code) is not None,
    )
    if (broken := _import_errors(run)) and all(
        names.reproduces(TestCase(id="", outcome="failed", message=line)) for line in broken
    ):  # the original cannot even be imported: its own import, which the fix corrects
        return f"{', '.join(new_test_files)} fail to import ({broken[0][:120]})", run
    if (
        (hang := hangs_in(run, fixed_code)) is not None
        and all(_runs_to_an_end(tree[p]) for p in new_test_files)
        and not any(names.missing & read for read in names.reads.values())  # spinning on a missing name
    ):
        return f"{', '.join(new_test_files)} hang (at {hang})", run
    return (f"{', '.join(failing(run))} fail" if failing(run) else None), run


def _project_tests(
    s: _Session, patched_tree: dict[str, str], argv: list[str], code_files: dict[str, str]
) -> tuple[ValidationResult | None, StepResult | None]:
    """Run 1: the refusal, or the project's own test run over the patched source (None for a project
    that has no tests at all: then the fix's new tests alone carry the proof, runs 2 and 3)."""
    steps = s.run(
        patched_tree, [RunStep(check="compile", argv=COMPILE_ARGV), RunStep(check="tests", argv=argv, junit=True)]
    )
    if not steps[0].ok:
        return ValidationResult(False, f"the patched code does not compile: {_last_line(steps[0])}", s.evidence), None
    run = steps[1]
    patterns = project_test_patterns(code_files)
    if run.exit_code == PYTEST_NO_TESTS and not any(is_test_file(p, patterns) for p in code_files):
        return None, None
    if not run.ok:
        return ValidationResult(False, f"tests fail on the patched code: {_outcome(run)}", s.evidence), None
    if not run.tests:
        return ValidationResult(
            False, "the patched test run wrote no test report, so it proves nothing", s.evidence
        ), None
    return None, run


def _pre_existing_tests_hold(
    s: _Session, code_files: dict[str, str], argv: list[str], patched_run: StepResult
) -> ValidationResult | None:
    """Run 4: the refusal when a test the project had does not pass with the fix (or went missing)."""
    [before] = s.run(
        dict(code_files),
        [RunStep(check="tests_unpatched", argv=argv, junit=True)],
        judge=lambda r: r.tests is not None,
    )  # a record of what failed before
    after = {t.id: t.outcome for t in patched_run.tests or []}
    if before.tests is None:
        # No record of what failed before (the original hung or crashed: often the very bug), so
        # nothing shows that a test not passing with the fix (a skip the fix raises) passed then.
        not_passed = [t for t, outcome in after.items() if outcome != "passed"]
        if not_passed:
            return ValidationResult(
                False,
                f"weak evidence: the original run wrote no report ({_outcome(before)}), so what failed "
                f"before is unknown, and with the fix these did not pass: {', '.join(not_passed)[:400]}",
                s.evidence,
                weak_evidence=True,
            )
    # A collection error has no test identity (its id names the module), so it may be absent after.
    broken = [
        t.id
        for t in before.tests or []
        if (t.outcome in ("passed", "failed") and after.get(t.id) != "passed")
        or (t.outcome == "error" and after.get(t.id) not in (None, "passed"))
    ]
    if broken:
        return ValidationResult(
            False,
            f"pre-existing tests do not pass with the fix (or are missing from its run): {', '.join(broken)[:500]}",
            s.evidence,
        )
    return None


class CodeValidator:
    def __init__(
        self,
        runner: Runner,
        limits: RunLimits | None = None,
        *,
        total_seconds: float = 150.0,
        on_run: Callable[[str], None] | None = None,
    ) -> None:
        self.runner = runner
        self.limits = limits or RunLimits()
        # All runs of one validation share this budget, so QA ends before its Lambda timeout.
        self.total_seconds = total_seconds
        self.on_run = on_run or (lambda _mode: None)  # called with each run's isolation mode

    def validate(self, fix: Fix, issue: IssueReportedV1, code_files: dict[str, str]) -> ValidationResult:
        if fix.kind != "code":
            return ValidationResult(False, f"the code validator cannot validate a {fix.kind!r} fix")
        try:
            argv = parse_test_command(issue.code.test_command if issue.code else DEFAULT_TEST_COMMAND)
        except CommandRefused as exc:
            return ValidationResult(
                False,
                f"the test command is refused: {exc}",
                [Evidence(check="command", passed=False, excerpt=str(exc)[:EXCERPT_CHARS])],
            )
        try:
            if (path := tampered_path(code_files, fix)) is not None:
                reason = f"tampers with tests: {path}"
                return ValidationResult(
                    False, reason, [Evidence(check="tamper", passed=False, excerpt=reason[:EXCERPT_CHARS])]
                )
            patched = patched_files(code_files, fix)
            patterns = project_test_patterns(code_files)
            project_test = functools.partial(is_test_infrastructure, patterns=patterns)
            # Tests added to a project test module run like new test files, by their node ids.
            in_place = tests_added_in_place(code_files, patched)
            new_files = {**tests_created(code_files, fix, patched), **fix.tests}
            tests = {**new_files, **{p: patched[p] for p in in_place}}
            test_args = [*sorted(new_files), *(f"{p}::{t}" for p, added in sorted(in_place.items()) for t in added)]
            patched = {
                p: t for p, t in {**patched, **{p: code_files[p] for p in in_place}}.items() if p not in new_files
            }
            if (found := evasion(code_files, patched, tests, project_test)) is not None:
                reason = f"tampers with the test run: {found}; a fix must behave the same under test as in production"
                return ValidationResult(
                    False, reason, [Evidence(check="tamper", passed=False, excerpt=reason[:EXCERPT_CHARS])]
                )
            # The pre-existing tests and their configuration, as the project has them, over the patched source.
            untouched = {p: t for p, t in code_files.items() if is_test_infrastructure(p, patterns)}
            patched_tree = {
                **{p: t for p, t in patched.items() if not is_test_infrastructure(p, patterns)},
                **untouched,
            }
            if changes_no_code(code_files, patched):
                reason = "the fix changes no code: only comments, layout or docstrings differ"
                return ValidationResult(False, reason, [Evidence(check="apply", passed=False, excerpt=reason)])
            grafted = grafted_original(code_files, patched)
            for tree in (patched_tree, {**patched_tree, **tests}, {**grafted, **tests}):
                _check_size(tree)
        except FixError as exc:
            return ValidationResult(
                False,
                f"the fix cannot be applied: {exc}",
                [Evidence(check="apply", passed=False, excerpt=str(exc)[:EXCERPT_CHARS])],
            )
        changed = sorted(p for p in patched if code_files.get(p) != patched[p])
        evidence = [
            Evidence(
                check="apply",
                passed=True,
                excerpt=f"changed or added: {', '.join([*changed, *sorted(tests)])}"[:EXCERPT_CHARS],
            )
        ]
        session = _Session(self.runner, self.limits, time.monotonic() + self.total_seconds, evidence, self.on_run)
        try:
            names = FixNames.of(code_files, patched, patterns, grafted=grafted, tests=tests)
            return self._checks(session, argv, (tests, test_args), code_files, patched_tree, grafted, names)
        except _Refused as refused:
            return refused.result

    def _checks(
        self,
        s: _Session,
        argv: list[str],
        new: tuple[dict[str, str], list[str]],
        code_files: dict[str, str],
        patched_tree: dict[str, str],
        grafted: dict[str, str],
        names: FixNames,
    ) -> ValidationResult:
        tests, new_tests = new  # the files the new tests are in, and what pytest is given to run them
        # Runs 2 and 3 differ only by the fix: the same command, whose faulthandler option locates a
        # hang in run 3 (a test that could see an option only run 3 has could fail there alone).
        hang_after = max(1, int(min(self.limits.cpu_seconds, self.limits.wall_seconds) / 2))
        new_tests_argv = ["python", "-m", "pytest", "-q", "-o", f"faulthandler_timeout={hang_after}", *new_tests]
        # 1. The project's own tests, untouched, over the patched source (after it compiles).
        refused, patched_run = _project_tests(s, patched_tree, argv, code_files)
        if refused is not None:
            return refused
        if not new_tests:
            return ValidationResult(
                False, "weak evidence: the fix brings no new test that fails without it", s.evidence, weak_evidence=True
            )
        # 2. Every new test passes with the fix.
        [added] = s.run({**patched_tree, **tests}, [RunStep(check="new_tests", argv=new_tests_argv, junit=True)])
        not_passing = [t.id for t in added.tests or [] if t.outcome != "passed"]
        if not added.ok or not added.tests or not_passing:
            stopped = _pytest_stopped(added)
            detail = stopped or (f"not passing: {', '.join(not_passing)[:300]}" if not_passing else _last_line(added))
            return ValidationResult(
                False, f"the fix's new tests do not all pass on the patched code: {detail}", s.evidence
            )
        # 3. Without the fix (but with the names it adds) at least one new test fails on what it checks.
        shown, unpatched = _shown_without_fix(
            s, new_tests_argv, {**grafted, **tests}, code_files, patched_tree, names, sorted(tests)
        )
        if shown is None:
            return ValidationResult(
                False,
                "weak evidence: no new test fails on what it checks without the fix, on the original source "
                f"plus only the names the fix adds ({_outcome(unpatched)}), so they do not show that the fix "
                "changes anything",
                s.evidence,
                weak_evidence=True,
            )
        # 4. Every pre-existing test that failed before passes after (and none went missing).
        if patched_run is not None and (refused := _pre_existing_tests_hold(s, code_files, argv, patched_run)):
            return refused
        own = "the project's tests pass with the fix" if patched_run else "the project has no tests of its own"
        return ValidationResult(
            True,
            f"compiles; {own}; new test(s) {shown[:300]} without it and pass with it",
            s.evidence,
        )
