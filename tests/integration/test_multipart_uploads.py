"""Uploads above 8 MB arrive as multipart uploads (boto3's transfer manager and `aws s3 cp` switch at 8 MB): on the
local cloud they validate, version and train like small ones, and every copy of them reads back checksum-valid."""

from __future__ import annotations

import base64
import hashlib
import inspect
import io
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from infra import declaration as decl
from infra.demo import data
from infra.local.cloud import REGION, LocalCloud
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.contract import load_contract
from loopml_core.models import UploadStatus
from loopml_core.registry import Registry

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
# The demo contract, with the quickest algorithm: what is under test is how a multipart upload travels (S3 event,
# validation, the versioned copy, training reading that copy), not how long a forest takes on 230,000 rows.
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text() + "algorithm: logistic_regression\n")
MULTIPART_THRESHOLD = TransferConfig().multipart_threshold  # boto3's default, the AWS CLI's too: 8 MiB


def test_moto_internals_the_multipart_fixes_rely_on() -> None:
    from moto.s3 import notifications
    from moto.s3.models import FakeKey, S3Backend
    from moto.s3.utils import compute_checksum

    assert list(inspect.signature(S3Backend.copy_object).parameters)[:4] == [
        "self",
        "src_key",
        "dest_bucket_name",
        "dest_key_name",
    ]
    assert list(inspect.signature(S3Backend.complete_multipart_upload).parameters) == [
        "self",
        "bucket_name",
        "multipart_id",
        "body",
    ]
    assert list(inspect.signature(notifications.send_event).parameters) == ["account_id", "event_name", "bucket", "key"]
    assert list(inspect.signature(compute_checksum).parameters)[:2] == ["body", "algorithm"]
    assert {"checksum_value", "checksum_type", "checksum_parts"} <= set(inspect.signature(FakeKey).parameters)


@pytest.fixture(scope="module")
def served(cloud: LocalCloud) -> Iterator[Any]:
    """The local cloud's AWS endpoint as `loopml local up` serves it to the AWS CLI: an S3 client over HTTP."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION)
    server.stop()


def crc32(body: bytes) -> str:
    return base64.b64encode(struct.pack(">I", zlib.crc32(body))).decode()


def multipart_upload(s3: Any, bucket: str, key: str, body: bytes) -> str:
    """What `aws s3 cp` does with a file this size; returns the new object version."""
    assert len(body) > MULTIPART_THRESHOLD
    s3.upload_fileobj(io.BytesIO(body), bucket, key)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ETag"].strip('"').endswith(f"-{-(-len(body) // TransferConfig().multipart_chunksize)}")
    return str(head["VersionId"])


@pytest.mark.parametrize("client", ["in-process", "served"])
def test_a_copy_of_a_multipart_upload_reads_back_with_checksum_validation(
    cloud: LocalCloud, request: pytest.FixtureRequest, client: str
) -> None:
    s3 = cloud.client("s3") if client == "in-process" else request.getfixturevalue("served")
    bucket = cloud.names.artifact_bucket  # no upload trigger here: S3 alone
    body = bytes(range(256)) * (9 * 2**20 // 256)
    version = multipart_upload(s3, bucket, f"scratch/{client}/big.bin", body)

    copied = s3.copy_object(
        Bucket=bucket,
        Key=f"scratch/{client}/copy.bin",
        CopySource={"Bucket": bucket, "Key": f"scratch/{client}/big.bin", "VersionId": version},
    )

    # A copy is a single-part object: its checksum is of its whole content, and botocore validates it on GetObject.
    assert copied["CopyObjectResult"]["ChecksumCRC32"] == crc32(body)
    reply = s3.get_object(Bucket=bucket, Key=f"scratch/{client}/copy.bin", ChecksumMode="ENABLED")
    assert reply["Body"].read() == body
    assert (reply["ChecksumCRC32"], reply["ChecksumType"]) == (crc32(body), "FULL_OBJECT")
    # The multipart original keeps its composite checksum (of the parts' checksums), which botocore does not check.
    original = s3.get_object(Bucket=bucket, Key=f"scratch/{client}/big.bin", ChecksumMode="ENABLED")
    assert original["Body"].read() == body
    assert original["ChecksumType"] == "COMPOSITE" and original["ChecksumCRC32"].endswith("-2")


def test_a_multipart_upload_validates_versions_and_trains_like_a_small_one(cloud: LocalCloud) -> None:
    registry = Registry(DynamoTable(cloud.names.registry_table, cloud.client("dynamodb")), actor="test")
    registry.declare_dataset(CONTRACT)
    store = S3ObjectStore(cloud.client("s3"))
    bucket, key = cloud.names.data_bucket, "incoming/churn/big.csv"
    # Prices as a billing system computes them, unrounded: wide rows keep the file past 8 MiB and training short.
    records = [
        {**record, "monthly_charges": record["monthly_charges"] + (i % 97) / 9973}
        for i, record in enumerate(data.customers(230_000, seed=11))
    ]
    body = data.to_csv(records)

    # When a file past the multipart threshold is uploaded as the AWS CLI would
    before = len(cloud.runner.invocations)
    version = multipart_upload(cloud.client("s3"), bucket, key, body)
    deadline = time.monotonic() + 240
    while "loopml-status" not in (tags := store.tags(bucket, key, version)) and time.monotonic() < deadline:
        time.sleep(0.2)
    cloud.wait_for_idle(timeout=300)

    # Then it is validated once (S3 sends one event for a multipart upload), accepted and versioned as it is
    assert [i.function for i in cloud.runner.invocations[before:]].count("validate_upload") == 1
    assert tags["loopml-status"] == "accepted", tags
    [outcome] = registry.uploads("churn")
    assert outcome.status is UploadStatus.ACCEPTED and outcome.source_version_id == version
    dataset_version = registry.dataset_version("churn", 1)
    assert dataset_version.rows == len(records)
    assert dataset_version.sha256 == hashlib.sha256(body).hexdigest()
    # and the versioned copy reads back as any client reads it, botocore validating its checksum (this read failed
    # with FlexibleChecksumError)
    copy = dataset_version.object
    s3 = cloud.client("s3")
    assert s3.get_object(Bucket=copy.bucket, Key=copy.key, VersionId=copy.version_id)["Body"].read() == body

    # and it trains a champion from that version
    [execution] = cloud.pipeline_executions()
    assert cloud.wait_for_execution(execution).status == "SUCCEEDED"
    champion = registry.champion_version("churn")
    assert champion.version == 1 and champion.dataset_version == 1
