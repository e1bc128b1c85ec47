"""Collaboration patterns, agent effectiveness and optimization opportunities (docs/architecture.md, "Monitoring and cost").

Reads only through the key design's GSIs (no scans): messages by day (monitoring GSI1
COLLAB#<day>), events by type (GSI1 EVENT#<type>), costs by day (GSI2 COST#DAY#<day>) and by
agent (GSI1 COST#AGENT#<agent>), decisions by agent (decisions GSI1 AGENT#<agent>) and
incidents by day (decisions GSI2 INCIDENTS#<day>).

Flow anomalies are judged against the flow's own baseline: hourly counts of the analysed
window against the mean and standard deviation of the preceding `baseline_hours`, not a
fixed threshold. A quiet, regular history therefore raises nothing.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key

from selfheal_core import keys
from selfheal_core.catalog import OPEN_STATUSES as OPEN
from selfheal_core.catalog import TERMINAL, Status
from selfheal_core.config import Settings, get_settings

from .costs import PriceTable, load_price_table
from .store import query_all

HOURS_PER_MONTH = 730
# Open statuses in the Status enum's order (the OpenIncidents gauge publishes one per status).
OPEN_STATUSES = tuple(s.value for s in Status if s in OPEN)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _days(start: datetime, end: datetime) -> list[str]:
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.fmean(values) if values else None


class AgentOpsAnalyzer:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        prices: PriceTable | None = None,
        clock: Callable[[], datetime] | None = None,
        baseline_hours: int = 7 * 24,
        z_threshold: float = 3.0,
        min_anomaly_count: int = 3,
        rejection_loop_threshold: int = 2,
        duplicate_storm_threshold: int = 20,
        min_samples: int = 5,
        success_tolerance: float = 0.05,
        min_prompt_tokens_for_caching: int = 100_000,
        low_cache_read_share: float = 0.2,
    ) -> None:
        self.settings = settings or get_settings()
        self.prices = prices or load_price_table()  # file + env override (the analyzer may not read SSM)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.baseline_hours = baseline_hours
        self.z_threshold = z_threshold
        self.min_anomaly_count = min_anomaly_count
        self.rejection_loop_threshold = rejection_loop_threshold
        self.duplicate_storm_threshold = duplicate_storm_threshold
        self.min_samples = min_samples
        self.success_tolerance = success_tolerance
        self.min_prompt_tokens_for_caching = min_prompt_tokens_for_caching
        self.low_cache_read_share = low_cache_read_share

    # ------------------------------------------------------------------ collaboration
    def analyze_collaboration_patterns(self, time_window_hours: int = 24) -> dict[str, Any]:
        now = self._clock()
        start = now - timedelta(hours=time_window_hours)
        messages = self._messages(start - timedelta(hours=self.baseline_hours), now)
        # Buckets are whole hours counted back from now, so the window and the baseline align.
        hourly: dict[str, Counter[int]] = defaultdict(Counter)
        in_window = []
        for m in messages:
            hours_ago = int((now - datetime.fromisoformat(m["created_at"])).total_seconds() // 3600)
            hourly[m["flow"]][hours_ago] += 1
            if hours_ago < time_window_hours:
                in_window.append(m)

        flows = self._flows(in_window)
        baseline_total = sum(c for counts in hourly.values() for h, c in counts.items() if h >= time_window_hours)
        anomalies = (
            []
            if baseline_total == 0
            else [a for flow in hourly for a in self._flow_anomalies(flow, hourly[flow], time_window_hours)]
        )
        rejections = Counter(m.get("incident_id") for m in in_window if m.get("message_type") == "FixRejected")
        loops = [
            {"incident_id": i, "rejections": n}
            for i, n in rejections.most_common()
            if i and n >= self.rejection_loop_threshold
        ]
        return {
            "window_hours": time_window_hours,
            "baseline_hours": self.baseline_hours,
            "baseline_status": "ok" if baseline_total else "insufficient",
            "total_messages": len(in_window),
            "flows": flows,
            "most_active_flow": flows[0] if flows else None,
            "anomalies": sorted(anomalies, key=lambda a: -a["z_score"]),
            "rejection_loops": loops,
        }

    def _flows(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_flow: dict[str, Counter[str]] = defaultdict(Counter)
        for m in messages:
            by_flow[m["flow"]][m.get("message_type", "")] += 1
        flows = [
            {
                "flow": flow,
                "from_agent": flow.split("->")[0],
                "to_agent": flow.split("->")[-1],
                "count": sum(types.values()),
                "message_types": dict(types),
            }
            for flow, types in by_flow.items()
        ]
        return sorted(flows, key=lambda f: (-f["count"], f["flow"]))

    def _flow_anomalies(self, flow: str, counts: Counter[int], window_hours: int) -> list[dict[str, Any]]:
        baseline = [counts.get(h, 0) for h in range(window_hours, window_hours + self.baseline_hours)]
        mean, stddev = statistics.fmean(baseline), statistics.pstdev(baseline)
        # A floor of 1 message keeps a flat baseline (stddev 0) from flagging every small wobble.
        spread = max(stddev, 1.0)
        threshold = mean + self.z_threshold * spread
        found = []
        for hours_ago in range(window_hours):
            count = counts.get(hours_ago, 0)
            if count >= self.min_anomaly_count and count > threshold:
                found.append(
                    {
                        "type": "flow_spike",
                        "flow": flow,
                        "hours_ago": hours_ago,
                        "count": count,
                        "baseline_mean": round(mean, 3),
                        "baseline_stddev": round(stddev, 3),
                        "threshold": round(threshold, 3),
                        "z_score": round((count - mean) / spread, 2),
                    }
                )
        return found

    # ------------------------------------------------------------------ effectiveness
    def analyze_agent_effectiveness(self, agent: str, time_window_hours: int = 7 * 24) -> dict[str, Any]:
        """QA verdicts, attempts, time to a validated fix and cost, for incidents opened in the window."""
        now = self._clock()
        start = now - timedelta(hours=time_window_hours)
        decisions = self._by_gsi(self.settings.decisions_table_name, "gsi1", f"AGENT#{agent}", start, now)
        passed = len(self._by_gsi(self.settings.monitoring_table_name, "gsi1", "EVENT#test_passed", start, now))
        failed = len(self._by_gsi(self.settings.monitoring_table_name, "gsi1", "EVENT#test_failed", start, now))
        agent_costs = self._by_gsi(self.settings.monitoring_table_name, "gsi1", f"COST#AGENT#{agent}", start, now)
        incidents = self._incidents(start, now)
        validated = [(i, at) for i in incidents if (at := _reached(i, "VALIDATED"))]
        resolved = [i for i in incidents if i.get("status") == "RESOLVED"]
        return {
            "agent": agent,
            "window_hours": time_window_hours,
            "decisions": len(decisions),
            "mean_confidence": _mean(d.get("confidence_score", 0) for d in decisions),
            "tests_passed": passed,
            "tests_failed": failed,
            "success_rate": passed / (passed + failed) if passed + failed else None,
            "incidents": len(incidents),
            "validated_fixes": len(validated),
            "attempts_per_fix": _mean(max(1, i.get("attempts", 1)) for i, _ in validated),
            "mean_time_to_validated_fix_s": _mean(
                (datetime.fromisoformat(at) - datetime.fromisoformat(i["created_at"])).total_seconds()
                for i, at in validated
            ),
            "resolved_incidents": len(resolved),
            "cost_per_resolved_incident_usd": _mean(i.get("cost_usd", 0.0) for i in resolved),
            "agent_cost_usd": sum(c.get("cost_usd", 0.0) for c in agent_costs),
        }

    # ------------------------------------------------------------------ opportunities
    def identify_optimization_opportunities(self, time_window_hours: int = 7 * 24) -> list[dict[str, Any]]:
        now = self._clock()
        start = now - timedelta(hours=time_window_hours)
        costs = self._costs(start, now)
        incidents = self._incidents(start, now)
        scale = HOURS_PER_MONTH / time_window_hours
        found = [
            *self._downgrades(costs, scale, time_window_hours),
            *self._caching(costs, scale, time_window_hours),
            *self._duplicate_storms(incidents, costs, scale),
            *self._retry_loops(incidents, scale),
        ]
        return sorted(found, key=lambda o: -o["estimated_monthly_savings_usd"])

    def _downgrades(self, costs: list[dict[str, Any]], scale: float, window: int) -> list[dict[str, Any]]:
        """A cheaper model whose incidents reach VALIDATED as often as the expensive one's."""
        llm = [c for c in costs if c.get("kind") == "llm" and c.get("incident_id")]
        outcomes = self._outcomes({c["incident_id"] for c in llm})
        by_agent_model: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for c in llm:
            by_agent_model[(c["agent"], c.get("pricing", {}).get("priced_as") or c["model"])].append(c)
        found = []
        for agent in sorted({a for a, _ in by_agent_model}):
            stats: dict[str, dict[str, Any]] = {}
            for (a, model), calls in by_agent_model.items():
                incident_ids = {c["incident_id"] for c in calls}
                if a == agent and len(incident_ids) >= self.min_samples:
                    stats[model] = {
                        "incidents": len(incident_ids),
                        "calls": calls,
                        "success_rate": sum(outcomes.get(i, False) for i in incident_ids) / len(incident_ids),
                    }
            for expensive, cheap in self._cheaper_pairs(stats):
                if stats[cheap]["success_rate"] + self.success_tolerance < stats[expensive]["success_rate"]:
                    continue
                spent = sum(c["cost_usd"] for c in stats[expensive]["calls"])
                repriced = sum(
                    self.prices.price_usage(cheap, c.get("usage", {})).cost_usd for c in stats[expensive]["calls"]
                )
                if spent - repriced <= 0:
                    continue
                found.append(
                    {
                        "type": "model_downgrade",
                        "recommendation": f"Use {cheap} instead of {expensive} for the {agent}: its fixes pass QA as often.",
                        "evidence": {
                            "agent": agent,
                            "window_hours": window,
                            **{
                                m: {
                                    "incidents": stats[m]["incidents"],
                                    "success_rate": round(stats[m]["success_rate"], 3),
                                    "calls": len(stats[m]["calls"]),
                                }
                                for m in (expensive, cheap)
                            },
                            "spent_on_expensive_usd": round(spent, 6),
                            "same_usage_on_cheap_usd": round(repriced, 6),
                        },
                        "estimated_monthly_savings_usd": round((spent - repriced) * scale, 2),
                    }
                )
        return found

    def _cheaper_pairs(self, stats: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
        def unit_price(model: str) -> float:
            p = self.prices.price_of(model) if model in self.prices.models else None
            return p.input + p.output if p else math.inf

        ordered = sorted(stats, key=unit_price, reverse=True)
        return [(e, c) for i, e in enumerate(ordered) for c in ordered[i + 1 :] if unit_price(c) < unit_price(e)]

    def _caching(self, costs: list[dict[str, Any]], scale: float, window: int) -> list[dict[str, Any]]:
        """Prompts that are mostly re-sent at full price although their prefix could be cached."""
        totals: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for c in costs:
            if c.get("kind") == "llm":
                model = c.get("pricing", {}).get("priced_as") or c["model"]
                totals[(c["agent"], model)].update({k: v for k, v in c.get("usage", {}).items() if isinstance(v, int)})
        found = []
        for (agent, model), t in sorted(totals.items()):
            prompt = t["input_tokens"] + t["cache_read_input_tokens"] + t["cache_creation_input_tokens"]
            if prompt < self.min_prompt_tokens_for_caching or model not in self.prices.models:
                continue
            share = t["cache_read_input_tokens"] / prompt
            if share >= self.low_cache_read_share:
                continue
            price = self.prices.price_of(model)
            # Upper bound: half of the prompt served from cache at the read price instead of the input price.
            moved = max(0.0, 0.5 - share) * prompt
            savings = moved * (price.input - price.cache_read) / 1_000_000
            found.append(
                {
                    "type": "prompt_caching",
                    "recommendation": f"Cache the stable prompt prefix of the {agent} on {model} (cache_control on system/tools).",
                    "evidence": {
                        "agent": agent,
                        "model": model,
                        "window_hours": window,
                        "prompt_tokens": prompt,
                        "cache_read_tokens": t["cache_read_input_tokens"],
                        "cache_read_share": round(share, 3),
                    },
                    "estimated_monthly_savings_usd": round(savings * scale, 2),
                }
            )
        return found

    def _duplicate_storms(
        self, incidents: list[dict[str, Any]], costs: list[dict[str, Any]], scale: float
    ) -> list[dict[str, Any]]:
        storms = [i for i in incidents if i.get("duplicates", 0) >= self.duplicate_storm_threshold]
        if not storms:
            return []
        manager_invocations = [
            c["cost_usd"] for c in costs if c.get("agent") == "manager" and c.get("kind") in ("lambda", "events")
        ]
        per_duplicate = (2 * statistics.fmean(manager_invocations)) if manager_invocations else 0.0
        duplicates = sum(i["duplicates"] for i in storms)
        return [
            {
                "type": "duplicate_storm",
                "recommendation": "Tune the noisy sources (alarm evaluation periods / datapoints to alarm) or fix the "
                "recurring issue: each duplicate is a Manager invocation that changes nothing.",
                "evidence": {
                    "incidents": [
                        {"incident_id": i["incident_id"], "service": i.get("service"), "duplicates": i["duplicates"]}
                        for i in storms[:10]
                    ],
                    "duplicates": duplicates,
                },
                "estimated_monthly_savings_usd": round(duplicates * per_duplicate * scale, 2),
            }
        ]

    def _retry_loops(self, incidents: list[dict[str, Any]], scale: float) -> list[dict[str, Any]]:
        loops = [i for i in incidents if i.get("status") in ("FAILED", "ESCALATED") and i.get("attempts", 0) >= 2]
        if not loops:
            return []
        wasted = sum(i.get("cost_usd", 0.0) * (i["attempts"] - 1) / i["attempts"] for i in loops)
        return [
            {
                "type": "retry_loop",
                "recommendation": "Incidents went through several rejected fixes and still failed: lower maxFixAttempts "
                "for these issue types or route them to a runbook / a person sooner.",
                "evidence": {
                    "incidents": [
                        {
                            "incident_id": i["incident_id"],
                            "attempts": i["attempts"],
                            "issue_type": i.get("issue_type"),
                            "cost_usd": i.get("cost_usd", 0.0),
                        }
                        for i in loops[:10]
                    ],
                    "count": len(loops),
                },
                "estimated_monthly_savings_usd": round(wasted * scale, 2),
            }
        ]

    # ------------------------------------------------------------------ gauges for the hourly run
    def open_incidents_by_status(self, days: int = 14) -> dict[str, int]:
        now = self._clock()
        counts = Counter(i.get("status") for i in self._incidents(now - timedelta(days=days), now))
        return {status: counts.get(status, 0) for status in OPEN_STATUSES}

    def duplicate_storms(self, time_window_hours: int = 24) -> list[dict[str, Any]]:
        now = self._clock()
        return [
            i
            for i in self._incidents(now - timedelta(hours=time_window_hours), now)
            if i.get("status") not in TERMINAL and i.get("duplicates", 0) >= self.duplicate_storm_threshold
        ]

    # ------------------------------------------------------------------ reads (GSIs only)
    def _by_gsi(self, table: str, index: str, pk: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        condition = Key(f"{index}pk").eq(pk) & Key(f"{index}sk").between(_iso(start), _iso(end))
        return list(query_all(table, IndexName=index, KeyConditionExpression=condition))

    def _messages(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        table = self.settings.monitoring_table_name
        return [m for day in _days(start, end) for m in self._by_gsi(table, "gsi1", f"COLLAB#{day}", start, end)]

    def _costs(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        lo, hi = _iso(start), _iso(end)
        found: list[dict[str, Any]] = []
        for day in _days(start, end):
            items = query_all(
                self.settings.monitoring_table_name,
                IndexName="gsi2",
                KeyConditionExpression=Key("gsi2pk").eq(f"COST#DAY#{day}"),
            )
            found.extend(c for c in items if lo <= c.get("created_at", "") <= hi)
        return found

    def _incidents(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        table = self.settings.decisions_table_name
        return [i for day in _days(start, end) for i in self._by_gsi(table, "gsi2", f"INCIDENTS#{day}", start, end)]

    def _outcomes(self, incident_ids: set[str]) -> dict[str, bool]:
        """incident id -> reached VALIDATED (BatchGetItem on the incident items)."""
        from selfheal_core import aws
        from selfheal_core.ddb import from_item

        client = aws.table(self.settings.decisions_table_name).meta.client
        table = self.settings.decisions_table_name
        found: dict[str, bool] = {}
        ids = sorted(incident_ids)
        for n in range(0, len(ids), 100):
            request = {table: {"Keys": [{"pk": keys.incident_pk(i), "sk": keys.META} for i in ids[n : n + 100]]}}
            while request:
                response = client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(table, []):  # a resource's client returns plain types
                    item = from_item(item)
                    found[item["incident_id"]] = bool(_reached(item, "VALIDATED"))
                request = response.get("UnprocessedKeys") or {}
        return found


def _reached(incident: dict[str, Any], status: str) -> str | None:
    """When the incident first reached `status` (from its status history), or None."""
    return next((h.get("at") for h in incident.get("status_history", []) if h.get("status") == status), None)
