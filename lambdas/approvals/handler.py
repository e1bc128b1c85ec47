"""Approvals Lambda behind a function URL (AWS_IAM): authenticated human decisions onto the bus."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from selfheal_core.bus import EventPublisher, Outgoing
from selfheal_core.events import ApprovalV1, DetailType, Metadata
from selfheal_core.incidents import IncidentStore
from selfheal_core.observability import logger

from . import logic


class _BusPublisher:
    def __init__(self, bus_name: str) -> None:
        self.publisher = EventPublisher(bus_name, logic.SOURCE)

    def send(self, detail_type: DetailType, metadata: Metadata, data: ApprovalV1) -> None:
        self.publisher.publish(Outgoing(detail_type.value, metadata, data))


def ports() -> logic.ApprovalPorts:
    return logic.ApprovalPorts(
        incidents=IncidentStore(os.environ["DECISIONS_TABLE_NAME"]),
        publisher=_BusPublisher(os.environ["EVENT_BUS_NAME"]),
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = logic.handle_request(event if isinstance(event, dict) else {}, ports())
    logger.info("approval request", extra={"status": result["statusCode"], "caller": logic.caller_arn(event)})
    return result
