"""Human-readable tables, `--json` output and a progress indicator for slow steps."""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any


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
        return str(value)

    cells = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    widths = [min(w, 60) for w in widths]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
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
