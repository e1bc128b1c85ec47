"""`selfheal` — the operator CLI, against AWS or the local runtime.

Where it talks to: `--endpoint-url URL`, else a running `selfheal local up` of this project,
else AWS with the default credential chain. `--json` prints stable, documented JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from selfheal_core import catalog as names

from .output import emit_json, progress, table, usd

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


def _kv_floats(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = float(value)
    return out


def _kv(items: list[str]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items)


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
        "--file", type=Path, help="JSON: put-events entries, an EventBridge event, or an IssueReported detail"
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
    p.add_argument("--signal", action="append", default=[], metavar="NAME=VALUE", help="metric value (repeatable)")
    p.add_argument(
        "--evidence", action="append", default=[], metavar="LINE", help="log line / stack trace line (repeatable)"
    )
    p.add_argument("--code-dir", type=Path, help="directory with the code under repair and its tests (sent inline)")
    p.add_argument("--test-command", help="test command for --code-dir (default: python -m pytest -q)")
    p.add_argument("--idempotency-key")
    p.add_argument("--resource", help="affected resource (function name, alarm name...)")
    p.add_argument("--alarm", metavar="ALARM_NAME", help="send a real-shaped CloudWatch alarm state change instead")
    p.add_argument("--state", default="ALARM", choices=["ALARM", "OK", "INSUFFICIENT_DATA"])
    p.add_argument("--namespace", default="AWS/Lambda")
    p.add_argument("--metric", default="Errors")
    p.add_argument("--dimension", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--stat", default="Sum")
    p.add_argument("--period", type=int, default=60)
    p.add_argument("--threshold", type=float, default=5.0)
    p.add_argument("--value", type=float, default=37.0, help="the breaching data point")
    p.add_argument("--count", type=int, default=1, help="send N copies (duplicate storms)")
    p.set_defaults(func=cmd_inject)

    p = sub.add_parser("incidents", help="list incidents: id, status, attempts, cost", epilog=EPILOG)
    _common(p)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_incidents)

    p = sub.add_parser(
        "trace", help="an incident's timeline: decisions, reasoning, confidence, cost, QA evidence", epilog=EPILOG
    )
    _common(p)
    p.add_argument("incident_id")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser(
        "patch", help="print a PATCH_READY incident's validated patch for `git am` (QA evidence in the message)",
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
    p.add_argument("--hours", type=int, default=24)
    p.set_defaults(func=cmd_agents)

    p = sub.add_parser("costs", help="cost by agent, model, incident and day; today's LLM budget", epilog=EPILOG)
    _common(p)
    p.add_argument("--days", type=int, default=7)
    p.set_defaults(func=cmd_costs)

    p = sub.add_parser(
        "analyze", help="AgentOps analyzer report (collaboration, anomalies, effectiveness)", epilog=EPILOG
    )
    _common(p)
    p.add_argument("--hours", type=int, default=24)
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
    p.add_argument("--for", dest="seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("rejected", help="events the agents refused, with the reason", epilog=EPILOG)
    _common(p)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--limit", type=int, default=None, help="at most this many, newest first (default: all)")
    p.set_defaults(func=cmd_rejected)

    p = sub.add_parser(
        "notifications", help="SNS notifications (alarms, approvals, escalations) — local runtime", epilog=EPILOG
    )
    _common(p)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_notifications)

    p = sub.add_parser("dashboards", help="render the CloudWatch dashboards to PNG + HTML", epilog=EPILOG)
    dsub = p.add_subparsers(dest="dash_command", metavar="ACTION")
    dsub.required = True
    r = dsub.add_parser("render", help="one PNG and one HTML page per dashboard", epilog=EPILOG)
    _common(r)
    r.add_argument("--out", type=Path, default=Path("demo-out/dashboards"))
    r.add_argument("--hours", type=float, default=3.0, help="time range ending now")
    r.add_argument("--assembly", type=Path, help="read DashboardBody from this cloud assembly instead of the API")
    r.set_defaults(func=cmd_dashboards_render)

    p = sub.add_parser("local", help="the embedded AWS emulator and the agents on this machine")
    lsub = p.add_subparsers(dest="local_command", metavar="ACTION")
    lsub.required = True
    up = lsub.add_parser("up", help="synthesize, provision from the templates, run the functions (Ctrl-C stops)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=int(os.environ.get("SELFHEAL_LOCAL_PORT", "4566")))
    up.add_argument("--detach", action="store_true", help="run in the background (stop with `selfheal local down`)")
    up.add_argument("--app", default="stacks.app_builder:build_app", help="module:function(app) that adds the stacks")
    up.add_argument("--assembly", type=Path, help="use this already synthesized cloud assembly")
    up.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CDK context (e.g. costAlertThreshold=0.01)",
    )
    up.add_argument("--state-dir", type=Path, default=None, help="default: <project>/.selfheal")
    up.add_argument(
        "--concurrency", type=int, default=2, help="workers per function (unless the template reserves concurrency)"
    )
    up.add_argument("--schedule-speedup", type=float, default=1.0, help="divide rate() schedules by this (demos)")
    up.add_argument("--alarm-interval", type=float, default=10.0, help="seconds between alarm evaluations")
    up.add_argument("--verbose", action="store_true", help="also print the functions' log lines")
    up.add_argument("--quiet", action="store_true")
    up.add_argument("--json", action="store_true", help="with --detach: print the runtime state as JSON")
    up.set_defaults(func=cmd_local_up)
    down = lsub.add_parser("down", help="stop the background runtime")
    down.add_argument("--state-dir", type=Path, default=None)
    down.add_argument("--json", action="store_true")
    down.set_defaults(func=cmd_local_down)
    st = lsub.add_parser("status", help="is it running; functions, resources, alarms")
    st.add_argument("--state-dir", type=Path, default=None)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_local_status)

    p = sub.add_parser(
        "demo", help="the whole pipeline offline: issue, alarm, storm, malformed event; timelines, costs, dashboards"
    )
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    p.add_argument("--port", type=int, default=int(os.environ.get("SELFHEAL_DEMO_PORT", "4566")))
    p.add_argument("--storm", type=int, default=200, help="duplicate alarms in the storm")
    p.add_argument("--timeout", type=float, default=150.0, help="seconds to wait for the pipeline to settle")
    p.add_argument("--json", action="store_true", help="print the demo summary as JSON")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .ops import OperatorError

    try:
        return int(args.func(args) or 0)
    except OperatorError as exc:
        _fail(args, str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback, for AWS errors
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, (ClientError, BotoCoreError)):
            _fail(args, f"AWS error: {exc}")
            return 1
        raise


def _fail(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "json", False):
        emit_json({"error": message})
    else:
        print(f"error: {message}", file=sys.stderr)


def _target(args: argparse.Namespace) -> Any:
    from .ops import connect

    with progress("connecting", enabled=not args.json):
        return connect(endpoint_url=args.endpoint_url, env=args.env, region=args.region)


# ============================================================================ verbs


def cmd_inject(args: argparse.Namespace) -> int:
    from . import ops

    target = _target(args)
    with progress("sending events", enabled=not args.json):
        if args.alarm:
            result = ops.inject_alarm(
                target,
                alarm_name=args.alarm,
                count=args.count,
                state=args.state,
                namespace=args.namespace,
                metric=args.metric,
                dimensions=_kv(args.dimension)
                or ({"FunctionName": args.alarm.rsplit("-", 1)[0]} if args.namespace == "AWS/Lambda" else {}),
                stat=args.stat,
                period=args.period,
                threshold=args.threshold,
                value=args.value,
            )
        else:
            if args.file:
                entries = ops.entries_from_file(target, args.file)
            else:
                if not (args.service and args.summary):
                    raise ops.OperatorError("give --file, --alarm, or at least --service and --summary")
                detail = ops.issue_detail(
                    service=args.service,
                    issue_type=args.issue_type,
                    severity=args.severity,
                    summary=args.summary,
                    signals=_kv_floats(args.signal),
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
            result = ops.inject_entries(target, entries, count=args.count)
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
    from . import ops

    target = _target(args)
    items = ops.incidents(target, days=args.days, limit=args.limit)
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


def format_trace(t: dict[str, Any]) -> str:
    inc = t["incident"]
    lines = [
        f"Incident {inc['incident_id']}  {inc['status']}  attempts={inc['attempts']}  cost={usd(inc['cost_usd'])}  duplicates={inc['duplicates']}",
        f"  {inc['service']} / {inc['issue_type']} / {inc['severity']}: {inc['summary']}",
        f"  correlation id {inc['correlation_id']}",
    ]
    if t["status_history"]:
        lines.append("  status: " + " -> ".join(h.get("status", "?") for h in t["status_history"]))
    for d in t["decisions"]:
        conf = d.get("confidence_score")
        lines.append(
            f"  [{d.get('at')}] {str(d.get('agent')).upper():<8} {d.get('decision_type')}  confidence={conf if conf is not None else '-'}  "
            f"cost={usd(d.get('cost_usd'))}" + (f"  model={d['model']}" if d.get("model") else "")
        )
        lines.append(f"      correlation_id={d.get('correlation_id')}")
        for step in d.get("reasoning_chain") or []:
            lines.append(f"      - thought: {step.get('thought', '')}")
            if step.get("action"):
                lines.append(f"        action: {step['action']}")
            if step.get("observation"):
                lines.append(f"        observation: {step['observation']}")
        for ev in d.get("evidence") or []:
            if isinstance(ev, dict):
                mark = "PASS" if ev.get("passed") else "FAIL"
                cmd = f" `{ev['command']}`" if ev.get("command") else ""
                code = f" exit={ev['exit_code']}" if ev.get("exit_code") is not None else ""
                lines.append(f"      evidence [{mark}] {ev.get('check')}{cmd}{code}")
                excerpt = str(ev.get("excerpt") or "").strip().splitlines()[-3:]
                lines.extend(f"          {x}" for x in excerpt)
    if t["messages"]:
        lines.append("  messages: " + ", ".join(f"{m['flow']} {m['message_type']}" for m in t["messages"]))
    costs = t["costs"]
    lines.append(
        f"  cost: total {usd(costs['total_usd'])}; " + ", ".join(f"{k} {usd(v)}" for k, v in costs["by_agent"].items())
    )
    return "\n".join(lines)


def cmd_trace(args: argparse.Namespace) -> int:
    from . import ops

    target = _target(args)
    t = ops.trace(target, args.incident_id)
    if args.json:
        emit_json(t)
    else:
        print(format_trace(t))
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    from . import ops

    target = _target(args)
    result = ops.patch(target, args.incident_id)
    if args.json:
        emit_json(result)
    else:
        sys.stdout.write(result["mbox"])
    return 0


def cmd_approval(args: argparse.Namespace) -> int:
    from . import ops

    target = _target(args)
    result = ops.approval(target, args.incident_id, granted=args.granted, comment=args.comment, typed_name=args.approver)
    if args.json:
        emit_json(result)
    else:
        print(f"{result['detail_type']} sent for {args.incident_id} (was {result['status_before']}) as {result['approver']}")
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from . import ops

    target = _target(args)
    if args.action in ("stop", "start"):
        if not args.agent:
            raise ops.OperatorError(f"agents {args.action} needs an agent name: {', '.join(names.AGENTS)}")
        result = ops.set_agent_state(target, args.agent, enabled=args.action == "start")
        if args.json:
            emit_json(result)
        else:
            print(f"{result['agent']}: {len(result['rules'])} rule(s) {result['state']}: {', '.join(result['rules'])}")
        return 0
    with progress("reading metrics and queues", enabled=not args.json):
        items = ops.agents(target, hours=args.hours)
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
    from . import ops

    target = _target(args)
    with progress("summing costs", enabled=not args.json):
        c = ops.costs(target, days=args.days)
    if args.json:
        emit_json(c)
        return 0
    print(format_costs(c))
    return 0


def format_costs(c: dict[str, Any]) -> str:
    lines = [f"Total over {c['window_days']} day(s): {usd(c['total_usd'])}"]
    lam = c.get("lambda") or {}
    if lam.get("billed_invocations") or lam.get("awaiting_report"):
        def fine(v: float) -> str:  # Lambda figures are fractions of a cent
            return f"${v:.6f}"

        lines.append(
            f"  Lambda {fine(lam['total_usd'])}: billed {fine(lam['billed_usd'])} for {lam['billed_invocations']} "
            f"invocation(s) from their REPORT lines (the handlers had estimated {fine(lam['billed_estimate_usd'])}), "
            f"estimated {fine(lam['estimated_usd'])} for {lam['awaiting_report']} awaiting their REPORT line"
        )
    for title, key in (
        ("by agent", "by_agent"),
        ("by kind", "by_kind"),
        ("by model", "by_model"),
        ("by day", "by_day"),
        ("by incident", "by_incident"),
    ):
        values = c.get(key) or {}
        if values:
            lines.append(f"  {title}: " + ", ".join(f"{k} {usd(v)}" for k, v in values.items()))
    b = c.get("budget") or {}
    if b:
        used = f"{b['used_percent']}%" if b.get("used_percent") is not None else "-"
        lines.append(
            f"  LLM budget {b['period']}: spent {usd(b['spent_usd'])} + reserved {usd(b['reserved_usd'])} of {usd(b['limit_usd'])} ({used})"
        )
    return "\n".join(lines)


def cmd_analyze(args: argparse.Namespace) -> int:
    from . import ops

    target = _target(args)
    with progress("analyzing", enabled=not args.json):
        report = ops.analyze(target, hours=args.hours)
    if args.json:
        emit_json(report)
    else:
        print(format_analysis(report))
    return 0


def format_analysis(report: dict[str, Any]) -> str:
    """The headline numbers of the analyzer report; `--json` has everything."""
    lines = [f"AgentOps analysis, last {report['window_hours']} h"]
    collab = report.get("collaboration") or {}
    flows = collab.get("flows") or []
    if flows:
        lines.append(
            "  message flows: " + ", ".join(f"{f.get('flow')} {f.get('count', f.get('messages', ''))}" for f in flows)
        )
    anomalies = collab.get("anomalies") or []
    lines.append(f"  collaboration anomalies: {len(anomalies)}")
    for agent, eff in (report.get("effectiveness") or {}).items():
        shown = {k: v for k, v in eff.items() if isinstance(v, (int, float, str)) and k != "agent"}
        lines.append(f"  {agent}: " + ", ".join(f"{k}={v}" for k, v in list(shown.items())[:6]))
    opps = report.get("optimization_opportunities") or []
    lines.append(f"  optimization opportunities: {len(opps)}")
    for o in opps[:5]:
        lines.append(f"    - {o.get('kind') or o.get('type')}: {o.get('description') or o.get('summary') or ''}")
    storms = report.get("duplicate_storms") or []
    if storms:
        lines.append(f"  duplicate storms: {len(storms)}")
    open_by_status = report.get("open_incidents_by_status") or {}
    if open_by_status:
        lines.append("  open incidents: " + ", ".join(f"{k} {v}" for k, v in open_by_status.items()))
    return "\n".join(lines)


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
    from . import ops

    target = _target(args)
    items = ops.rejected(target, days=args.days, limit=args.limit)
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
    from . import ops

    target = _target(args)
    items = ops.notifications(target, limit=args.limit)
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


def cmd_dashboards_render(args: argparse.Namespace) -> int:
    from .render import render_dashboards

    target = _target(args)
    with progress("rendering dashboards", enabled=not args.json):
        result = render_dashboards(target, out_dir=args.out, hours=args.hours, assembly_dir=args.assembly)
    if args.json:
        emit_json(result)
    else:
        for d in result["dashboards"]:
            print(f"{d['name']}: {d['png']} and {d['html']} ({d['widgets']} widgets)")
        if not result["dashboards"]:
            print("no dashboards found (is the monitoring stack deployed / synthesized?)")
    return 0


def _state_dir(args: argparse.Namespace) -> Path:
    from .local.control import default_state_dir

    return Path(args.state_dir) if getattr(args, "state_dir", None) else default_state_dir()


def cmd_local_up(args: argparse.Namespace) -> int:
    from .local import control
    from .local.runtime import RuntimeOptions

    options = RuntimeOptions(
        host=args.host,
        port=args.port,
        state_dir=_state_dir(args),
        concurrency=args.concurrency,
        schedule_speedup=args.schedule_speedup,
        alarm_interval_s=args.alarm_interval,
        verbose=args.verbose,
        quiet=args.quiet,
    )
    context = _kv(args.context)
    problem = names.unknown_context_problem(context)
    if problem:  # refused before anything starts (synth would refuse it too)
        from .ops import OperatorError

        raise OperatorError(problem)
    if args.detach:
        with progress("starting the local runtime (synth + provision)", enabled=not args.json):
            state = control.start_detached(options, app=args.app, assembly_dir=args.assembly, context=context)
        if args.json:
            emit_json(state)
        else:
            print(
                f"local runtime running in the background on {state['endpoint']} (pid {state['pid']}); "
                f"logs: {options.state_dir / 'runtime.log'}; stop with `selfheal local down`"
            )
        return 0
    return control.run_foreground(
        options,
        app=args.app,
        assembly_dir=args.assembly,
        context=context,
        echo=lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush()),
    )


def cmd_local_down(args: argparse.Namespace) -> int:
    from .local import control

    with progress("stopping the local runtime", enabled=not args.json):
        stopped = control.stop_detached(_state_dir(args))
    if args.json:
        emit_json({"stopped": stopped})
    else:
        print("stopped" if stopped else "no background runtime was running")
    return 0


def cmd_local_status(args: argparse.Namespace) -> int:
    from .local import control

    state = control.find_running(_state_dir(args))
    if not state:
        if args.json:
            emit_json({"running": False})
        else:
            print("not running (start with `selfheal local up` or `selfheal local up --detach`)")
        return 3
    status = control.control(state["endpoint"], "status")
    if args.json:
        emit_json({"running": True, **status})
        return 0
    print(
        f"running on {status['endpoint']} (pid {status['pid']}, since {status['started_at']}); stacks: {', '.join(status['stacks'])}"
    )
    rows = [{"function": name, **f} for name, f in status["functions"].items()]
    print(
        table(
            rows,
            [
                ("function", "FUNCTION"),
                ("handler", "HANDLER"),
                ("timeout_s", "TIMEOUT S"),
                ("memory_mb", "MEMORY MB"),
                ("invocations", "INVOCATIONS"),
                ("errors", "ERRORS"),
                ("cold_starts", "COLD STARTS"),
                ("pending", "PENDING"),
                ("last_activity", "LAST ACTIVITY"),
            ],
        )
    )
    engineer = status.get("engineer_endpoint") or {}
    if engineer:
        model = f", model {engineer['model']}" if engineer.get("model") and engineer["provider"] != "runbook" else ""
        print(f"engineer: {engineer['provider']} provider{model}, endpoint {engineer['endpoint']} ({engineer['source']})")
    for sub in status.get("subscription_filters") or []:
        print(f"subscription: {sub['log_group']} -> {sub['destination']} ({sub['name']})")
    res = status["resources"]
    print(
        "resources: "
        + ", ".join(f"{n} {t.split('::')[-1]}" for t, n in sorted(res["created_by_type"].items()))
        + f"; {len(res['skipped'])} skipped, {len(res['failed'])} failed"
    )
    if status["alarms"]:
        states: dict[str, int] = {}
        for state in status["alarms"].values():
            states[state] = states.get(state, 0) + 1
        firing = sorted(k for k, v in status["alarms"].items() if v == "ALARM")
        print(
            f"alarms: {len(status['alarms'])} ("
            + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
            + ")"
            + (f"; in ALARM: {', '.join(firing)}" if firing else "")
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(out_dir=args.out, port=args.port, storm=args.storm, timeout=args.timeout, as_json=args.json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
