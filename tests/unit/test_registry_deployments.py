"""Deployments in the registry: deploy, ramp, promote, end and roll back, each one transaction with its audit
record; validation; and the one-call serving state the predict path routes on."""

from __future__ import annotations

import pytest

from loopml_core.adapters.table import Check, Delete, InMemoryTable, Put
from loopml_core.contract import load_contract
from loopml_core.errors import ConflictError, NotFoundError
from loopml_core.models import DeliveryMode, ModelVersion, ObjectRef
from loopml_core.registry import AUDIT_PK, Registry

CONTRACT = """
name: churn
task: classification
target: churned
features:
  - {name: tenure_months, type: int, min: 0}
"""


class RecordingTable(InMemoryTable):
    """The in-memory table, counting reads and keeping each transaction it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.queries = 0
        self.transactions: list[list] = []

    def get(self, pk, sk):  # type: ignore[no-untyped-def]
        self.gets += 1
        return super().get(pk, sk)

    def query(self, pk, sk_prefix="", *, newest_first=False, limit=None, sk_from=None):  # type: ignore[no-untyped-def]
        self.queries += 1
        return super().query(pk, sk_prefix, newest_first=newest_first, limit=limit, sk_from=sk_from)

    def transact(self, puts):  # type: ignore[no-untyped-def]
        self.transactions.append(list(puts))
        super().transact(puts)


def _version(execution: str, model: str = "churn"):
    def build(number: int) -> ModelVersion:
        ref = ObjectRef(bucket="a", key=f"models/{execution}", version_id="1")
        return ModelVersion(
            model=model,
            version=number,
            task="classification",
            dataset_version=1,
            execution=execution,
            artifact=ref,
            baseline=ref,
            metrics={"accuracy": 0.9},
            code_version="test",
            promoted=number == 1,
            decision="because",
            created_at="2026-01-01T00:00:00Z",
        )

    return build


@pytest.fixture
def table() -> RecordingTable:
    return RecordingTable()


@pytest.fixture
def registry(table) -> Registry:
    """churn with v1 champion and v2, v3 registered beside it."""
    registry = Registry(table, actor="test")
    registry.declare_dataset(load_contract(CONTRACT))
    for run in ("run-1", "run-2", "run-3"):
        registry.register_model_version("churn", run, _version(run), promote=run == "run-1", trigger="upload")
    return registry


def actions(registry: Registry) -> list[str]:
    return [r.action for r in registry.audit_records("model/churn/alias")]


def test_a_deploy_is_one_transaction_of_the_alias_its_audit_record_and_a_champion_check(registry, table):
    table.transactions.clear()
    deployment, changed = registry.deploy("churn", 2, "canary", 10, reason="try v2 on a tenth")
    assert changed and (deployment.version, deployment.mode, deployment.weight) == (2, DeliveryMode.CANARY, 10)
    assert (deployment.by, deployment.reason, deployment.since) == ("test", "try v2 on a tenth", deployment.changed_at)
    [transaction] = table.transactions
    keys = [(type(w).__name__, w.key) for w in transaction]
    assert ("Put", ("MODEL#churn", "ALIAS#challenger")) in keys
    assert ("Check", ("MODEL#churn", "ALIAS#champion")) in keys  # the champion it was validated against
    assert sum(1 for w in transaction if isinstance(w, Put) and w.item["pk"] == AUDIT_PK) == 2  # record + head
    record = registry.audit_records()[-1]
    assert (record.action, record.subject) == ("model.deployment.started", "model/churn/alias/challenger")
    assert record.details == {
        "version": 2,
        "mode": "canary",
        "weight": 10,
        "champion": 1,
        "reason": "try v2 on a tenth",
    }
    assert registry.verify_audit().ok


def test_the_serving_state_is_one_query(registry, table):
    table.gets = table.queries = 0
    state = registry.serving_state("churn")
    assert (state.champion, state.deployment) == (1, None)
    registry.deploy("churn", 3, "shadow")
    table.gets = table.queries = 0
    state = registry.serving_state("churn")
    assert (state.champion, state.deployment.version, state.deployment.mode) == (1, 3, DeliveryMode.SHADOW)
    assert (table.queries, table.gets) == (1, 0)


def test_the_serving_state_of_an_unknown_model_or_one_without_champion_is_not_found(registry):
    with pytest.raises(NotFoundError, match="'fraud' does not exist"):
        registry.serving_state("fraud")
    registry.register_model_version("fraud", "f-1", _version("f-1", "fraud"), promote=False, trigger="upload")
    with pytest.raises(NotFoundError, match="no champion yet"):
        registry.serving_state("fraud")


def test_the_same_deploy_again_changes_nothing(registry):
    first, _ = registry.deploy("churn", 2, "ab", reason="experiment")
    before = len(registry.audit_records())
    again, changed = registry.deploy("churn", 2, DeliveryMode.AB, 50, reason="retried")
    assert (changed, again) == (False, first) and first.weight == 50  # A/B splits evenly unless told
    assert len(registry.audit_records()) == before


def test_ramping_a_canary_keeps_its_start_and_audits_the_change(registry):
    started, _ = registry.deploy("churn", 2, "canary", 10)
    ramped, changed = registry.deploy("churn", 2, "canary", 50, reason="ramp")
    assert changed and ramped.weight == 50 and ramped.since == started.since
    record = registry.audit_records()[-1]
    assert record.action == "model.deployment.changed"
    assert (record.details["from"], record.details["to"]) == (
        {"mode": "canary", "weight": 10},
        {"mode": "canary", "weight": 50},
    )
    assert registry.serving_state("churn").deployment == ramped


def test_another_version_cannot_be_deployed_over_a_deployment(registry):
    registry.deploy("churn", 2, "canary", 10)
    before = len(registry.audit_records())
    with pytest.raises(ConflictError, match=r"v2 of 'churn' is deployed already.*promote it or roll it back"):
        registry.deploy("churn", 3, "shadow")
    assert registry.deployment("churn").version == 2 and len(registry.audit_records()) == before


@pytest.mark.parametrize(
    ("version", "mode", "weight", "error", "message"),
    [
        (9, "canary", 10, NotFoundError, "no version 9"),
        (1, "canary", 10, ValueError, "v1 is already the champion"),
        (2, "canary", None, ValueError, "a canary needs a weight"),
        (2, "canary", 0, ValueError, "from 1 to 99, got 0"),
        (2, "ab", 100, ValueError, "from 1 to 99, got 100"),
        (2, "canary", 12.5, ValueError, "whole percent"),
        (2, "shadow", 10, ValueError, "shadow takes no weight"),
        (2, "blue-green", 10, ValueError, "unknown delivery mode 'blue-green': one of canary, shadow, ab"),
    ],
)
def test_a_bad_deploy_says_why_and_writes_nothing(registry, version, mode, weight, error, message):
    before = len(registry.audit_records())
    with pytest.raises(error, match=message):
        registry.deploy("churn", version, mode, weight)
    assert registry.deployment("churn") is None and len(registry.audit_records()) == before


def test_a_model_without_a_champion_takes_no_deployment(registry):
    registry.register_model_version("fraud", "f-1", _version("f-1", "fraud"), promote=False, trigger="upload")
    with pytest.raises(NotFoundError, match="no champion yet"):
        registry.deploy("fraud", 1, "shadow")


def test_promote_moves_the_champion_and_ends_the_deployment_in_one_transaction(registry, table):
    registry.deploy("churn", 3, "canary", 25)
    table.transactions.clear()
    champion, ended = registry.promote("churn", reason="v3 wins")
    assert (champion.version, ended.version, ended.weight) == (3, 3, 25)
    [transaction] = table.transactions
    assert any(isinstance(w, Delete) and w.key == ("MODEL#churn", "ALIAS#challenger") for w in transaction)
    state = registry.serving_state("churn")
    assert (state.champion, state.deployment) == (3, None)
    moved, promoted = registry.audit_records()[-2:]
    assert (moved.action, moved.details) == ("model.alias.moved", {"from": 1, "to": 3, "reason": "v3 wins"})
    assert (promoted.action, promoted.details["mode"], promoted.details["champion"]) == (
        "model.deployment.promoted",
        "canary",
        1,
    )
    assert registry.verify_audit().ok


def test_a_retried_promotion_finds_nothing_to_promote_and_says_who_is_champion(registry):
    registry.deploy("churn", 2, "shadow")
    registry.promote("churn")
    with pytest.raises(NotFoundError, match=r"no deployment in progress to promote \(v2 is champion\)"):
        registry.promote("churn")
    assert actions(registry)[-2:] == ["model.alias.moved", "model.deployment.promoted"]


def test_ending_a_deployment_leaves_the_champion_and_is_harmless_twice(registry):
    registry.deploy("churn", 2, "canary", 10)
    ended = registry.end_deployment("churn", reason="errors went up")
    assert ended.version == 2
    assert registry.serving_state("churn").deployment is None and registry.champion("churn").version == 1
    assert registry.end_deployment("churn") is None
    assert actions(registry)[-1] == "model.deployment.ended"
    assert registry.audit_records()[-1].details["reason"] == "errors went up"
    assert registry.verify_audit().ok


def test_rollback_without_a_version_ends_the_deployment_at_once(registry):
    registry.deploy("churn", 3, "ab", 50)
    done = registry.rollback("churn")
    assert (done.champion.version, done.ended.version, done.moved) == (1, 3, False)
    assert registry.serving_state("churn").deployment is None
    with pytest.raises(NotFoundError, match=r"no deployment in progress \(v1 is champion and answers all traffic\)"):
        registry.rollback("churn")


def test_rollback_to_a_version_moves_the_champion_and_ends_the_deployment_together(registry, table):
    registry.set_champion("churn", 2, "manual")
    registry.deploy("churn", 3, "canary", 10)
    table.transactions.clear()
    done = registry.rollback("churn", 1, reason="v2 misbehaves")
    assert (done.champion.version, done.ended.version, done.moved) == (1, 3, True)
    [transaction] = table.transactions
    assert {type(w).__name__ for w in transaction} == {"Put", "Delete"}
    state = registry.serving_state("churn")
    assert (state.champion, state.deployment) == (1, None)
    assert actions(registry)[-2:] == ["model.alias.moved", "model.deployment.ended"]
    assert registry.verify_audit().ok


def test_a_pipeline_promotion_during_a_deployment_keeps_it(registry):
    registry.deploy("churn", 2, "canary", 10)
    registry.register_model_version("churn", "run-4", _version("run-4"), promote=True, trigger="drift")
    state = registry.serving_state("churn")
    assert (state.champion, state.deployment.version) == (4, 2)


def test_a_deploy_that_loses_a_race_to_a_champion_move_writes_nothing(registry, table):
    """Another operator makes v2 champion between the deploy's read and its write: the champion check cancels the
    transaction, and the deploy writes nothing rather than a challenger equal to the champion."""
    original = table.transact

    def racing(puts):  # type: ignore[no-untyped-def]
        if any(isinstance(w, Check) for w in puts):
            table.transact = original  # type: ignore[method-assign]
            Registry(table, actor="other").set_champion("churn", 2, "meanwhile")
        return original(puts)

    table.transact = racing  # type: ignore[method-assign]
    with pytest.raises(ConflictError, match="changed while deploying v2; nothing was deployed"):
        registry.deploy("churn", 2, "canary", 10)
    assert registry.deployment("churn") is None and registry.champion("churn").version == 2
    assert actions(registry)[-1] == "model.alias.moved"
    assert registry.verify_audit().ok


def test_a_ramp_that_loses_a_race_to_a_rollback_does_not_revive_the_deployment(registry, table):
    registry.deploy("churn", 2, "canary", 10)
    original = table.transact

    def racing(puts):  # type: ignore[no-untyped-def]
        if any(isinstance(w, Check) for w in puts):
            table.transact = original  # type: ignore[method-assign]
            Registry(table, actor="other").end_deployment("churn", "rolled back meanwhile")
        return original(puts)

    table.transact = racing  # type: ignore[method-assign]
    with pytest.raises(ConflictError, match="nothing was deployed"):
        registry.deploy("churn", 2, "canary", 50)
    assert registry.deployment("churn") is None  # the rollback stands
    assert actions(registry)[-2:] == ["model.deployment.started", "model.deployment.ended"]
    assert registry.verify_audit().ok


def _race(table: RecordingTable, meanwhile) -> None:  # type: ignore[no-untyped-def]
    """Run `meanwhile` (another operator) just before the first transaction that removes the challenger."""
    original = table.transact

    def racing(puts):  # type: ignore[no-untyped-def]
        if any(isinstance(w, Delete) for w in puts):
            table.transact = original  # type: ignore[method-assign]
            meanwhile(Registry(table, actor="other"))
        return original(puts)

    table.transact = racing  # type: ignore[method-assign]


def _replace(other: Registry) -> None:
    """End the deployment and start another of the same version and weight: only its start time tells it apart."""
    other.end_deployment("churn", "replaced")
    other.deploy("churn", 2, "canary", 10, reason="a new one")


def test_a_promotion_promotes_only_the_deployment_it_read(registry, table):
    registry.deploy("churn", 2, "canary", 10)
    _race(table, _replace)
    with pytest.raises(ConflictError, match="changed while promoting v2; nothing was promoted"):
        registry.promote("churn")
    assert registry.champion("churn").version == 1
    assert registry.deployment("churn").reason == "a new one"
    assert registry.verify_audit().ok


def test_ending_a_deployment_ends_only_the_one_it_read(registry, table):
    registry.deploy("churn", 2, "canary", 10)
    _race(table, _replace)
    with pytest.raises(ConflictError, match="changed while ending it"):
        registry.end_deployment("churn")
    assert registry.deployment("churn").reason == "a new one"


def test_two_rollbacks_at_once_end_the_deployment_once(registry, table):
    registry.deploy("churn", 2, "canary", 10)
    _race(table, lambda other: other.end_deployment("churn", "the other operator"))
    assert registry.end_deployment("churn") is None  # done meanwhile: nothing left to do, nothing written twice
    assert actions(registry).count("model.deployment.ended") == 1
    assert registry.verify_audit().ok


@pytest.mark.parametrize("change", ["deploy", "promote", "end"])
def test_a_change_that_only_lost_the_audit_head_is_retried_and_lands_once(registry, table, change):
    """Another writer (a monitoring check) moves the audit head between the change's read of it and its write: the
    alias conditions still hold, so the change is written again on the new head, once."""
    if change != "deploy":
        registry.deploy("churn", 2, "canary", 10)
    original_get = table.get
    raced = {"done": False}

    def racing_get(pk, sk):  # type: ignore[no-untyped-def]
        item = original_get(pk, sk)
        if (pk, sk) == (AUDIT_PK, "HEAD") and not raced["done"]:
            raced["done"] = True
            other = Registry(table, actor="monitor")
            state = other.monitor_state("churn")
            other.record_check(state, state, {"status": "ok"})
        return item

    table.get = racing_get  # type: ignore[method-assign]
    if change == "deploy":
        registry.deploy("churn", 2, "canary", 10)
    elif change == "promote":
        registry.promote("churn")
    else:
        registry.end_deployment("churn")
    table.get = original_get  # type: ignore[method-assign]
    expected = {
        "deploy": "model.deployment.started",
        "promote": "model.deployment.promoted",
        "end": "model.deployment.ended",
    }
    assert raced["done"] and actions(registry).count(expected[change]) == 1
    assert registry.audit_records()[-1].action == expected[change]
    assert registry.verify_audit().ok
