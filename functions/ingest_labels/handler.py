"""S3 ObjectCreated under labels/ -> check the label file -> join it with captured predictions, or quarantine it."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.logic.labels import LabelIngest
from loopml_core.observability import logger, metrics, tracer
from loopml_core.registry import Registry
from loopml_core.s3_events import uploaded_objects
from loopml_core.settings import Settings


@cache
def ingest() -> LabelIngest:
    settings = Settings.from_env()
    registry = Registry(DynamoTable(settings.registry_table), actor="ingest_labels", anchor=S3AuditAnchor.from_env())
    return LabelIngest(S3ObjectStore(), registry, settings.artifact_bucket)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=S3Model)
def lambda_handler(event: S3Model, context: LambdaContext) -> dict[str, Any]:
    outcomes = []
    for upload in uploaded_objects(event):
        outcome = ingest().ingest(upload).model_dump(mode="json", exclude_none=True)
        logger.info("label file processed", extra={"upload": upload.key, **outcome})
        metrics.add_metric(name=f"Labels{str(outcome['status']).capitalize()}", unit=MetricUnit.Count, value=1)
        outcomes.append(outcome)
    return {"outcomes": outcomes}
