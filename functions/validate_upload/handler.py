"""S3 ObjectCreated under incoming/ -> streamed validation -> version, duplicate or quarantine -> train."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.pipeline import StepFunctionsRunner
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.logic.ingest import Ingestor
from loopml_core.observability import logger, metrics, tracer
from loopml_core.registry import Registry
from loopml_core.s3_events import uploaded_objects
from loopml_core.settings import Settings


@cache
def ingestor() -> Ingestor:
    settings = Settings.from_env()
    assert settings.state_machine_arn, "STATE_MACHINE_ARN is part of this function's declared environment"
    return Ingestor(
        S3ObjectStore(),
        Registry(DynamoTable(settings.registry_table), actor="validate_upload", anchor=S3AuditAnchor.from_env()),
        StepFunctionsRunner(settings.state_machine_arn),
        max_upload_bytes=settings.max_upload_bytes,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=S3Model)
def lambda_handler(event: S3Model, context: LambdaContext) -> dict[str, Any]:
    outcomes = []
    for upload in uploaded_objects(event):
        outcome = ingestor().ingest(upload).model_dump(mode="json", exclude_none=True)
        logger.info("upload processed", extra={"upload": upload.key, **outcome})
        metrics.add_metric(name=f"Uploads{str(outcome['status']).capitalize()}", unit=MetricUnit.Count, value=1)
        outcomes.append(outcome)
    return {"outcomes": outcomes}
