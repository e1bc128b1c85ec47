"""Runtime parameters from SSM: a bad value fails loudly, naming the parameter to fix."""

from __future__ import annotations

import pytest

from selfheal_core.config import ConfigError, parse_parameters


@pytest.mark.parametrize("name", ["scan-thresholds", "apply-windows"])
@pytest.mark.parametrize("value", ["{error_rate_pct: 5}", "", "orders-api: any", "{'*': 'any'}"])
def test_a_json_parameter_that_is_not_json_names_the_parameter(name, value):
    full = f"/selfheal/dev/{name}"
    with pytest.raises(ConfigError, match=f"SSM parameter {full} is not JSON"):
        parse_parameters({full: value, "/selfheal/dev/automation-level": "manual"})


def test_a_json_parameter_with_a_bad_value_names_the_parameter():
    with pytest.raises(ConfigError, match=r"(?s)invalid SSM parameter /selfheal/dev/scan-thresholds: .*error_rate_pct"):
        parse_parameters({"/selfheal/dev/scan-thresholds": '{"error_rate_pct": -1}'})


def test_json_parameters_are_read():
    params = parse_parameters(
        {
            "/selfheal/dev/scan-thresholds": '{"error_rate_pct": 2.5, "latency_p95_ms": 900, "throttles": 0}',
            "/selfheal/dev/apply-windows": '{"orders-api": ["02:00-04:00"], "*": "any"}',
        }
    )
    assert params.scan_thresholds.error_rate_pct == 2.5 and params.scan_thresholds.latency_p95_ms == 900
    assert params.apply_windows == {"orders-api": ["02:00-04:00"], "*": "any"}
