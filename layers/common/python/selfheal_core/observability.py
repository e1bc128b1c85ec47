"""The one place that builds Logger, Metrics and Tracer; every module imports them from here."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer()

# JMESPath to the correlation id of an agent event; alarms and schedules fall back to the event id.
CORRELATION_ID_PATH = "detail.metadata.correlation_id || id"
