"""The inference API: Powertools REST resolver over the prediction service. Bad input is a 4xx, never a 500.

No `from __future__ import annotations` here: the resolver reads the route signatures' types at runtime.
"""

import json
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.capture import LogStreamSink
from loopml_core.errors import InvalidRequestError, NotFoundError
from loopml_core.logic.inference import PredictionService
from loopml_core.observability import logger, metrics, tracer
from loopml_core.registry import Registry
from loopml_core.request_json import strict_json
from loopml_core.settings import Settings

app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=strict_json)
MODEL_NAME = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,62}$", description="registered model name")]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[Any] = Field(description="feature records: one object per prediction, keyed by feature name")


@cache
def service() -> PredictionService:
    settings = Settings.from_env()
    return PredictionService(
        S3ObjectStore(),
        Registry(DynamoTable(settings.registry_table), actor="predict"),
        LogStreamSink(),
        settings.max_records_per_request,
        on_capture_error=_capture_failed,
        alias_ttl_s=settings.alias_ttl_seconds,
    )


def _capture_failed(error: Exception) -> None:
    logger.warning("prediction served but not captured", extra={"error": repr(error)})
    metrics.add_metric(name="CaptureErrors", unit=MetricUnit.Count, value=1)


def _error(status: int, error: str, details: list[dict[str, Any]] | None = None) -> Response[str]:
    return Response(status, content_types.APPLICATION_JSON, json.dumps({"error": error, "details": details or []}))


@app.exception_handler(InvalidRequestError)
def _invalid_request(error: InvalidRequestError) -> Response[str]:
    metrics.add_metric(name="InvalidRequests", unit=MetricUnit.Count, value=1)
    return _error(error.status_code, error.message, [p.to_dict() for p in error.details])


@app.exception_handler(RequestValidationError)
def _invalid_body(error: RequestValidationError) -> Response[str]:
    content_type = (app.current_event.headers or {}).get("content-type") or ""
    if app.current_event.body and "json" not in content_type.lower():
        return _error(
            415,
            "send the body as JSON with 'Content-Type: application/json'",
            [{"record": None, "field": None, "message": f"Content-Type was '{content_type or 'missing'}'"}],
        )
    details = []
    for problem in error.errors():
        location = [str(part) for part in problem.get("loc", ()) if part not in ("body", "path")]
        if problem.get("type") == "json_invalid":
            reason = (problem.get("ctx") or {}).get("error") or problem.get("msg", "invalid JSON")
            return _error(
                400, "the request body is not valid JSON", [{"record": None, "field": None, "message": reason}]
            )
        details.append({"record": None, "field": ".".join(location) or None, "message": problem.get("msg", "")})
    return _error(422, "the request does not match the API", details)


@app.exception_handler(UnicodeDecodeError)
def _not_utf8(error: UnicodeDecodeError) -> Response[str]:
    return _error(
        400,
        "the request body is not UTF-8 text",
        [{"record": None, "field": None, "message": f"byte {error.start} cannot be decoded as UTF-8"}],
    )


@app.exception_handler(json.JSONDecodeError)
def _bad_json(error: json.JSONDecodeError) -> Response[str]:
    return _error(
        400,
        "the request body is not valid JSON",
        [{"record": None, "field": None, "message": f"{error.msg} at line {error.lineno} column {error.colno}"}],
    )


@app.exception_handler(NotFoundError)
def _not_found(error: NotFoundError) -> Response[str]:
    return _error(404, str(error))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/models/<name>")
@tracer.capture_method
def describe_model(name: MODEL_NAME) -> dict[str, Any]:
    return service().describe(name)


@app.post("/v1/models/<name>/predict")
@tracer.capture_method
def predict(name: MODEL_NAME, request: Annotated[PredictRequest, Body()]) -> Response[str]:
    request_id = app.current_event.request_context.request_id or "local"
    answer = service().predict(name, request.records, request_id)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(answer.predictions))
    body = {"model": name, "version": answer.version, "request_id": request_id, "predictions": answer.predictions}
    headers = {"X-Model-Version": str(answer.version), "X-Request-Id": request_id}
    return Response(200, content_types.APPLICATION_JSON, json.dumps(body), headers=headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
