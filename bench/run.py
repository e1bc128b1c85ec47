"""Selfheal benchmarks: `python -m bench.run` (or `make bench`). Results: bench/results/<commit>.json.

* storm     — N duplicate CloudWatch alarms (default 1,000): exactly one incident, at most one
              Engineer invocation for it, wall time from the first PutEvents until the runtime is idle.
* latency   — N distinct incidents one after another: injection -> terminal decision p50/p95, and the
              runtime's overhead: end-to-end time over the handlers' own compute time.
* api_calls — AWS API calls per incident counted at the emulator, by agent and action
              (PutMetricData must be 0: metrics are EMF).
* coldstart — each handler module imported and initialized in a fresh process, against a floor of
              boto3 + Powertools Logger and Metrics measured in the same run (goal <= 1.3x for the
              Manager and QA).

Everything runs against the local runtime (a child process, as `selfheal local up` runs it).
These are measurements, not timed tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The pipeline has decided (closed, or waiting for a person, a window, a merge or a verification).
from selfheal_core.catalog import SETTLED

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
COLDSTART_MODULES = ("lambdas.manager.handler", "lambdas.engineer.handler", "lambdas.qa.handler")
FLOOR = "import boto3\nfrom aws_lambda_powertools import Logger, Metrics\nLogger()\nMetrics(namespace='Bench')\n"


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = pct / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def log(message: str) -> None:
    sys.stderr.write(f"[bench {datetime.now():%H:%M:%S}] {message}\n")
    sys.stderr.flush()


# ------------------------------------------------------------------------------ helpers


def _incidents(rt: Any) -> list[dict[str, Any]]:
    return json.loads(rt.selfheal("incidents", "--json", "--limit", "1000").stdout)["incidents"]


def _put(rt: Any, entries: list[dict[str, Any]]) -> list[str]:
    events = rt.client("events")
    ids = []
    for start in range(0, len(entries), 10):
        resp = events.put_events(Entries=entries[start : start + 10])
        if resp["FailedEntryCount"]:
            raise RuntimeError(f"put_events failed: {resp}")
        ids.extend(e["EventId"] for e in resp["Entries"])
    return ids


def alarm_entry(alarm_name: str, function: str) -> dict[str, Any]:
    from selfheal.ops.inject import alarm_event_detail

    detail = alarm_event_detail(
        alarm_name=alarm_name,
        state="ALARM",
        namespace="AWS/Lambda",
        metric="Errors",
        dimensions={"FunctionName": function},
        stat="Sum",
        period=60,
        threshold=5.0,
        value=42.0,
    )
    return {
        "Source": "aws.cloudwatch",
        "DetailType": "CloudWatch Alarm State Change",
        "Detail": json.dumps(detail),
        "Resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm_name}"],
        "EventBusName": "default",
    }


# ------------------------------------------------------------------------------ scenarios


def bench_storm(rt: Any, size: int) -> dict[str, Any]:
    service = f"storm-{uuid.uuid4().hex[:6]}"
    alarm = f"{service}-Errors"
    log(f"storm: {size} copies of alarm {alarm}")
    since = time.time()
    started = time.perf_counter()
    event_ids = _put(rt, [alarm_entry(alarm, service)] * size)
    put_s = time.perf_counter() - started
    idle = rt.idle(timeout=1800, quiet=2.0)
    wall_s = time.perf_counter() - started - 2.0  # minus the idle detector's quiet period
    incidents = [i for i in _incidents(rt) if i["service"] == service]
    invocations = rt.control(f"invocations?since={since - 1}")["invocations"]
    ids = {i["incident_id"] for i in incidents}
    manager_calls = [i for i in invocations if i["function"].endswith("-manager") and i["event_id"] in set(event_ids)]
    engineer_calls = [i for i in invocations if i["function"].endswith("-engineer") and i["incident_id"] in ids]
    handler_ms = [i["duration_ms"] for i in manager_calls]
    return {
        "alarms": size,
        "incidents": len(incidents),
        "exactly_one_incident": len(incidents) == 1,
        "duplicates_counted": incidents[0]["duplicates"] if len(incidents) == 1 else None,
        "engineer_invocations": len(engineer_calls),
        "at_most_one_engineer_call": len(engineer_calls) <= 1,
        "manager_invocations": len(manager_calls),
        "manager_errors": sum(1 for i in manager_calls if not i["ok"]),
        "put_events_s": round(put_s, 3),
        "wall_s": round(wall_s, 3),
        "settled": idle,
        "alarms_per_s": round(size / wall_s, 1) if wall_s > 0 else None,
        "manager_handler_ms_p50": round(percentile(handler_ms, 50) or 0, 1),
        "manager_handler_ms_p95": round(percentile(handler_ms, 95) or 0, 1),
        "final_status": incidents[0]["status"] if len(incidents) == 1 else None,
    }


def bench_latency(rt: Any, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    log(f"latency: {n} distinct incidents, one after another")
    rt.control("api-calls/reset", {})
    latencies: list[float] = []
    warm: list[float] = []  # incidents none of whose invocations was a cold start
    ratios: list[float] = []
    handler_totals: list[float] = []
    statuses: dict[str, int] = {}
    since = time.time()
    run = uuid.uuid4().hex[:6]
    for k in range(n):
        service = f"lat-{run}-{k}"
        detail = {
            "service": service,
            "issue_type": "high_error_rate",
            "severity": "high",
            "summary": f"{service}: 5xx above 6 %",
            "signals": {"error_rate_pct": 6.5},
        }
        t0 = time.time()
        [event_id] = _put(
            rt,
            [
                {
                    "EventBusName": "agentops-dev",
                    "Source": "com.example.bench",
                    "DetailType": "IssueReported",
                    "Detail": json.dumps(detail),
                }
            ],
        )
        incident = None
        deadline = t0 + 120
        while time.time() < deadline:
            found = [i for i in _incidents(rt) if i["service"] == service]
            if found and found[0]["status"] in SETTLED:
                incident = found[0]
                break
            time.sleep(0.05)
        if incident is None:
            log(f"  {service}: no terminal decision within 120 s")
            continue
        terminal_at = datetime.fromisoformat(incident["updated_at"]).timestamp()
        latency = terminal_at - t0
        rt.idle(timeout=60, quiet=0.3)
        invocations = rt.control(f"invocations?since={t0 - 1}")["invocations"]
        mine = [i for i in invocations if i["incident_id"] == incident["incident_id"] or i["event_id"] == event_id]
        compute = sum(i["duration_ms"] for i in mine) / 1000
        busy = _union_seconds([(i["ended_at"] - i["duration_ms"] / 1000, i["ended_at"]) for i in mine])
        last_end = max((i["ended_at"] for i in mine), default=t0)
        latencies.append(latency)
        if all(i["init_ms"] is None for i in mine):
            warm.append(latency)
        handler_totals.append(compute)
        if busy > 0:
            ratios.append((last_end - t0) / busy)
        statuses[incident["status"]] = statuses.get(incident["status"], 0) + 1
    calls = rt.control("api-calls")
    agent_calls = {k: v for k, v in calls["by_caller"].items() if k.startswith("selfheal-")}
    per_action: dict[str, int] = {}
    for per in agent_calls.values():
        for action, count in per.items():
            per_action[action] = per_action.get(action, 0) + count
    done = max(1, len(latencies))
    latency = {
        "incidents": n,
        "completed": len(latencies),
        "statuses": statuses,
        "p50_s": round(percentile(latencies, 50) or 0, 3),
        "p95_s": round(percentile(latencies, 95) or 0, 3),
        "max_s": round(max(latencies), 3) if latencies else None,
        "warm_incidents": len(warm),
        "warm_p50_s": round(percentile(warm, 50) or 0, 3),
        "warm_p95_s": round(percentile(warm, 95) or 0, 3),
        "handler_compute_p50_s": round(percentile(handler_totals, 50) or 0, 3),
        "runtime_overhead_ratio_p50": round(percentile(ratios, 50) or 0, 2),
        "runtime_overhead_ratio_p95": round(percentile(ratios, 95) or 0, 2),
        "note": "latency = injection (before PutEvents) -> the incident's terminal write (updated_at). "
        "overhead ratio = (injection -> end of the incident's last invocation) / time in which at least one of "
        "its handlers was running (handlers overlap: an agent's event is delivered while it finishes); "
        "the excess is PutEvents, routing, queueing and worker hand-off",
        "since": since,
    }
    api = {
        "incidents": len(latencies),
        "per_incident_total": round(sum(sum(v.values()) for v in agent_calls.values()) / done, 1),
        "per_incident_by_agent": {k: round(sum(v.values()) / done, 1) for k, v in sorted(agent_calls.items())},
        "per_incident_by_action": {k: round(v / done, 2) for k, v in sorted(per_action.items(), key=lambda kv: -kv[1])},
        "put_metric_data_calls": calls["put_metric_data_calls"],
    }
    return latency, api


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total


def import_profile(module: str, env: dict[str, str], top: int = 12) -> list[dict[str, Any]]:
    """The heaviest top-level imports of a module (python -X importtime, cumulative)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        if 1 <= depth <= 3 and not name.strip().startswith(("site", "__editable__", "encodings")):
            rows.append({"module": name.strip(), "depth": depth, "cumulative_ms": round(int(parts[1]) / 1000, 1)})
    return sorted(rows, key=lambda r: -r["cumulative_ms"])[:top]


def _time_import(code: str, env: dict[str, str]) -> float:
    probe = "import time\n_t = time.perf_counter()\n" + code + "\nprint(time.perf_counter() - _t)\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_coldstart(rt: Any, repeat: int, function_env: dict[str, dict[str, str]]) -> dict[str, Any]:
    log(f"cold start: {len(COLDSTART_MODULES)} modules + floor, {repeat} fresh processes each")
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    base.update(
        {
            "AWS_ENDPOINT_URL": rt.endpoint,
            "AWS_ACCESS_KEY_ID": "ASIALOCALBENCH00000",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    floor_env = {**base, "POWERTOOLS_SERVICE_NAME": "floor"}
    results: dict[str, Any] = {"repeat": repeat, "floor_code": FLOOR, "modules": {}}
    floors: list[float] = []
    samples: dict[str, list[float]] = {m: [] for m in COLDSTART_MODULES}
    # Interleave floor and modules so that machine noise affects all of them alike.
    for _ in range(repeat):
        floors.append(_time_import(FLOOR, floor_env))
        for module in COLDSTART_MODULES:
            agent = module.split(".")[1]
            env = {**base, **function_env.get(agent, {})}
            samples[module].append(_time_import(f"import {module}", env))
    floor = statistics.median(floors)
    results["floor_s"] = round(floor, 4)
    for module, values in samples.items():
        median = statistics.median(values)
        results["modules"][module] = {
            "median_s": round(median, 4),
            "min_s": round(min(values), 4),
            "ratio_to_floor": round(median / floor, 2),
        }
    for module in ("lambdas.manager.handler", "lambdas.qa.handler"):
        agent = module.split(".")[1]
        results["modules"][module]["heaviest_imports"] = import_profile(module, {**base, **function_env.get(agent, {})})
    results["goal"] = "<= 1.3x floor for manager and qa"
    results["goal_met"] = all(
        results["modules"][m]["ratio_to_floor"] <= 1.3 for m in ("lambdas.manager.handler", "lambdas.qa.handler")
    )
    return results


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="storm,latency,coldstart", help="comma list of: storm, latency, coldstart")
    parser.add_argument("--storm-size", type=int, default=1000)
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per module in the cold-start benchmark")
    parser.add_argument("--concurrency", type=int, default=2, help="workers per function in the runtime")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    selected = {s.strip() for s in args.only.split(",") if s.strip()}

    from selfheal_dev.local.assembly import Assembly, synthesize
    from tests.support.harness import RuntimeProcess

    state = ROOT / ".selfheal" / "bench"
    log("synthesizing the app")
    t0 = time.perf_counter()
    assembly_dir = synthesize(state / "cdk.out")
    synth_s = time.perf_counter() - t0
    assembly = Assembly.load(assembly_dir)
    function_env = {}
    for res in assembly.of_type("AWS::Lambda::Function"):
        variables = {k: str(v) for k, v in res.properties.get("Environment", {}).get("Variables", {}).items()}
        function_env[variables.get("AGENT_NAME", res.physical_id.rsplit("-", 1)[-1])] = {
            **variables,
            "AWS_LAMBDA_FUNCTION_NAME": res.physical_id,
        }

    results: dict[str, Any] = {
        "commit": commit(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {
            "storm_size": args.storm_size,
            "incidents": args.incidents,
            "repeat": args.repeat,
            "concurrency": args.concurrency,
        },
        "synth_s": round(synth_s, 2),
    }
    rt = RuntimeProcess(
        state_dir=state / "runtime",
        assembly=assembly_dir,
        extra_args=["--quiet", "--alarm-interval", "3600", "--concurrency", str(args.concurrency)],
    )
    t0 = time.perf_counter()
    rt.start()
    results["runtime_start_s"] = round(time.perf_counter() - t0, 2)
    try:
        if "latency" in selected:
            results["latency"], results["api_calls"] = bench_latency(rt, args.incidents)
        if "storm" in selected:
            results["storm"] = bench_storm(rt, args.storm_size)
        if "coldstart" in selected:
            results["coldstart"] = bench_coldstart(rt, args.repeat, function_env)
    finally:
        leftover = rt.stop()
        results["runtime_stopped_cleanly"] = leftover == []
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"{results['commit']}.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    log(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
