"""An upload landed in `incoming/<dataset>/<file>.csv`: validate it, then version it or quarantine it.

Nothing is deleted: accepted data is copied to an immutable, versioned location; rejected data is copied to
`quarantine/` beside a JSON report naming every problem. The original stays in `incoming/`, tagged with the outcome.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from loopml_core.adapters.object_store import ObjectStore
from loopml_core.adapters.pipeline import PipelineRunner
from loopml_core.clock import iso
from loopml_core.contract import DatasetContract, Retrain
from loopml_core.errors import NotFoundError
from loopml_core.logic.runs import start_training
from loopml_core.models import DatasetVersion, ObjectRef
from loopml_core.registry import Registry

INCOMING = "incoming/"
QUARANTINE = "quarantine/"
DATASETS = "datasets/"
STATUS_TAG = "loopml-status"


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    version_id: str | None


@dataclass(frozen=True)
class IngestOutcome:
    status: str  # accepted | duplicate | quarantined
    dataset: str | None
    dataset_version: int | None = None
    execution: str | None = None
    quarantined: str | None = None
    report: str | None = None
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def dataset_of(key: str) -> str | None:
    """`incoming/<dataset>/<file>.csv` -> dataset name; anything else has none."""
    parts = PurePosixPath(key).parts
    if len(parts) == 3 and key.startswith(INCOMING) and parts[2].lower().endswith(".csv"):
        return parts[1]
    return None


class Ingestor:
    def __init__(self, store: ObjectStore, registry: Registry, pipeline: PipelineRunner) -> None:
        self.store = store
        self.registry = registry
        self.pipeline = pipeline

    def ingest(self, upload: Upload) -> IngestOutcome:
        from loopml_core.validation import validate_csv

        body = self.store.get(upload.bucket, upload.key, upload.version_id)
        source_id = f"{upload.key}@{upload.version_id or hashlib.sha256(body).hexdigest()[:16]}"
        name = dataset_of(upload.key)
        if name is None:
            where = f"uploads go to {INCOMING}<dataset>/<file>.csv, not {upload.key}"
            return self._quarantine(upload, None, body, [_problem("location", where)])
        try:
            contract = self.registry.contract(name)
        except NotFoundError as error:
            return self._quarantine(upload, name, body, [_problem("dataset", str(error))])

        latest = self.registry.latest_dataset_version(name)
        report = validate_csv(contract, body, previous_profile=latest.profile if latest else None)
        if not report.ok:
            return self._quarantine(upload, name, body, [i.model_dump() for i in report.issues], report.summary())

        profile = _profile(contract, body)
        dataset_key_stem = f"{DATASETS}{name}"

        def build(number: int) -> DatasetVersion:
            stored = self.store.copy(
                upload.bucket, upload.key, upload.bucket, f"{dataset_key_stem}/v{number}/data.csv", upload.version_id
            )
            return DatasetVersion(
                dataset=name,
                version=number,
                object=ObjectRef(bucket=stored.bucket, key=stored.key, version_id=stored.version_id),
                source_key=upload.key,
                sha256=report.sha256,
                rows=report.rows,
                contract_version=self.registry.dataset(name).contract_version,
                profile=profile,
                created_at=iso(),
            )

        version, created = self.registry.register_dataset_version(name, source_id=source_id, build=build)
        execution = self._maybe_train(contract, version)
        self.store.tag(
            upload.bucket,
            upload.key,
            {STATUS_TAG: "accepted", "loopml-dataset-version": str(version.version)},
            upload.version_id,
        )
        return IngestOutcome(
            status="accepted" if created else "duplicate",
            dataset=name,
            dataset_version=version.version,
            execution=execution,
            summary=report.summary(),
        )

    def _maybe_train(self, contract: DatasetContract, version: DatasetVersion) -> str | None:
        first = not self.registry.model_versions(contract.name)
        if contract.retrain_on is Retrain.DRIFT and not first:
            return None
        decision = start_training(
            self.pipeline,
            model=contract.name,
            dataset_version=version.version,
            trigger="upload",
            reason=f"dataset {contract.name} v{version.version} was accepted",
            skip_if_running=False,
        )
        return decision.execution.name if decision.execution else None

    def _quarantine(
        self, upload: Upload, name: str | None, body: bytes, issues: list[dict[str, Any]], summary: str = ""
    ) -> IngestOutcome:
        file_name = PurePosixPath(upload.key).name
        stem = f"{QUARANTINE}{name or '_undeclared'}/{(upload.version_id or 'null')[:16]}-{file_name}"
        summary = summary or "; ".join(str(i.get("message")) for i in issues)
        quarantined = self.store.copy(upload.bucket, upload.key, upload.bucket, stem, upload.version_id)
        report_doc = {
            "source": f"s3://{upload.bucket}/{upload.key}",
            "source_version_id": upload.version_id,
            "dataset": name,
            "sha256": hashlib.sha256(body).hexdigest(),
            "summary": summary,
            "issues": issues,
            "checked_at": iso(),
        }
        report = self.store.put(
            upload.bucket, f"{stem}.report.json", json.dumps(report_doc, indent=2).encode(), "application/json"
        )
        self.store.tag(upload.bucket, upload.key, {STATUS_TAG: "quarantined"}, upload.version_id)
        self.registry.record_quarantine(name or "", upload.key, quarantined.uri, report.uri, summary)
        return IngestOutcome(
            status="quarantined", dataset=name, quarantined=quarantined.uri, report=report.uri, summary=summary
        )


def _problem(check: str, message: str) -> dict[str, Any]:
    """A file-level issue, shaped like validation's Issue."""
    return {"check": check, "column": None, "rows": [], "lines": [], "row_count": 0, "message": message}


def _profile(contract: DatasetContract, body: bytes) -> dict[str, Any]:
    """The accepted data's distribution (the values exactly as validated), so the next upload can be compared."""
    from loopml_core.drift import build_profile
    from loopml_core.validation import typed_frame

    frame = typed_frame(contract, body)
    return build_profile(contract, {f.name: frame[f.name].to_numpy() for f in contract.features}, None)
