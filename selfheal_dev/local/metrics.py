"""CloudWatch metrics for the local runtime: EMF ingestion, exact-dimension queries, metric math.

The runtime plays the Lambda platform: EMF lines printed by handlers are turned into metric
data in moto's CloudWatch backend (the agents never call PutMetricData). Queries follow
CloudWatch semantics that moto 5.2 gets wrong or lacks: a metric is namespace + name + the
exact set of dimensions, periods are aligned to the epoch, and metric math expressions
(arithmetic, `SUM|AVG|MIN|MAX`, `FILL`, `METRICS()` and `SEARCH`: what the template's alarms and
dashboards use) are evaluated; any other function is an error, not a guess.
"""

from __future__ import annotations

import ast
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# ---------------------------------------------------------------------------------- EMF


@dataclass(frozen=True)
class Datum:
    namespace: str
    name: str
    value: float
    dimensions: tuple[tuple[str, str], ...]
    timestamp: float  # epoch seconds
    unit: str | None = None


def parse_emf(document: dict[str, Any]) -> list[Datum]:
    """Metric data points of one EMF document (empty when it is not EMF)."""
    meta = document.get("_aws")
    if not isinstance(meta, dict):
        return []
    timestamp = float(meta.get("Timestamp", 0)) / 1000.0 or datetime.now(UTC).timestamp()
    out: list[Datum] = []
    for directive in meta.get("CloudWatchMetrics", []) or []:
        namespace = directive.get("Namespace", "aws-embedded-metrics")
        dimension_sets = directive.get("Dimensions") or [[]]
        for metric in directive.get("Metrics", []) or []:
            name = metric.get("Name")
            if not name or name not in document:
                continue
            raw = document[name]
            values = raw if isinstance(raw, list) else [raw]
            for dims in dimension_sets:
                try:
                    dim_pairs = tuple(sorted((str(k), str(document[k])) for k in dims))
                except KeyError:
                    continue  # a dimension without a value is dropped by CloudWatch too
                for value in values:
                    try:
                        number = float(value)
                    except (TypeError, ValueError):
                        continue
                    out.append(Datum(namespace, name, number, dim_pairs, timestamp, metric.get("Unit")))
    return out


# ---------------------------------------------------------------------------------- store


def to_epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, str):
        return to_epoch(datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise TypeError(f"not a time: {value!r}")


def naive_utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = pct / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def statistic(stat: str, samples: list[tuple[float, float, float, float]]) -> float:
    """samples: (sum, count, min, max) per datum (a single value is (v, 1, v, v))."""
    total = sum(s[0] for s in samples)
    count = sum(s[1] for s in samples)
    if stat == "Sum":
        return total
    if stat == "SampleCount":
        return count
    if stat == "Average":
        return total / count if count else math.nan
    if stat == "Minimum":
        return min(s[2] for s in samples)
    if stat == "Maximum":
        return max(s[3] for s in samples)
    if stat.startswith("p"):
        singles = [s[0] for s in samples if s[1] == 1]
        return percentile(singles, float(stat[1:]))
    raise ValueError(f"unsupported statistic {stat!r}")


class MetricStore:
    """Indexes moto's CloudWatch metric data by (namespace, name, dimensions)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._indexed = 0
        self._index: dict[
            tuple[str, str, tuple[tuple[str, str], ...]],
            list[tuple[float, tuple[float, float, float, float], str | None]],
        ] = defaultdict(list)

    def ingest(self, data: Iterable[Datum]) -> int:
        """Write data points into moto's backend (in-process: no API call is made or counted)."""
        from moto.cloudwatch.models import MetricDatum

        n = 0
        for d in data:
            self.backend.metric_data.append(
                MetricDatum(
                    d.namespace,
                    d.name,
                    d.value,
                    [{"Name": k, "Value": v} for k, v in d.dimensions],
                    naive_utc(d.timestamp),
                    d.unit,
                )
            )
            n += 1
        return n

    def _catch_up(self) -> None:
        with self._lock:
            data = self.backend.metric_data
            for md in data[self._indexed :]:
                dims = tuple(sorted((dim.name, dim.value) for dim in md.dimensions))
                if hasattr(md, "value"):
                    sample = (float(md.value), 1.0, float(md.value), float(md.value))
                else:
                    sample = (float(md.sum_stat), float(md.sample_count), float(md.min_stat), float(md.max_stat))
                self._index[(md.namespace, md.name, dims)].append((to_epoch(md.timestamp), sample, md.unit))
            self._indexed = len(data)

    def metrics(self) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
        self._catch_up()
        return list(self._index)

    def series(
        self,
        namespace: str,
        name: str,
        dimensions: dict[str, str] | Iterable[tuple[str, str]],
        stat: str,
        period: int,
        start: float,
        end: float,
        unit: str | None = None,
    ) -> dict[float, float]:
        """Aligned period start -> statistic, for periods overlapping [start, end)."""
        self._catch_up()
        dims = tuple(sorted(dimensions.items() if isinstance(dimensions, dict) else dimensions))
        buckets: dict[float, list[tuple[float, float, float, float]]] = defaultdict(list)
        for ts, sample, sample_unit in self._index.get((namespace, name, dims), []):
            if not start <= ts < end or (unit and sample_unit and unit != sample_unit):
                continue
            buckets[math.floor(ts / period) * period].append(sample)
        out = {}
        for bucket, samples in buckets.items():
            value = statistic(stat, samples)
            if not math.isnan(value):
                out[bucket] = value
        return out


# ---------------------------------------------------------------------------------- math


Series = dict[float, float]


class ExpressionError(ValueError):
    pass


class Labeled(dict):  # type: ignore[type-arg]
    """A series with the label CloudWatch gives a SEARCH result."""

    label = ""


SEARCH_TERM = re.compile(r'([\w.:/-]+)\s*=\s*"([^"]*)"|([\w.:/-]+)\s*=\s*([^\s"]+)|"([^"]*)"|(\S+)')


def search(store: MetricStore, expression: str, stat: str, period: int, start: float, end: float) -> list[Labeled]:
    """SEARCH('{Namespace,DimA,DimB} MetricName="x" DimA="v" word', ...): every matching metric."""
    m = re.match(r"\s*\{([^}]*)\}\s*(.*)$", expression)
    schema, rest = (m.group(1), m.group(2)) if m else ("", expression)
    parts = [p.strip().strip('"') for p in schema.split(",") if p.strip()]
    namespace, dim_names = (parts[0], set(parts[1:])) if parts else (None, None)
    exact: dict[str, str] = {}
    words: list[str] = []
    for k1, v1, k2, v2, quoted, bare in SEARCH_TERM.findall(rest):
        if k1 or k2:
            exact[k1 or k2] = v1 if k1 else v2
        elif (quoted or bare) and (quoted or bare) not in ("AND", "OR", "NOT", "(", ")"):
            words.append(quoted or bare)
    out = []
    for ns, name, dims in sorted(store.metrics()):
        if namespace is not None and (ns != namespace or {k for k, _ in dims} != dim_names):
            continue
        values = dict(dims)
        if "MetricName" in exact and name != exact["MetricName"]:
            continue
        if any(values.get(k) != v for k, v in exact.items() if k not in ("MetricName", "Namespace")):
            continue
        haystack = " ".join([name, *values.values()])
        if any(w not in haystack for w in words):
            continue
        series = Labeled(store.series(ns, name, dims, stat, period, start, end))
        varying = [v for k, v in dims if k not in exact]
        series.label = " ".join(varying) or name
        out.append(series)
    return out


REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "SUM": lambda v: float(sum(v)),
    "AVG": lambda v: sum(v) / len(v),
    "MIN": lambda v: min(v),
    "MAX": lambda v: max(v),
}


class _Evaluator:
    """Metric math over aligned series: arithmetic and the functions the template uses."""

    def __init__(
        self,
        variables: dict[str, Any],
        timeline: list[float],
        stat_ids: list[str],
        store: MetricStore | None = None,
        start: float = 0.0,
        end: float = 0.0,
    ) -> None:
        self.variables = variables
        self.timeline = timeline
        self.stat_ids = stat_ids
        self.store = store
        self.start = start
        self.end = end

    def eval(self, expression: str) -> Series | float | list[Series]:
        try:
            tree = ast.parse(expression.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"cannot parse expression {expression!r}") from exc
        return self._node(tree.body)

    # element-wise combination; a missing operand makes a missing result (CloudWatch behaviour)
    def _combine(self, a: Any, b: Any, op: Any) -> Any:
        if isinstance(a, dict) or isinstance(b, dict):
            if isinstance(a, dict) and isinstance(b, dict):
                keys = set(a) & set(b)
            else:
                keys = set(a if isinstance(a, dict) else b)
            out = {}
            for k in keys:
                x = a[k] if isinstance(a, dict) else a
                y = b[k] if isinstance(b, dict) else b
                try:
                    r = op(x, y)
                except ZeroDivisionError:
                    continue
                if r is not None and not (isinstance(r, float) and math.isnan(r)):
                    out[k] = float(r)
            return out
        try:
            return float(op(a, b))
        except ZeroDivisionError:
            return math.nan

    def _node(self, node: ast.AST) -> Any:
        import operator as o

        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in self.variables:
                raise ExpressionError(f"unknown metric id {node.id!r}")
            return self.variables[node.id]
        if isinstance(node, ast.List):
            items = [self._node(e) for e in node.elts]
            flat: list[Any] = []
            for item in items:
                flat.extend(item if isinstance(item, list) else [item])
            return flat
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return self._combine(self._node(node.operand), -1.0, o.mul)
        if isinstance(node, ast.BinOp):
            ops = {ast.Add: o.add, ast.Sub: o.sub, ast.Mult: o.mul, ast.Div: o.truediv, ast.Pow: o.pow}
            if type(node.op) not in ops:
                raise ExpressionError("unsupported operator")
            return self._combine(self._node(node.left), self._node(node.right), ops[type(node.op)])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self._call(node.func.id.upper(), [self._node(a) for a in node.args])
        raise ExpressionError(f"unsupported expression element {ast.dump(node)[:80]}")

    def _call(self, name: str, args: list[Any]) -> Any:
        if name == "SEARCH" and args and isinstance(args[0], str) and self.store is not None:
            stat = args[1] if len(args) > 1 and isinstance(args[1], str) else "Average"
            period = int(args[2]) if len(args) > 2 and not isinstance(args[2], (str, dict, list)) else 300
            return search(self.store, args[0], stat, period, self.start, self.end)
        if name == "METRICS":
            prefix = args[0] if args else ""
            return [self.variables[i] for i in self.stat_ids if i.startswith(prefix)]
        if name in ("SUM", "AVG", "MIN", "MAX") and args:
            reducer = REDUCERS[name]
            arg = args[0]
            if isinstance(arg, list):  # across series, per timestamp
                keys = set().union(*[set(s) for s in arg if isinstance(s, dict)]) if arg else set()
                return {k: float(reducer([s[k] for s in arg if isinstance(s, dict) and k in s])) for k in keys}
            if isinstance(arg, dict):  # a single series reduces to a scalar
                return float(reducer(list(arg.values()))) if arg else math.nan
            return float(arg)
        if name == "FILL" and len(args) == 2:
            series, fill = args
            if not isinstance(series, dict):
                return series
            out = dict(series)
            last = None
            for t in self.timeline:
                if t in series:
                    last = series[t]
                elif fill == "REPEAT":
                    if last is not None:
                        out[t] = last
                else:
                    out[t] = float(fill) if not isinstance(fill, dict) else fill.get(t, math.nan)
            return {k: v for k, v in out.items() if not math.isnan(v)}
        raise ExpressionError(f"unsupported function {name}()")


def timeline(start: float, end: float, period: int) -> list[float]:
    first = math.floor(start / period) * period
    return [t for t in range(int(first), int(end), int(period))]


def run_queries(store: MetricStore, queries: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    """GetMetricData semantics over the store; returns every query's series (ascending)."""
    periods = [int(q.get("MetricStat", {}).get("Period") or q.get("Period") or 0) for q in queries]
    default_period = min([p for p in periods if p] or [60])
    line = timeline(start, end, default_period)
    variables: dict[str, Series | list[Series]] = {}
    stat_ids: list[str] = []
    results: dict[str, dict[str, Any]] = {}
    for q in queries:
        if "MetricStat" not in q:
            continue
        ms = q["MetricStat"]
        metric = ms["Metric"]
        dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
        s = store.series(
            metric["Namespace"], metric["MetricName"], dims, ms["Stat"], int(ms["Period"]), start, end, ms.get("Unit")
        )
        variables[q["Id"]] = s
        stat_ids.append(q["Id"])
        results[q["Id"]] = {"series": s, "label": q.get("Label") or metric["MetricName"]}
    evaluator = _Evaluator(variables, line, stat_ids, store, start, end)
    pending = [q for q in queries if "Expression" in q]
    for _ in range(len(pending) + 1):  # expressions may reference each other in any order
        progressed = False
        for q in list(pending):
            try:
                value = evaluator.eval(q["Expression"])
            except ExpressionError as exc:
                if "unknown metric id" in str(exc):
                    continue
                results[q["Id"]] = {"series": {}, "label": q.get("Label") or q["Id"], "error": str(exc)}
                pending.remove(q)
                progressed = True
                continue
            if isinstance(value, list):  # SEARCH / METRICS(): one result per series
                variables[q["Id"]] = value
                results[q["Id"]] = {
                    "many": [
                        {
                            "series": dict(s),
                            "label": " ".join(x for x in (q.get("Label"), getattr(s, "label", "")) if x) or q["Id"],
                        }
                        for s in value
                    ]
                }
                pending.remove(q)
                progressed = True
                continue
            if isinstance(value, float):
                value = {} if math.isnan(value) else {t: value for t in line}
            variables[q["Id"]] = value
            results[q["Id"]] = {"series": value, "label": q.get("Label") or q["Id"]}
            pending.remove(q)
            progressed = True
        if not pending or not progressed:
            break
    for q in pending:
        results[q["Id"]] = {"series": {}, "label": q.get("Label") or q["Id"], "error": "unresolved metric ids"}
    out = []
    for q in queries:
        r = results[q["Id"]]
        for entry in r.get("many", [r]):
            keys = sorted(entry["series"])
            out.append(
                {
                    "id": q["Id"],
                    "label": entry["label"],
                    "return_data": q.get("ReturnData", True) not in (False, "false"),
                    "timestamps": keys,
                    "values": [entry["series"][k] for k in keys],
                    "error": r.get("error"),
                }
            )
    return out


def rounded_start(start: float, now: float | None = None) -> float:
    """GetMetricData's StartTime as CloudWatch uses it: rounded down to the whole minute when less
    than 15 days old, to 5 minutes up to 63 days, else to the hour (so 12:24:12 counts 12:24's
    datapoints, including those before 12:24:12)."""
    age = (time.time() if now is None else now) - start
    step = 60 if age < 15 * 86_400 else 300 if age < 63 * 86_400 else 3_600
    return math.floor(start / step) * step


def install_get_metric_data_patch(store_for: Any) -> None:
    """Serve GetMetricData from the store (exact dimensions, aligned periods, metric math)."""
    from moto.cloudwatch.models import CloudWatchBackend

    def get_metric_data(
        self: Any, queries: list[dict[str, Any]], start_time: Any, end_time: Any, scan_by: str = "TimestampAscending"
    ) -> list[dict[str, Any]]:
        results = run_queries(store_for(self), queries, rounded_start(to_epoch(start_time)), to_epoch(end_time))
        out = []
        for r in results:
            if not r["return_data"]:
                continue
            stamps = [naive_utc(t) for t in r["timestamps"]]
            values = list(r["values"])
            if scan_by == "TimestampDescending":
                stamps.reverse()
                values.reverse()
            out.append(
                {
                    "id": r["id"],
                    "label": r["label"],
                    "values": values,
                    "timestamps": stamps,
                    "status_code": "Complete" if not r["error"] else "InternalError",
                }
            )
        return out

    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign]
