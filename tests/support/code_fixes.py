"""A code fix and the issue it answers, as the QA tests build them: one home for both shapes."""

from __future__ import annotations

from selfheal_core.events import CodeBundle, Fix, IssueReportedV1


def code_fix(**fields: object) -> Fix:
    """A low-risk code fix with `fields` (files or patch, tests)."""
    return Fix(kind="code", provider="test", rationale="fixed", risk_level="low", **fields)


def code_issue(files: dict[str, str]) -> IssueReportedV1:
    """An exception report carrying the project `files`, tested with `python -m pytest -q`."""
    return IssueReportedV1(
        service="orders",
        issue_type="exception",
        summary="bug",
        code=CodeBundle(files=files, test_command="python -m pytest -q"),
    )
