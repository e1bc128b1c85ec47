"""Selfheal benchmarks: `python -m bench.run` (or `make bench`). Results: bench/results/<commit>.json.

* storm     — N duplicate CloudWatch alarms (default 1,000): exactly one incident, at most one
              Engineer invocation for it, wall time from the first PutEvents until the runtime is idle.
* latency   — N distinct incidents one after another: injection -> terminal decision p50/p95, and the
              runtime's overhead: end-to-end time over the handlers' own compute time.
* api_calls — AWS API calls per incident counted at the emulator, by agent and action
              (PutMetricData must be 0: metrics are EMF), and per folded duplicate in the storm.
* coldstart — each handler module imported and initialized in a fresh process, as shipped (our
              packages with their bytecode, see stacks/constructs/common_layer.py), against a floor
              of boto3 + Powertools Logger and Metrics, alternated in the same run; median of N.
              The heaviest imports (python -X importtime) are kept in the output.
* sizes     — every function's unzipped size: its code bundle plus its layers, bundled with pip for
              the Lambda platform exactly as `cdk synth` does (cached in .selfheal/bench/layers).

Every incident concerns a real function created in the emulator (tagged selfheal:managed), so the
pipeline runs to a decision rather than failing its investigation.

Everything runs against the local runtime (a child process, as `selfheal local up` runs it).
These are measurements, not timed tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
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
COLDSTART_AGENTS = ("manager", "engineer", "qa")
COLDSTART_GOALS = {"manager": 1.3, "engineer": 1.6, "qa": 1.3}
SIZE_GOAL_MB = {"manager": 40, "qa": 40}
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


_TARGETS: dict[str, Any] = {}


def _target(rt: Any) -> Any:
    """An operator target in this process: the latency benchmark polls every 50 ms, and a CLI
    subprocess per poll (~0.9 s of CPU) would compete with the pipeline for the machine's
    cores and inflate what it measures."""
    from selfheal.ops.target import LOCAL_CLIENT_KEY, LOCAL_CLIENT_SECRET, EndpointSession, connect

    if rt.endpoint not in _TARGETS:
        session = EndpointSession(
            endpoint_url=rt.endpoint,
            region_name="us-east-1",
            aws_access_key_id=LOCAL_CLIENT_KEY,
            aws_secret_access_key=LOCAL_CLIENT_SECRET,
        )
        _TARGETS[rt.endpoint] = connect(endpoint_url=rt.endpoint, env="dev", region=None, session=session)
    return _TARGETS[rt.endpoint]


def _incidents(rt: Any) -> list[dict[str, Any]]:
    """What `selfheal incidents --json` lists."""
    from selfheal.ops import reads

    return json.loads(json.dumps(reads.incidents(_target(rt), limit=1000), default=str))


def _incident(rt: Any, incident_id: str) -> dict[str, Any] | None:
    """One incident by id (a GetItem: cheaper for the emulator than listing them all)."""
    from selfheal_core.incidents import IncidentStore

    incident = IncidentStore(_target(rt).decisions_table).get(incident_id)
    return json.loads(json.dumps(incident.public(), default=str)) if incident else None


def _opened_incident_id(rt: Any, event_id: str, since: float) -> str | None:
    """The incident the Manager opened for `event_id`, from its invocation's result (a control
    route, which does not queue behind the agents' API calls)."""
    for record in rt.control(f"invocations?since={since}")["invocations"]:
        result = record.get("result")
        if record.get("event_id") == event_id and isinstance(result, dict) and result.get("incident_id"):
            return str(result["incident_id"])
    return None


def _put(rt: Any, entries: list[dict[str, Any]]) -> list[str]:
    """PutEvents; alarm state changes (source aws.cloudwatch, which only CloudWatch may put) are
    emitted by the runtime as CloudWatch would."""
    events = rt.client("events")
    ids = []
    for start in range(0, len(entries), 10):
        chunk = entries[start : start + 10]
        as_aws = chunk[0]["Source"].startswith("aws.")
        resp = rt.control("aws-events", {"entries": chunk}) if as_aws else events.put_events(Entries=chunk)
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


def target_function(rt: Any, name: str) -> None:
    """The function an incident concerns, managed, so the Manager investigates it and may change it.
    Timeout 5 s: the runbook doubles it to 10, a step QA rates low risk (lambdas/qa/risk.py), so
    the default semi_auto applies it and every incident runs the whole loop to VERIFYING."""
    from tests.e2e.functions import create_function

    create_function(rt, name, timeout=5, managed=True)


def bench_storm(rt: Any, size: int) -> dict[str, Any]:
    service = f"storm-{uuid.uuid4().hex[:6]}"
    alarm = f"{service}-Errors"
    target_function(rt, service)
    log(f"storm: {size} copies of alarm {alarm}")
    rt.control("api-calls/reset", {})
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
    calls = rt.control("api-calls")["by_caller"]
    manager_api = sum(n for caller, per in calls.items() if caller.endswith("-manager") for n in per.values())
    manager_actions: dict[str, int] = {}
    for caller, per in calls.items():
        if caller.endswith("-manager"):
            for action, n in per.items():
                manager_actions[action] = manager_actions.get(action, 0) + n
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
        # Every Manager call of the storm (the one opening included) over the duplicates it folded.
        "manager_api_calls": manager_api,
        "api_calls_per_folded_duplicate": round(manager_api / max(1, size - 1), 2),
        "manager_api_calls_by_action": dict(sorted(manager_actions.items(), key=lambda kv: -kv[1])),
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
        target_function(rt, service)
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
        incident_id = None
        deadline = t0 + 120
        while time.time() < deadline:
            # Polled every 50 ms: by id once the Manager has said which incident it opened.
            incident_id = incident_id or _opened_incident_id(rt, event_id, t0 - 1)
            if incident_id:
                found = [i for i in [_incident(rt, incident_id)] if i]
            else:
                found = [i for i in _incidents(rt) if i["service"] == service] if time.time() - t0 > 5 else []
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
        "per_incident_by_agent_and_action": {
            agent: {k: round(v / done, 2) for k, v in sorted(per.items(), key=lambda kv: -kv[1])}
            for agent, per in sorted(agent_calls.items())
        },
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
    """The heaviest imports of a module (python -X importtime): cumulative and self time, any depth."""
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
        rows.append(
            {
                "module": name.strip(),
                "depth": (len(name) - len(name.lstrip())) // 2,
                "self_ms": round(int(parts[0].split(":")[-1]) / 1000, 1),
                "cumulative_ms": round(int(parts[1]) / 1000, 1),
            }
        )
    return sorted(rows, key=lambda r: -r["self_ms"])[:top]


def _time_import(code: str, env: dict[str, str]) -> float:
    probe = "import time\n_t = time.perf_counter()\n" + code + "\nprint(time.perf_counter() - _t)\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def shipped_code(agent: str, into: Path) -> list[Path]:
    """The agent's code bundle and the core layer's own packages, as shipped (with their bytecode).

    Third-party packages come from this virtualenv, whose bytecode pip wrote at install time, as
    the floor's do; the layer's wheels are for the Lambda platform and may not load here.
    """
    from stacks.constructs.agent_function import AgentCodeBundling
    from stacks.constructs.common_layer import CORE, LAYERS_DIR, compile_bytecode

    code, layer = into / agent / "code", into / agent / "layer"
    shutil.rmtree(into / agent, ignore_errors=True)
    code.mkdir(parents=True)
    AgentCodeBundling(agent).try_bundle(str(code), image=None)  # type: ignore[arg-type]
    for package in (LAYERS_DIR / CORE / "python").iterdir():
        if package.is_dir() and not package.name.startswith((".", "__")):
            shutil.copytree(package, layer / package.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compile_bytecode(layer)
    return [code, layer]


def bench_coldstart(rt: Any, repeat: int, function_env: dict[str, dict[str, str]], state: Path) -> dict[str, Any]:
    log(f"cold start: {len(COLDSTART_AGENTS)} handlers + floor, {repeat} fresh processes each, alternated")
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
    envs = {}
    for agent in COLDSTART_AGENTS:
        paths = shipped_code(agent, state / "coldstart")
        envs[agent] = {**base, **function_env.get(agent, {}), "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
    results: dict[str, Any] = {"repeat": repeat, "floor_code": FLOOR, "handlers": {}}
    floors: list[float] = []
    samples: dict[str, list[float]] = {a: [] for a in COLDSTART_AGENTS}
    # Alternate floor and handlers so that machine noise affects all of them alike.
    for _ in range(repeat):
        floors.append(_time_import(FLOOR, floor_env))
        for agent in COLDSTART_AGENTS:
            samples[agent].append(_time_import(f"import {agent}.handler", envs[agent]))
    floor = statistics.median(floors)
    results["floor_s"] = round(floor, 4)
    for agent, values in samples.items():
        median = statistics.median(values)
        results["handlers"][agent] = {
            "median_s": round(median, 4),
            "min_s": round(min(values), 4),
            "ratio_to_floor": round(median / floor, 2),
            "goal": COLDSTART_GOALS[agent],
            "heaviest_imports": import_profile(f"{agent}.handler", envs[agent]),
        }
    return results


def bench_sizes(assembly: Any, state: Path) -> dict[str, Any]:
    """Unzipped size of every function: its code bundle plus each of its layers, bundled as synth does."""
    import hashlib

    from selfheal_dev.local.functions import function_specs
    from stacks.constructs import common_layer
    from stacks.constructs.agent_function import AgentCodeBundling
    from stacks.constructs.common_layer import CORE, LAYER_NEEDS, LAYERS_DIR, bundle_layer

    def tree_mb(path: Path) -> float:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6

    def layer_mb(name: str) -> float:
        # Keyed by every layer's sources and the bundling code: a layer leaves out what those below it hold.
        sources = sorted(p for p in LAYERS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        sources.append(Path(common_layer.__file__))
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
        out = state / "layers" / f"{name}-{digest}"
        if not (out / ".done").exists():
            log(f"sizes: bundling layer {name} with pip for the Lambda platform")
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            bundle_layer(name, out)
            (out / ".done").touch()
        return tree_mb(out / "python")

    layers = {name: round(layer_mb(name), 1) for name in [CORE, *sorted({n for v in LAYER_NEEDS.values() for n in v})]}
    functions = {}
    for spec in function_specs(assembly):
        package = spec.handler.split(".")[0]
        if not (ROOT / "lambdas" / package).is_dir():
            continue  # inline custom-resource code (each of our functions' assets holds one lambdas/ package)
        code_dir = state / "sizes" / package
        shutil.rmtree(code_dir, ignore_errors=True)
        code_dir.mkdir(parents=True)
        AgentCodeBundling(package).try_bundle(str(code_dir), image=None)  # type: ignore[arg-type]
        carried = [CORE, *LAYER_NEEDS.get(package, ())]
        code_mb = round(tree_mb(code_dir), 2)
        functions[package] = {
            "code_mb": code_mb,
            "layers": carried,
            "total_mb": round(code_mb + sum(layers[n] for n in carried), 1),
            "goal_mb": SIZE_GOAL_MB.get(package),
        }
    return {"layers_mb": layers, "functions": functions}


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", default="sizes,latency,storm,coldstart", help="comma list of: sizes, latency, storm, coldstart"
    )
    parser.add_argument("--storm-size", type=int, default=1000)
    # 40: a p95 of 20 samples is their maximum, i.e. the one incident that pays the workers' cold
    # starts; that incident is reported on its own row (slowest incident).
    parser.add_argument("--incidents", type=int, default=40)
    parser.add_argument(
        "--repeat", type=int, default=11, help="fresh processes per handler in the cold-start benchmark"
    )
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
        "machine": machine(),
        "settings": {
            "storm_size": args.storm_size,
            "incidents": args.incidents,
            "repeat": args.repeat,
            "concurrency": args.concurrency,
        },
        "synth_s": round(synth_s, 2),
    }
    if "sizes" in selected:
        results["sizes"] = bench_sizes(assembly, state)
    if selected & {"latency", "storm", "coldstart"}:
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
                results["coldstart"] = bench_coldstart(rt, args.repeat, function_env, state)
        finally:
            leftover = rt.stop()
            results["runtime_stopped_cleanly"] = leftover == []
    results["table"] = table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"{results['commit']}.json"
    out.write_text(json.dumps(results, indent=2))
    print(render_table(results))
    log(f"results: {out}")
    return 0


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu}


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: what was measured, its goal, and whether it is met (None: not measured)."""
    rows: list[dict[str, Any]] = []

    def row(figure: str, value: Any, goal: str, met: bool | None) -> None:
        rows.append({"figure": figure, "value": value, "goal": goal, "met": met})

    for agent, c in results.get("coldstart", {}).get("handlers", {}).items():
        row(
            f"cold start {agent} vs floor ({results['coldstart']['floor_s']:.3f} s)",
            f"{c['ratio_to_floor']:.2f}x",
            f"<= {c['goal']}x",
            c["ratio_to_floor"] <= c["goal"],
        )
    for package, f in results.get("sizes", {}).get("functions", {}).items():
        goal = f["goal_mb"]
        row(
            f"unzipped size {package} ({' + '.join(['code', *f['layers']])})",
            f"{f['total_mb']} MB",
            f"<= {goal} MB" if goal else "-",
            f["total_mb"] <= goal if goal else None,
        )
    if "api_calls" in results:
        per = results["api_calls"]["per_incident_total"]
        row(
            "API calls per incident (end to end)",
            per,
            "<= 15",
            per <= 15 if results["api_calls"]["incidents"] else None,
        )
        row(
            "PutMetricData calls",
            results["api_calls"]["put_metric_data_calls"],
            "0",
            results["api_calls"]["put_metric_data_calls"] == 0,
        )
    if "latency" in results:
        lat = results["latency"]
        done = lat["completed"] > 0
        row(
            f"latency p50 ({lat['completed']}/{lat['incidents']} incidents, {lat['statuses']})",
            f"{lat['p50_s']:.3f} s",
            "<= 0.300 s",
            lat["p50_s"] <= 0.3 if done else None,
        )
        row("latency p95", f"{lat['p95_s']:.3f} s", "<= 0.600 s", lat["p95_s"] <= 0.6 if done else None)
        if done:
            row("slowest incident (max)", f"{lat['max_s']:.3f} s", "-", None)
        row(
            "runtime overhead (end to end / handler busy time, p50)",
            f"{lat['runtime_overhead_ratio_p50']:.2f}x",
            "<= 1.5x",
            lat["runtime_overhead_ratio_p50"] <= 1.5 if done else None,
        )
    if "storm" in results:
        st = results["storm"]
        row(
            f"storm of {st['alarms']} duplicates settles (one incident: {st['exactly_one_incident']}, "
            f"{st['final_status']})",
            f"{st['wall_s']:.1f} s",
            "<= 30 s",
            st["wall_s"] <= 30 and st["exactly_one_incident"],
        )
        row(
            "API calls per folded duplicate",
            st["api_calls_per_folded_duplicate"],
            "<= 3",
            st["api_calls_per_folded_duplicate"] <= 3,
        )
    return rows


def render_table(results: dict[str, Any]) -> str:
    rows = results["table"]
    head = (
        f"Selfheal bench, {results['at']}, commit {results['commit']}, {results['machine']['cpus']} CPUs "
        f"({results['machine']['cpu'] or results['machine']['platform']}), Python {results['machine']['python']}"
    )
    mark = {True: "met", False: "NOT met", None: "-"}
    lines = [head, "", "| figure | value | goal | |", "|---|---|---|---|"]
    lines += [f"| {r['figure']} | {r['value']} | {r['goal']} | {mark[r['met']]} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
