"""The sample workload Selfheal heals in `make demo` (context key `sampleWorkload`).

An "orders" function whose faults are chosen by its caller:
- `{"sleep_s": 5}` sleeps 5 s: with its 3 s timeout the invocation times out (an error);
- `{"fail": true}` raises: an error no configuration change can cure.
"""

from __future__ import annotations

import time
from typing import Any

MAX_SLEEP_S = 900.0  # the longest a Lambda invocation can run


class OrderBackendError(RuntimeError):
    """The downstream order store rejected the request."""


def _sleep_seconds(event: dict[str, Any]) -> float:
    raw = event.get("sleep_s", 0)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return 0.0
    if value != value:  # NaN
        return 0.0
    return min(max(value, 0.0), MAX_SLEEP_S)


def handler(event: Any, context: Any) -> dict[str, Any]:
    payload = event if isinstance(event, dict) else {}
    sleep_s = _sleep_seconds(payload)
    if sleep_s:
        time.sleep(sleep_s)
    if payload.get("fail") is True:
        raise OrderBackendError("order store rejected the request (fail=true)")
    return {"ok": True, "slept_s": sleep_s}
