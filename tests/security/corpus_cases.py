"""The corpus: small buggy programs with their own test suites, one bug kind or layout each.

Each case directory holds `project/` (the code, its existing tests and configuration, as a
reporter would attach them) and three more parts, each either one file (for a case whose bug
lives in the project's one top-level module) or a tree of paths relative to the project:
- `fix.py` or `fix/`: the real fix (the files it changes or adds, whole);
- `nonfix.py` or `nonfix/`: a plausible change that does not fix the bug;
- `new_test.py` or `new_tests/`: the regression test(s) that come with the fix and fail on the bug.

Layouts seen in bug corpora (BugsInPy, QuixBugs, Defects4J-style ports): flat modules with
`tests/`, a `src/` package with pytest's `pythonpath`, a fix across two files, unittest-style
suites, tests beside the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


@dataclass(frozen=True)
class Case:
    name: str
    files: dict[str, str]  # the project as reported (buggy)
    fix_tree: dict[str, str]
    nonfix_tree: dict[str, str]
    new_tests: dict[str, str]

    @property
    def test_files(self) -> list[str]:
        return sorted(p for p in self.files if p.split("/")[-1].startswith("test_"))

    @property
    def test_file(self) -> str:
        return self.test_files[0]

    @property
    def buggy_tree(self) -> dict[str, str]:
        """The files the fix changes, as the project has them (a "fix" that changes nothing)."""
        return {p: self.files[p] for p in self.fix_tree if p in self.files}

    # A single-module case (the fix changes one file and brings one test): its parts by name.
    @property
    def module(self) -> str:
        [path] = self.fix_tree
        return path

    @property
    def fix(self) -> str:
        return self.fix_tree[self.module]

    @property
    def nonfix(self) -> str:
        return self.nonfix_tree[self.module]

    @property
    def new_test_path(self) -> str:
        [path] = self.new_tests
        return path

    @property
    def new_test(self) -> str:
        return self.new_tests[self.new_test_path]


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _part(root: Path, tree: str, single: str, path: str) -> dict[str, str]:
    """`root/tree/` as a tree, or `root/single` as the one file at `path`."""
    if (root / tree).is_dir():
        return _tree(root / tree)
    return {path: (root / single).read_text()}


def load(name: str) -> Case:
    root = CORPUS / name
    files = _tree(root / "project")
    top_modules = [p for p in files if "/" not in p and p.endswith(".py") and not p.startswith("test_")]
    module = top_modules[0] if len(top_modules) == 1 else "<no single module>"
    return Case(
        name,
        files,
        _part(root, "fix", "fix.py", module),
        _part(root, "nonfix", "nonfix.py", module),
        _part(root, "new_tests", "new_test.py", f"tests/test_regression_{name}.py"),
    )


NAMES = sorted(p.name for p in CORPUS.iterdir() if (p / "project").is_dir())
CASES = [load(name) for name in NAMES]
