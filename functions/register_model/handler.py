"""Pipeline step: register the model version; the champion alias moves in the same transaction when it won."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.logic.pipeline_steps import Candidate, RunRequest
from loopml_core.logic.wiring import pipeline_steps
from loopml_core.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    registered = pipeline_steps("register_model").register(
        RunRequest.model_validate(event["run"]), Candidate.model_validate(event["candidate"]), event["evaluation"]
    )
    logger.info("registered", extra=registered)
    return registered
