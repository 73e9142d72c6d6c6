"""Scheduled monitoring check for every model with a champion: captured traffic against the training baseline."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.adapters.events import EventBridgePublisher
from loopml_core.adapters.notifier import SnsNotifier
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.pipeline import StepFunctionsRunner
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.logic.monitor import DriftMonitor
from loopml_core.observability import logger, metrics, tracer
from loopml_core.registry import Registry
from loopml_core.settings import Settings


@cache
def monitor() -> DriftMonitor:
    settings = Settings.from_env()
    assert settings.state_machine_arn and settings.alert_topic_arn, "declared in this function's environment"
    settle = {"settle_seconds": settings.capture_settle_seconds} if settings.capture_settle_seconds else {}
    return DriftMonitor(
        S3ObjectStore(),
        Registry(
            DynamoTable(settings.registry_table),
            actor="drift_check",
            anchor=S3AuditAnchor.from_env(),
            events=EventBridgePublisher.from_env(),
        ),
        StepFunctionsRunner(settings.state_machine_arn),
        SnsNotifier(settings.alert_topic_arn),
        settings.artifact_bucket,
        **settle,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    # A scheduled event checks every model; `detail.model` (e.g. from `loopml drift check NAME`) checks one.
    model = event.detail.get("model") if isinstance(event.detail, dict) else None
    outcomes = [monitor().check(model)] if model else monitor().check_all()
    checks = [outcome.to_dict() for outcome in outcomes]
    for outcome, check in zip(outcomes, checks, strict=True):
        if outcome.status == "drift":
            metrics.add_metric(name="DriftDetected", unit=MetricUnit.Count, value=1)
        if outcome.performance_dropped:
            metrics.add_metric(name="PerformanceDropped", unit=MetricUnit.Count, value=1)
        summary = {k: check[k] for k in ("model", "status", "rows", "drifted", "episode", "action", "alert", "report")}
        logger.info("monitoring check", extra=summary)
    return {"checks": checks}
