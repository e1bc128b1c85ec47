"""The one place that builds Logger, Metrics and Tracer; every module imports them from here."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()

# JMESPath to the correlation id of an agent event; alarms and schedules fall back to the event id.
CORRELATION_ID_PATH = "detail.metadata.correlation_id || id"

# Lambda active tracing (set in the stack) traces every invocation with no code. The X-Ray SDK
# adds subsegments per AWS call but costs ~0.26 s of cold start to import, so it is opt-in, and
# it is not in the core layer (its own botocore is 32 MB): add aws-xray-sdk to
# layers/common/requirements.txt to turn it on.
XRAY_SDK_ENABLED = os.environ.get("SELFHEAL_XRAY_SDK", "false").lower() == "true"


def traced(handler: Callable[..., Any]) -> Callable[..., Any]:
    """`Tracer.capture_lambda_handler` when the X-Ray SDK is enabled, else the handler as is."""
    if not XRAY_SDK_ENABLED:
        return handler
    import importlib.util

    if importlib.util.find_spec("aws_xray_sdk") is None:
        logger.warning("SELFHEAL_XRAY_SDK is on but the X-Ray SDK is not installed: active tracing only")
        return handler
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(handler)
