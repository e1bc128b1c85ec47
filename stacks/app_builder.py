"""Builds every stack for an app (used by app.py and by the infrastructure tests)."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from selfheal_core import catalog

from . import constants
from .data_stack import DataStack
from .pipeline_stack import PipelineStack
from .settings import DeploySettings


def build_app(app: cdk.App) -> dict[str, cdk.Stack]:
    settings = DeploySettings.from_context(app.node)
    names = constants.stack_names(settings.env_name)
    data = DataStack(app, names["data"], settings=settings, description="Selfheal state, alerts and configuration")
    pipeline = PipelineStack(
        app, names["pipeline"], settings=settings, data=data, description="Selfheal agents and routes"
    )
    stacks: dict[str, cdk.Stack] = {"data": data, "pipeline": pipeline}
    try:
        from .monitoring_stack import MonitoringStack
    except ImportError:  # pragma: no cover - only while the monitoring stack is being written
        MonitoringStack = None  # noqa: N806
    if MonitoringStack is not None:
        stacks["monitoring"] = MonitoringStack(
            app,
            names["monitoring"],
            env_name=settings.env_name,
            functions=pipeline.functions,
            # Not agents (no REPORT-line billing of their own), but watched like them.
            helper_functions={"qa-runner": pipeline.qa_runner.function, "approvals": pipeline.approvals.function},
            dead_letter_queues=[
                *pipeline.routes.dead_letter_queues.values(),
                *(a.failures for a in pipeline.agents.values()),
            ],
            event_bus=pipeline.bus,
            rules=pipeline.routes.rules,
            alerts_topic=data.alerts_topic,
            cost_alert_threshold=settings.cost_alert_threshold,
            layer=pipeline.layer,
            analyzer_environment=pipeline.agent_environment,
            decisions_table=data.decisions_table,
            monitoring_table=data.monitoring_table,
            description="Selfheal dashboards, alarms and analyzer",
        )
    if settings.sample_workload:
        from .sample_stack import SampleWorkloadStack

        stacks["sample"] = SampleWorkloadStack(
            app,
            catalog.sample_stack_name(settings.env_name),
            env_name=settings.env_name,
            description="Selfheal sample workload: a function and its errors alarm to heal (demo)",
        )
    for stack in stacks.values():
        cdk.Tags.of(stack).add("project", "selfheal")
        cdk.Tags.of(stack).add("environment", settings.env_name)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    return stacks
