"""`selfheal dashboards render`: each CloudWatch dashboard as one PNG and one HTML page.

The layout and every widget come from the dashboard's own DashboardBody (GetDashboard, so
the same code renders a deployed dashboard or the local one provisioned from the template;
`--assembly` reads the synthesized template instead). Data comes from GetMetricData with the
widget's metrics, math expressions, stat and period; alarms from DescribeAlarms.
"""

from __future__ import annotations

import html
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

GRID_COLUMNS = 24
ROW_INCHES = 0.42
WIDTH_INCHES = 22.0

KNOWN_UNITS = {
    ("AWS/Lambda", "Duration"): "Milliseconds",
    ("AWS/Lambda", "Invocations"): "Count",
    ("AWS/Lambda", "Errors"): "Count",
    ("AWS/Lambda", "Throttles"): "Count",
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): "Count",
}


def unit_of(namespace: str, metric: str) -> str:
    if (namespace, metric) in KNOWN_UNITS:
        return KNOWN_UNITS[(namespace, metric)]
    if (
        namespace.startswith("AgentOps/Costs")
        and "Token" not in metric
        and "Percent" not in metric
        and "Refusal" not in metric
        and "Calls" not in metric
    ):
        return "USD"
    if "Percent" in metric or metric.endswith("Rate") or metric.endswith("Pct"):
        return "Percent"
    return "Count"


# ------------------------------------------------------------------------------ sources


def load_dashboards(target: Any, assembly_dir: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    if assembly_dir is not None:
        from .local.assembly import Assembly

        assembly = Assembly.load(assembly_dir)
        out = []
        for res in assembly.of_type("AWS::CloudWatch::Dashboard"):
            body = res.properties.get("DashboardBody", "{}")
            out.append((res.physical_id, json.loads(body) if isinstance(body, str) else body))
        return out
    cw = target.client("cloudwatch")
    out = []
    kwargs: dict[str, Any] = {}
    while True:
        page = cw.list_dashboards(**kwargs)
        for entry in page.get("DashboardEntries", []):
            body = cw.get_dashboard(DashboardName=entry["DashboardName"])["DashboardBody"]
            out.append((entry["DashboardName"], json.loads(body)))
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return out


def widget_queries(props: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """GetMetricData queries for a metric widget, and per returned query: label, unit, axis."""
    default_stat = props.get("stat", "Average")
    default_period = int(props.get("period", 300))
    queries: list[dict[str, Any]] = []
    info: list[dict[str, Any]] = []
    previous: list[Any] = []
    for i, raw in enumerate(props.get("metrics", [])):
        entry = list(raw)
        options = entry.pop() if entry and isinstance(entry[-1], dict) else {}
        qid = options.get("id") or f"m{i}"
        if not re.fullmatch(r"[a-z][a-zA-Z0-9_]*", qid):
            qid = f"q{i}"
        visible = options.get("visible", True) is not False
        if "expression" in options and not entry:
            query = {"Id": qid, "Expression": options["expression"], "ReturnData": visible}
            if options.get("label"):
                query["Label"] = options["label"]
            queries.append(query)
            label = options.get("label") or ("" if "SEARCH(" in options["expression"] else qid)
            info.append(
                {
                    "id": qid,
                    "label": label,
                    "unit": options.get("unit")
                    or ("Percent" if "%" in label or re.search(r"\brate\b", label.lower()) else ""),
                    "axis": options.get("yAxis", "left"),
                    "color": options.get("color"),
                    "visible": visible,
                }
            )
            continue
        # "." repeats the value at the same position in the previous metric (console shorthand)
        entry = [previous[j] if v == "." and j < len(previous) else v for j, v in enumerate(entry)]
        previous = entry
        namespace, metric, *dims = entry
        dimensions = [{"Name": dims[k], "Value": dims[k + 1]} for k in range(0, len(dims) - 1, 2)]
        stat = options.get("stat", default_stat)
        period = int(options.get("period", default_period))
        label = options.get("label") or (f"{metric} " + " ".join(d["Value"] for d in dimensions)).strip()
        queries.append(
            {
                "Id": qid,
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
                    "Period": period,
                    "Stat": stat,
                },
                "Label": label,
                "ReturnData": visible,
            }
        )
        info.append(
            {
                "id": qid,
                "label": label,
                "unit": unit_of(namespace, metric),
                "axis": options.get("yAxis", "left"),
                "color": options.get("color"),
                "visible": visible,
                "stat": stat,
                "period": period,
            }
        )
    return queries, info


def fetch(cw: Any, queries: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, list[dict[str, Any]]]:
    """Query id -> its result series (a SEARCH expression returns several, told apart by label)."""
    if not queries:
        return {}
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    kwargs: dict[str, Any] = {
        "MetricDataQueries": queries,
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }
    while True:
        resp = cw.get_metric_data(**kwargs)
        for r in resp.get("MetricDataResults", []):
            entry = merged.setdefault(
                (r["Id"], r.get("Label") or ""),
                {"label": r.get("Label"), "timestamps": [], "values": [], "status": r.get("StatusCode")},
            )
            entry["timestamps"].extend(r.get("Timestamps", []))
            entry["values"].extend(r.get("Values", []))
        if not resp.get("NextToken"):
            break
        kwargs["NextToken"] = resp["NextToken"]
    results: dict[str, list[dict[str, Any]]] = {}
    for (qid, _label), entry in merged.items():
        pairs = sorted(zip(entry["timestamps"], entry["values"], strict=True))
        entry["timestamps"] = [p[0] for p in pairs]
        entry["values"] = [p[1] for p in pairs]
        results.setdefault(qid, []).append(entry)
    return results


# ------------------------------------------------------------------------------ drawing


def _plain_markdown(text: str) -> str:
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = re.sub(r"[*_`#>]+", "", text)
    return "\n".join(line.strip() for line in text.splitlines())


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "USD":
        return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"
    if unit == "Percent":
        return f"{value:.1f} %"
    if unit == "Milliseconds":
        return f"{value:,.0f} ms"
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"


def render_dashboards(
    target: Any, *, out_dir: Path, hours: float = 3.0, assembly_dir: Path | None = None
) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(hours=hours)
    cw = target.client("cloudwatch")
    rendered = []
    for name, body in load_dashboards(target, assembly_dir):
        rendered.append(render_one(cw, name, body, start, end, out_dir))
    return {"out_dir": str(out_dir), "start": start.isoformat(), "end": end.isoformat(), "dashboards": rendered}


def render_one(
    cw: Any, name: str, body: dict[str, Any], start: datetime, end: datetime, out_dir: Path
) -> dict[str, Any]:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    widgets = body.get("widgets", [])
    rows = max([int(w.get("y", 0)) + int(w.get("height", 6)) for w in widgets] or [6])
    fig_h = max(3.0, rows * ROW_INCHES + 0.8)
    fig = plt.figure(figsize=(WIDTH_INCHES, fig_h), dpi=80)
    fig.suptitle(name, fontsize=16, fontweight="bold", x=0.01, ha="left")
    top_margin = 0.6 / fig_h
    sections = []
    for w in widgets:
        props = w.get("properties", {})
        wtype = w.get("type", "metric")
        x, y = int(w.get("x", 0)), int(w.get("y", 0))
        width, height = int(w.get("width", 6)), int(w.get("height", 6))
        left = x / GRID_COLUMNS + 0.035 * (width / GRID_COLUMNS) + 0.004
        bottom = 1 - top_margin - (y + height) / rows * (1 - top_margin - 0.02) + 0.05 * height / rows
        ax_w = width / GRID_COLUMNS * 0.88
        ax_h = height / rows * (1 - top_margin - 0.02) * 0.68
        ax = fig.add_axes((left, bottom, ax_w, ax_h))
        title = props.get("title") or (wtype if wtype != "text" else "")
        section: dict[str, Any] = {"type": wtype, "title": title, "series": [], "text": None, "alarms": []}
        if wtype == "text":
            ax.axis("off")
            text = _plain_markdown(props.get("markdown", ""))
            ax.text(0, 1, text, va="top", ha="left", fontsize=9, wrap=True, transform=ax.transAxes)
            section["text"] = props.get("markdown", "")
        elif wtype != "metric":  # the template's dashboards have only metric and text widgets
            ax.axis("off")
            ax.text(0, 1, f"{wtype} widget: not rendered locally", va="top", fontsize=9, transform=ax.transAxes)
            ax.set_title(title, fontsize=11, loc="left")
        else:
            queries, info = widget_queries(props)
            data = fetch(cw, queries, start, end)
            view = props.get("view", "timeSeries")
            shown = [i for i in info if i["visible"]]
            units = sorted({i["unit"] for i in shown if i["unit"]})
            y_label = (props.get("yAxis", {}).get("left", {}) or {}).get("label") or (
                units[0] if len(units) == 1 else ", ".join(units)
            )
            # (query info, label, timestamps, values) per series; SEARCH queries expand to several
            expanded: list[tuple[dict[str, Any], str, list[Any], list[float]]] = []
            for i in shown:
                entries = data.get(i["id"]) or []
                if not entries:
                    expanded.append((i, i["label"], [], []))
                for e in entries:
                    label = i["label"] if len(entries) == 1 else (e.get("label") or i["label"])
                    expanded.append((i, label, e["timestamps"], e["values"]))
            for i, label, _stamps, vals in expanded:
                section["series"].append(
                    {
                        "label": label,
                        "unit": i["unit"],
                        "stat": i.get("stat"),
                        "period": i.get("period"),
                        "datapoints": len(vals),
                        "last": vals[-1] if vals else None,
                        "sum": sum(vals) if vals else None,
                        "min": min(vals) if vals else None,
                        "max": max(vals) if vals else None,
                    }
                )
            if view in ("singleValue", "gauge"):
                ax.axis("off")
                for k, s in enumerate(section["series"]):
                    ax.text(
                        k / max(1, len(section["series"])),
                        0.45,
                        _fmt(s["last"], s["unit"]),
                        fontsize=20,
                        fontweight="bold",
                        transform=ax.transAxes,
                    )
                    ax.text(
                        k / max(1, len(section["series"])), 0.15, s["label"][:40], fontsize=8, transform=ax.transAxes
                    )
            else:
                plotted = 0
                for i, label, stamps, vals in expanded:
                    if not stamps:
                        continue
                    ax.plot(
                        stamps,
                        vals,
                        label=label[:45],
                        marker="o" if len(stamps) < 4 else None,
                        color=i.get("color") if len(expanded) == len(shown) else None,
                        linewidth=1.5,
                    )
                    plotted += 1
                ax.set_xlim(mdates.date2num(start), mdates.date2num(end))
                ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
                ax.tick_params(labelsize=7)
                ax.set_ylabel(y_label, fontsize=8)
                if units == ["USD"]:  # dollars, not 1e-5 offsets
                    from matplotlib.ticker import FuncFormatter

                    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"${v:,.6f}".rstrip("0").rstrip(".")))
                ax.set_xlabel("time (UTC)", fontsize=7)
                ax.grid(alpha=0.3)
                left_axis = props.get("yAxis", {}).get("left", {}) or {}
                if "min" in left_axis or "max" in left_axis:
                    ax.set_ylim(left_axis.get("min"), left_axis.get("max"))
                for ann in (props.get("annotations", {}) or {}).get("horizontal", []):
                    if isinstance(ann, dict) and "value" in ann:
                        ax.axhline(
                            float(ann["value"]),
                            color=ann.get("color", "#d62728"),
                            linestyle="--",
                            linewidth=1,
                            label=ann.get("label"),
                        )
                        plotted += 1
                if plotted:
                    ax.legend(fontsize=7, loc="upper left")
                else:
                    ax.text(
                        0.5,
                        0.5,
                        "No data",
                        ha="center",
                        va="center",
                        fontsize=11,
                        color="#7f7f7f",
                        transform=ax.transAxes,
                    )
            ax.set_title(title, fontsize=11, loc="left")
        sections.append(section)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    png = out_dir / f"{safe}.png"
    fig.savefig(png)
    plt.close(fig)
    page = out_dir / f"{safe}.html"
    page.write_text(_html(name, png.name, sections, start, end))
    return {
        "name": name,
        "png": str(png),
        "html": str(page),
        "widgets": len(widgets),
        "png_bytes": png.stat().st_size,
        "titles": [s["title"] for s in sections if s["title"]],
    }


def _html(name: str, png: str, sections: list[dict[str, Any]], start: datetime, end: datetime) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "section{margin-bottom:1.5em}.ALARM{color:#d62728}.OK{color:#2ca02c}.INSUFFICIENT_DATA{color:#7f7f7f}</style></head><body>",
        f"<h1>{e(name)}</h1><p>{e(start.strftime('%Y-%m-%d %H:%M'))} to {e(end.strftime('%H:%M'))} UTC</p>",
        f"<img src='{e(png)}' alt='{e(name)}' style='max-width:100%'>",
    ]
    for s in sections:
        parts.append(f"<section><h2>{e(s['title'] or s['type'])}</h2>")
        if s["text"] is not None:
            parts.append(f"<pre>{e(s['text'])}</pre>")
        if s["alarms"]:
            parts.append(
                "<ul>"
                + "".join(f"<li class='{e(a['state'])}'>{e(a['alarm'])}: {e(a['state'])}</li>" for a in s["alarms"])
                + "</ul>"
            )
        if s["series"]:
            parts.append(
                "<table><tr><th>series</th><th>unit</th><th>stat</th><th>period (s)</th><th>datapoints</th><th>last</th><th>min</th><th>max</th><th>sum</th></tr>"
            )
            for r in s["series"]:
                parts.append(
                    f"<tr><td>{e(str(r['label']))}</td><td>{e(r['unit'] or '')}</td><td>{e(str(r['stat'] or ''))}</td><td>{e(str(r['period'] or ''))}</td>"
                    f"<td>{r['datapoints']}</td><td>{e(_fmt(r['last'], r['unit']))}</td><td>{e(_fmt(r['min'], r['unit']))}</td>"
                    f"<td>{e(_fmt(r['max'], r['unit']))}</td><td>{e(_fmt(r['sum'], r['unit']))}</td></tr>"
                )
            parts.append("</table>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
