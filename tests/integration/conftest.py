"""The local cloud for a test module, with the registry and the data store on it.

A module names its dataset contract in `CONTRACT`; the registry fixture declares it. One local cloud per module:
moto is process-global, so modules that use one also share the `local-cloud` xdist group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra.local.cloud import LocalCloud
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.registry import Registry


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with LocalCloud(state_dir=tmp_path_factory.mktemp("loopml")) as cloud:
        yield cloud


@pytest.fixture(scope="module")
def registry(cloud: LocalCloud, request: pytest.FixtureRequest) -> Registry:
    registry = Registry(DynamoTable(cloud.names.registry_table, cloud.client("dynamodb")), actor="test")
    registry.declare_dataset(request.module.CONTRACT)
    return registry


@pytest.fixture(scope="module")
def store(cloud: LocalCloud) -> S3ObjectStore:
    return S3ObjectStore(cloud.client("s3"))


@pytest.fixture
def s3_event(cloud: LocalCloud) -> Callable[[str, str | None], dict[str, Any]]:
    """An S3 ObjectCreated event for an object version of the data bucket, shaped as S3 sends it."""

    def event(key: str, version_id: str | None) -> dict[str, Any]:
        bucket = cloud.names.data_bucket
        return {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "us-east-1",
                    "eventTime": "2026-01-01T00:00:00.000Z",
                    "eventName": "ObjectCreated:Put",
                    "userIdentity": {"principalId": "AWS:X"},
                    "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                    "responseElements": {"x-amz-request-id": "A", "x-amz-id-2": "B"},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "c",
                        "bucket": {
                            "name": bucket,
                            "ownerIdentity": {"principalId": "X"},
                            "arn": f"arn:aws:s3:::{bucket}",
                        },
                        "object": {"key": key, "size": 1, "eTag": "e", "versionId": version_id, "sequencer": "1"},
                    },
                }
            ]
        }

    return event
