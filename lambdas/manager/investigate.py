"""Investigation before a fix is asked for: read the target Lambda function's real state.

Everything the runbook or a model may change is read here (configuration with its
RevisionId, reserved concurrency, async retries), with the recent error lines and recent
changes for context. Nothing is assumed: a value that could not be read is a gap, and a
change relative to a gap is never proposed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from selfheal_core import aws
from selfheal_core.catalog import OWN_FUNCTION_PREFIX
from selfheal_core.events import MAX_EVIDENCE_ITEMS, MAX_INVESTIGATION_LINES, SETTINGS, Investigation, IssueReportedV1
from selfheal_core.redact import cap, scrub

from .home import Home

MANAGED_TAG = "selfheal:managed"
# Adds one (thought, action, observation) to the reasoning chain.
Step = Callable[[str, str, str], None]
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# An alias or a published version (`$LATEST` is the unqualified function).
QUALIFIER = re.compile(r"[A-Za-z0-9_-]{1,128}|\$LATEST")
LOG_LOOKBACK = timedelta(minutes=15)
LOG_LOOKAHEAD = timedelta(minutes=5)
CHANGE_LOOKBACK = timedelta(hours=24)
MAX_LINE_CHARS = 300
ERROR_PATTERN = '?ERROR ?Error ?error ?Exception ?Traceback ?"Task timed out" ?"Runtime exited"'
CHANGE_EVENTS = ("UpdateFunctionCode", "UpdateFunctionConfiguration")
# The filter pattern narrows on AWS; this keeps only error lines wherever the lines came from.
ERROR_LINE = re.compile(r"error|exception|traceback|task timed out|runtime exited", re.IGNORECASE)


@dataclass
class CloudPort:
    """The AWS APIs the heal loop uses; tests replace single clients (e.g. one that denies access)."""

    overrides: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.overrides.get(service) or aws.client(service)


def function_name_of(reference: str | None) -> str | None:
    """A function name from a name or a function ARN, either possibly qualified (`name:alias`,
    `name:3`); None when it is neither."""
    split = split_qualifier(reference)
    return split[0] if split else None


def split_qualifier(reference: str | None) -> tuple[str, str | None] | None:
    """(name, alias or version) of a function name or ARN; None when it is neither."""
    if not reference:
        return None
    parts = reference.split(":")
    if reference.startswith("arn:"):
        if len(parts) not in (7, 8) or parts[2] != "lambda" or parts[5] != "function":
            return None
        parts = parts[6:]
    if len(parts) > 2 or not FUNCTION_NAME.fullmatch(parts[0]):
        return None
    qualifier = parts[1] if len(parts) == 2 else None
    if qualifier is not None and not QUALIFIER.fullmatch(qualifier):
        return None
    return parts[0], None if qualifier == "$LATEST" else qualifier


def target_of(issue: IssueReportedV1, origin: str, alarm_function: str | None, home: Home) -> tuple[str | None, str]:
    """The function to investigate (`name`, or `name:qualifier` for an alias or a version), and
    how it was found (for the reasoning chain).

    A function ARN of another account or Region is no target here: only its name would be left,
    and that names our namesake, not the function reported.
    """
    if origin == "alarm":
        if not alarm_function:
            return None, "the alarm's metrics name no single function (FunctionName or function_name dimension)"
        reference, how = alarm_function, "the alarm's function dimension"
    elif origin == "scan":
        reference, how = issue.service, "the scanned function"
    elif issue.resource:
        reference, how = issue.resource, "the reported resource"
    else:
        reference, how = issue.service, "no resource reported; the service name as function name"
    split = split_qualifier(reference)
    if split is None:
        return None, f"{how} {reference[:80]!r} is not a function name or ARN"
    elsewhere = home.elsewhere(reference) if split and reference.startswith("arn:") else None
    if elsewhere is not None:
        return None, f"{how} is a function ARN in {elsewhere}, not this Manager's ({home})"
    name, qualifier = split
    if name.startswith(OWN_FUNCTION_PREFIX):  # the pipeline itself: a person looks, whatever its tags say
        return None, f"{how} names Selfheal's own function {name[:80]!r}, which Selfheal never changes"
    return (f"{name}:{qualifier}" if qualifier else name), how


def _denied_or_missing(exc: ClientError) -> str:
    """Why a value could not be read, for its gap. A transient error is no gap: it is raised, and
    the Lambda retry reads again (a throttled read must not fail the incident for good)."""
    if aws.is_transient(exc):
        raise exc
    code = exc.response.get("Error", {}).get("Code", "Unknown")
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"):
        return "permission denied"
    if code == "ResourceNotFoundException":
        return "not found"
    return code


def _code(exc: ClientError) -> str:
    return aws.error_code(exc)


def investigate(
    target: str | None, how: str, *, around: datetime, cloud: CloudPort
) -> tuple[Investigation, list[dict[str, str]]]:
    """Read the target; returns the investigation and its reasoning chain."""
    chain: list[dict[str, str]] = []

    def step(thought: str, action: str, observation: str) -> None:
        chain.append({"thought": thought, "action": action, "observation": observation[:1000]})

    if target is None:
        step(
            "Which function does this incident concern?",
            f"look for a target: {how}",
            "no Lambda target; nothing to read",
        )
        return Investigation(gaps=[f"no Lambda target: {how}"]), chain

    reference = target
    target, qualifier = split_qualifier(reference) or (reference, None)
    inv = Investigation(target=target)
    lam = cloud.client("lambda")
    step("Which function does this incident concern?", f"target from {how}", reference)

    # One GetFunction read gives the configuration, the tags and the reserved concurrency; with
    # the qualifier, the configuration of what the alias or version runs.
    try:
        function = lam.get_function(FunctionName=target, **({"Qualifier": qualifier} if qualifier else {}))
    except ClientError as exc:
        reason = _denied_or_missing(exc)
        inv.gaps.append(f"GetFunction {reference}: {reason}")
        step("What is its configuration now?", "GetFunction", f"could not read it: {reason}")
        if _code(exc) == "ResourceNotFoundException":
            return inv, chain
        function = None
    config = (function or {}).get("Configuration")
    if config is not None:
        inv.target_arn = _unqualified(config.get("FunctionArn"))
        if config.get("Version", "$LATEST") != "$LATEST":
            # Timeout and memory of a published version were fixed when it was published: a
            # change to the function would not reach what the alias or version runs.
            version = config.get("Version")
            inv.gaps.append(
                f"{reference} runs published version {version}: its timeout and memory were fixed when it "
                f"was published; publish a version with the change and move {qualifier} to it (by hand)"
            )
            step(
                f"What does {reference} run?",
                "GetFunction with Qualifier",
                f"published version {version}: timeout {config.get('Timeout')} s, memory "
                f"{config.get('MemorySize')} MB, fixed; the function's reserved concurrency applies to it",
            )
        else:
            inv.revision_id = config.get("RevisionId")
            inv.values["timeout_s"] = float(config["Timeout"])
            inv.values["memory_mb"] = float(config["MemorySize"])
            if not inv.revision_id:
                inv.gaps.append("GetFunction returned no RevisionId: a configuration change cannot be guarded")
            step(
                "What is its configuration now?",
                "GetFunction: Configuration",
                f"timeout {config['Timeout']} s, memory {config['MemorySize']} MB, revision {inv.revision_id}",
            )
        _read_concurrency(inv, function or {}, step)
        _read_tags(inv, function or {}, step)
    if qualifier:
        # Async retries are configured per alias or version; the heal loop sets the function's own.
        inv.gaps.append(f"max_retries of {reference}: set per alias or version, not changed by Selfheal")
    else:
        _read_retries(inv, target, lam, step)

    log_group = ((config or {}).get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{target}"
    _read_errors(inv, log_group, around, cloud, step)
    _read_changes(inv, target, around, cloud, step)
    return inv, chain


def _unqualified(arn: str | None) -> str | None:
    """A function ARN without its alias or version: tags and concurrency belong to the function."""
    if not arn:
        return None
    parts = arn.split(":")
    return ":".join(parts[:7]) if len(parts) == 8 else arn


def _read_concurrency(inv: Investigation, function: dict[str, Any], step: Step) -> None:
    # GetFunction carries `Concurrency` only when a reservation exists (0 included).
    reserved = (function.get("Concurrency") or {}).get("ReservedConcurrentExecutions")
    if reserved is None:
        inv.unset.append("reserved_concurrency")
    else:
        inv.values["reserved_concurrency"] = float(reserved)
    step(
        "Is its concurrency reserved?",
        "GetFunction: Concurrency",
        "no reservation (unreserved account pool)" if reserved is None else f"{reserved} reserved",
    )


def _read_retries(inv: Investigation, target: str, lam: Any, step: Step) -> None:
    try:
        retries = lam.get_function_event_invoke_config(FunctionName=target).get("MaximumRetryAttempts")
        if retries is None:
            inv.unset.append("max_retries")
        else:
            inv.values["max_retries"] = float(retries)
        step("How are async invocations retried?", "GetFunctionEventInvokeConfig", f"max retries {retries}")
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            inv.unset.append("max_retries")
            step("How are async invocations retried?", "GetFunctionEventInvokeConfig", "not configured")
        else:
            inv.gaps.append(f"GetFunctionEventInvokeConfig: {_denied_or_missing(exc)}")
            step(
                "How are async invocations retried?",
                "GetFunctionEventInvokeConfig",
                f"could not read it: {_denied_or_missing(exc)}",
            )


def _read_tags(inv: Investigation, function: dict[str, Any], step: Step) -> None:
    # Lambda leaves the tags out (TagsError) when the caller may not call ListTags.
    if "TagsError" in function:
        error = function["TagsError"].get("ErrorCode", "unreadable")
        inv.gaps.append(f"ListTags: {error}")
        step("May Selfheal change it?", "GetFunction: Tags", f"could not read the tags: {error}")
        return
    tags = function.get("Tags") or {}
    inv.managed = tags.get(MANAGED_TAG) == "true"
    step(
        "May Selfheal change it?",
        f"GetFunction: Tags {MANAGED_TAG}",
        f"{MANAGED_TAG}={tags.get(MANAGED_TAG, '<absent>')}",
    )


def _read_errors(inv: Investigation, log_group: str, around: datetime, cloud: CloudPort, step: Step) -> None:
    try:
        events = (
            cloud.client("logs")
            .filter_log_events(
                logGroupName=log_group,
                filterPattern=ERROR_PATTERN,
                limit=50,
                startTime=int((around - LOG_LOOKBACK).timestamp() * 1000),
                endTime=int((around + LOG_LOOKAHEAD).timestamp() * 1000),
            )
            .get("events", [])
        )
    except ClientError as exc:
        inv.gaps.append(f"FilterLogEvents {log_group}: {_denied_or_missing(exc)}")
        step(
            "What did it log around the alarm?",
            f"FilterLogEvents {log_group}",
            f"could not read: {_denied_or_missing(exc)}",
        )
        return
    # Log text is untrusted: secrets removed, each line capped, only the latest lines kept.
    lines = [
        cap(scrub(e.get("message", "").strip()), MAX_LINE_CHARS)
        for e in events
        if ERROR_LINE.search(e.get("message", ""))
    ]
    inv.error_lines.extend(lines[-MAX_INVESTIGATION_LINES:])
    step(
        "What did it log around the alarm?",
        f"FilterLogEvents {log_group} (errors, -15/+5 min)",
        f"{len(lines)} error line(s)" + (f"; last: {lines[-1][:200]}" if lines else ""),
    )


def _read_changes(inv: Investigation, target: str, around: datetime, cloud: CloudPort, step: Step) -> None:
    end = max(around, datetime.now(UTC))
    try:
        events = (
            cloud.client("cloudtrail")
            .lookup_events(
                LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": target}],
                StartTime=end - CHANGE_LOOKBACK,
                EndTime=end,
                MaxResults=50,
            )
            .get("Events", [])
        )
    except (ClientError, BotoCoreError, NotImplementedError) as exc:
        reason = _denied_or_missing(exc) if isinstance(exc, ClientError) else f"unavailable ({type(exc).__name__})"
        inv.gaps.append(f"CloudTrail LookupEvents: {reason}")
        step("Did anyone change it recently?", "CloudTrail LookupEvents (24 h)", f"not available: {reason}")
        return
    changes = []
    for event in events:
        name = str(event.get("EventName", ""))
        if name.startswith(CHANGE_EVENTS):
            when = event.get("EventTime")
            when_text = when.isoformat() if isinstance(when, datetime) else str(when)
            changes.append(scrub(f"{when_text} {name} by {event.get('Username', 'unknown')}")[:MAX_LINE_CHARS])
    inv.recent_changes.extend(changes[:MAX_INVESTIGATION_LINES])
    step(
        "Did anyone change it recently?",
        "CloudTrail LookupEvents (24 h)",
        f"{len(changes)} code/configuration change(s)" + (f"; latest: {changes[0]}" if changes else ""),
    )


def enrich(issue: IssueReportedV1, inv: Investigation | None) -> IssueReportedV1:
    """The issue as the Engineer sees it: settings only as read (a reporter's figure is a claim, not
    a reading), and the function's own error lines as evidence."""
    signals = {k: v for k, v in issue.signals.items() if k not in SETTINGS}
    if inv is None:
        return issue.model_copy(update={"signals": signals})
    signals.update(inv.values)
    evidence = [*issue.evidence, *(f"{inv.target} log: {line}" for line in inv.error_lines)][:MAX_EVIDENCE_ITEMS]
    return issue.model_copy(update={"signals": signals, "evidence": evidence})
