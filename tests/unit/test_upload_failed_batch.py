"""A batch file whose batch could not be started (batch_start failed on every attempt) gets the `error` outcome on its
tag and one alert, on fakes; no registry record is made for it. The local cloud runs the same through Lambda's
retries and the on-failure destination (tests/integration/test_upload_failed_batch_start.py)."""

from __future__ import annotations

import pytest

from loopml_core.adapters.notifier import InMemoryNotifier
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.table import InMemoryTable
from loopml_core.batch import layout
from loopml_core.logic.upload_failures import BatchFailureHandled, FailedUpload, UploadFailures
from loopml_core.registry import UNDECLARED, Registry

BUCKET = "data"
KEY = "batch/churn/input/april.csv"


class World:
    def __init__(self) -> None:
        self.store = InMemoryObjectStore()
        self.registry = Registry(InMemoryTable(), actor="test")
        self.notifier = InMemoryNotifier()
        self.failures = UploadFailures(self.store, self.registry, self.notifier)

    def upload(self, key: str = KEY, tags: dict[str, str] | None = None) -> FailedUpload:
        stored = self.store.put(BUCKET, key, b"customer_id,tenure_months\nc1,3\n")
        if tags:
            self.store.tag(BUCKET, key, tags, stored.version_id)
        return FailedUpload(
            bucket=BUCKET,
            key=key,
            version_id=stored.version_id,
            attempts=3,
            condition="RetriesExhausted",
            error_type="AccessDeniedException",
            error_message="not authorized to perform: states:StartExecution",
            request_id="req-9",
        )

    def handle(self, failed: FailedUpload) -> BatchFailureHandled:
        handled = self.failures.handle(failed)
        assert isinstance(handled, BatchFailureHandled)
        return handled

    def tags(self, failed: FailedUpload) -> dict[str, str]:
        return self.store.tags(failed.bucket, failed.key, failed.version_id)

    def nothing_registered(self) -> bool:
        return (
            not any(self.registry.uploads(name) for name in ("churn", UNDECLARED)) and not self.registry.audit_records()
        )


@pytest.fixture
def world() -> World:
    return World()


def test_a_batch_that_could_not_be_started_is_tagged_error_and_alerted_once(world: World) -> None:
    # Given a batch file uploaded with an id column, whose batch_start failed on its three attempts
    failed = world.upload(tags={layout.ID_COLUMN_TAG: "customer_id"})
    # When the on-failure destination record arrives
    handled = world.handle(failed)
    # Then the object version has the error outcome beside the uploader's own tag
    execution = layout.execution_name("churn", KEY, failed.version_id)
    assert handled == BatchFailureHandled(KEY, failed.version_id, "churn", execution, "error", True, True)
    assert world.tags(failed) == {layout.ID_COLUMN_TAG: "customer_id", layout.STATUS_TAG: "error"}
    # and one alert says which file, why, and what to do
    [alert] = world.notifier.sent
    assert alert.subject == f"LoopML batch error: {KEY}"
    assert f"s3://{BUCKET}/{KEY} (version {failed.version_id}) could not be started" in alert.message
    assert "after 3 attempt(s) (RetriesExhausted)" in alert.message and "Model: churn" in alert.message
    assert "Why: AccessDeniedException: not authorized to perform: states:StartExecution" in alert.message
    assert "Nothing was scored and no report was written" in alert.message
    assert "`loopml batch churn april.csv --wait`" in alert.message and f"put it again at {KEY}" in alert.message
    assert execution in alert.message and "Lambda request id: req-9" in alert.message
    # and no registry record was invented for it: a batch file has none
    assert world.nothing_registered()


def test_a_redelivered_record_changes_nothing(world: World) -> None:
    failed = world.upload()
    world.handle(failed)
    tags = world.tags(failed)
    # Lambda delivers destination records at least once
    again = world.handle(failed)
    assert (again.status, again.tagged, again.alerted) == ("error", False, False)
    assert world.tags(failed) == tags and len(world.notifier.sent) == 1


@pytest.mark.parametrize("outcome", ["scored", "refused", "failed"])
def test_a_batch_an_attempt_started_keeps_the_outcome_its_steps_gave_it(world: World, outcome: str) -> None:
    # Given an attempt that started the execution before failing, and a batch that has since ended
    failed = world.upload(tags={layout.STATUS_TAG: outcome, layout.VERSION_TAG: "1"})
    handled = world.handle(failed)
    # Then its outcome stands, and nothing is alerted: the batch has its own report
    assert (handled.status, handled.tagged, handled.alerted) == (outcome, False, False)
    assert world.tags(failed)[layout.STATUS_TAG] == outcome and world.notifier.sent == []


def test_an_output_or_report_under_batch_starts_nothing_so_its_failure_lost_nothing(world: World) -> None:
    failed = world.upload("batch/churn/output/april.report.json")
    handled = world.handle(failed)
    assert (handled.model, handled.tagged, handled.alerted) == (None, False, False)
    assert world.tags(failed) == {} and world.notifier.sent == [] and world.nothing_registered()


def test_a_batch_file_whose_version_is_gone_is_still_alerted(world: World) -> None:
    failed = FailedUpload(BUCKET, "batch/churn/input/gone.csv", "v-missing", attempts=3, condition="RetriesExhausted")
    handled = world.handle(failed)
    assert (handled.tagged, handled.alerted) == (False, True)
    [alert] = world.notifier.sent
    assert "no longer exists" in alert.message and "Why: RetriesExhausted" in alert.message


def test_an_upload_failure_outside_batch_is_handled_as_before(world: World) -> None:
    # The dispatch is by the key: an upload under incoming/ still gets its registry record (undeclared here)
    failed = world.upload("incoming/loose.csv")
    handled = world.failures.handle(failed)
    assert not isinstance(handled, BatchFailureHandled) and handled.recorded
    assert world.tags(failed) == {"loopml-status": "error"}
