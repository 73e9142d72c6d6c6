"""The handling of an upload failed on every attempt Lambda made: give the upload the `error` outcome and alert.

Lambda retries a failed asynchronous invocation, then sends the request and the error to the on-failure destination
(`upload_failed`), which calls this. So every upload ends with an outcome, even when its function crashed or timed
out:

* under `incoming/` (validation) or `labels/` (the label join): the object version is tagged, the registry records
  the outcome with its audit record, and one alert says which upload failed, why, and that nothing was registered;
* under `batch/<model>/input/` (batch_start could not start the batch scoring execution): the object version is
  tagged `loopml-batch-status=error` and one alert says which file, why, and how to score it again. A batch file has
  no registry record, so the tag is also what makes a redelivered destination record change nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from loopml_core.adapters.notifier import Notifier
from loopml_core.adapters.object_store import ObjectStore
from loopml_core.batch import layout
from loopml_core.batch.layout import BatchInput, BatchStatus, batch_input
from loopml_core.clock import iso
from loopml_core.errors import NotFoundError
from loopml_core.models import UploadOutcome, UploadStatus
from loopml_core.registry import UNDECLARED, Registry
from loopml_core.uploads import LABELS, STATUS_TAG, dataset_of

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class FailedUpload:
    """One uploaded object version whose validation failed, as Lambda's destination record tells it."""

    bucket: str
    key: str
    version_id: str | None
    attempts: int
    condition: str  # RetriesExhausted | EventAgeExceeded
    error_type: str | None = None
    error_message: str | None = None
    request_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class FailureHandled:
    dataset: str
    source_id: str
    status: str  # the upload's outcome: error, or the one the validator recorded before it failed
    recorded: bool  # this call recorded the error outcome (False when the registry already held one)
    tagged: bool
    alerted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchFailureHandled:
    """What became of a batch file whose batch could not be started (or of another key under batch/: nothing)."""

    key: str
    version_id: str | None
    model: str | None  # None: not a batch input (an output or a report), so nothing was lost
    execution: str | None  # the execution batch_start should have started (named after the object version)
    status: str | None  # error, or the outcome the batch's own steps tagged (an attempt did start it)
    tagged: bool  # this call tagged the error outcome
    alerted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def error_text(failed: FailedUpload) -> str:
    """`<errorType>: <errorMessage>`, cut to MAX_ERROR_CHARS: records stay small, the logs keep the whole error."""
    error = ": ".join(part for part in (failed.error_type, failed.error_message) if part) or failed.condition
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def failure_summary(failed: FailedUpload) -> str:
    attempts = f"{failed.attempts} attempt{'' if failed.attempts == 1 else 's'}"
    expired = " (the event expired before Lambda could retry again)" if failed.condition == "EventAgeExceeded" else ""
    what = "joining the labels" if failed.key.startswith(LABELS) else "validation"
    if failed.key.startswith(layout.BATCH):
        what = "starting the batch"
    return f"{what} failed after {attempts}{expired}: {error_text(failed)}"


class UploadFailures:
    def __init__(self, store: ObjectStore, registry: Registry, notifier: Notifier) -> None:
        self.store = store
        self.registry = registry
        self.notifier = notifier

    def handle(self, failed: FailedUpload) -> FailureHandled | BatchFailureHandled:
        """Record (uploads only), tag and alert once per object version; a redelivered destination record changes
        nothing."""
        if failed.key.startswith(layout.BATCH):
            return self._batch(failed)
        error = UploadOutcome(
            dataset=dataset_of(failed.key) or UNDECLARED,
            source_key=failed.key,
            source_version_id=failed.version_id,
            status=UploadStatus.ERROR,
            summary=failure_summary(failed),
            at=iso(),
        )
        prior = self.registry.upload(error.dataset, error.source_id)
        # Recorded first, so the registry (the first outcome of an object version stands) decides what the tag and
        # the alert say. When the validator got as far as recording an outcome before it died, that outcome is the
        # truth: it stays, and the tag is made to agree with it.
        outcome = prior or self.registry.record_upload(error)
        recorded = prior is None and outcome.status is UploadStatus.ERROR
        tagged = self._tag(failed, outcome)
        # Lambda delivers destination records at least once. A second one for an upload already in error was alerted
        # on by the first: alert only when this call recorded the error, or found another outcome the validator left.
        # Should the first delivery have died between recording and publishing, the upload-errors alarm (on this
        # function's invocations) has still fired.
        alerted = recorded or outcome.status is not UploadStatus.ERROR
        if alerted:
            self._alert(failed, outcome, recorded)
        return FailureHandled(outcome.dataset, outcome.source_id, str(outcome.status), recorded, tagged, alerted)

    def _tag(self, failed: FailedUpload, outcome: UploadOutcome) -> bool:
        """Tags the upload with its outcome, keeping the uploader's own tags (S3 replaces the whole set)."""
        try:
            tags = self.store.tags(failed.bucket, failed.key, failed.version_id)
            if outcome.status is not UploadStatus.ERROR and STATUS_TAG in tags:
                return False  # the validator tagged it from the very outcome the registry holds
            tags[STATUS_TAG] = str(outcome.status)
            self.store.tag(failed.bucket, failed.key, tags, failed.version_id)
        except NotFoundError:
            return False  # the object version is gone; the registry and the alert still say what happened
        return True

    def _alert(self, failed: FailedUpload, outcome: UploadOutcome, recorded: bool) -> None:
        version = failed.version_id or "null"
        lines = [
            f"Validation of {failed.uri} (version {version}) failed after {failed.attempts} attempt(s) "
            f"({failed.condition}).",
            f"Dataset: {outcome.dataset}",
            f"Why: {error_text(failed)}",
        ]
        if recorded:
            lines.append(
                "Nothing was registered for this upload: its outcome is `error` (tag loopml-status=error). "
                "Fix the cause and upload the file again."
            )
        else:
            version_note = f", dataset version {outcome.dataset_version}" if outcome.dataset_version else ""
            lines.append(
                f"The registry already holds this upload's outcome ({outcome.status}{version_note}): the validator "
                "recorded it before failing, so it stands. Check that what should follow it (a pipeline run) happened."
            )
        if failed.request_id:
            lines.append(f"Lambda request id: {failed.request_id}")
        self.notifier.publish(f"LoopML upload error: {failed.key}", "\n".join(lines))

    def _batch(self, failed: FailedUpload) -> BatchFailureHandled:
        """A batch file whose execution batch_start could not start: tag it `error`, alert once.

        The idempotence marker is the object version's `loopml-batch-status` tag: a batch file has no registry record
        (and gets none), and the tag is per object version (the unit that failed), is where every batch outcome is
        read (by users, `loopml batch`, the finish step), and is all of the data this function may read or write.
        A redelivered record finds it set and changes nothing. Tagged before alerting, as uploads are recorded before
        they are: should the first delivery die in between, the upload-errors alarm (on this function's
        invocations) has still fired. Two deliveries at the very same moment could both alert; Lambda does not send
        them so.
        """
        batch = batch_input(failed.bucket, failed.key, failed.version_id)
        if batch is None:  # an output or a report under batch/ starts nothing: its failed start lost nothing
            return BatchFailureHandled(failed.key, failed.version_id, None, None, None, tagged=False, alerted=False)
        execution = layout.execution_name(batch.model, batch.key, batch.version_id)
        try:
            tags = self.store.tags(batch.bucket, batch.key, batch.version_id)
        except NotFoundError:  # the object version is gone: nothing to score again, nothing to tag; still say so
            self._alert_batch(failed, batch, execution, tagged=False)
            return BatchFailureHandled(batch.key, batch.version_id, batch.model, execution, None, False, True)
        status = tags.get(layout.STATUS_TAG)
        if status is not None:
            # `error`: an earlier delivery of this record tagged and alerted. Any other outcome: an attempt started
            # the execution before failing, and the batch has ended with its own outcome and report.
            return BatchFailureHandled(batch.key, batch.version_id, batch.model, execution, status, False, False)
        tags[layout.STATUS_TAG] = str(BatchStatus.ERROR)
        self.store.tag(batch.bucket, batch.key, tags, batch.version_id)
        self._alert_batch(failed, batch, execution, tagged=True)
        return BatchFailureHandled(
            batch.key, batch.version_id, batch.model, execution, str(BatchStatus.ERROR), tagged=True, alerted=True
        )

    def _alert_batch(self, failed: FailedUpload, batch: BatchInput, execution: str, tagged: bool) -> None:
        version = failed.version_id or "null"
        report = f"s3://{batch.bucket}/{layout.report_key(batch.model, batch.stem)}"
        lines = [
            f"The batch scoring of {failed.uri} (version {version}) could not be started: batch_start failed after "
            f"{failed.attempts} attempt(s) ({failed.condition}).",
            f"Model: {batch.model}",
            f"Why: {error_text(failed)}",
        ]
        if tagged:
            lines.append(
                f"Nothing was scored and no report was written: the file's outcome is `error` (tag "
                f"{layout.STATUS_TAG}={BatchStatus.ERROR})."
            )
        else:
            lines.append("This object version no longer exists: nothing was scored, and there is nothing to tag.")
        lines += [
            f"What to do: fix the cause above, then upload the file again (a new version is a new batch): "
            f"`loopml batch {batch.model} {PurePosixPath(batch.name).name} --wait`, or put it again at {batch.key}.",
            f"Should execution {execution} of the batch state machine exist after all (an attempt started it before "
            f"failing), its outcome replaces the tag and its report will be {report}.",
        ]
        if failed.request_id:
            lines.append(f"Lambda request id: {failed.request_id}")
        self.notifier.publish(f"LoopML batch error: {failed.key}", "\n".join(lines))
