"""The contract between QA and the QA runner: one bundle in, one reply out (plain JSON).

QA never executes fix code. It sends the runner function a bundle (the files of ONE tree,
the commands to run there, the limits) through a synchronous `lambda:Invoke`, with a fresh
tenant id per run; the runner writes the tree into its own empty directory, runs the
commands in its sandbox and replies with what happened, including which isolation it had.

The command allow-list lives here so that both sides apply it: QA before it sends a bundle,
the runner again before it runs one (whoever built the bundle).
"""

# No `from __future__ import annotations`: see selfheal_core/events.py (model classes, cold start).

import re
import shlex
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IsolationMode = Literal["namespaces", "microvm", "none"]
ISOLATION_UNAVAILABLE = "isolation unavailable"
MAX_FILES = 2_000
MAX_TESTCASES = 2_000


class CommandRefused(ValueError):
    """A test command outside the allow-list."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class RunLimits(_Model):
    wall_seconds: float = Field(default=30.0, gt=0, le=600)
    cpu_seconds: int = Field(default=20, gt=0, le=600)
    memory_mb: int = Field(default=512, ge=64, le=4096)
    file_size_mb: int = Field(default=16, ge=1, le=256)
    output_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)


class RunStep(_Model):
    check: str = Field(min_length=1, max_length=64)
    # Symbolic: "python" is bound to the runner's own interpreter by the runner.
    argv: list[str] = Field(min_length=1, max_length=64)
    junit: bool = False  # ask pytest for a JUnit XML report and return its test cases


class RunBundle(_Model):
    files: dict[str, str] = Field(max_length=MAX_FILES)
    steps: list[RunStep] = Field(min_length=1, max_length=4)
    limits: RunLimits = Field(default_factory=RunLimits)
    # Stop after the first step that does not exit 0 (e.g. do not test code that does not compile).
    stop_on_failure: bool = True


TestOutcome = Literal["passed", "failed", "error", "skipped"]


class TestCase(_Model):
    __test__ = False  # not a pytest test class

    id: str
    outcome: TestOutcome
    message: str = ""

    @property
    def reproduces(self) -> bool:
        """The test ran and failed on what it checks: an assertion (or pytest.fail / pytest.raises),
        or the bug's own exception. Not a setup or collection error (`error`), and not a name that
        only the fix adds (ImportError, NameError, a module without the attribute). QA runs the new
        tests on the original plus the names the fix adds, so a check for such a name passes there."""
        return self.outcome == "failed" and not _MISSING_NAME.match(self.message)


# pytest's JUnit report gives the crash message: "assert 1 == 2", "AssertionError: ...",
# "Failed: DID NOT RAISE ...", "ZeroDivisionError: division by zero", "ImportError: cannot import ...".
_MISSING_NAME = re.compile(
    r"(ImportError|ModuleNotFoundError|NameError)\b|AttributeError: module '[^']*' has no attribute"
)


class StepResult(_Model):
    check: str
    argv: list[str]
    exit_code: int
    duration_ms: float
    stdout_excerpt: str = ""
    stderr_excerpt: str = ""
    timed_out: bool = False
    killed_reason: str | None = None
    tests: list[TestCase] | None = Field(default=None, max_length=MAX_TESTCASES)  # None: no report written

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class RunReply(_Model):
    isolation: IsolationMode
    refused: str | None = None  # e.g. ISOLATION_UNAVAILABLE; no step ran
    steps: list[StepResult] = Field(default_factory=list)


# ------------------------------------------------------------------- command allow-list

_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*(::[A-Za-z0-9_\[\]:.-]+)?")
_K_EXPR = re.compile(r"[A-Za-z0-9_ ()\[\].-]{1,200}")
PYTEST_PREFIXES = (("python", "-m", "pytest"), ("python3", "-m", "pytest"), ("pytest",))


def parse_test_command(command: str) -> list[str]:
    """`python -m pytest` followed only by project paths, -q, -x and -k EXPR, as symbolic argv.

    Interpreter flags (-S, -I, -E, -c ...), other pytest options (-p, --rootdir, -o ...) and
    other programs are refused: the command comes from an event, whoever sent it.
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise CommandRefused(f"cannot parse the test command {command!r}: {exc}") from exc
    return ["python", "-m", "pytest", *pytest_arguments(argv)]


# What QA itself may add (never a reporter: `parse_test_command` refuses it): a traceback dump of a
# test that runs longer than N seconds, which is how a hang in the original is located.
FAULTHANDLER_OPTION = re.compile(r"faulthandler_timeout=[1-9][0-9]{0,2}")


def pytest_arguments(argv: list[str], *, qa_options: bool = False) -> list[str]:
    """The arguments after the pytest prefix, each checked; raises CommandRefused."""
    prefix = next((p for p in PYTEST_PREFIXES if tuple(argv[: len(p)]) == p), None)
    if prefix is None:
        shown = shlex.join(argv[:3]) if argv else "(empty)"
        raise CommandRefused(
            f"the test command must be 'python -m pytest' with paths, -q, -x or -k EXPR, not {shown!r}"
        )
    args = argv[len(prefix) :]
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-q", "-x"):
            out.append(arg)
        elif i + 1 < len(args) and (
            (arg == "-k" and _K_EXPR.fullmatch(args[i + 1]))
            or (qa_options and arg == "-o" and FAULTHANDLER_OPTION.fullmatch(args[i + 1]))
        ):
            out += [arg, args[i + 1]]
            i += 1
        elif _PATH.fullmatch(arg) and ".." not in arg.split("::")[0].split("/"):
            out.append(arg)
        else:
            raise CommandRefused(
                f"test command argument {arg[:80]!r} is not allowed (only project paths, -q, -x and -k EXPR)"
            )
        i += 1
    return out
