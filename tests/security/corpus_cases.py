"""The corpus: small buggy programs with their own test suites, one bug kind each.

Each case directory holds `project/` (the code and its existing tests, as a reporter would
attach them), `fix.py` (the real fix of the module), `nonfix.py` (a plausible change that does
not fix the bug) and `new_test.py` (a regression test that fails on the bug).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


@dataclass(frozen=True)
class Case:
    name: str
    files: dict[str, str]
    module: str  # the buggy file
    fix: str
    nonfix: str
    new_test: str

    @property
    def test_file(self) -> str:
        [path] = [p for p in self.files if p.startswith("tests/")]
        return path

    @property
    def new_test_path(self) -> str:
        return f"tests/test_regression_{self.name}.py"


def load(name: str) -> Case:
    root = CORPUS / name
    project = root / "project"
    files = {str(p.relative_to(project)): p.read_text() for p in sorted(project.rglob("*.py"))}
    [module] = [p for p in files if "/" not in p]
    return Case(
        name,
        files,
        module,
        (root / "fix.py").read_text(),
        (root / "nonfix.py").read_text(),
        (root / "new_test.py").read_text(),
    )


NAMES = sorted(p.name for p in CORPUS.iterdir() if (p / "project").is_dir())
CASES = [load(name) for name in NAMES]
