"""Batch step: join the chunks' parts into the output, write the report, tag the input with the outcome.

With `"mode": "failed"` (the state machine's RecordFailure, after a Catch) it writes the failed report instead: the
step that failed, its error and cause, and the chunks that had finished.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.object_writer import S3ObjectWriters
from loopml_core.batch.layout import BatchStatus
from loopml_core.batch.settings import BatchSettings
from loopml_core.logic.batch import BatchFinisher
from loopml_core.observability import logger, metrics, tracer


@cache
def finisher() -> BatchFinisher:
    settings = BatchSettings.from_env()
    return BatchFinisher(S3ObjectStore(), S3ObjectWriters(), settings.artifact_bucket)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("mode") == "failed":
        outcome = finisher().record_failure(event["job"], event["execution"], event["step"], event.get("error"))
    else:
        outcome = finisher().finish(event["job"], event["execution"])
    logger.info("batch finished", extra={"key": event["job"]["key"], **outcome})
    if outcome["status"] == BatchStatus.FAILED:
        metrics.add_metric(name="BatchesFailed", unit=MetricUnit.Count, value=1)
    elif outcome["status"] == BatchStatus.REFUSED:
        metrics.add_metric(name="BatchesRefused", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="BatchesScored", unit=MetricUnit.Count, value=1)
    return outcome
