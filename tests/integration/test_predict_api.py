"""The inference API on the local cloud, through the gateway and over HTTP: answers, errors, 405s, the OpenAPI
document, capture, and a bounded schemathesis run that finds no server error and no undocumented status."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import urllib.request

import numpy as np
import pandas as pd
import pytest

from infra.declaration import KeyLimits
from infra.keys import ApiGatewayKeys
from infra.local.api_gateway import ApiGateway, ApiServer
from infra.local.seed import register_model
from loopml_core.capture import MAX_LINE_BYTES
from loopml_core.contract import load_contract
from loopml_core.serving import OnnxModel
from loopml_core.training import train

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract(
    """
name: loans
task: classification
target: defaulted
target_values: ["no", "yes"]
features:
  - {name: amount, type: float, min: 0, max: 100000}
  - {name: term_months, type: int, min: 1, max: 120}
  - {name: income, type: float, nullable: true}
  - {name: purpose, type: category, values: [car, home, study, other]}
  - {name: region, type: category, values: [north, south], nullable: true}
"""
)
PREDICT = "/v1/models/loans/predict"
ERROR_KEYS = {"error", "details"}
DETAIL_KEYS = {"record", "field", "message"}


def requests_for(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "amount": round(float(rng.uniform(500, 50_000)), 2),
            "term_months": int(rng.integers(6, 120)),
            "income": None if rng.random() < 0.1 else round(float(rng.lognormal(10, 0.5)), 2),
            "purpose": str(rng.choice(["car", "home", "study", "other"])),
            "region": None if rng.random() < 0.1 else str(rng.choice(["north", "south"])),
        }
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def champion(cloud, registry, store) -> OnnxModel:
    """A model trained on synthetic loans, registered as the champion as the pipeline would leave it."""
    frame = pd.DataFrame(requests_for(800, seed=1))
    risk = frame["amount"] / 20_000 - frame["income"].fillna(20_000) / 40_000 + (frame["purpose"] == "other")
    frame["defaulted"] = np.where(risk > 0.6, "yes", "no")
    onnx_model = train(CONTRACT, frame).onnx_model
    register_model(
        registry, store, cloud.names.artifact_bucket, "loans", onnx_model, dataset_rows=800, metrics={"f1": 0.9}
    )
    return OnnxModel(onnx_model, CONTRACT)


@pytest.fixture(scope="module")
def api(cloud, champion) -> ApiGateway:
    return ApiGateway(cloud)


def call(api: ApiGateway, method: str, path: str, body: bytes = b"", content_type: str | None = "application/json"):
    headers = {"x-api-key": api.default_key or ""}
    if content_type:
        headers["Content-Type"] = content_type
    status, reply_headers, data = api.handle(method, path, headers, body)
    return status, reply_headers, json.loads(data) if data else None


def test_a_thousand_records_are_answered_in_order_exactly_as_the_model_answers(api, champion):
    records = requests_for(1000, seed=2)
    status, headers, body = call(api, "POST", PREDICT, json.dumps({"records": records}).encode())
    assert status == 200 and headers["X-Model-Version"] == "1" and body["version"] == 1
    expected = [{"index": i, **answer} for i, answer in enumerate(champion.predict(records))]
    assert body["predictions"] == expected


def test_one_record_and_its_nulls(api, champion):
    record = {"amount": 900.0, "term_months": 12, "income": None, "purpose": "car", "region": None}
    status, _, body = call(api, "POST", PREDICT, json.dumps({"records": [record]}).encode())
    assert status == 200 and body["predictions"] == [{"index": 0, **champion.predict([record])[0]}]


def test_one_fault_in_a_thousand_records_is_named_by_record_and_field(api):
    records = requests_for(1000, seed=3)
    records[637]["term_months"] = 12.5
    status, _, body = call(api, "POST", PREDICT, json.dumps({"records": records}).encode())
    assert status == 422
    assert body["details"] == [{"record": 637, "field": "term_months", "message": "must be an integer, got 12.5"}]


def _raw(value: str) -> bytes:
    return (
        '{"records": [{"amount": ' + value + ', "term_months": 1, "income": 1, "purpose": "car", "region": null}]}'
    ).encode()


ERRORS = [
    # (method, path, body, content type, status, a detail's field, what its message says)
    ("POST", PREDICT, _raw("NaN"), "application/json", 400, None, "NaN is not a JSON number"),
    ("POST", PREDICT, _raw("1e400"), "application/json", 400, None, "overflows a float64"),
    ("POST", PREDICT, _raw("9" * 5000), "application/json", 400, None, "5000 digits"),
    ("POST", PREDICT, b'{"records": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json", 400, None, "deep"),
    ("POST", PREDICT, b'{"records": [{"purpose": "\xff"}]}', "application/json", 400, None, "UTF-8"),
    ("POST", PREDICT, b'["\\ud800"]', "application/json", 400, None, "surrogate"),
    ("POST", "/v1/models/nope/predict", b'{"records": [{}]}', "application/json", 404, None, None),
    ("GET", "/v1/models/nope", b"", None, 404, None, None),
    (
        "POST",
        PREDICT,
        json.dumps({"records": requests_for(1001, seed=4)}).encode(),
        "application/json",
        413,
        "records",
        "at most 1000",
    ),
    ("POST", PREDICT, b"amount=1", "text/plain", 415, None, "Content-Type was 'text/plain'"),
    ("POST", PREDICT, b"amount=1", "application/x-www-form-urlencoded", 415, None, "Content-Type was"),
    ("POST", PREDICT, b'{"records": []}', "multipart/form-data", 415, None, "Content-Type was"),  # no boundary
    ("POST", PREDICT, b'{"rows": []}', "application/json", 422, "records", None),
    ("POST", PREDICT, _raw("-5"), "application/json", 422, "amount", "below the contract's minimum 0"),
    ("POST", "/v1/models/Not_A_Name/predict", b'{"records": [{}]}', "application/json", 422, "name", None),
]


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status", "field", "says"), ERRORS)
def test_every_error_is_a_documented_status_in_the_one_shape(
    api, method, path, body, content_type, status, field, says
):
    got, _, reply = call(api, method, path, body, content_type)
    assert got == status, reply
    assert set(reply) == ERROR_KEYS and reply["error"]
    assert all(set(detail) == DETAIL_KEYS for detail in reply["details"])
    if field or says:
        assert any(
            (field is None or detail["field"] == field) and (says is None or says in detail["message"])
            for detail in reply["details"]
        ), reply
    document = call(api, "GET", "/v1/openapi.json")[2]
    template = path.replace("/nope", "/{name}").replace("/loans", "/{name}").replace("/Not_A_Name", "/{name}")
    assert str(status) in document["paths"][template][method.lower()]["responses"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", PREDICT, "POST"),
        ("GET", PREDICT, "POST"),
        ("PUT", "/v1/models/loans", "GET"),
        ("POST", "/health", "GET"),
        ("PATCH", "/v1/openapi.json", "GET"),
    ],
)
def test_a_method_a_known_path_does_not_serve_is_a_405_naming_those_it_does(api, method, path, allowed):
    status, headers, reply = call(api, method, path, b"{}")
    assert status == 405 and headers["Allow"] == allowed
    assert set(reply) == ERROR_KEYS and reply["details"] == [
        {"record": None, "field": None, "message": f"allowed: {allowed}"}
    ]


def test_the_openapi_document_lists_every_status_in_the_one_error_shape(api):
    status, headers, document = call(api, "GET", "/v1/openapi.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    operations = {(path, method): op for path, ops in document["paths"].items() for method, op in ops.items()}
    assert set(operations) == {
        ("/health", "get"),
        ("/v1/openapi.json", "get"),
        ("/v1/models/{name}", "get"),
        ("/v1/models/{name}/predict", "post"),
    }
    predict = operations[("/v1/models/{name}/predict", "post")]["responses"]
    assert set(predict) == {"200", "400", "403", "404", "405", "413", "415", "422", "429"}
    assert set(predict["200"]["headers"]) == {"X-Model-Version", "X-LoopML-Variant", "X-Request-Id"}
    parameters = operations[("/v1/models/{name}/predict", "post")]["parameters"]
    assert {(p["name"], p["in"], p["required"]) for p in parameters} >= {("X-LoopML-Key", "header", False)}
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for code in ("400", "404", "405", "415", "422"):
        assert predict[code]["content"]["application/json"]["schema"] == error_ref
    schemas = document["components"]["schemas"]
    assert set(schemas["ErrorBody"]["required"]) == ERROR_KEYS
    assert set(schemas["ErrorDetail"]["properties"]) == DETAIL_KEYS
    assert "HTTPValidationError" not in schemas  # Powertools' own shape is nowhere: every error is ours
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }


def test_a_thousand_records_are_captured_as_sent_in_lines_that_fit_a_log_event(api, cloud, store):
    records = requests_for(1000, seed=5)
    bucket = cloud.names.artifact_bucket
    cloud.flush_deliveries()
    before = set(store.list_keys(bucket, "captures/"))
    status, _, body = call(api, "POST", PREDICT, json.dumps({"records": records}).encode())
    assert status == 200
    cloud.flush_deliveries()
    [key] = sorted(set(store.list_keys(bucket, "captures/")) - before)
    raw = gzip.decompress(store.get(bucket, key)).splitlines()
    assert all(len(line) <= MAX_LINE_BYTES for line in raw)
    mine = [line for line in map(json.loads, raw) if line["request_id"] == body["request_id"]]
    assert sum(line["n"] for line in mine) == 1000
    assert [line["first"] for line in mine] == [sum(m["n"] for m in mine[:i]) for i in range(len(mine))]
    assert [v for line in mine for v in line["features"]["income"]] == [r["income"] for r in records]
    assert [p for line in mine for p in line["prediction"]] == [p["label"] for p in body["predictions"]]


# --- schemathesis against the local API over HTTP --------------------------------------------------------------------

# API Gateway serves no TRACE (the local HTTP server answers it itself): the function never sees one.
SCHEMATHESIS_CONFIG = """
[phases.coverage]
unexpected-methods = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"]
"""
SERVED_MODEL = """
[parameters]
"path.name" = "loans"
"""
# What the function answers is checked in full. Left out: positive_data_acceptance (a record's shape depends on the
# model's contract, which a static document cannot state, so records the schema allows may rightly get a 422) and
# the checks of authentication, which API Gateway does, not the function.
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "response_headers_conformance,negative_data_rejection,unsupported_method,allow_header_conformance"
)


@pytest.fixture(scope="module")
def server(cloud, champion):
    running = ApiServer(cloud, port=0, tls=False).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def unthrottled_key(cloud) -> str:
    """A key whose usage plan does not hold schemathesis back (the default key's would answer it with 429s)."""
    key = ApiGatewayKeys(cloud.client("apigateway")).create(
        "schemathesis", KeyLimits(rate_per_s=100_000, burst=100_000, quota=10_000_000)
    )
    assert key.value
    return key.value


@pytest.mark.parametrize("served_model", [False, True], ids=["any-model-name", "the-served-model"])
def test_schemathesis_finds_no_server_error_and_no_undocumented_status(server, unthrottled_key, tmp_path, served_model):
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG + (SERVED_MODEL if served_model else ""))
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{server.url}/v1/openapi.json",
        "--header",
        f"x-api-key: {unthrottled_key}",
        "--phases",
        "examples,coverage,fuzzing",
        "--checks",
        CHECKS,
        "--max-examples",
        "40",
        "--seed",
        "7",
        "--workers",
        "1",
        "--generation-database",
        "none",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Rate limited" not in done.stdout


def test_the_document_is_served_over_http_with_the_api_key(server):
    headers = {"x-api-key": server.gateway.default_key or ""}
    request = urllib.request.Request(f"{server.url}/v1/openapi.json", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200 and json.loads(reply.read())["info"]["title"] == "LoopML inference API"
