"""Batch step, one child execution of the Distributed Map per chunk: score the chunk, write its part and findings."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.object_writer import S3ObjectWriters
from loopml_core.batch.settings import BatchSettings
from loopml_core.logic.batch import ChunkScorer
from loopml_core.observability import logger, metrics, tracer


@cache
def scorer() -> ChunkScorer:
    settings = BatchSettings.from_env()
    return ChunkScorer(S3ObjectStore(), S3ObjectWriters(), settings.artifact_bucket)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scored = scorer().score(event["work"], event["chunk"])
    logger.info("chunk scored", extra={"work": event["work"], **scored})
    metrics.add_metric(name="BatchRowsScored", unit=MetricUnit.Count, value=scored["scored"])
    return scored
