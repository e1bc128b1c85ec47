"""What the router, the scheduler and the alarm evaluator need from the runtime around them.

They depend on this Protocol, never on `LocalRuntime`: the runtime implements it, and a test
can hand them a small fake instead of starting a runtime in a child process.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .functions import FunctionPool, FunctionSpec, Invocation
    from .metrics import MetricStore


class Platform(Protocol):
    @property
    def metric_store(self) -> MetricStore:
        """Every datum of the account (what alarms evaluate)."""
        ...

    def backend(self, service: str) -> Any:
        """moto's backend of `service` for the account and region."""
        ...

    def submit(self, function: str, invocation: Invocation) -> None:
        """Queue an asynchronous invocation; LookupError if the function is not part of the app."""
        ...

    def publish_sns(self, topic_arn: str, message: str, subject: str | None, origin: str) -> str: ...

    def put_platform_event(
        self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str], bus: str = "default"
    ) -> None:
        """An event the AWS service itself emits (e.g. aws.cloudwatch)."""
        ...

    def platform_metric(
        self, namespace: str, name: str, value: float, dimension_sets: list[dict[str, str]], unit: str | None = None
    ) -> None:
        """A metric the AWS service itself publishes (e.g. AWS/Events)."""
        ...

    def log_platform(self, message: str) -> None: ...


class FunctionHost(Platform, Protocol):
    """What the Lambda control plane (lambda_api.py) needs besides the platform services."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def pools(self) -> Mapping[str, FunctionPool]:
        """The running worker pool of each function, by name."""
        ...

    @property
    def default_concurrency(self) -> int:
        """Workers per function unless the template (or the API) reserves concurrency."""
        ...

    def add_function(self, spec: FunctionSpec) -> None:
        """Start a pool for a function created through the Lambda API."""
        ...
