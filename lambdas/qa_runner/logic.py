"""The QA runner's work: lay out one tree, run the bundle's commands in the sandbox, report.

Everything the bundle carries is untrusted (the fix, its tests, the test command). The
runner re-checks the commands against the allow-list, writes the files into a directory of
its own that no other run ever sees, and answers with exit codes, output excerpts, the test
cases of pytest's JUnit report, and the isolation it had. When it had none (no namespaces,
no microVM) it runs nothing unless the operator opted in (`allowUnisolatedQa`, local only).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import uuid
import xml.etree.ElementTree as ET  # the report is size-capped and parsed here, in the isolated runner
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from selfheal_core.diffs import path_problem
from selfheal_core.qa_run import (
    ISOLATION_UNAVAILABLE,
    MAX_TESTCASES,
    CommandRefused,
    RunBundle,
    RunReply,
    StepResult,
    TestCase,
    pytest_arguments,
)

from .sandbox import SandboxLimits, SandboxRun, isolation_mode, run_in_sandbox

__all__ = ["isolation_mode", "run_bundle"]

ALLOW_UNISOLATED_ENV = "SELFHEAL_ALLOW_UNISOLATED_QA"
MAX_TREE_BYTES = 20 * 1024 * 1024
MAX_REPORT_BYTES = 2 * 1024 * 1024
COMPILE_ARGS = ("-q", "-x", r"/\.tmp/", ".")

Sandbox = Callable[..., SandboxRun]


class BundleError(ValueError):
    """The bundle cannot be laid out or run as sent (bad path, refused command)."""


def run_bundle(
    raw: dict[str, Any], *, sandbox: Sandbox = run_in_sandbox, mode: Callable[[], str] = isolation_mode
) -> dict[str, Any]:
    bundle = RunBundle.model_validate(raw)
    isolation = mode()
    if isolation == "none" and os.environ.get(ALLOW_UNISOLATED_ENV, "").lower() != "true":
        return RunReply(isolation="none", refused=ISOLATION_UNAVAILABLE).model_dump(mode="json")
    try:
        commands = [bind_command(step.argv) for step in bundle.steps]
    except BundleError as exc:
        return RunReply(isolation=isolation, refused=str(exc)).model_dump(mode="json")  # type: ignore[arg-type]
    limits = SandboxLimits(
        wall_seconds=bundle.limits.wall_seconds,
        cpu_seconds=bundle.limits.cpu_seconds,
        memory_bytes=bundle.limits.memory_mb * 1024 * 1024,
        file_size_bytes=bundle.limits.file_size_mb * 1024 * 1024,
        output_bytes=bundle.limits.output_bytes,
    )
    results: list[StepResult] = []
    run_root = Path(tempfile.mkdtemp(prefix="selfheal-run-"))
    try:
        run_root.chmod(0o755)  # traversable by the sandbox's unprivileged user
        try:
            project = write_tree(run_root / "project", bundle.files)
        except BundleError as exc:
            return RunReply(isolation=isolation, refused=f"the files cannot be laid out: {exc}").model_dump(mode="json")  # type: ignore[arg-type]
        reports = run_root / "reports"
        reports.mkdir()
        for step, command in zip(bundle.steps, commands, strict=True):
            report = reports / f"junit-{uuid.uuid4().hex}.xml"
            argv = [*command, f"--junitxml={report}"] if step.junit else command
            # compileall writes the tree's bytecode; every other step may not write sources or config.
            run = sandbox(project, argv, limits, writable=[reports], protect_sources=not is_compile(step.argv))
            result = StepResult(
                check=step.check,
                argv=step.argv,
                exit_code=run.exit_code,
                duration_ms=run.duration_ms,
                stdout_excerpt=run.stdout_excerpt,
                stderr_excerpt=run.stderr_excerpt,
                timed_out=run.timed_out,
                killed_reason=run.killed_reason,
                tests=read_junit(report) if step.junit else None,
            )
            results.append(result)
            if bundle.stop_on_failure and not result.ok:
                break
    finally:
        shutil.rmtree(run_root, ignore_errors=True)
    return RunReply(isolation=isolation, steps=results).model_dump(mode="json")  # type: ignore[arg-type]


def is_compile(argv: Sequence[str]) -> bool:
    return list(argv[:3]) == ["python", "-m", "compileall"] and tuple(argv[3:]) == COMPILE_ARGS


def bind_command(argv: Sequence[str]) -> list[str]:
    """Symbolic argv -> this interpreter; only `python -m pytest <allowed>` and compileall run."""
    argv = list(argv)
    if is_compile(argv):
        return [sys.executable, *argv[1:]]
    try:
        args = pytest_arguments(argv, qa_options=True)
    except CommandRefused as exc:
        raise BundleError(str(exc)) from exc
    # No cache directory written into the tree; the report path is added by the runner only.
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def write_tree(root: Path, files: dict[str, str]) -> Path:
    if sum(len(text) for text in files.values()) > MAX_TREE_BYTES:
        raise BundleError(f"the code is larger than {MAX_TREE_BYTES} bytes")
    root.mkdir(parents=True)
    base = root.resolve()
    for path, text in files.items():
        if problem := path_problem(path):
            raise BundleError(problem)
        target = (base / path).resolve()
        if not target.is_relative_to(base) or target == base:
            raise BundleError(f"path {path!r} escapes the project directory")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        except OSError as exc:  # e.g. "a" and "a/b.py" both given
            raise BundleError(f"cannot write {path!r}: {exc.strerror}") from exc
    return root


def read_junit(report: Path) -> list[TestCase] | None:
    """Test cases of a pytest JUnit report; None when there is none (or it is not one)."""
    # The sandboxed child could swap the report for a symlink or a device: read a regular file only.
    try:
        fd = os.open(report, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        data = fh.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        return None
    try:
        root = ET.fromstring(data)  # noqa: S314
    except ET.ParseError:
        return None
    cases: list[TestCase] = []
    for case in root.iter("testcase"):
        if len(cases) >= MAX_TESTCASES:
            break
        name = f"{case.get('classname', '')}::{case.get('name', '')}"[:300]
        outcome, message = "passed", ""
        for tag, kind in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            element = case.find(tag)
            if element is not None:
                outcome, message = kind, (element.get("message") or "")[:300]
                break
        cases.append(TestCase(id=name, outcome=outcome, message=message))  # type: ignore[arg-type]
    return cases
