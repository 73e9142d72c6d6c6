"""Requests to the deployed API are SigV4-signed (it uses IAM authorization); local ones are not."""

from __future__ import annotations

import pytest

from infra.cli import backend as backend_module
from infra.cli.backend import Backend, _sigv4_headers
from infra.declaration import Names


@pytest.fixture
def sent(monkeypatch) -> dict:
    """What the CLI would have sent over HTTP: the headers of the last request."""
    sent: dict = {}

    def fake_http_json(method, url, body=None, ca_cert=None, headers=None):
        sent["headers"] = headers
        return 200, {}, {}

    monkeypatch.setattr(backend_module, "http_json", fake_http_json)
    return sent


def deployed_backend() -> Backend:
    return Backend(
        "eu-west-1",
        None,
        "https://abc.execute-api.eu-west-1.amazonaws.com/v1",
        None,
        Names("1", "eu-west-1"),
        sign_requests=True,
        api_key="client-key",
    )


def test_signed_headers_carry_a_sigv4_authorization_for_execute_api():
    headers = _sigv4_headers(
        "POST", "https://abc.execute-api.eu-west-1.amazonaws.com/v1/models/churn/predict", {"records": []}, "eu-west-1"
    )
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/eu-west-1/execute-api/aws4_request" in headers["Authorization"]
    assert headers["Content-Type"] == "application/json" and "X-Amz-Date" in headers


def test_only_the_deployed_backend_signs(sent):
    deployed = deployed_backend()
    deployed.http("GET", "/health")
    assert sent["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256")
    assert sent["headers"]["x-api-key"] == "client-key"  # the API key travels besides the signature
    local = Backend(
        "us-east-1", "http://127.0.0.1:4566", "https://127.0.0.1:8443", None, Names("1", "us-east-1"), api_key="k"
    )
    local.http("GET", "/health")
    assert "Authorization" not in sent["headers"] and sent["headers"]["x-api-key"] == "k"


def test_a_routing_key_is_sent_and_signed_with_the_request(sent):
    deployed = deployed_backend()
    deployed.http("POST", "/v1/models/churn/predict", {"records": []}, {"X-LoopML-Key": "customer-42"})
    assert sent["headers"]["X-LoopML-Key"] == "customer-42"
    assert "x-loopml-key" in sent["headers"]["Authorization"].split("SignedHeaders=")[1]
