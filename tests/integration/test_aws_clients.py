"""`aws_client`: botocore clients whose session loads the runtime's own service models quickly (the predict function's
cold start), and which behave as botocore's own on the adapters' calls."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.loaders
import pytest
from botocore.exceptions import UnknownServiceError
from moto import mock_aws

from loopml_core.adapters.object_store import S3ObjectStore, _aws_session, aws_client
from loopml_core.adapters.table import Check, DynamoTable, Put
from loopml_core.errors import ConflictError

CORE = Path(__file__).resolve().parents[2] / "layers" / "core"
BUCKET = "fast-client-bucket"
TABLE = "fast-client-table"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield


def test_object_store_on_a_fast_client_makes_every_call(aws: None) -> None:
    # Given an object store on an S3 client of the fast session
    store = S3ObjectStore(aws_client("s3"))
    # When objects are put, read by version, copied, listed (a paginator) and tagged
    first = store.put(BUCKET, "models/a/model.onnx", b"one")
    store.put(BUCKET, "models/a/model.onnx", b"two")
    copied = store.copy(BUCKET, "models/a/model.onnx", BUCKET, "models/b/model.onnx", first.version_id)
    store.tag(BUCKET, copied.key, {"stage": "test"}, copied.version_id)
    # Then each answers as on botocore's own client
    assert store.get(BUCKET, "models/a/model.onnx", first.version_id) == b"one"
    assert store.get(BUCKET, "models/a/model.onnx") == b"two"
    assert store.size(BUCKET, copied.key) == 3
    assert store.list_keys(BUCKET, "models/") == ["models/a/model.onnx", "models/b/model.onnx"]
    assert store.tags(BUCKET, copied.key, copied.version_id) == {"stage": "test"}


def test_table_on_a_fast_client_reads_queries_and_transacts(aws: None) -> None:
    # Given a table on a DynamoDB client of the fast session
    table = DynamoTable(TABLE, aws_client("dynamodb"))
    # When items are written in a transaction, read and queried
    table.transact([Put({"pk": "M#x", "sk": "V#1", "n": 1}, if_absent=True), Put({"pk": "M#x", "sk": "V#2", "n": 2})])
    # Then reads and queries see them, and a failed condition is the adapter's conflict, as on botocore's client
    assert table.get("M#x", "V#1") == {"pk": "M#x", "sk": "V#1", "n": 1}
    assert [item["sk"] for item in table.query("M#x", "V#", newest_first=True)] == ["V#2", "V#1"]
    with pytest.raises(ConflictError):
        table.transact([Check("M#x", "V#1", {"n": 5}), Put({"pk": "M#x", "sk": "V#3", "n": 3})])
    assert table.get("M#x", "V#3") is None


@pytest.mark.parametrize("service", ["s3", "dynamodb"])
def test_fast_loader_reads_the_same_models_as_botocore(service: str) -> None:
    # Given a fresh loader of the fast session's kind and botocore's own, on the same installed models (fresh: a
    # client's creation may adjust what its loader has cached)
    fast = type(_aws_session().get_component("data_loader"))([])
    fast.services.add(service)
    own = botocore.loaders.Loader()
    # Then every file a client of the service loads is the same data
    for type_name in ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2"):
        assert fast.load_service_model(service, type_name) == own.load_service_model(service, type_name), type_name
    for name in ("endpoints", "partitions", "sdk-default-configuration", "_retry"):
        assert fast.load_data(name) == own.load_data(name), name


def test_fast_loader_knows_only_the_services_asked_for() -> None:
    # Given clients asked for S3 and DynamoDB
    aws_client("s3")
    aws_client("dynamodb")
    loader = _aws_session().get_component("data_loader")
    # Then the loader lists those (not the 400 botocore ships), and an unknown service is refused as botocore does
    assert {"s3", "dynamodb"} <= set(loader.list_available_services("service-2"))
    assert "sqs" not in loader.list_available_services("service-2")
    with pytest.raises(UnknownServiceError):
        aws_client("no-such-service")


def test_importing_the_adapter_loads_no_aws_sdk() -> None:
    # The predict function imports this module at init; botocore must wait for the first request.
    script = "import sys, loopml_core.adapters.object_store; print(sorted(m for m in sys.modules if 'boto' in m))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(CORE), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"
