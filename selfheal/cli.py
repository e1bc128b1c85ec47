"""`selfheal` — the operator CLI, against AWS or the local runtime.

Where it talks to: `--endpoint-url URL`, else a running `selfheal local up` of this project,
else AWS with the default credential chain. `--json` prints stable, documented JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from selfheal_core import catalog as names

from .ops.target import OperatorError, Target, UsageError, connect
from .output import (
    PrintableStream,
    emit_json,
    format_analysis,
    format_costs,
    format_trace,
    printable,
    progress,
    raw_stdout,
    table,
    usd,
)

EPILOG = "Targets: --endpoint-url, else a running `selfheal local up`, else AWS (default credentials). Add --json for scripts."


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (stable field names) instead of text")
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("SELFHEAL_ENDPOINT_URL"),
        help="AWS endpoint (e.g. http://127.0.0.1:4566)",
    )
    parser.add_argument(
        "--env", default=os.environ.get("SELFHEAL_ENV", "dev"), help="environment name of the deployment (default dev)"
    )
    parser.add_argument("--region", default=None, help="AWS region (default from the environment, else us-east-1)")


def positive_int(value: str) -> int:
    """An argparse type: a whole number >= 1 (a limit, a count, a window)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {value!r}")
    return number


def finite_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {value!r}")
    return number


def signal(value: str) -> tuple[str, float]:
    """NAME=VALUE with a finite number: what the Manager accepts as a signal."""
    name, sep, raw = value.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, e.g. p95_ms=4000, not {value!r}")
    try:
        number = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: not a number: {raw!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{name}: must be a finite number, not {raw!r}")
    return name.strip(), number


def key_value(value: str) -> tuple[str, str]:
    name, sep, raw = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {value!r}")
    return name, raw


def json_file(value: str) -> Path:
    """A readable JSON file (checked when the arguments are parsed, so a typo is a usage error)."""
    path = Path(value)
    try:
        json.loads(path.read_text())
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {value}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"{value} is not JSON: {exc}") from None
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfheal", description="Operate the Selfheal pipeline (AWS or local).", epilog=EPILOG
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "inject", help="inject an issue (flags or file) or a CloudWatch alarm state change", epilog=EPILOG
    )
    _common(p)
    p.add_argument(
        "--file", type=json_file, help="JSON: put-events entries, an EventBridge event, or an IssueReported detail"
    )
    p.add_argument("--service")
    p.add_argument(
        "--type",
        dest="issue_type",
        default="high_error_rate",
        help="high_error_rate|latency|exception|throttling|memory|unknown",
    )
    p.add_argument("--severity", default="medium", help="low|medium|high|critical")
    p.add_argument("--summary")
    p.add_argument(
        "--signal", type=signal, action="append", default=[], metavar="NAME=VALUE", help="metric value (repeatable)"
    )
    p.add_argument(
        "--evidence", action="append", default=[], metavar="LINE", help="log line / stack trace line (repeatable)"
    )
    p.add_argument("--code-dir", type=Path, help="directory with the code under repair and its tests (sent inline)")
    p.add_argument("--test-command", help="test command for --code-dir (default: python -m pytest -q)")
    p.add_argument("--idempotency-key")
    p.add_argument("--resource", help="affected resource (function name, alarm name...)")
    p.add_argument("--alarm", metavar="ALARM_NAME", help="send a real-shaped CloudWatch alarm state change instead")
    p.add_argument("--state", default="ALARM", choices=["ALARM", "OK", "INSUFFICIENT_DATA"])
    # An existing alarm is described as DescribeAlarms defines it: these are for one that does not exist.
    p.add_argument("--namespace", help="default AWS/Lambda (only for an alarm that does not exist)")
    p.add_argument("--metric", help="default Errors (only for an alarm that does not exist)")
    p.add_argument(
        "--dimension",
        type=key_value,
        action="append",
        metavar="NAME=VALUE",
        help="default FunctionName=<alarm name up to its last '-'> (only for an alarm that does not exist)",
    )
    p.add_argument("--stat", help="default Sum (only for an alarm that does not exist)")
    p.add_argument("--period", type=positive_int, help="default 60 (only for an alarm that does not exist)")
    p.add_argument("--threshold", type=finite_float, help="default 5 (only for an alarm that does not exist)")
    p.add_argument("--value", type=finite_float, default=37.0, help="the breaching data point")
    p.add_argument("--count", type=positive_int, default=1, help="send N copies (duplicate storms)")
    p.set_defaults(func=cmd_inject)

    p = sub.add_parser("incidents", help="list incidents: id, status, attempts, cost", epilog=EPILOG)
    _common(p)
    p.add_argument("--days", type=positive_int, default=7)
    p.add_argument("--limit", type=positive_int, default=100)
    p.set_defaults(func=cmd_incidents)

    p = sub.add_parser(
        "trace", help="an incident's timeline: decisions, reasoning, confidence, cost, QA evidence", epilog=EPILOG
    )
    _common(p)
    p.add_argument("incident_id")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser(
        "patch",
        help="print a PATCH_READY incident's validated patch for `git am` (QA evidence in the message)",
        epilog=EPILOG,
    )
    _common(p)
    p.add_argument("incident_id")
    p.set_defaults(func=cmd_patch)

    for verb, granted in (("approve", True), ("reject", False)):
        p = sub.add_parser(
            verb,
            help=f"{verb} a fix awaiting approval (signed call to the approvals function URL; "
            "you are the approver by your IAM identity)",
            epilog=EPILOG,
        )
        _common(p)
        p.add_argument("incident_id")
        p.add_argument("--comment", default="")
        p.add_argument("--approver", default=None, help=argparse.SUPPRESS)  # old flag: now only part of the comment
        p.set_defaults(func=cmd_approval, granted=granted)

    p = sub.add_parser(
        "agents", help="invocations, errors, last activity, DLQ depth; `agents stop|start NAME`", epilog=EPILOG
    )
    _common(p)
    p.add_argument("action", nargs="?", choices=["list", "stop", "start"], default="list")
    p.add_argument("agent", nargs="?", choices=list(names.AGENTS))
    p.add_argument("--hours", type=positive_int, default=24)
    p.set_defaults(func=cmd_agents)

    p = sub.add_parser("costs", help="cost by agent, model, incident and day; today's LLM budget", epilog=EPILOG)
    _common(p)
    p.add_argument("--days", type=positive_int, default=7)
    p.set_defaults(func=cmd_costs)

    p = sub.add_parser(
        "analyze", help="AgentOps analyzer report (collaboration, anomalies, effectiveness)", epilog=EPILOG
    )
    _common(p)
    p.add_argument("--hours", type=positive_int, default=24)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("replay", help="replay archived bus events (idempotent: nothing done runs again)", epilog=EPILOG)
    _common(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--incident", help="replay the window of this incident's events")
    which.add_argument("--since", type=_when, help="start: ISO time or an age such as 30m, 2h, 1d")
    p.add_argument("--until", type=_when, help="end: ISO time or an age (default now)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("tail", help="follow the pipeline's events as they happen", epilog=EPILOG)
    _common(p)
    p.add_argument("--incident", help="only this incident's events")
    p.add_argument("--agent", choices=[*names.AGENTS, "operator"], help="only events from or to this agent")
    p.add_argument(
        "--for", dest="seconds", type=positive_float, help="stop after this many seconds (default: until Ctrl-C)"
    )
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("rejected", help="events the agents refused, with the reason", epilog=EPILOG)
    _common(p)
    p.add_argument("--days", type=positive_int, default=7)
    p.add_argument("--limit", type=positive_int, default=None, help="at most this many, newest first (default: all)")
    p.set_defaults(func=cmd_rejected)

    p = sub.add_parser(
        "notifications", help="SNS notifications (alarms, approvals, escalations) — local runtime", epilog=EPILOG
    )
    _common(p)
    p.add_argument("--limit", type=positive_int, default=50)
    p.set_defaults(func=cmd_notifications)

    _add_dev_commands(sub)
    return parser


def _add_dev_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`local`, `demo` and `dashboards` come from the dev package (selfheal_dev) through the
    `selfheal.commands` entry point: the operator CLI never imports it."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="selfheal.commands"):
        entry.load()(sub, _common, EPILOG)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stdout = sys.stdout
    if not getattr(args, "json", False):  # JSON escapes control characters itself
        sys.stdout = PrintableStream(stdout)  # type: ignore[assignment]
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:  # reported as argparse reports its own: exit 2
        print(printable(f"{parser.prog} {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    except OperatorError as exc:
        _fail(args, str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `selfheal trace ID | head`: the reader left, nothing more to say
        # Python flushes stdout again at exit; pointing it at /dev/null keeps that quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return 141  # 128 + SIGPIPE: what a shell reports for a tool whose pipe closed
    except (ClientError, BotoCoreError) as exc:  # one clear line, not a traceback
        _fail(args, f"AWS error: {exc}")
        return 1
    finally:
        sys.stdout = stdout


def _fail(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "json", False):
        emit_json({"error": message})
    else:
        print(printable(f"error: {message}"), file=sys.stderr)


def _target(args: argparse.Namespace) -> Target:
    with progress("connecting", enabled=not args.json):
        return connect(endpoint_url=args.endpoint_url, env=args.env, region=args.region)


# ============================================================================ verbs


def cmd_inject(args: argparse.Namespace) -> int:
    from .ops import inject

    target = _target(args)
    with progress("sending events", enabled=not args.json):
        if args.alarm:
            result = inject.inject_alarm(
                target,
                alarm_name=args.alarm,
                count=args.count,
                state=args.state,
                value=args.value,
                namespace=args.namespace,
                metric=args.metric,
                dimensions=dict(args.dimension) if args.dimension else None,
                stat=args.stat,
                period=args.period,
                threshold=args.threshold,
            )
        else:
            if args.file:
                entries = inject.entries_from_file(target, args.file)
            else:
                if not (args.service and args.summary):
                    raise UsageError("give --file, --alarm, or at least --service and --summary")
                detail = inject.issue_detail(
                    service=args.service,
                    issue_type=args.issue_type,
                    severity=args.severity,
                    summary=args.summary,
                    signals=dict(args.signal),
                    evidence=args.evidence,
                    code_dir=args.code_dir,
                    test_command=args.test_command,
                    idempotency_key=args.idempotency_key,
                    resource=args.resource,
                )
                entries = [
                    {
                        "Source": names.INJECT_SOURCE,
                        "DetailType": "IssueReported",
                        "Detail": json.dumps(detail),
                        "EventBusName": target.bus,
                    }
                ]
            result = inject.inject_entries(target, entries, count=args.count)
    result["target"] = target.describe()
    if args.json:
        emit_json(result)
    else:
        if "set_state" in result:
            print(
                f"alarm {result['alarm']} set to {result['set_state']} ({result['times']}x); CloudWatch emits the state change event"
            )
        else:
            print(
                f"sent {result['sent']} event(s) to {', '.join(result.get('bus', ['default']))}"
                + (f"; {len(result['failed'])} failed" if result["failed"] else "")
            )
            for eid in result["event_ids"][:5]:
                print(f"  event id {eid}")
            if len(result["event_ids"]) > 5:
                print(f"  ... and {len(result['event_ids']) - 5} more")
            for failure in result["failed"][:5]:
                print(f"  FAILED {failure['error_code']}: {failure['error_message']}")
    return 1 if result.get("failed") else 0


def cmd_incidents(args: argparse.Namespace) -> int:
    from .ops import reads

    target = _target(args)
    items = reads.incidents(target, days=args.days, limit=args.limit)
    if args.json:
        emit_json({"incidents": items})
        return 0
    rows = [{**i, "cost": usd(i["cost_usd"])} for i in items]
    print(
        table(
            rows,
            [
                ("incident_id", "INCIDENT"),
                ("status", "STATUS"),
                ("attempts", "ATTEMPTS"),
                ("cost", "COST"),
                ("duplicates", "DUPLICATES"),
                ("service", "SERVICE"),
                ("issue_type", "TYPE"),
                ("created_at", "CREATED"),
            ],
            empty="no incidents",
        )
    )
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from .ops import reads

    target = _target(args)
    t = reads.trace(target, args.incident_id)
    if args.json:
        emit_json(t)
    else:
        print(format_trace(t))
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    from .ops import reads

    target = _target(args)
    result = reads.patch(target, args.incident_id)
    if args.json:
        emit_json(result)
    else:
        raw_stdout().write(result["mbox"])  # data for `git am`: byte for byte, not escaped
    return 0


def cmd_approval(args: argparse.Namespace) -> int:
    from .ops import approvals

    target = _target(args)
    result = approvals.approval(
        target, args.incident_id, granted=args.granted, comment=args.comment, typed_name=args.approver
    )
    if args.json:
        emit_json(result)
    else:
        print(
            f"{result['detail_type']} sent for {args.incident_id} (was {result['status_before']}) as {result['approver']}"
        )
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from .ops import agents

    target = _target(args)
    if args.action in ("stop", "start"):
        if not args.agent:
            raise OperatorError(f"agents {args.action} needs an agent name: {', '.join(names.AGENTS)}")
        result = agents.set_agent_state(target, args.agent, enabled=args.action == "start")
        if args.json:
            emit_json(result)
        else:
            print(f"{result['agent']}: {len(result['rules'])} rule(s) {result['state']}: {', '.join(result['rules'])}")
        return 0
    with progress("reading metrics and queues", enabled=not args.json):
        items = agents.agents(target, hours=args.hours)
    if args.json:
        emit_json({"agents": items, "window_hours": args.hours})
        return 0
    print(
        table(
            items,
            [
                ("agent", "AGENT"),
                ("state", "RULES"),
                ("invocations", "INVOCATIONS"),
                ("errors", "ERRORS"),
                ("last_activity", "LAST ACTIVITY"),
                ("dlq_depth", "DLQ DEPTH"),
                ("function", "FUNCTION"),
            ],
        )
    )
    return 0


def cmd_costs(args: argparse.Namespace) -> int:
    from .ops import reads

    target = _target(args)
    with progress("summing costs", enabled=not args.json):
        c = reads.costs(target, days=args.days)
    if args.json:
        emit_json(c)
        return 0
    print(format_costs(c))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .ops import reads

    target = _target(args)
    with progress("analyzing", enabled=not args.json):
        report = reads.analyze(target, hours=args.hours)
    if args.json:
        emit_json(report)
    else:
        print(format_analysis(report))
    return 0


def _when(value: str) -> Any:
    """ISO 8601 time, or an age before now: 30m, 2h, 1d."""
    from datetime import UTC, datetime, timedelta

    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time or an age: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_replay(args: argparse.Namespace) -> int:
    from . import bus_history

    target = _target(args)
    if args.incident:
        since, until = bus_history.replay_window(target, args.incident)
    else:
        since, until = args.since, args.until
    with progress("replaying", enabled=not args.json):
        result = bus_history.replay(target, since=since, until=until)
    if args.json:
        emit_json(result)
    else:
        print(f"replay {result['replay_name']}: {result['state']} ({result['since']} .. {result['until']})")
    return 0 if result["state"] == "COMPLETED" else 1


def cmd_tail(args: argparse.Namespace) -> int:
    from . import bus_history

    target = _target(args)

    def emit(line: dict[str, Any]) -> None:
        print(json.dumps(line, default=str) if args.json else bus_history.format_tail_line(line), flush=True)

    bus_history.tail(target, incident_id=args.incident, agent=args.agent, seconds=args.seconds, emit=emit)
    return 0


def cmd_rejected(args: argparse.Namespace) -> int:
    from .ops import reads

    target = _target(args)
    items = reads.rejected(target, days=args.days, limit=args.limit)
    if args.json:
        emit_json({"rejected": items})
        return 0
    print(
        table(
            items,
            [
                ("rejected_at", "REJECTED AT"),
                ("agent", "AGENT"),
                ("detail_type", "DETAIL TYPE"),
                ("source", "SOURCE"),
                ("reason", "REASON"),
            ],
            empty="no rejected events",
        )
    )
    return 0


def cmd_notifications(args: argparse.Namespace) -> int:
    from .ops import reads

    target = _target(args)
    items = reads.notifications(target, limit=args.limit)
    if args.json:
        emit_json({"notifications": items})
        return 0
    if not items:
        print("no notifications")
    for n in items:
        to = ", ".join(f"{d['protocol']}:{d['endpoint']}" for d in n.get("deliveries", [])) or "no subscribers"
        print(f"[{n['time']}] {n['topic_arn'].split(':')[-1]} ({n.get('origin')}) -> {to}")
        if n.get("subject"):
            print(f"  subject: {n['subject']}")
        message = n.get("message", "")
        try:
            parsed = json.loads(message)
            if isinstance(parsed, dict) and "AlarmName" in parsed:
                message = f"{parsed['AlarmName']}: {parsed.get('OldStateValue')} -> {parsed.get('NewStateValue')}: {parsed.get('NewStateReason')}"
        except (TypeError, ValueError):
            pass
        print(f"  {str(message)[:400]}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
