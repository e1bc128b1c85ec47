"""Resource names by convention: the stacks' own definitions (stacks/naming.py has no CDK import)."""

from stacks.naming import (  # noqa: F401
    AGENTS,
    ALARM_PREFIX,
    INJECT_SOURCE,
    OPERATOR_SOURCE,
    alerts_topic_name,
    archive_name,
    audit_log_group_name,
    bus_name,
    decisions_table_name,
    function_name,
    idempotency_table_name,
    monitoring_table_name,
    parameter_prefix,
    sample_alarm_name,
    sample_function_name,
    secret_name,
    stack_names,
)
