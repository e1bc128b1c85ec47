"""`selfheal demo` (what `make demo` runs): the whole pipeline offline, end to end.

Starts the embedded AWS (synthesized from the CDK app with the sample workload and a 60 s
verify window), injects a real bug report with its code and tests, a real-shaped CloudWatch
alarm, a storm of duplicate alarms and one malformed event, waits until the agents have
settled (approving what waits for a human). Then it heals a real function and rolls back a
change that did not help (demo_heal.py): traffic on `sample-orders-dev`, its own alarm, the
fix applied through the Lambda API and verified against that alarm. It prints every
incident's timeline, the rejected events, the notifications and the cost summary, renders
the dashboards, and stops everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from selfheal.output import emit_json, format_costs, format_trace, table, usd
from selfheal_core.catalog import SETTLED as _SETTLED
from selfheal_core.catalog import Status

from .demo_heal import VERIFY_WINDOW_S

# The demo also waits out a verification (its window is short) before it reports.
SETTLED = _SETTLED - {Status.VERIFYING}


def _free_port(preferred: int) -> int:
    from .local.control import port_free

    if preferred and port_free("127.0.0.1", preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Out:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str = "") -> None:
        if not self.quiet:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def step(self, text: str) -> None:
        self(f"\n== {text}")


def run_demo(
    *, out_dir: Path, port: int = 4566, storm: int = 200, timeout: float = 150.0, as_json: bool = False
) -> int:
    from selfheal.ops import approvals, inject, reads
    from selfheal.ops import target as targets
    from selfheal.ops.target import default_state_dir

    from .demo_heal import SampleDemo
    from .local.control import prepare_assembly
    from .local.runtime import LocalRuntime, RuntimeOptions
    from .render import render_dashboards
    from .samples import CHECKOUT

    say = Out(as_json)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dir = default_state_dir() / "demo"
    port = _free_port(port)
    endpoint = f"http://127.0.0.1:{port}"
    summary: dict[str, Any] = {"endpoint": endpoint, "checks": {}}

    say.step("setting up: synthesizing the CDK app and starting the embedded AWS")
    t0 = time.time()
    assembly = prepare_assembly(
        state_dir,
        assembly_dir=None,
        app="stacks.app_builder:build_app",
        context={"sampleWorkload": "true", "verifyWindowSeconds": str(VERIFY_WINDOW_S)},
        endpoint=endpoint,
        progress=lambda m: say(f"   {m}"),
    )
    options = RuntimeOptions(
        port=port, state_dir=state_dir, alarm_interval_s=2.0, sample_interval_s=2.0, quiet=True, concurrency=2
    )
    runtime = LocalRuntime(assembly, options)
    runtime.start()
    summary["setup_s"] = round(time.time() - t0, 1)
    report = runtime.report.public()
    say(
        f"   {sum(report['created_by_type'].values())} resources from {len(assembly.stacks)} stacks, "
        f"{len(runtime.pools)} functions as worker processes, on {endpoint} ({summary['setup_s']}s)"
    )
    started = time.time()
    exit_code = 0
    try:
        target = targets.connect(endpoint_url=endpoint, env="dev", region="us-east-1")
        summary["env"] = target.env

        say.step("1. IssueReported: checkout service, ZeroDivisionError on an empty cart (code + tests attached)")
        detail = inject.issue_detail(
            service="checkout",
            issue_type="exception",
            severity="high",
            summary="ZeroDivisionError in average_price when the cart is empty (GET /cart/summary returns 500)",
            signals={"error_rate_pct": 7.5, "invocations": 1200.0, "errors": 90.0},
            evidence=[
                "[ERROR] ZeroDivisionError: division by zero",
                '  File "/var/task/cart.py", line 6, in average_price',
                "    return sum(prices) / len(prices)",
            ],
            code_dir=CHECKOUT,
            idempotency_key=f"demo-checkout-{int(started)}",
            resource="checkout-api",
        )
        r = inject.inject_entries(
            target,
            [
                {
                    "Source": "com.example.checkout",
                    "DetailType": "IssueReported",
                    "Detail": json.dumps(detail),
                    "EventBusName": target.bus,
                }
            ],
        )
        say(f"   put-events -> {r['event_ids'][0]}")

        say.step(
            "2. CloudWatch alarm: orders-api Lambda Errors >= 5 (real 'CloudWatch Alarm State Change' on the default bus)"
        )
        r = inject.inject_alarm(
            target,
            alarm_name="orders-api-Errors",
            state="ALARM",
            namespace="AWS/Lambda",
            metric="Errors",
            dimensions={"FunctionName": "orders-api"},
            stat="Sum",
            period=60,
            threshold=5.0,
            value=37.0,
        )
        say(f"   put-events -> {r['event_ids'][0]}")

        say.step(f"3. alarm storm: {storm} copies of inventory-api-Throttles (must fold into one incident)")
        r = inject.inject_alarm(
            target,
            alarm_name="inventory-api-Throttles",
            count=storm,
            state="ALARM",
            namespace="AWS/Lambda",
            metric="Throttles",
            dimensions={"FunctionName": "inventory-api"},
            stat="Sum",
            period=60,
            threshold=10.0,
            value=240.0,
        )
        say(f"   {r['sent']} events sent, {len(r['failed'])} failed")

        say.step("4. a malformed IssueReported (must be rejected with a reason)")
        malformed = {"service": "", "issue_type": "cosmic_rays", "severity": "apocalyptic"}
        r = inject.inject_entries(
            target,
            [
                {
                    "Source": "com.example.checkout",
                    "DetailType": "IssueReported",
                    "Detail": json.dumps(malformed),
                    "EventBusName": target.bus,
                }
            ],
        )
        say(f"   put-events -> {r['event_ids'][0]}")

        say.step("waiting for the agents to settle")
        approved: set[str] = set()
        deadline = started + timeout
        while time.time() < deadline:
            remaining = max(1.0, deadline - time.time())
            runtime.wait_idle(timeout=min(remaining, 20.0), quiet_s=1.5)
            items = reads.incidents(target)
            waiting = [i for i in items if i["status"] == "AWAITING_APPROVAL" and i["incident_id"] not in approved]
            for inc in waiting:
                say(f"   {inc['incident_id']} awaits approval: `selfheal approve {inc['incident_id']}`")
                approvals.approval(
                    target,
                    inc["incident_id"],
                    granted=True,
                    comment="approved by selfheal demo",
                )
                approved.add(inc["incident_id"])
            pending = sum(p.pending for p in runtime.pools.values())
            done = items and all(i["status"] in SETTLED for i in items) and not waiting and runtime.idle()
            say(
                f"   {sum(p.stats['invocations'] for p in runtime.pools.values())} invocations, {pending} pending, "
                f"statuses: {', '.join(sorted({i['status'] for i in items})) or '-'}"
            )
            if done:
                break
        # The analyzer runs hourly on its schedule; fire it once so its gauges are on the dashboards.
        fired = runtime.scheduler.fire_matching("Analyzer")
        if fired:
            say(f"   fired schedule {', '.join(fired)} once (hourly analyzer)")
        runtime.wait_idle(timeout=30, quiet_s=1.0)
        runtime.alarms.evaluate_all()
        runtime.wait_idle(timeout=10, quiet_s=1.0)
        summary["pipeline_s"] = round(time.time() - started, 1)

        say(
            "   (orders-api and inventory-api are alarms about functions that do not exist here: their settings "
            "cannot be read, so no change is proposed relative to an assumed value; see their timelines)"
        )
        sample = SampleDemo(endpoint, target.env, say)
        known = {i["incident_id"] for i in reads.incidents(target)}

        def approve(incident_id: str) -> None:
            if incident_id not in approved:
                say(f"   {incident_id} awaits approval: `selfheal approve {incident_id}`")
                approvals.approval(
                    target, incident_id, granted=True, comment="approved by selfheal demo", typed_name="demo-operator"
                )
                approved.add(incident_id)

        say.step(f"5. heal: {sample.function} gets requests that take 5 s; its timeout is 3 s")
        heal = sample.run(
            payload={"sleep_s": 5},
            known=known,
            incidents=lambda: reads.incidents(target),
            approve=approve,
            timeout_s=max(timeout, 240.0),
        )
        summary["heal"] = heal
        known.add(str(heal["incident_id"]))
        say(
            f"   => {heal['status']}, timeout {' -> '.join(str(t) for t in heal['timeouts_seen'])} s, alarm {heal['alarm']}"
        )

        say.step(f"6. roll back: {sample.function} fails whatever its timeout (a bug no setting cures)")
        sample.reset_timeout(3)
        rollback = sample.run(
            payload={"fail": True},
            known=known,
            incidents=lambda: reads.incidents(target),
            approve=approve,
            timeout_s=max(timeout, 240.0),
        )
        summary["rollback"] = rollback
        say(
            f"   => {rollback['status']}, timeout {' -> '.join(str(t) for t in rollback['timeouts_seen'])} s, "
            f"alarm {rollback['alarm']}"
        )
        runtime.wait_idle(timeout=30, quiet_s=1.0)

        say.step("incidents")
        items = reads.incidents(target)
        summary["incidents"] = items
        say(
            table(
                [{**i, "cost": usd(i["cost_usd"])} for i in items],
                [
                    ("incident_id", "INCIDENT"),
                    ("status", "STATUS"),
                    ("attempts", "ATTEMPTS"),
                    ("cost", "COST"),
                    ("duplicates", "DUPLICATES"),
                    ("service", "SERVICE"),
                    ("issue_type", "TYPE"),
                ],
            )
        )
        traces = []
        for inc in items:
            t = reads.trace(target, inc["incident_id"])
            traces.append(t)
            say()
            say(format_trace(t))
        summary["timelines"] = traces

        say.step("rejected events")
        rejected = reads.rejected(target)
        summary["rejected"] = rejected
        say(table(rejected, [("agent", "AGENT"), ("detail_type", "DETAIL TYPE"), ("reason", "REASON")], empty="none"))

        say.step("notifications (SNS; email cannot be sent locally, so they are kept here)")
        notes = reads.notifications(target)
        summary["notifications"] = notes
        settling = [n for n in notes if (n.get("subject") or "").startswith("OK: ")]
        for n in [n for n in notes if n not in settling][-12:]:
            shown = (n.get("subject") or n["message"])[:150]
            say(f"   [{n['time']}] {n['topic_arn'].split(':')[-1]} <- {n['origin']}: {shown}")
        if settling:
            say(
                f"   ... and {len(settling)} OK notifications (alarms leaving INSUFFICIENT_DATA; `selfheal notifications` lists all)"
            )
        if not notes:
            say("   none")

        say.step("costs")
        c = reads.costs(target, days=1)
        summary["costs"] = c
        say(format_costs(c))

        calls = targets.api_calls(target)
        summary["api_calls"] = calls
        say.step("API calls made by the agents (counted at the emulator)")
        say(
            "   "
            + ", ".join(f"{k} {v}" for k, v in sorted(calls["totals"].items()) if k not in ("client", "anonymous"))
            + f"; PutMetricData calls: {calls['put_metric_data_calls']}"
        )

        say.step(f"dashboards -> {out_dir / 'dashboards'}")
        rendered = render_dashboards(target, out_dir=out_dir / "dashboards", hours=1.0)
        summary["dashboards"] = rendered["dashboards"]
        for d in rendered["dashboards"]:
            say(f"   {d['name']}: {d['png']} + {d['html']}")
        if not rendered["dashboards"]:
            say("   (no dashboards in the app yet)")

        storm_incidents = [i for i in items if i["service"] == "inventory-api"]
        summary["checks"] = {
            "storm_folded_into_one_incident": len(storm_incidents) == 1,
            "storm_duplicates": storm_incidents[0]["duplicates"] if len(storm_incidents) == 1 else None,
            "malformed_rejected": any(r.get("detail_type") == "IssueReported" for r in rejected),
            "all_settled": all(i["status"] in SETTLED for i in items),
            "put_metric_data_calls": calls["put_metric_data_calls"],
            "heal_resolved_at_10s": heal["status"] == "RESOLVED" and heal["final_timeout"] == 10,
            "rollback_escalated_back_at_3s": rollback["status"] == "ESCALATED"
            and 10 in rollback["timeouts_seen"]
            and rollback["final_timeout"] == 3,
        }
        say.step("checks")
        for k, v in summary["checks"].items():
            say(f"   {k}: {v}")
        summary["total_s"] = round(time.time() - started, 1)  # the heal and roll back wait out verify windows
        say(
            f"\ndemo finished in {summary['total_s']}s after set-up ({summary['setup_s']}s): the injected scenario "
            f"took {summary['pipeline_s']}s, the heal and the roll back the rest; summary: {out_dir / 'summary.json'}"
        )
    except Exception as exc:  # noqa: BLE001 - report, stop the runtime, exit non-zero
        summary["error"] = f"{type(exc).__name__}: {exc}"
        say(f"demo failed: {summary['error']}")
        exit_code = 1
    finally:
        runtime.stop()
        for key in ("AWS_ENDPOINT_URL",):
            with contextlib.suppress(KeyError):
                del os.environ[key]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if as_json:
        emit_json(summary)
    return exit_code


__all__ = ["run_demo"]
