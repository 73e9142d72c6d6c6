"""Model versions registered by hand, as the training pipeline leaves them: for tests, benchmarks and local tooling
whose subject is serving, delivery, batch scoring or monitoring rather than training.

Works on any `Registry` and `ObjectStore`: the local cloud's (DynamoDB and S3 on moto) or the in-memory fakes. The
model's dataset must be declared first (`registry.declare_dataset`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from loopml_core.adapters.object_store import ObjectStore
from loopml_core.clock import iso
from loopml_core.models import DatasetVersion, ModelVersion, ObjectRef, UploadOutcome, UploadStatus, VersionStatus
from loopml_core.registry import Registry

MODELS = "models/"  # the artefact bucket's prefix the pipeline's train step writes under


def register_dataset(registry: Registry, dataset: str, data: ObjectRef, *, rows: int, source_key: str) -> int:
    """Register the next version of `dataset`, its data at `data`, as validation does when it accepts an upload from
    `source_key`; returns its number. The same `source_key` again registers nothing and returns the first number."""
    sha256 = hashlib.sha256(f"{dataset}/{source_key}".encode()).hexdigest()  # one content per source: no duplicate
    at = iso()
    upload = UploadOutcome(
        dataset=dataset,
        source_key=source_key,
        status=UploadStatus.ACCEPTED,
        summary=f"{rows} rows",
        sha256=sha256,
        format="csv",
        rows=rows,
        at=at,
    )
    contract_version = registry.dataset(dataset).contract_version
    outcome = registry.register_dataset_version(
        dataset,
        upload=upload,
        build=lambda number: DatasetVersion(
            dataset=dataset,
            version=number,
            object=data,
            source_key=source_key,
            sha256=sha256,
            rows=rows,
            contract_version=contract_version,
            created_at=at,
        ),
    )
    if outcome.dataset_version is None:
        raise RuntimeError(f"dataset '{dataset}' registered no version from {source_key}: {outcome.summary}")
    return outcome.dataset_version


def register_model(
    registry: Registry,
    store: ObjectStore,
    bucket: str,
    model: str,
    onnx_model: bytes,
    *,
    promote: bool = True,
    dataset_rows: int = 1,
    metrics: dict[str, float] | None = None,
    baseline: bytes | None = None,
    execution: str | None = None,
    key: str | None = None,
) -> ModelVersion:
    """Register the next version of `model` as a pipeline run leaves it, and return it.

    Stores `onnx_model` in `bucket` (under `key`, by default where the train step writes it) and `baseline` (a
    training profile, JSON) beside it when given; without one the version's baseline names the artefact. Registers a
    dataset version of `dataset_rows` rows for the run to have trained on (only its record: its `object` names the
    baseline, so nothing can train on it) and the model version, moving `champion` to it when `promote`. `execution`
    names the run, by default `run-<n>` for the n-th version of the model; registering the same run again returns
    the version it registered.
    """
    execution = execution or f"run-{len(registry.model_versions(model)) + 1}"
    prefix = f"{MODELS}{model}/runs/{execution}/"
    artifact = _put(store, bucket, key or prefix + "model.onnx", onnx_model)
    profile = _put(store, bucket, prefix + "baseline.json", baseline) if baseline is not None else artifact
    dataset_version = register_dataset(
        registry, model, profile, rows=dataset_rows, source_key=f"incoming/{model}/{execution}.csv"
    )
    task = registry.contract(model).task.value
    version, _ = registry.register_model_version(
        model,
        execution,
        lambda number: ModelVersion(
            model=model,
            version=number,
            task=task,
            dataset_version=dataset_version,
            execution=execution,
            artifact=artifact,
            baseline=profile,
            metrics=metrics or {},
            code_version="dev",
            promoted=promote,
            decision="registered by hand" + (", promoted" if promote else ""),
            created_at=iso(),
        ),
        promote=promote,
        trigger="upload",
    )
    return version


def version_builder(
    model: str,
    execution: str,
    *,
    status: VersionStatus = VersionStatus.READY,
    task: str = "classification",
    promoted: bool = True,
    champion_version: int | None = None,
) -> Callable[[int], ModelVersion]:
    """The `build` a `Registry.register_model_version` call takes, for a version whose artefact is only named (no
    ONNX model stored): for tests of the registry itself, where nothing loads the model."""

    def build(number: int) -> ModelVersion:
        ref = ObjectRef(bucket="artifacts", key=f"{MODELS}{model}/runs/{execution}/model.onnx", version_id="1")
        return ModelVersion(
            model=model,
            version=number,
            status=status,
            task=task,
            dataset_version=1,
            execution=execution,
            artifact=ref,
            baseline=ref,
            metrics={"accuracy": 0.8} if task == "classification" else {"rmse": 0.1},
            code_version="test",
            promoted=promoted,
            decision="beat the champion" if promoted else "did not beat the champion",
            created_at="2026-01-01T00:00:00Z",
            champion_version=champion_version,
        )

    return build


def _put(store: ObjectStore, bucket: str, key: str, body: bytes) -> ObjectRef:
    stored = store.put(bucket, key, body)
    return ObjectRef(bucket=stored.bucket, key=stored.key, version_id=stored.version_id)
