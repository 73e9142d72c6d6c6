"""Pipeline step: train a scikit-learn pipeline on a dataset version and export it to ONNX."""

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
    run = RunRequest.model_validate(event["run"])
    candidate = pipeline_steps("train_model").train(run, event["execution"], memory_mb=context.memory_limit_in_mb)
    logger.info("trained", extra={"model": run.model, "metrics": candidate.metrics})
    return candidate.model_dump(mode="json")
