"""`loopml local up` serves real clients: boto3 (as the AWS CLI) on the AWS endpoint, HTTPS for the API."""

from __future__ import annotations

import json
import socket
import threading
import time

import boto3
import pytest
from click.testing import CliRunner
from rich.console import Console

from infra.cli.backend import http_json, read_local_info
from infra.cli.main import cli
from infra.demo import data
from infra.local.rest_api import local_api_key
from infra.local.server import serve

pytestmark = pytest.mark.xdist_group("local-cloud")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def local_up(loopml_home):
    stop = threading.Event()
    port, api_port = _free_port(), _free_port()
    thread = threading.Thread(
        target=serve,
        kwargs={
            "port": port,
            "api_port": api_port,
            "tls": True,
            "drift_every": 3600,
            "console": Console(quiet=True),
            "stop": stop,
        },
    )
    thread.start()
    deadline = time.monotonic() + 60
    while read_local_info() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    yield read_local_info()
    stop.set()
    thread.join(timeout=60)


def _api_key_headers(info: dict) -> dict[str, str]:
    """Every request carries an API key: locally, the key the local cloud provisions (`loopml-local`)."""
    apigateway = boto3.client("apigateway", endpoint_url=info["aws_endpoint"], region_name="us-east-1")
    return {"Content-Type": "application/json", "x-api-key": local_api_key(apigateway)}


def test_real_clients_drive_the_loop(local_up, tmp_path):
    info = local_up
    assert {"aws_endpoint", "api_url", "data_bucket", "registry_table", "state_machine_arn"} <= set(info)
    assert info["api_url"].startswith("https://")
    runner = CliRunner()
    shown = runner.invoke(cli, ["local", "info", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["data_bucket"] == info["data_bucket"]

    contract = tmp_path / "churn.yaml"
    contract.write_text((__import__("infra.declaration").declaration.ROOT / "infra/demo/churn.yaml").read_text())
    assert runner.invoke(cli, ["datasets", "create", "--contract", str(contract)]).exit_code == 0

    # What `aws --endpoint-url ... s3 cp` does: a plain S3 PutObject against the endpoint.
    s3 = boto3.client("s3", endpoint_url=info["aws_endpoint"], region_name="us-east-1")
    s3.put_object(
        Bucket=info["data_bucket"], Key="incoming/churn/jan.csv", Body=data.to_csv(data.customers(500, seed=1))
    )
    sfn = boto3.client("stepfunctions", endpoint_url=info["aws_endpoint"], region_name="us-east-1")
    deadline = time.monotonic() + 120
    status = None
    while time.monotonic() < deadline:
        executions = sfn.list_executions(stateMachineArn=info["state_machine_arn"])["executions"]
        status = executions[0]["status"] if executions else None
        if status in {"SUCCEEDED", "FAILED"}:
            break
        time.sleep(0.2)
    assert status == "SUCCEEDED"

    keyed = _api_key_headers(info)
    body = {"records": data.requests_for(data.customers(2, seed=3))}
    code, headers, reply = http_json("POST", f"{info['api_url']}/v1/models/churn/predict", body, info["ca_cert"], keyed)
    assert code == 200 and headers["X-Model-Version"] == "1" and len(reply["predictions"]) == 2

    verified = runner.invoke(cli, ["audit", "verify"])
    assert verified.exit_code == 0 and "intact" in verified.output
    models = runner.invoke(cli, ["models", "show", "churn", "--json"])
    assert json.loads(models.output)["champion"] == 1

    # Monitoring from the CLI: the check counts what was served since, and its report comes back as one HTML page.
    traffic = {"records": data.requests_for(data.customers(200, seed=4, shifted=True))}
    for _ in range(2):
        code, _, _ = http_json("POST", f"{info['api_url']}/v1/models/churn/predict", traffic, info["ca_cert"], keyed)
        assert code == 200
    checked = runner.invoke(cli, ["drift", "check", "churn", "--json"])
    assert checked.exit_code == 0, checked.output
    check = json.loads(checked.output)
    assert check["rows"] == 402 and check["status"] in {"ok", "drift"}
    assert set(check["features"]["plan"]) >= {"psi", "test", "statistic", "p_value", "drifted"}
    assert check["report"].startswith(f"s3://{info['artifact_bucket']}/reports/churn/")
    page = tmp_path / "report.html"
    fetched = runner.invoke(cli, ["drift", "report", "churn", "--out", str(page)])
    assert fetched.exit_code == 0 and page.read_text().startswith("<!DOCTYPE html>")

    # `loopml predict` sends the local cloud's default key by itself.
    (tmp_path / "requests.json").write_text(json.dumps({"records": data.requests_for(data.customers(1, seed=5))}))
    predicted = runner.invoke(
        cli, ["predict", "churn", "--records", str(tmp_path / "requests.json"), "--client-key", "customer-42"]
    )
    assert (predicted.exit_code, len(json.loads(predicted.stdout)["predictions"]), predicted.stderr.strip()) == (
        0,
        1,
        "answered by churn v1 (champion)",
    ), predicted.output

    subscribed = runner.invoke(cli, ["alerts", "subscribe", "https://hooks.example.com/loopml"])
    assert subscribed.exit_code == 0, subscribed.output
    sns = boto3.client("sns", endpoint_url=info["aws_endpoint"], region_name="us-east-1")
    endpoints = {s["Endpoint"] for s in sns.list_subscriptions()["Subscriptions"]}
    assert "https://hooks.example.com/loopml" in endpoints
    assert runner.invoke(cli, ["alerts", "subscribe", "not-an-endpoint"]).exit_code == 2
