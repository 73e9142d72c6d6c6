"""The local cloud for a test module, with the registry and the data store on it.

A module names its dataset contract in `CONTRACT`; the registry fixture declares it. One local cloud per module:
moto is process-global, so modules that use one also share the `local-cloud` xdist group.
"""

from __future__ import annotations

from collections.abc import Iterator

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
