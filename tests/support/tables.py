"""The DataStack's tables, created in moto (or the local emulator) from the synthesized template."""

from __future__ import annotations

import os

import boto3

from selfheal_core import catalog
from tests.support.template import ENV, table_definitions


def create_tables(
    decisions_name: str, monitoring_name: str, idempotency_name: str, validations_name: str | None = None
) -> None:
    """Call inside `mock_aws()` (or against the local emulator). The validations table is named by
    VALIDATIONS_TABLE_NAME unless given."""
    definitions = table_definitions()
    client = boto3.client("dynamodb")
    for name, template_name in (
        (decisions_name, catalog.decisions_table_name(ENV)),
        (monitoring_name, catalog.monitoring_table_name(ENV)),
        (idempotency_name, catalog.idempotency_table_name(ENV)),
        (validations_name or os.environ["VALIDATIONS_TABLE_NAME"], catalog.validations_table_name(ENV)),
    ):
        client.create_table(TableName=name, **definitions[template_name])
