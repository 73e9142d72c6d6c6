"""Pipeline Catch target: record the failed run and audit it. The champion is never touched here."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.logic.pipeline_steps import RunRequest
from loopml_core.logic.wiring import pipeline_steps
from loopml_core.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    recorded = pipeline_steps("record_failure").record_failure(
        RunRequest.model_validate(event["run"]), event["execution"], event.get("error") or {}
    )
    logger.warning("pipeline run failed", extra=recorded)
    return recorded
