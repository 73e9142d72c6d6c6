"""An upload landed in `incoming/<dataset>/<file>`: validate it, then version it, call it a duplicate, or quarantine it.

Every upload ends with exactly one outcome, recorded in the registry with its audit record and tagged on the object
(`loopml-status`): accepted (a new dataset version), duplicate (same content as a version already there), quarantined
(a copy under `quarantine/` beside a report naming every problem) or, when validation itself keeps failing, error
(recorded by the on-failure destination, `logic/upload_failures.py`). Nothing is deleted: the original stays in
`incoming/`, and the object is read as a stream, never held whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from loopml_core.adapters.object_store import ObjectStore
from loopml_core.adapters.pipeline import PipelineRunner
from loopml_core.clock import iso
from loopml_core.contract import Retrain
from loopml_core.errors import NotFoundError
from loopml_core.logic.runs import execution_name, start_training
from loopml_core.models import DatasetVersion, ObjectRef, UploadOutcome, UploadStatus
from loopml_core.registry import UNDECLARED, Registry
from loopml_core.uploads import DATASETS, INCOMING, QUARANTINE, STATUS_TAG, SUPPORTED, dataset_of, source_id

MAX_SUMMARY_CHARS = 2_000  # the registry item and the audit record carry the summary; the report has the rest


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    version_id: str | None

    @property
    def source_id(self) -> str:
        return source_id(self.key, self.version_id)


@dataclass(frozen=True)
class StoredSource:
    """An uploaded object version as validation reads it: streamed, or by ranges for Parquet."""

    store: ObjectStore
    upload: Upload
    size: int

    @property
    def name(self) -> str:
        return PurePosixPath(self.upload.key).name

    def stream(self) -> BinaryIO:
        return self.store.open(self.upload.bucket, self.upload.key, self.upload.version_id)

    def random_access(self) -> BinaryIO:
        return self.store.open_random_access(self.upload.bucket, self.upload.key, self.upload.version_id)


class Ingestor:
    def __init__(
        self,
        store: ObjectStore,
        registry: Registry,
        pipeline: PipelineRunner,
        *,
        max_upload_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.pipeline = pipeline
        self.max_upload_bytes = max_upload_bytes

    def ingest(self, upload: Upload) -> UploadOutcome:
        """Decide the upload's one outcome; a redelivered event gets the outcome recorded the first time."""
        name = dataset_of(upload.key)
        prior = self.registry.upload(name or UNDECLARED, upload.source_id)
        if prior is not None:
            self._train(prior)  # a crash may have come between recording the outcome and starting the run
            tag_outcome(self.store, upload, prior)
            return prior
        if name is None:
            where = f"uploads go to {INCOMING}<dataset>/<file> ({SUPPORTED}), not {upload.key}"
            return quarantine(
                self.store, self.registry, upload, None, problem_document(upload, None, "location", where)
            )
        try:
            contract = self.registry.contract(name)
        except NotFoundError as error:
            return quarantine(
                self.store, self.registry, upload, name, problem_document(upload, name, "dataset", str(error))
            )

        from loopml_core.validation import report_document, validate

        latest = self.registry.latest_dataset_version(name)
        source = StoredSource(self.store, upload, self.store.size(upload.bucket, upload.key, upload.version_id))
        validated = validate(
            contract,
            source,
            previous_profile=latest.profile if latest else None,
            max_bytes=self.max_upload_bytes,
        )
        report = validated.report
        if not report.ok:
            document = report_document(
                report,
                source=f"s3://{upload.bucket}/{upload.key}",
                source_version_id=upload.version_id,
                dataset=name,
                seconds=validated.seconds,
            )
            return quarantine(self.store, self.registry, upload, name, document)

        fmt = str(report.format)
        first = not self.registry.model_versions(contract.name)

        def build(number: int) -> DatasetVersion:
            stored = self.store.copy(
                upload.bucket, upload.key, upload.bucket, f"{DATASETS}{name}/v{number}/data.{fmt}", upload.version_id
            )
            return DatasetVersion(
                dataset=name,
                version=number,
                object=ObjectRef(bucket=stored.bucket, key=stored.key, version_id=stored.version_id),
                source_key=upload.key,
                sha256=report.sha256,
                rows=report.rows,
                contract_version=self.registry.dataset(name).contract_version,
                format=fmt,
                profile=validated.profile,
                created_at=iso(),
            )

        accepted = UploadOutcome(
            dataset=name,
            source_key=upload.key,
            source_version_id=upload.version_id,
            status=UploadStatus.ACCEPTED,
            summary=cut(report.summary()),
            sha256=report.sha256,
            format=fmt,
            rows=report.rows,
            at=iso(),
        )
        trains = contract.retrain_on is Retrain.UPLOAD or first
        outcome = self.registry.register_dataset_version(
            name,
            upload=accepted,
            build=build,
            execution_for=lambda number: execution_name(contract.name, number, "upload") if trains else None,
        )
        self._train(outcome)
        tag_outcome(self.store, upload, outcome)
        return outcome

    def _train(self, outcome: UploadOutcome) -> None:
        if outcome.status is not UploadStatus.ACCEPTED or outcome.execution is None:
            return
        assert outcome.dataset_version is not None
        start_training(
            self.pipeline,
            model=outcome.dataset,  # a dataset's model bears its name
            dataset_version=outcome.dataset_version,
            trigger="upload",
            reason=f"dataset {outcome.dataset} v{outcome.dataset_version} was accepted",
            skip_if_running=False,
        )


def tag_outcome(store: ObjectStore, upload: Upload, outcome: UploadOutcome) -> None:
    tags = {STATUS_TAG: str(outcome.status)}
    if outcome.dataset_version is not None:
        key = "loopml-duplicate-of" if outcome.status is UploadStatus.DUPLICATE else "loopml-dataset-version"
        tags[key] = str(outcome.dataset_version)
    store.tag(upload.bucket, upload.key, tags, upload.version_id)


def quarantine(
    store: ObjectStore, registry: Registry, upload: Upload, name: str | None, document: dict[str, Any]
) -> UploadOutcome:
    """Copy the upload under `quarantine/` beside its report, record the outcome with its audit record, tag it."""
    file_name = PurePosixPath(upload.key).name
    stem = f"{QUARANTINE}{name or UNDECLARED}/{(upload.version_id or 'null')[:16]}-{file_name}"
    quarantined = store.copy(upload.bucket, upload.key, upload.bucket, stem, upload.version_id)
    body = json.dumps(document, indent=2).encode()
    report = store.put(upload.bucket, f"{stem}.report.json", body, "application/json")
    outcome = registry.record_upload(
        UploadOutcome(
            dataset=name or UNDECLARED,
            source_key=upload.key,
            source_version_id=upload.version_id,
            status=UploadStatus.QUARANTINED,
            summary=cut(str(document.get("summary", ""))),
            sha256=document.get("sha256"),
            format=document.get("format"),
            rows=document.get("rows"),
            quarantined=quarantined.uri,
            report=report.uri,
            at=iso(),
        )
    )
    tag_outcome(store, upload, outcome)
    return outcome


def problem_document(upload: Upload, name: str | None, check: str, message: str) -> dict[str, Any]:
    """A quarantine report for a file no contract could be checked against, shaped like validation's."""
    issue: dict[str, Any] = {"check": check, "column": None, "rows": [], "lines": [], "row_count": 0}
    issue["message"] = message
    return {
        "source": f"s3://{upload.bucket}/{upload.key}",
        "source_version_id": upload.version_id,
        "dataset": name,
        "ok": False,
        "rows": 0,
        "columns": [],
        "issues": [issue],
        "summary": f"rejected: {message}",
        "checked_at": iso(),
    }


def cut(text: str) -> str:
    return text if len(text) <= MAX_SUMMARY_CHARS else text[: MAX_SUMMARY_CHARS - 1] + "…"
