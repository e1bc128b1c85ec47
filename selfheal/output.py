"""Human-readable tables, `--json` output and a progress indicator for slow steps."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

# What would recolour, retitle or rewrite the operator's terminal ("\x1b[2K\rRESOLVED"), or print
# as nothing or as a blank ("rt-st\u200borm" is not "rt-storm"): controls and format characters
# (zero-width, bidirectional, BOM, tags), line and paragraph separators, spaces other than " ",
# variation selectors and the Hangul fillers. Reporters, model output and log lines reach it.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp", "Zs"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
_ASCII_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
# Inside one value a line break would start a forged row or trace line.
_LINE_BREAKS = re.compile("[\n\t]")


def _escaped(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def _unsafe(ch: str) -> bool:
    if ch in "\n\t ":
        return False
    return (
        unicodedata.category(ch) in _UNSAFE_CATEGORIES
        or ch in _BLANK_LETTERS
        or "\ufe00" <= ch <= "\ufe0f"
        or "\U000e0100" <= ch <= "\U000e01ef"
    )


def printable(text: str) -> str:
    """`text` with every such character but newline and tab shown escaped (`\\x1b`, `\\u200b`)."""
    if text.isascii():
        return _ASCII_UNSAFE.sub(lambda m: _escaped(m[0]), text)
    return "".join(_escaped(ch) if _unsafe(ch) else ch for ch in text)


def one_line(value: Any) -> str:
    """A field's value on one line: its newlines and tabs shown escaped (`\\n`)."""
    return _LINE_BREAKS.sub(lambda m: _escaped(m[0]), str(value))


class PrintableStream:
    """A text stream that writes `printable` text: the human-readable output of every verb."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return int(self._stream.write(printable(text)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def raw_stdout() -> Any:
    """Standard output without the escaping, for data verbs (`patch`: an mbox for `git am`)."""
    stream = sys.stdout
    return stream._stream if isinstance(stream, PrintableStream) else stream


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], empty: str = "(none)") -> str:
    """columns: (key, header). Values are shown as given; floats with up to 6 decimals."""
    if not rows:
        return empty

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
        if isinstance(value, (list, dict)):
            return json.dumps(value, default=str)
        return one_line(str(value))

    cells = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    # Middle columns are cut at 60 characters to keep rows aligned; the last one is shown
    # whole (nothing follows it), so a refusal's reason or a decision's text is never lost.
    widths = [min(w, 60) for w in widths[:-1]] + widths[-1:]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * min(w, 60) for w in widths))
    for c in cells:
        lines.append(
            "  ".join(
                (v if len(v) <= w else v[: w - 1] + "…").ljust(w) for v, w in zip(c, widths, strict=True)
            ).rstrip()
        )
    return "\n".join(lines)


def usd(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"${v:,.4f}" if v < 1 else f"${v:,.2f}"


@contextlib.contextmanager
def progress(message: str, *, enabled: bool = True, after_s: float = 1.0) -> Iterator[None]:
    """A spinner on stderr once a step has taken longer than `after_s` (never in --json mode
    on stdout, never when stderr is not a terminal: then one line when it finishes)."""
    if not enabled:
        yield
        return
    done = threading.Event()
    started = time.time()
    tty = sys.stderr.isatty()

    def spin() -> None:
        if done.wait(after_s):
            return
        for frame in itertools.cycle("|/-\\"):
            if tty:
                sys.stderr.write(f"\r{frame} {message} ({time.time() - started:.0f}s)")
                sys.stderr.flush()
            if done.wait(0.2 if tty else 5.0):
                break
            if not tty:
                sys.stderr.write(f"... {message} ({time.time() - started:.0f}s)\n")

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        elapsed = time.time() - started
        if elapsed >= after_s:
            if tty:
                sys.stderr.write("\r" + " " * (len(message) + 16) + "\r")
            sys.stderr.write(f"{message}: done in {elapsed:.1f}s\n")
            sys.stderr.flush()


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
    # One line per entry: a line break inside any value (a summary, a producer's key as the
    # correlation id, a model's reasoning) would start a forged line.
    return "\n".join(one_line(line) for line in lines)


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


def format_analysis(report: dict[str, Any]) -> str:
    """The headline numbers of the analyzer report (lambdas/analyzer's AgentOpsAnalyzer); `--json` has everything."""
    lines = [f"AgentOps analysis, last {report['window_hours']} h"]
    collab = report.get("collaboration") or {}
    flows = collab.get("flows") or []
    if flows:
        lines.append("  message flows: " + ", ".join(f"{f['flow']} {f['count']}" for f in flows))
    anomalies = collab.get("anomalies") or []
    lines.append(f"  collaboration anomalies: {len(anomalies)}")
    for agent, eff in (report.get("effectiveness") or {}).items():
        shown = {k: v for k, v in eff.items() if isinstance(v, (int, float, str)) and k != "agent"}
        lines.append(f"  {agent}: " + ", ".join(f"{k}={v}" for k, v in list(shown.items())[:6]))
    opps = report.get("optimization_opportunities") or []
    lines.append(f"  optimization opportunities: {len(opps)}")
    for o in opps[:5]:
        saving = o.get("estimated_monthly_savings_usd")
        suffix = f" (saves ~{usd(saving)}/month)" if saving else ""
        lines.append(f"    - {o['type']}: {o['recommendation']}{suffix}")
    storms = report.get("duplicate_storms") or []
    if storms:
        lines.append(f"  duplicate storms: {len(storms)}")
    open_by_status = report.get("open_incidents_by_status") or {}
    if open_by_status:
        lines.append("  open incidents: " + ", ".join(f"{k} {v}" for k, v in open_by_status.items()))
    return "\n".join(lines)
