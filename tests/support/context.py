"""A LambdaContext stand-in with the attributes Powertools reads."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class FakeLambdaContext:
    function_name: str = "selfheal-test-agent"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:selfheal-test-agent"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timeout_s: float = 180.0
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self.timeout_s - (time.monotonic() - self._started)) * 1000)
