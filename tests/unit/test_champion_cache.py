"""A warm predict container reads the champion alias at most every TTL: no registry read per request, and a
promotion or rollback reaches it within that bound."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from infra.demo import data
from infra.local.seed import register_model
from loopml_core import routing
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.table import InMemoryTable
from loopml_core.capture import ListSink
from loopml_core.contract import load_contract
from loopml_core.logic.inference import PredictionService
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

    def query(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().query(*args, **kwargs)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def artifacts() -> dict[str, bytes]:
    """Two models that answer differently: v1 a boosted ensemble, v2 a logistic regression on other data."""
    v2_contract = CONTRACT.model_copy(update={"algorithm": "logistic_regression"})
    return {
        "run-1": train(CONTRACT, pd.DataFrame(data.customers(400, seed=1))).onnx_model,
        "run-2": train(v2_contract, pd.DataFrame(data.customers(400, seed=2, shifted=True))).onnx_model,
    }


@pytest.fixture
def world(artifacts):
    store, table = InMemoryObjectStore(), CountingTable()
    registry = Registry(table)
    registry.declare_dataset(CONTRACT)
    for run, artifact in artifacts.items():
        register_model(registry, store, "artifacts", "churn", artifact, promote=run == "run-1", dataset_rows=400)
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


# --- canary, A/B and shadow on the request path ----------------------------------------------------------------


MANY = data.requests_for(data.customers(40, seed=11))


def answers(service: PredictionService, **kwargs) -> list[dict]:
    return service.predict("churn", MANY, "req-a", **kwargs).predictions


def test_a_canary_answers_each_client_with_the_version_routing_chose_every_time(world):
    # Given v2 deployed as a canary to half the clients
    service, registry, _, clock = world
    registry.deploy("churn", 2, "canary", 50, "try v2")
    clock.now += 5.0
    state = registry.serving_state("churn")
    # When clients with keys ask, twice each
    served = {}
    for client in (f"client-{i}" for i in range(200)):
        first = service.predict("churn", RECORDS, f"{client}-1", client_key=client)
        again = service.predict("churn", RECORDS, f"{client}-2", client_key=client)
        # Then each client got one version, the one routing picks for it, and says so
        assert (
            first.version == again.version == routing.route(state, client_key=client, request_id="x").answering_version
        )
        assert first.variant == ("challenger" if first.version == 2 else "champion")
        served[client] = first.version
    # And both versions answered a share near the weight (binomial, 200 clients: 5 sigma is ±35)
    assert 65 <= sum(v == 2 for v in served.values()) <= 135
    # And the two versions really are different models
    assert answers(service, client_key=next(c for c, v in served.items() if v == 1)) != answers(
        service, client_key=next(c for c, v in served.items() if v == 2)
    )


def test_a_shadow_never_changes_the_answer_and_scores_after_it(world):
    service, registry, _, clock = world
    sink = service.capture
    # Given the champion's answers with no deployment
    alone = answers(service)
    # When v2 shadows it
    registry.deploy("churn", 2, "shadow", None, "watch v2")
    clock.now += 5.0
    deferred = []
    before = len(sink.lines)
    shadowed = service.predict("churn", MANY, "req-a", client_key="anyone", defer=deferred.append)
    # Then the champion answered, exactly as before, and only its line was captured with the response
    assert (shadowed.version, shadowed.variant, shadowed.predictions) == (1, "champion", alone)
    [answered] = [json.loads(line) for line in sink.lines[before:]]
    assert answered["version"] == 1 and "shadow" not in answered
    # And after the response v2 scored the same records, captured as a shadow line of the same request
    [task] = deferred
    task()
    [shadow] = [json.loads(line) for line in sink.lines[before + 1 :]]
    assert (shadow["version"], shadow["shadow"], shadow["request_id"], shadow["n"]) == (2, True, "req-a", len(MANY))
    assert shadow["features"] == answered["features"] and shadow["prediction"] != answered["prediction"]


def test_a_failing_shadow_scoring_is_reported_and_the_answer_stands(world, monkeypatch):
    service, registry, _, clock = world
    failures = []
    service._on_shadow_error = failures.append
    assert service.predict("churn", RECORDS, "warm").version == 1  # v1 in memory
    registry.deploy("churn", 2, "shadow", None, "watch v2")
    clock.now += 5.0
    monkeypatch.setattr(service.store, "get", lambda *args: (_ for _ in ()).throw(OSError("artefact gone")))
    service._loaded.pop(("churn", 2), None)
    assert service.predict("churn", RECORDS, "req").version == 1  # v2's artefact cannot be read: v1 answers anyway
    assert [str(f) for f in failures] == ["artefact gone"]


def test_a_rollback_stops_the_challengers_traffic_within_the_ttl(world):
    service, registry, table, clock = world
    assert served(service) == 1  # v1 in memory
    registry.deploy("churn", 2, "canary", 99, "almost everyone")
    clock.now += 5.0
    keys = [f"c{i}" for i in range(30)]
    assert any(service.predict("churn", RECORDS, k, client_key=k).version == 2 for k in keys)
    registry.rollback("churn")
    reads = table.reads
    clock.now += 4.9
    assert table.reads == reads  # within the bound: no registry read, the deployment may still answer
    clock.now += 0.2
    assert {service.predict("churn", RECORDS, k, client_key=k).version for k in keys} == {1}
    assert table.reads == reads + 1  # one read for the champion and the deployment together
    assert ("churn", 2) not in service._loaded  # and the challenger's model is let go
