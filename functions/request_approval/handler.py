"""Pipeline step: a winner that needs a person's approval waits. Records the task token its run waits on and alerts
the approvers (`mode: request`); rejects it when nobody decided in time (`mode: timeout`, the step's timeout)."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.adapters.events import EventBridgePublisher
from loopml_core.adapters.notifier import SnsNotifier
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.logic.approvals import Approvals
from loopml_core.observability import logger, metrics, tracer
from loopml_core.registry import Registry
from loopml_core.settings import Settings


@cache
def approvals() -> Approvals:
    settings = Settings.from_env()
    assert settings.alert_topic_arn, "ALERT_TOPIC_ARN is part of this function's declared environment"
    registry = Registry(
        DynamoTable(settings.registry_table),
        actor="request_approval",
        anchor=S3AuditAnchor.from_env(),
        events=EventBridgePublisher.from_env(),
    )
    return Approvals(registry, SnsNotifier(settings.alert_topic_arn))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    model, version, timeout_s = str(event["model"]), int(event["version"]), int(event["timeout_s"])
    if event.get("mode") == "timeout":
        result = approvals().time_out(model, version, timeout_s)
        logger.warning("approval timed out", extra=result)
        return result
    result = approvals().request(
        model, version, token=str(event["token"]), execution=str(event["execution"]), timeout_s=timeout_s
    )
    logger.info("approval requested", extra=result)
    return result
