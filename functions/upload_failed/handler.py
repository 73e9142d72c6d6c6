"""On-failure destination of validate_upload, ingest_labels and batch_start: an upload whose handling failed after
Lambda's retries gets the `error` outcome, and one alert."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from loopml_core.adapters.notifier import SnsNotifier
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.logic.upload_failures import BatchFailureHandled, FailedUpload, UploadFailures
from loopml_core.observability import logger, metrics, tracer
from loopml_core.registry import Registry
from loopml_core.s3_events import uploaded_objects
from loopml_core.settings import Settings


class RequestContext(BaseModel):
    requestId: str
    functionArn: str
    condition: str  # RetriesExhausted | EventAgeExceeded
    approximateInvokeCount: int


class ResponseContext(BaseModel):
    statusCode: int | None = None
    executedVersion: str | None = None
    functionError: str | None = None


class DestinationRecord(BaseModel):
    """What Lambda sends an on-failure destination after an asynchronous invocation failed for good.

    A timeout's payload has only `errorMessage`; an event that expired before any attempt may have no response.
    """

    version: str
    timestamp: str
    requestContext: RequestContext
    requestPayload: S3Model
    responseContext: ResponseContext | None = None
    responsePayload: dict[str, Any] | None = None

    def failed_uploads(self) -> list[FailedUpload]:
        error = self.responsePayload or {}
        return [
            FailedUpload(
                bucket=upload.bucket,
                key=upload.key,
                version_id=upload.version_id,
                attempts=self.requestContext.approximateInvokeCount,
                condition=self.requestContext.condition,
                error_type=error.get("errorType"),
                error_message=error.get("errorMessage"),
                request_id=self.requestContext.requestId,
            )
            for upload in uploaded_objects(self.requestPayload)
        ]


@cache
def upload_failures() -> UploadFailures:
    settings = Settings.from_env()
    assert settings.alert_topic_arn, "ALERT_TOPIC_ARN is part of this function's declared environment"
    return UploadFailures(
        S3ObjectStore(),
        Registry(DynamoTable(settings.registry_table), actor="upload_failed", anchor=S3AuditAnchor.from_env()),
        SnsNotifier(settings.alert_topic_arn),
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=DestinationRecord)
def lambda_handler(event: DestinationRecord, context: LambdaContext) -> dict[str, Any]:
    handled = []
    for upload in event.failed_uploads():
        result = upload_failures().handle(upload)
        logger.warning(
            "upload handling failed",
            extra={**result.to_dict(), "error_type": upload.error_type, "error_message": upload.error_message},
        )
        if isinstance(result, BatchFailureHandled):
            if result.tagged:
                metrics.add_metric(name="BatchesError", unit=MetricUnit.Count, value=1)
        elif result.recorded:
            metrics.add_metric(name="UploadsError", unit=MetricUnit.Count, value=1)
        handled.append(result.to_dict())
    return {"uploads": handled}
