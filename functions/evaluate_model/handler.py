"""Pipeline step: check ONNX parity with scikit-learn, then score candidate and champion on the same holdout."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.logic.pipeline_steps import Candidate
from loopml_core.logic.wiring import pipeline_steps
from loopml_core.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    candidate = Candidate.model_validate(event["candidate"])
    evaluation = pipeline_steps("evaluate_model").evaluate(candidate)
    logger.info("evaluated", extra={"model": candidate.model, "promote": evaluation["promote"]})
    return evaluation
