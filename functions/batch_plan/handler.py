"""Batch step: pin the champion's version and cut the file into chunks for the Distributed Map (or refuse it)."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.batch.settings import BatchSettings
from loopml_core.logic.batch import BatchPlanner, ChunkLimits
from loopml_core.observability import logger, metrics, tracer
from loopml_core.registry import Registry


@cache
def planner() -> BatchPlanner:
    settings = BatchSettings.from_env()
    registry = Registry(DynamoTable(settings.registry_table), actor="batch_plan")
    limits = ChunkLimits(rows=settings.chunk_rows, bytes=settings.chunk_bytes)
    return BatchPlanner(S3ObjectStore(), registry, settings.artifact_bucket, limits)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    planned = planner().plan(event["job"], event["execution"])
    logger.info("batch planned", extra={"key": event["job"]["key"], **planned})
    return planned
