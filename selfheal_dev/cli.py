"""The dev-time commands of `selfheal`: `local up|down|status`, `demo`, `dashboards render`.

They are not part of the operator CLI: `selfheal.cli` finds them through the
`selfheal.commands` entry point, so the operator CLI never imports this package and an
install without it simply has no such commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfheal.ops.target import OperatorError, UsageError, connect, control, find_running
from selfheal.output import emit_json, progress, table
from selfheal_core.catalog import LOCAL_SYNTH_MARKER, unknown_context_problem


def _kv(items: list[str]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
    epilog: str,
) -> None:
    """Add the dev commands to the operator CLI's subparsers (`common` adds --json, --endpoint-url...)."""
    p = sub.add_parser("dashboards", help="render the CloudWatch dashboards to PNG + HTML", epilog=epilog)
    dsub = p.add_subparsers(dest="dash_command", metavar="ACTION")
    dsub.required = True
    r = dsub.add_parser("render", help="one PNG and one HTML page per dashboard", epilog=epilog)
    common(r)
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


def cmd_dashboards_render(args: argparse.Namespace) -> int:
    from .render import render_dashboards

    with progress("connecting", enabled=not args.json):
        target = connect(endpoint_url=args.endpoint_url, env=args.env, region=args.region)
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
    from selfheal.ops.target import default_state_dir

    return Path(args.state_dir) if getattr(args, "state_dir", None) else default_state_dir()


def _context_value_problem(context: dict[str, str]) -> str | None:
    """Why a `-c key=value` is refused (`costAlertThreshold=nan`, `automationLevel=bogus`), judged
    as the synth of the local runtime will judge it; None when every value is valid."""
    from stacks.settings import DeploySettings

    class _Given:  # the parts of a construct's node DeploySettings reads
        def get_all_context(self) -> dict[str, Any]:
            return dict(context)

        def try_get_context(self, key: str) -> Any:
            return {**context, LOCAL_SYNTH_MARKER: True}.get(key)

    try:
        DeploySettings.from_context(_Given())  # type: ignore[arg-type]
    except ValueError as exc:
        return str(exc)
    return None


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
    problem = unknown_context_problem(context) or _context_value_problem(context)
    if problem:  # refused before anything starts (synth would refuse it too, with a traceback)
        raise OperatorError(problem)
    if args.detach:
        try:
            with progress("starting the local runtime (synth + provision)", enabled=not args.json):
                state = control.start_detached(options, app=args.app, assembly_dir=args.assembly, context=context)
        except control.PortInUse as exc:  # exit 2, as in the foreground
            raise UsageError(str(exc)) from exc
        except control.RuntimeError_ as exc:  # an error message (with the runtime log's tail), not a traceback
            raise OperatorError(str(exc)) from exc
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
        echo=_echo,
    )


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


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
    state = find_running(_state_dir(args))
    if not state:
        if args.json:
            emit_json({"running": False})
        else:
            print("not running (start with `selfheal local up` or `selfheal local up --detach`)")
        return 3
    status = control(state["endpoint"], "status")
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
        print(
            f"engineer: {engineer['provider']} provider{model}, endpoint {engineer['endpoint']} ({engineer['source']})"
        )
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
