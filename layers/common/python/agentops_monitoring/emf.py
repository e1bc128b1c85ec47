"""CloudWatch EMF output through Powertools, one metric set per namespace and dimension values.

Powertools `Metrics` share one metric set class-wide and add a `service` dimension, and an
EMF document carries one namespace and one set of dimension values. So each distinct
(namespace, dimension sets) gets its own `EphemeralMetrics`, created with `service=""` so
no dimension appears that the dashboards do not reference. `flush()` prints them all.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from aws_lambda_powertools.metrics import EphemeralMetrics

Dimensions = Mapping[str, str]


class MetricSink:
    def __init__(self) -> None:
        self._sets: dict[tuple, EphemeralMetrics] = {}
        self._lock = threading.Lock()

    def add(
        self, namespace: str, name: str, value: float, *, dimensions: Sequence[Dimensions], unit: str = "Count"
    ) -> None:
        """`dimensions` lists the dimension sets: the first is primary, others are extra rollups."""
        key = (namespace, tuple(tuple(sorted(d.items())) for d in dimensions))
        with self._lock:
            metrics = self._sets.get(key)
            if metrics is None:
                metrics = self._sets[key] = _metric_set(namespace, dimensions)
            metrics.add_metric(name=name, unit=unit, value=value)

    def flush(self) -> None:
        with self._lock:
            pending, self._sets = self._sets, {}
        for metrics in pending.values():
            if metrics.metric_set:
                metrics.flush_metrics()


def _metric_set(namespace: str, dimensions: Sequence[Dimensions]) -> EphemeralMetrics:
    metrics = EphemeralMetrics(namespace=namespace, service="")
    primary, *rollups = dimensions
    for name, value in primary.items():
        metrics.add_dimension(name=name, value=value)
    for rollup in rollups:
        metrics.add_dimensions(**rollup)
    return metrics
