"""A warm predict container reads the champion alias at most every TTL: no registry read per request, and a
promotion or rollback reaches it within that bound."""

from __future__ import annotations

import pandas as pd
import pytest

from infra.demo import data
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.table import InMemoryTable
from loopml_core.capture import ListSink
from loopml_core.contract import load_contract
from loopml_core.logic.inference import PredictionService
from loopml_core.models import DatasetVersion, ModelVersion, ObjectRef, UploadOutcome, UploadStatus
from loopml_core.registry import Registry
from loopml_core.training import train

CONTRACT = load_contract(
    """
name: churn
task: classification
target: churned
target_values: ["no", "yes"]
features:
  - {name: tenure_months, type: int, min: 0, max: 600}
  - {name: monthly_charges, type: float, min: 0, max: 1000}
  - {name: support_calls, type: int, min: 0, max: 100}
  - {name: plan, type: category, values: [basic, plus, pro]}
  - {name: region, type: category, values: [north, south, east, west]}
"""
)
RECORDS = data.requests_for(data.customers(2, seed=9))


class CountingTable(InMemoryTable):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, pk: str, sk: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().get(pk, sk)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def artifact() -> bytes:
    return train(CONTRACT, pd.DataFrame(data.customers(400, seed=1))).onnx_model


@pytest.fixture
def world(artifact):
    store, table = InMemoryObjectStore(), CountingTable()
    registry = Registry(table)
    registry.declare_dataset(CONTRACT)
    stored = store.put("artifacts", "model.onnx", artifact)
    ref = ObjectRef(bucket="artifacts", key="model.onnx", version_id=stored.version_id)
    upload = UploadOutcome(dataset="churn", source_key="k", status=UploadStatus.ACCEPTED, summary="", at="t")
    registry.register_dataset_version(
        "churn",
        upload=upload,
        build=lambda n: DatasetVersion(
            dataset="churn",
            version=n,
            object=ref,
            source_key="k",
            sha256="s",
            rows=400,
            contract_version=1,
            created_at="t",
        ),
    )
    for run in ("run-1", "run-2"):
        registry.register_model_version(
            "churn",
            run,
            lambda n, run=run: ModelVersion(
                model="churn",
                version=n,
                task="classification",
                dataset_version=1,
                execution=run,
                artifact=ref,
                baseline=ref,
                metrics={},
                code_version="t",
                promoted=True,
                decision="t",
                created_at="t",
            ),
            promote=run == "run-1",
            trigger="upload",
        )
    clock = Clock()
    service = PredictionService(store, registry, ListSink(), alias_ttl_s=5.0, clock=clock)
    return service, registry, table, clock


def served(service: PredictionService) -> int:
    return service.predict("churn", RECORDS, "req").version


def test_steady_state_requests_read_no_registry(world):
    service, _, table, clock = world
    assert served(service) == 1
    reads = table.reads
    for _ in range(100):
        clock.now += 0.01
        assert served(service) == 1
    assert table.reads == reads  # a second of traffic: not one read


@pytest.mark.parametrize("move", ["promotion", "rollback"])
def test_an_alias_move_reaches_a_warm_container_within_the_ttl(world, move):
    service, registry, _, clock = world
    if move == "rollback":
        registry.set_champion("churn", 2, "a promotion first")
        clock.now += 5.0
    before, after = (1, 2) if move == "promotion" else (2, 1)
    assert served(service) == before
    registry.set_champion("churn", after, move)
    clock.now += 4.9
    assert served(service) == before  # still within the bound: the old champion may answer
    clock.now += 0.2
    assert served(service) == after  # past it: never
    assert service.loads == 2
