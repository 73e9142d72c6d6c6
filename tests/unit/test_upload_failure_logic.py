"""An upload whose validation failed after Lambda's retries gets the `error` outcome, on fakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loopml_core.adapters.notifier import InMemoryNotifier
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.table import InMemoryTable
from loopml_core.contract import load_contract
from loopml_core.logic.upload_failures import FailedUpload, UploadFailures
from loopml_core.models import DatasetVersion, ObjectRef, UploadOutcome, UploadStatus
from loopml_core.registry import UNDECLARED, Registry
from loopml_core.uploads import dataset_of

BUCKET = "data"
CONTRACT = load_contract("""
name: churn
task: classification
target: churned
features:
  - {name: tenure_months, type: int, min: 0}
""")


class World:
    def __init__(self) -> None:
        self.store = InMemoryObjectStore()
        self.registry = Registry(InMemoryTable(), actor="test")
        self.registry.declare_dataset(CONTRACT)
        self.notifier = InMemoryNotifier()
        self.failures = UploadFailures(self.store, self.registry, self.notifier)

    def upload(self, key: str, **failure: str | int) -> FailedUpload:
        stored = self.store.put(BUCKET, key, b"tenure_months,churned\n1,no\n")
        details: dict[str, str | int] = {
            "attempts": 3,
            "condition": "RetriesExhausted",
            "error_type": "MemoryError",
            "error_message": "out of memory",
            "request_id": "req-1",
            **failure,
        }
        return FailedUpload(bucket=BUCKET, key=key, version_id=stored.version_id, **details)  # type: ignore[arg-type]

    def tags(self, failed: FailedUpload) -> dict[str, str]:
        return self.store.tags(failed.bucket, failed.key, failed.version_id)


@pytest.fixture
def world() -> World:
    return World()


def test_a_failed_validation_gives_the_upload_the_error_outcome(world: World) -> None:
    # Given an upload whose validation crashed on its three attempts
    failed = world.upload("incoming/churn/jan.csv")
    # When the on-failure destination record arrives
    handled = world.failures.handle(failed)
    # Then the upload is tagged, recorded with the reason, audited, and one alert says what happened
    assert handled.status == "error" and handled.recorded and handled.tagged and handled.alerted
    assert world.tags(failed) == {"loopml-status": "error"}
    [outcome] = world.registry.uploads("churn")
    assert outcome.status is UploadStatus.ERROR
    assert outcome.source_key == failed.key and outcome.source_version_id == failed.version_id
    assert outcome.summary == "validation failed after 3 attempts: MemoryError: out of memory"
    [record] = [r for r in world.registry.audit_records("dataset/churn") if r.action != "dataset.declared"]
    assert record.action == "dataset.upload.error"
    assert record.details["source_key"] == failed.key and "MemoryError" in record.details["summary"]
    assert world.registry.verify_audit().ok
    [alert] = world.notifier.sent
    assert failed.key in alert.subject
    assert f"s3://{BUCKET}/{failed.key}" in alert.message and "MemoryError: out of memory" in alert.message
    assert "Nothing was registered" in alert.message
    assert world.registry.dataset("churn").latest_version == 0


@pytest.mark.parametrize(
    ("key", "dataset"),
    [
        ("incoming/churn/jan.csv", "churn"),
        ("incoming/fraud/jan.csv", "fraud"),  # undeclared datasets are recorded under their name, as validation does
        ("incoming/jan.csv", UNDECLARED),
        ("incoming/churn/2026/jan.csv", UNDECLARED),
        ("incoming//jan.csv", UNDECLARED),
        ("labels/churn/june.csv", "churn"),  # a label file belongs to its model's dataset
        ("labels/june.csv", UNDECLARED),
    ],
)
def test_the_dataset_is_the_second_segment_of_the_key_or_undeclared(key: str, dataset: str) -> None:
    assert (dataset_of(key) or UNDECLARED) == dataset


def test_a_label_file_whose_join_kept_failing_gets_the_error_outcome_too(world: World) -> None:
    failed = world.upload("labels/churn/june.csv")
    handled = world.failures.handle(failed)
    assert handled.status == "error" and handled.dataset == "churn" and world.tags(failed) == {"loopml-status": "error"}
    [outcome] = world.registry.uploads("churn")
    assert outcome.summary == "joining the labels failed after 3 attempts: MemoryError: out of memory"


def test_an_upload_at_an_undeclared_location_is_recorded_under_undeclared(world: World) -> None:
    failed = world.upload("incoming/jan.csv")
    handled = world.failures.handle(failed)
    assert handled.dataset == UNDECLARED and handled.recorded
    assert [o.status for o in world.registry.uploads(UNDECLARED)] == [UploadStatus.ERROR]
    assert world.tags(failed)["loopml-status"] == "error"
    assert "Dataset: _undeclared" in world.notifier.sent[0].message


def test_a_second_delivery_of_the_same_failure_changes_nothing(world: World) -> None:
    failed = world.upload("incoming/churn/jan.csv")
    world.failures.handle(failed)
    audit_before = world.registry.audit_records()
    # Lambda delivers destination records at least once
    again = world.failures.handle(failed)
    assert again.status == "error" and not again.recorded and not again.alerted
    assert len(world.registry.uploads("churn")) == 1
    assert world.registry.audit_records() == audit_before
    assert len(world.notifier.sent) == 1
    assert world.tags(failed) == {"loopml-status": "error"}


def test_an_outcome_the_validator_recorded_before_dying_stands(world: World) -> None:
    # Given a validator that quarantined the upload (recorded and tagged) and then crashed
    failed = world.upload("incoming/churn/jan.csv")
    quarantined = UploadOutcome(
        dataset="churn",
        source_key=failed.key,
        source_version_id=failed.version_id,
        status=UploadStatus.QUARANTINED,
        summary="3 rows with a negative tenure_months",
        at="2026-01-01T00:00:00.000000Z",
    )
    world.registry.record_upload(quarantined)
    world.store.tag(BUCKET, failed.key, {"loopml-status": "quarantined"}, failed.version_id)
    # When its failure is delivered
    handled = world.failures.handle(failed)
    # Then the quarantine stands, in the registry and on the object, and the alert says so
    assert handled.status == "quarantined" and not handled.recorded and not handled.tagged and handled.alerted
    assert [o.status for o in world.registry.uploads("churn")] == [UploadStatus.QUARANTINED]
    assert world.tags(failed) == {"loopml-status": "quarantined"}
    assert [r.action for r in world.registry.audit_records("dataset/churn")][1:] == ["dataset.upload.quarantined"]
    assert "already holds this upload's outcome (quarantined)" in world.notifier.sent[0].message


def test_an_accepted_upload_left_untagged_is_tagged_with_its_recorded_outcome(world: World) -> None:
    # Given a validator that registered a version and died before it tagged the upload
    failed = world.upload("incoming/churn/jan.csv")
    accepted = UploadOutcome(
        dataset="churn",
        source_key=failed.key,
        source_version_id=failed.version_id,
        status=UploadStatus.ACCEPTED,
        summary="ok",
        sha256="abc",
        at="2026-01-01T00:00:00.000000Z",
    )

    def build(number: int) -> DatasetVersion:
        return DatasetVersion(
            dataset="churn",
            version=number,
            object=ObjectRef(bucket=BUCKET, key=f"datasets/churn/v{number}/data.csv", version_id="v"),
            source_key=failed.key,
            sha256="abc",
            rows=1,
            contract_version=1,
            created_at="2026-01-01T00:00:00.000000Z",
        )

    world.registry.register_dataset_version("churn", upload=accepted, build=build)
    # When its failure is delivered
    handled = world.failures.handle(failed)
    # Then the tag agrees with the registry, which keeps version 1, and the alert says to check what follows
    assert handled.status == "accepted" and handled.tagged and handled.alerted and not handled.recorded
    assert world.tags(failed) == {"loopml-status": "accepted"}
    assert [o.status for o in world.registry.uploads("churn")] == [UploadStatus.ACCEPTED]
    assert "dataset version 1" in world.notifier.sent[0].message


def test_the_uploaders_own_tags_are_kept(world: World) -> None:
    failed = world.upload("incoming/churn/jan.csv")
    world.store.tag(BUCKET, failed.key, {"team": "growth"}, failed.version_id)
    world.failures.handle(failed)
    assert world.tags(failed) == {"team": "growth", "loopml-status": "error"}


def test_a_long_error_is_cut_and_a_timeout_without_a_type_is_named(world: World) -> None:
    failed = world.upload("incoming/churn/jan.csv", error_type="ValueError", error_message="x" * 5000)
    world.failures.handle(failed)
    summary = world.registry.uploads("churn")[0].summary
    assert summary.startswith("validation failed after 3 attempts: ValueError: xxx") and len(summary) < 600
    timeout = world.upload("incoming/churn/feb.csv", error_type="", error_message="Task timed out after 900.00 seconds")
    world.failures.handle(timeout)
    assert world.registry.upload("churn", f"{timeout.key}@{timeout.version_id}").summary == (  # type: ignore[union-attr]
        "validation failed after 3 attempts: Task timed out after 900.00 seconds"
    )


def test_an_expired_event_with_no_response_is_still_recorded(world: World) -> None:
    failed = world.upload(
        "incoming/churn/jan.csv", attempts=1, condition="EventAgeExceeded", error_type="", error_message=""
    )
    world.failures.handle(failed)
    assert world.registry.uploads("churn")[0].summary == (
        "validation failed after 1 attempt (the event expired before Lambda could retry again): EventAgeExceeded"
    )


def test_an_upload_whose_object_is_gone_is_still_recorded_and_alerted(world: World) -> None:
    failed = FailedUpload(BUCKET, "incoming/churn/gone.csv", "v-missing", attempts=3, condition="RetriesExhausted")
    handled = world.failures.handle(failed)
    assert handled.recorded and handled.alerted and not handled.tagged
    assert world.registry.uploads("churn")[0].status is UploadStatus.ERROR


def test_the_handler_runs_on_the_core_layer_alone() -> None:
    # upload_failed has only the core layer: when validation crashed, this must not crash for want of pyarrow.
    handler = Path(__file__).resolve().parents[2] / "functions" / "upload_failed" / "handler.py"
    script = f"""
import importlib.util, sys
for name in ("pyarrow", "numpy", "pandas", "sklearn", "onnxruntime", "fastparquet"):
    sys.modules[name] = None  # importing any of them now raises ImportError
spec = importlib.util.spec_from_file_location("upload_failed_handler", {str(handler)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(module.lambda_handler)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "layers" / "core")}
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
