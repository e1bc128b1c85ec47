"""The CLI's naming convention (selfheal/names.py, kept free of aws_cdk for a fast start)
must match the stacks (stacks/constants.py)."""

from __future__ import annotations

import pytest

from selfheal import names


@pytest.mark.parametrize("env", ["dev", "prod", "team-a"])
def test_cli_names_match_the_stacks(env: str) -> None:
    from stacks import constants

    assert names.bus_name(env) == constants.bus_name(env)
    assert names.decisions_table_name(env) == constants.decisions_table_name(env)
    assert names.monitoring_table_name(env) == constants.monitoring_table_name(env)
    assert names.idempotency_table_name(env) == constants.idempotency_table_name(env)
    assert names.parameter_prefix(env) == constants.parameter_prefix(env)
    for agent in names.AGENTS:
        assert names.function_name(env, agent) == constants.function_name(env, agent)
    assert constants.AGENT_SOURCES["operator"] == names.OPERATOR_SOURCE
    assert names.ALARM_PREFIX == constants.ALARM_PREFIX
