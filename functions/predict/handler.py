"""The inference API: Powertools REST resolver over the prediction service. Bad input is a 4xx, never a 500.

Every error has one shape, `{"error": str, "details": [{"record", "field", "message"}]}`, documented with each status
a route can answer in the OpenAPI document the API serves at `GET /v1/openapi.json`. A method a known path does not
serve gets a 405 naming the ones it does (`Allow`).

The hot path is columnar and allocation-light (docs/serving.md): a predict body is decoded by a msgspec decoder made
from the model's contract (which checks types, presence, nulls and categories as it reads), the numbers checked
column-wise, the model fed from those columns, the response and the capture line written with orjson. A body that
path refuses is read again strictly, to name each fault. A cold start
imports no AWS SDK until the first request needs the registry, and no X-Ray SDK unless tracing is on.

No `from __future__ import annotations` here: the resolver reads the route signatures' types at runtime.
"""

import gc
import os

# A cold start allocates a great deal and nothing of it is garbage: the cyclic collector would run ~100 passes over it
# before the first answer (25-40 ms). It is switched back on, with everything loaded so far frozen out of its way, once
# the first invocation has answered (`_no_cyclic_gc_during`). Only in a function's environment: a process that merely
# imports this module (a test) keeps its collector.
if "AWS_LAMBDA_FUNCTION_NAME" in os.environ:
    gc.disable()
import base64
import json
import re
from collections.abc import Callable
from functools import cache, wraps
from typing import Annotated, Any

import orjson
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopml_core import routing
from loopml_core.adapters.object_store import S3ObjectStore, aws_client
from loopml_core.adapters.table import DynamoTable
from loopml_core.after_response import AfterResponse
from loopml_core.capture import LogStreamSink
from loopml_core.errors import FieldProblem, InvalidRequestError, NotFoundError
from loopml_core.logic.inference import JsonRequest, PredictionService
from loopml_core.observability import logger, metrics, tracer
from loopml_core.registry import Registry
from loopml_core.request_json import strict_json
from loopml_core.settings import Settings

app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=strict_json)
MODEL_NAME = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,62}$", description="registered model name")]
API_TITLE = "LoopML inference API"
API_KEY_HEADER = "x-api-key"  # API Gateway requires a key on every method (infra/declaration.py)


class ErrorDetail(BaseModel):
    """One fault: the record (its index in `records`) and field it is about, when it is about one, and why."""

    model_config = ConfigDict(defer_build=True)

    record: int | None = Field(description="index of the record at fault in `records`, if any")
    field: str | None = Field(description="the field at fault, if any")
    message: str


class ErrorBody(BaseModel):
    """Every error the function answers: what went wrong, and each field at fault (at most 50)."""

    model_config = ConfigDict(defer_build=True)

    error: str
    details: list[ErrorDetail]


class GatewayMessage(BaseModel):
    """What API Gateway answers itself, before the function runs (no key, a spent usage plan, a body over 10 MB)."""

    model_config = ConfigDict(defer_build=True)

    message: str


ERROR_STATUSES = {
    400: "the body is not JSON a client can have meant (NaN, a number beyond float64, deep nesting, not UTF-8)",
    403: "answered by API Gateway: no valid `x-api-key`, or no such resource",
    404: "no such model, or it has no champion yet",
    405: "the path does not serve this method; `Allow` names the ones it does",
    413: "more records than one request may hold (or, answered by API Gateway, a body over 10 MB)",
    415: "the body is not sent as JSON",
    422: "the request does not match the API or the model's contract; `details` names each record and field",
    429: "answered by API Gateway: the API key's usage plan allows no more requests now",
}
FROM_THE_GATEWAY = frozenset({403, 429})
EVERY_ROUTE = (403, 405, 429)
SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]
SCHEMAS = "#/components/schemas/"


def _documented(ok: str, schema: dict[str, Any], errors: tuple[int, ...]) -> dict[int, Any]:
    """The OpenAPI responses of a route: 200 with `schema`, and each status in `errors`, in the one error shape when
    the function answers it, in API Gateway's when the gateway does."""
    json_content = content_types.APPLICATION_JSON
    responses: dict[int, Any] = {200: {"description": ok, "content": {json_content: {"schema": schema}}}}
    for status in errors:
        body: dict[str, Any] = {"model": GatewayMessage if status in FROM_THE_GATEWAY else ErrorBody}
        if status == 413:
            body = {"schema": {"anyOf": [{"$ref": f"{SCHEMAS}ErrorBody"}, {"$ref": f"{SCHEMAS}GatewayMessage"}]}}
        responses[status] = {"description": ERROR_STATUSES[status], "content": {json_content: body}}
    return responses


class PredictRequest(BaseModel):
    """A predict request's body: the records, checked against the model's contract by the service."""

    model_config = ConfigDict(extra="forbid")

    records: list[Any] = Field(description="feature records: one object per prediction, keyed by feature name")


@cache
def service() -> PredictionService:
    """The prediction service of this container, made at its first request (never at import)."""
    settings = Settings.from_env()
    return PredictionService(
        S3ObjectStore(aws_client("s3")),
        Registry(DynamoTable(settings.registry_table, aws_client("dynamodb")), actor="predict"),
        LogStreamSink(),
        settings.max_records_per_request,
        on_capture_error=_capture_failed,
        alias_ttl_s=settings.alias_ttl_seconds,
        on_shadow_error=_shadow_failed,
    )


def _capture_failed(error: Exception) -> None:
    logger.warning("prediction served but not captured", extra={"error": repr(error)})
    metrics.add_metric(name="CaptureErrors", unit=MetricUnit.Count, value=1)


def _json(document: Any) -> str:
    return orjson.dumps(document).decode()


def _error(status: int, error: str, details: list[dict[str, Any]] | None = None) -> Response[str]:
    return Response(status, content_types.APPLICATION_JSON, _json({"error": error, "details": details or []}))


@app.exception_handler(InvalidRequestError)
def _invalid_request(error: InvalidRequestError) -> Response[str]:
    metrics.add_metric(name="InvalidRequests", unit=MetricUnit.Count, value=1)
    return _error(error.status_code, error.message, [p.to_dict() for p in error.details])


@app.exception_handler(RequestValidationError)
def _invalid_parameters(error: RequestValidationError) -> Response[str]:
    return _does_not_match_the_api(error.errors())


def _does_not_match_the_api(problems: Any) -> Response[str]:
    details = []
    for problem in problems:
        location = [str(part) for part in problem.get("loc", ()) if part not in ("body", "path")]
        details.append({"record": None, "field": ".".join(location) or None, "message": problem.get("msg", "")})
    return _error(422, "the request does not match the API", details)


@app.exception_handler(ValidationError)
def _body_does_not_match_the_api(error: ValidationError) -> Response[str]:
    return _does_not_match_the_api(error.errors())


@app.not_found
def _no_route(error: RouteNotFoundError) -> Response[str]:
    """405 with `Allow` for a known path asked with a method it does not serve (API Gateway sends every method of a
    declared path here), 404 otherwise."""
    method, path = app.current_event.http_method.upper(), app.current_event.path
    allowed = sorted({m for rule, m in ROUTES if rule.fullmatch(path)})
    if not allowed or method in allowed:  # the latter: a path segment with characters no route parameter takes
        return _error(404, f"no route {method} {path}")
    response = _error(
        405,
        f"{method} is not allowed on {path}",
        [{"record": None, "field": None, "message": f"allowed: {', '.join(allowed)}"}],
    )
    response.headers["Allow"] = ", ".join(allowed)
    return response


@app.exception_handler(UnicodeDecodeError)
def _not_utf8(error: UnicodeDecodeError) -> Response[str]:
    return _error(
        400,
        "the request body is not UTF-8 text",
        [{"record": None, "field": None, "message": f"byte {error.start} cannot be decoded as UTF-8"}],
    )


@app.exception_handler(json.JSONDecodeError)
def _bad_json(error: json.JSONDecodeError) -> Response[str]:
    return _error(400, "the request body is not valid JSON", [{"record": None, "field": None, "message": error.msg}])


@app.exception_handler(NotFoundError)
def _not_found(error: NotFoundError) -> Response[str]:
    return _error(404, str(error))


ROUTES: list[tuple[re.Pattern[str], str]] = []  # (path pattern, method) of every route, for 405's `Allow`


def _route(
    method: str, rule: str, *, ok: tuple[str, dict[str, Any]], errors: tuple[int, ...] = (), summary: str
) -> Callable[..., Any]:
    """`app.route`, documented with every status the route answers, and remembered for the 405s of its path."""
    ROUTES.append((re.compile(re.sub(r"<\w+>", "[^/]+", rule)), method))
    responses = _documented(*ok, tuple(sorted({*errors, *EVERY_ROUTE})))
    return app.route(rule, method=method, responses=responses, security=SECURITY, summary=summary)


NUMBER = {"type": "number"}
PREDICTION_SCHEMA = {
    "type": "object",
    "required": ["model", "version", "request_id", "predictions"],
    "properties": {
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "request_id": {"type": "string"},
        "predictions": {
            "type": "array",
            "description": "one per record, in order: a label and class probabilities, or a value",
            "items": {
                "type": "object",
                "required": ["index"],
                "properties": {
                    "index": {"type": "integer"},
                    "label": {"type": "string"},
                    "probabilities": {"type": "object", "additionalProperties": NUMBER},
                    "value": NUMBER,
                },
            },
        },
    },
}
MODEL_SCHEMA = {
    "type": "object",
    "required": ["model", "version", "task", "features"],
    "properties": {
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "task": {"type": "string"},
        "metrics": {"type": "object", "additionalProperties": NUMBER},
        "dataset_version": {"type": "integer"},
        "created_at": {"type": "string"},
        "features": {"type": "array", "items": {"type": "object"}},
    },
}


@_route(
    "GET",
    "/health",
    ok=("the function is up", {"type": "object", "properties": {"status": {"type": "string"}}}),
    summary="liveness of the function",
)
def health() -> dict[str, str]:
    return {"status": "ok"}


@_route("GET", "/v1/openapi.json", ok=("this document", {"type": "object"}), summary="the OpenAPI document")
def openapi_document() -> Response[str]:
    return Response(200, content_types.APPLICATION_JSON, _openapi_json())


@cache
def _openapi_json() -> str:
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    document = orjson.loads(
        app.get_openapi_json_schema(
            title=API_TITLE,
            version="1",
            description=(__doc__ or "").split("\n\n")[1],
            security_schemes={"apiKey": APIKey(name=API_KEY_HEADER, in_=APIKeyIn.header)},
            security=SECURITY,
        )
    )
    predict_operation = document["paths"]["/v1/models/{name}/predict"]["post"]
    _document_body(predict_operation, document.setdefault("components", {}).setdefault("schemas", {}))
    _drop_unreferenced_schemas(document)
    _document_routing(predict_operation)
    return _json(document)


def _document_body(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The predict body, which the route reads itself (`_json_body`) rather than as a parameter."""
    schemas["PredictRequest"] = PredictRequest.model_json_schema(ref_template=SCHEMAS + "{model}")
    operation["requestBody"] = {
        "required": True,
        "content": {content_types.APPLICATION_JSON: {"schema": {"$ref": f"{SCHEMAS}PredictRequest"}}},
    }


def _document_routing(operation: dict[str, Any]) -> None:
    """The headers of progressive delivery, which the handler reads and writes itself rather than as parameters."""
    operation.setdefault("parameters", []).append(
        {
            "name": routing.CLIENT_KEY_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": routing.MAX_CLIENT_KEY_CHARS},
            "description": "the client's routing key: during a canary or A/B test one key always gets one version",
        }
    )
    operation["responses"]["200"]["headers"] = {
        "X-Model-Version": {"description": "the model version that answered", "schema": {"type": "string"}},
        "X-LoopML-Variant": {
            "description": "champion or challenger (a shadow challenger never answers)",
            "schema": {"type": "string", "enum": ["champion", "challenger"]},
        },
        "X-Request-Id": {
            "description": "names the request in captured traffic and labels",
            "schema": {"type": "string"},
        },
    }


def _drop_unreferenced_schemas(document: dict[str, Any]) -> None:
    """Powertools adds a 422 in its own validation-error shape to every route; here every error the function answers
    has the one shape, so those go (a route whose 422 is ours keeps it), and then the schemas nothing refers to."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in _json(responses.get("422", {})):
                del responses["422"]
    schemas = document.get("components", {}).get("schemas", {})
    while True:
        text = _json({key: value for key, value in document.items() if key != "components"}) + _json(schemas)
        unused = [name for name in schemas if f'"#/components/schemas/{name}"' not in text]
        if not unused:
            return
        for name in unused:
            del schemas[name]


@_route(
    "GET",
    "/v1/models/<name>",
    ok=("the champion", MODEL_SCHEMA),
    errors=(404, 422),
    summary="the champion model: version, metrics, features",
)
@tracer.capture_method
def describe_model(name: MODEL_NAME) -> dict[str, Any]:
    return service().describe(name)


@_route(
    "POST",
    "/v1/models/<name>/predict",
    ok=("the champion's predictions", PREDICTION_SCHEMA),
    errors=(400, 404, 413, 415, 422),
    summary="predict with the champion: one answer per record, in order",
)
@tracer.capture_method
def predict(name: MODEL_NAME) -> Response[str]:
    request_id = app.current_event.request_context.request_id or "local"
    request = JsonRequest(_json_body(), _records_in)
    answer = service().predict(name, request, request_id, client_key=_client_key(), defer=after_response.defer)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(answer.predictions))
    body = {"model": name, "version": answer.version, "request_id": request_id, "predictions": answer.predictions}
    headers = {
        "X-Model-Version": str(answer.version),
        "X-LoopML-Variant": answer.variant,
        "X-Request-Id": request_id,
    }
    return Response(200, content_types.APPLICATION_JSON, _json(body), headers=headers)


def _json_body() -> bytes:
    """The request's body as sent, if it is sent as JSON (415 otherwise). The body is read by the model's own decoder
    (`JsonRequest`), not by the resolver, so this route declares its body in the OpenAPI document by hand."""
    event = app.current_event
    content_type = (event.headers or {}).get("content-type") or ""
    if content_type and not content_type.strip().lower().startswith("application/json"):
        raise InvalidRequestError(
            "send the body as JSON with 'Content-Type: application/json'",
            [FieldProblem(None, f"Content-Type was '{content_type}'")],
            415,
        )
    if event.body is None:
        return b""
    if event.is_base64_encoded:
        return base64.b64decode(event.body)
    return event.body.encode("utf-8", "surrogatepass")  # a lone surrogate stays one, for the reader to refuse


def _records_in(body: bytes) -> list[Any]:
    """The records of a body the fast decoder refused, read strictly: a 400 for a body that is not JSON a client can
    have meant, a 422 for JSON that is not a predict request. The records are then checked one by one."""
    return PredictRequest.model_validate(strict_json(body)).records


def _client_key() -> str | None:
    """The client's routing key (`X-LoopML-Key`): one client sees one version during a canary or an A/B test."""
    try:
        return routing.client_key(app.current_event.headers)
    except ValueError as error:
        raise InvalidRequestError(str(error), [FieldProblem(routing.CLIENT_KEY_HEADER, str(error))], 400) from error


def _shadow_failed(error: Exception) -> None:
    logger.warning("shadow scoring failed; the answer was not affected", extra={"error": repr(error)})
    metrics.add_metric(name="ShadowErrors", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()  # after the response: the invocation's own metrics have gone already


# A challenger in shadow scores what the champion answered after the response has gone (an internal extension).
after_response = AfterResponse.for_environment(on_error=_shadow_failed)


def _no_cyclic_gc_during(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Runs each invocation with Python's cyclic garbage collector paused.

    What a request allocates (the parsed body, its columns, the answer) has no reference cycles and is freed by
    reference counting as the request ends, which also takes it off the collector's count. With the collector on, a
    thousand-record request crosses its threshold several times and each pass walks those objects for nothing
    (0.25 ms of 5). Paused, no pass runs and none is owed afterwards.
    """

    first = True

    @wraps(handler)
    def invoke(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        nonlocal first
        if first and not gc.isenabled():
            first = False
            try:
                return handler(event, context)
            finally:
                gc.freeze()  # what the cold start loaded lives as long as the container: never walk it again
                gc.enable()
        if not gc.isenabled():
            return handler(event, context)
        gc.disable()
        try:
            return handler(event, context)
        finally:
            gc.enable()

    return invoke


@after_response.handler
@_no_cyclic_gc_during
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
