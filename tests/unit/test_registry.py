"""The registry on the in-memory table: versions, aliases, idempotency, and the hash-chained audit trail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loopml_core.adapters.table import InMemoryTable, Put
from loopml_core.contract import load_contract
from loopml_core.errors import ConflictError, NotFoundError
from loopml_core.models import DatasetVersion, ModelVersion, ObjectRef, UploadOutcome, UploadStatus
from loopml_core.registry import AUDIT_PK, Event, Registry

CONTRACT = """
name: churn
task: classification
target: churned
features:
  - {name: tenure_months, type: int, min: 0}
  - {name: plan, type: category, values: [basic, pro]}
"""


@pytest.fixture
def registry():
    registry = Registry(InMemoryTable(), actor="test")
    registry.declare_dataset(load_contract(CONTRACT))
    return registry


def _upload(source_version: str, sha: str = "abc") -> UploadOutcome:
    return UploadOutcome(
        dataset="churn",
        source_key="incoming/churn/a.csv",
        source_version_id=source_version,
        status=UploadStatus.ACCEPTED,
        summary="valid",
        sha256=sha,
        at="2026-01-01T00:00:00Z",
    )


def _dataset_version(number: int, sha: str = "abc") -> DatasetVersion:
    return DatasetVersion(
        dataset="churn",
        version=number,
        object=ObjectRef(bucket="b", key=f"k{number}", version_id="v"),
        source_key="incoming/churn/a.csv",
        sha256=sha,
        rows=100,
        contract_version=1,
        created_at="2026-01-01T00:00:00Z",
    )


def _model_version(execution: str, promoted: bool):
    def build(number: int) -> ModelVersion:
        ref = ObjectRef(bucket="a", key=f"models/{execution}", version_id="1")
        return ModelVersion(
            model="churn",
            version=number,
            task="classification",
            dataset_version=1,
            execution=execution,
            artifact=ref,
            baseline=ref,
            metrics={"accuracy": 0.9},
            code_version="test",
            promoted=promoted,
            decision="because",
            created_at="2026-01-01T00:00:00Z",
        )

    return build


def test_declaring_the_same_contract_twice_changes_nothing(registry):
    dataset, changed = registry.declare_dataset(load_contract(CONTRACT))
    assert (dataset.contract_version, changed) == (1, False)
    dataset, changed = registry.declare_dataset(load_contract(CONTRACT.replace("min: 0", "min: 1")))
    assert (dataset.contract_version, changed) == (2, True)
    assert registry.contract("churn").feature("tenure_months").min == 1


def test_dataset_versions_are_numbered_once_per_object_version(registry):
    first = registry.register_dataset_version("churn", upload=_upload("1", "aaa"), build=_dataset_version)
    again = registry.register_dataset_version("churn", upload=_upload("1", "aaa"), build=_dataset_version)
    second = registry.register_dataset_version(
        "churn", upload=_upload("2", "bbb"), build=lambda n: _dataset_version(n, "bbb")
    )
    assert (first.status, first.dataset_version) == (UploadStatus.ACCEPTED, 1)
    assert again == first  # a redelivered event gets the first outcome back, and registers nothing
    assert (second.status, second.dataset_version) == (UploadStatus.ACCEPTED, 2)
    assert registry.latest_dataset_version("churn").version == 2
    assert [a.action for a in registry.audit_records()].count("dataset.version.registered") == 2
    assert [u.source_version_id for u in registry.uploads("churn")] == ["1", "2"]


def test_the_same_content_uploaded_again_is_a_duplicate_of_its_version(registry):
    registry.register_dataset_version("churn", upload=_upload("1"), build=_dataset_version)
    built: list[int] = []

    def build(number: int) -> DatasetVersion:
        built.append(number)
        return _dataset_version(number)

    duplicate = registry.register_dataset_version(
        "churn", upload=_upload("2"), build=build, execution_for=lambda n: f"run-{n}"
    )
    assert (duplicate.status, duplicate.dataset_version, duplicate.execution) == (UploadStatus.DUPLICATE, 1, None)
    assert "same content" in duplicate.summary and "version 1" in duplicate.summary
    assert built == []  # nothing was copied for it
    assert [v.version for v in registry.dataset_versions("churn")] == [1]
    record = registry.audit_records()[-1]
    assert (record.action, record.details["dataset_version"]) == ("dataset.upload.duplicate", 1)
    assert registry.verify_audit().ok


def test_an_accepted_outcome_names_the_run_it_starts(registry):
    outcome = registry.register_dataset_version(
        "churn", upload=_upload("1"), build=_dataset_version, execution_for=lambda n: f"churn-dv{n}-upload"
    )
    assert outcome.execution == "churn-dv1-upload"
    assert registry.upload("churn", "incoming/churn/a.csv@1") == outcome


def test_the_first_outcome_of_an_upload_stands(registry):
    quarantined = _upload("7").model_copy(update={"status": UploadStatus.QUARANTINED, "summary": "bad"})
    assert registry.record_upload(quarantined) == quarantined
    error = quarantined.model_copy(update={"status": UploadStatus.ERROR, "summary": "crashed"})
    assert registry.record_upload(error) == quarantined
    assert [r.action for r in registry.audit_records()] == ["dataset.declared", "dataset.upload.quarantined"]


def test_unknown_dataset_is_not_found(registry):
    with pytest.raises(NotFoundError, match="not declared"):
        registry.contract("fraud")


def test_promotion_moves_the_champion_and_a_loser_leaves_it(registry):
    with pytest.raises(NotFoundError, match="does not exist"):
        registry.champion_version("churn")
    v1, _ = registry.register_model_version(
        "churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload"
    )
    v2, _ = registry.register_model_version(
        "churn", "run-2", _model_version("run-2", False), promote=False, trigger="drift"
    )
    assert (v1.version, v2.version) == (1, 2)
    assert registry.champion_version("churn").version == 1
    registry.set_champion("churn", 2, reason="manual")
    assert registry.champion("churn").version == 2
    actions = [r.action for r in registry.audit_records("model/churn")]
    assert actions == ["model.version.registered", "model.alias.moved", "model.version.registered", "model.alias.moved"]


def test_registering_is_idempotent_per_execution(registry):
    first, created = registry.register_model_version(
        "churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload"
    )
    again, created_again = registry.register_model_version(
        "churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload"
    )
    assert (first.version, created, again.version, created_again) == (1, True, 1, False)
    assert len(registry.model_versions("churn")) == 1


def test_a_failed_run_is_recorded_once_and_the_champion_is_untouched(registry):
    registry.register_model_version("churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload")
    run, created = registry.record_run_failure(
        "churn", "run-2", error="States.TaskFailed", cause="boom", trigger="drift", dataset_version=1
    )
    _, created_again = registry.record_run_failure(
        "churn", "run-2", error="x", cause="y", trigger="drift", dataset_version=1
    )
    assert (run.status.value, created, created_again) == ("FAILED", True, False)
    assert registry.champion("churn").version == 1
    assert registry.audit_records()[-1].action == "pipeline.run.failed"


def test_a_change_that_conflicts_writes_no_audit_record(registry):
    registry.register_model_version("churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload")
    before = len(registry.audit_records())
    with pytest.raises(ConflictError):
        registry._commit(
            [Put({"pk": "MODEL#churn", "sk": "META", "latest_version": 9}, if_absent=True)], [Event("x", "y")]
        )
    assert len(registry.audit_records()) == before
    assert registry.verify_audit().ok


def test_audit_chain_verifies_when_untouched(registry):
    registry.register_model_version("churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload")
    verification = registry.verify_audit()
    assert verification.ok and verification.checked == 3 and verification.problems == []


def _tamper(registry: Registry, seq: int, **changes) -> None:
    item = registry.table.get(AUDIT_PK, f"E#{seq:012d}")
    doc = json.loads(item["doc"])
    doc.update(changes)
    registry.table.put_unconditionally({**item, "doc": json.dumps(doc)})


def test_audit_verify_detects_an_edited_record(registry):
    registry.register_model_version("churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload")
    _tamper(registry, 2, actor="mallory")
    verification = registry.verify_audit()
    assert not verification.ok
    assert any("record 2 was altered" in p for p in verification.problems)


def test_audit_verify_detects_a_record_rehashed_after_editing(registry):
    from loopml_core.registry import audit_hash

    registry.register_model_version("churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload")
    item = registry.table.get(AUDIT_PK, f"E#{2:012d}")
    doc = json.loads(item["doc"])
    doc["details"] = {"forged": True}
    doc["hash"] = audit_hash(doc)  # a careful forger recomputes the hash; the next record's link still breaks
    registry.table.put_unconditionally({**item, "doc": json.dumps(doc)})
    assert any("record 3 does not link" in p for p in registry.verify_audit().problems)


def test_audit_verify_detects_deleted_records(registry):
    registry.register_model_version("churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload")
    table: InMemoryTable = registry.table  # type: ignore[assignment]
    del table._items[(AUDIT_PK, f"E#{2:012d}")]
    assert any("record 2 is missing" in p for p in registry.verify_audit().problems)


def test_audit_verify_detects_a_removed_tail(registry):
    registry.register_model_version("churn", "run-1", _model_version("run-1", True), promote=True, trigger="upload")
    table: InMemoryTable = registry.table  # type: ignore[assignment]
    del table._items[(AUDIT_PK, f"E#{3:012d}")]
    assert any("records were removed" in p for p in registry.verify_audit().problems)


def test_a_writer_that_lost_the_audit_head_retries(registry):
    """Two writers read the same head; the loser's transaction fails on the head and is retried on the new one."""
    table = registry.table
    original_get = table.get
    raced = {"done": False}

    def racing_get(pk, sk):
        item = original_get(pk, sk)
        if (pk, sk) == (AUDIT_PK, "HEAD") and not raced["done"]:
            raced["done"] = True
            other = Registry(table, actor="other")
            state = other.monitor_state("churn")
            other.record_check(state, state, {"status": "ok"})  # moves the head meanwhile
        return item

    table.get = racing_get  # type: ignore[method-assign]
    registry.register_dataset_version("churn", upload=_upload("1"), build=_dataset_version)
    table.get = original_get  # type: ignore[method-assign]
    assert registry.verify_audit().ok
    assert [r.action for r in registry.audit_records()][-2:] == ["model.monitoring.ok", "dataset.version.registered"]


def test_a_label_file_spanning_more_slices_than_a_transaction_takes_lands_once(registry):
    from loopml_core.performance import regression_counts

    counts = {
        (1, f"2026-{m:02d}-{d:02d}"): regression_counts(np.ones(3), np.zeros(3))
        for m in (1, 2, 3, 4)
        for d in range(1, 29)
    }
    outcome = UploadOutcome(
        dataset="churn", source_key="labels/churn/year.csv", status=UploadStatus.ACCEPTED, summary="", at="t", rows=336
    )
    assert len(counts) == 112
    assert registry.record_labels(outcome, counts).source_key == outcome.source_key
    assert registry.record_labels(outcome, counts).source_key == outcome.source_key  # redelivered: nothing twice
    merged = registry.performance("churn", 1)
    assert len(merged) == 112 and all(c.rows == 3 for c in merged.values())


def test_live_performance_is_read_from_a_day_on(registry):
    from loopml_core.performance import regression_counts

    days = ("2026-03-30", "2026-03-31", "2026-04-01")
    counts = {(1, day): regression_counts(np.ones(2), np.zeros(2)) for day in days}
    for name in ("a", "b"):
        outcome = UploadOutcome(
            dataset="churn", source_key=f"labels/churn/{name}.csv", status=UploadStatus.ACCEPTED, summary="", at="t"
        )
        registry.record_labels(outcome, counts)
    assert {day: c.rows for day, c in registry.performance("churn", 1, "2026-03-31T17:00:00Z").items()} == {
        "2026-03-31": 4,  # the day of `since` counts whole, both files merged
        "2026-04-01": 4,
    }
    assert len(registry.performance("churn", 1)) == 3


def test_audit_records_are_read_a_page_at_a_time_and_filtered_by_subject(registry, monkeypatch):
    import loopml_core.registry as registry_module
    from loopml_core.registry import Event

    monkeypatch.setattr(registry_module, "AUDIT_PAGE", 3)  # several pages for a handful of records
    before = len(registry.audit_records())
    for n in range(4):
        registry._commit([], [Event("model.tag.set", f"model/churn{'' if n % 2 else '-b'}/x{n}", {})])
    # a record about another subject whose details mention the prefix is not about it
    registry._commit([], [Event("note", "dataset/churn", {"nested": {"subject": "model/churn/v1"}})])
    every = registry.audit_records()
    assert len(every) == before + 5 and [r.seq for r in every] == sorted(r.seq for r in every)
    assert [r.subject for r in registry.audit_records("model/churn/")] == ["model/churn/x1", "model/churn/x3"]
    both = registry.audit_records("model/churn/", "model/churn-b/")
    assert [r.subject for r in both] == [f"model/churn{'' if n % 2 else '-b'}/x{n}" for n in range(4)]
