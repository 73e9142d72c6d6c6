"""S3 ObjectCreated under batch/ -> one batch scoring execution per uploaded object version (outputs are ignored)."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from loopml_core.adapters.pipeline import StepFunctionsRunner
from loopml_core.batch.settings import BatchSettings
from loopml_core.logic.batch import BatchStarter
from loopml_core.observability import logger, metrics, tracer
from loopml_core.s3_events import uploaded_objects


@cache
def starter() -> BatchStarter:
    settings = BatchSettings.from_env()
    assert settings.state_machine_arn, "BATCH_STATE_MACHINE_ARN is part of this function's declared environment"
    return BatchStarter(StepFunctionsRunner(settings.state_machine_arn))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=S3Model)
def lambda_handler(event: S3Model, context: LambdaContext) -> dict[str, Any]:
    batches = []
    for upload in uploaded_objects(event):
        started = starter().start(upload.bucket, upload.key, upload.version_id)
        logger.info("batch upload", extra=started)
        if "execution" in started:
            metrics.add_metric(name="BatchesStarted", unit=MetricUnit.Count, value=1)
        batches.append(started)
    return {"batches": batches}
