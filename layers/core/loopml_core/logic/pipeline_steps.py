"""The training pipeline's steps. Each runs in its own Lambda, so each imports only what it needs, when it needs it:
training pulls in scikit-learn, evaluation only onnxruntime."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from loopml_core.adapters.object_store import ObjectStore
from loopml_core.clock import iso
from loopml_core.contract import Approval
from loopml_core.errors import NotFoundError
from loopml_core.models import ModelVersion, ObjectRef, VersionStatus
from loopml_core.registry import Registry

_log = logging.getLogger(__name__)
MODELS = "models/"
MEMORY_ENV = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"  # set by Lambda in every function's environment


def function_memory_mb() -> int | None:
    """The running function's memory in MB from Lambda's environment; None outside Lambda (no limit)."""
    value = os.environ.get(MEMORY_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


class RunRequest(BaseModel):
    """The `run` object every execution carries (see logic/runs.py)."""

    model: str
    dataset_version: int
    trigger: str = "manual"
    reason: str = ""


class Candidate(BaseModel):
    """What training produced, handed from step to step by the state machine."""

    model: str
    task: str
    dataset_version: int
    execution: str
    onnx: ObjectRef
    holdout: ObjectRef
    reference: ObjectRef
    baseline: ObjectRef
    metrics: dict[str, float]
    params: dict[str, Any]
    train_rows: int
    holdout_rows: int


@dataclass(frozen=True)
class StoredCard:
    """Where a model version's card was stored."""

    markdown: ObjectRef
    html: ObjectRef


@dataclass
class PipelineSteps:
    store: ObjectStore
    registry: Registry
    artifact_bucket: str
    code_version: str = "dev"

    def _put(self, key: str, body: bytes, content_type: str) -> ObjectRef:
        stored = self.store.put(self.artifact_bucket, key, body, content_type)
        return ObjectRef(bucket=stored.bucket, key=stored.key, version_id=stored.version_id)

    def train(self, run: RunRequest, execution: str, memory_mb: int | None = None) -> Candidate:
        """Train on the run's dataset version, read in its stored format.

        `memory_mb` is the function's memory (the Lambda context's); None falls back to Lambda's
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE, then to no limit. A version estimated not to fit raises
        `DatasetTooLargeError` before anything is fetched.
        """
        from loopml_core.training import check_memory, read_dataset, train

        contract = self.registry.contract(run.model)
        version = self.registry.dataset_version(run.model, run.dataset_version)
        check_memory(contract, version, memory_mb if memory_mb is not None else function_memory_mb())
        data = self.store.get(version.object.bucket, version.object.key, version.object.version_id)
        frame = read_dataset(contract, data, version.format)
        del data  # the frame holds the data now; the bytes would only add to the peak while training
        result = train(contract, frame)
        prefix = f"{MODELS}{run.model}/runs/{execution}/"
        return Candidate(
            model=run.model,
            task=contract.task.value,
            dataset_version=run.dataset_version,
            execution=execution,
            onnx=self._put(prefix + "model.onnx", result.onnx_model, "application/octet-stream"),
            holdout=self._put(prefix + "holdout.csv", result.holdout_csv, "text/csv"),
            reference=self._put(
                prefix + "reference.json", json.dumps(result.reference_predictions).encode(), "application/json"
            ),
            baseline=self._put(prefix + "baseline.json", json.dumps(result.baseline).encode(), "application/json"),
            metrics=result.metrics,
            params=result.params,
            train_rows=result.train_rows,
            holdout_rows=result.holdout_rows,
        )

    def _read(self, ref: ObjectRef) -> bytes:
        return self.store.get(ref.bucket, ref.key, ref.version_id)

    def evaluate(self, candidate: Candidate) -> dict[str, Any]:
        from loopml_core.evaluation import evaluate

        contract = self.registry.contract(candidate.model)
        try:
            champion = self.registry.champion_version(candidate.model)
            champion_onnx: bytes | None = self._read(champion.artifact)
            champion_number: int | None = champion.version
        except NotFoundError:
            champion_onnx, champion_number = None, None
        evaluation = evaluate(
            contract,
            self._read(candidate.onnx),
            champion_onnx,
            self._read(candidate.holdout),
            json.loads(self._read(candidate.reference)),
        ).to_dict()
        evaluation["champion_version"] = champion_number
        return evaluation

    def register(self, run: RunRequest, candidate: Candidate, evaluation: dict[str, Any]) -> dict[str, Any]:
        promote = bool(evaluation["promote"])
        dataset = self.registry.dataset(candidate.model)
        governance = self.registry.contract(candidate.model).governance
        # A winner the contract wants a person to approve is registered waiting; it serves once approved.
        waits = promote and governance.approval is Approval.MANUAL
        decision = str(evaluation["reason"]) + (" — waits for approval (governance.approval: manual)" if waits else "")

        def build(number: int) -> ModelVersion:
            return ModelVersion(
                model=candidate.model,
                version=number,
                status=VersionStatus.PENDING_APPROVAL if waits else VersionStatus.READY,
                task=candidate.task,
                dataset_version=candidate.dataset_version,
                execution=candidate.execution,
                artifact=candidate.onnx,
                baseline=candidate.baseline,
                metrics=evaluation["candidate_metrics"],
                champion_metrics=evaluation.get("champion_metrics"),
                params={**candidate.params, "train_rows": candidate.train_rows, "holdout_rows": candidate.holdout_rows},
                parity=evaluation.get("parity", {}),
                code_version=self.code_version,
                promoted=promote,
                decision=decision,
                created_at=iso(),
                champion_version=evaluation.get("champion_version"),
                metric_intervals=evaluation.get("metric_intervals") or {},
                champion_metric_intervals=evaluation.get("champion_metric_intervals"),
                comparison=evaluation.get("comparison"),
                feature_importance=evaluation.get("feature_importance") or [],
                fairness=evaluation.get("fairness"),
                evaluation_method=evaluation.get("method") or {},
                contract_version=dataset.contract_version,
                contract_fingerprint=dataset.contract_fingerprint,
            )

        version, _ = self.registry.register_model_version(
            candidate.model, candidate.execution, build, promote=promote and not waits, trigger=run.trigger
        )
        registered: dict[str, Any] = {
            "model": version.model,
            "version": version.version,
            "status": str(version.status),
            "promoted": version.promoted,
            "decision": version.decision,
            "metrics": version.metrics,
        }
        if version.status is VersionStatus.PENDING_APPROVAL:
            # What the pipeline's approval step waits at most (its TimeoutSecondsPath), in whole seconds.
            registered["approval_timeout_s"] = max(1, round(governance.approval_timeout_hours * 3600))
        try:
            card = self.store_card(version)
        except Exception as error:  # the version is registered (and audited) already: a card must not fail the run
            _log.exception("the model card of %s v%s could not be stored", version.model, version.version)
            registered["card"] = None
            registered["card_error"] = f"{type(error).__name__}: {error}"[:500]
        else:
            registered["card"] = {"markdown": card.markdown.uri, "html": card.html.uri}
        return registered

    def store_card(self, version: ModelVersion) -> StoredCard:
        """Render the version's model card from the registry and store it, Markdown and HTML, beside its artefact.

        Written again when a retried step registers nothing new: the card then lists the audit records since.
        """
        from loopml_core.cards import card_keys, gather_card, render_html, render_markdown

        card = gather_card(self.registry, version)
        markdown_key, html_key = card_keys(version)
        bucket = version.artifact.bucket
        markdown = self.store.put(bucket, markdown_key, render_markdown(card).encode(), "text/markdown; charset=utf-8")
        html = self.store.put(bucket, html_key, render_html(card).encode(), "text/html; charset=utf-8")
        return StoredCard(
            markdown=ObjectRef(bucket=markdown.bucket, key=markdown.key, version_id=markdown.version_id),
            html=ObjectRef(bucket=html.bucket, key=html.key, version_id=html.version_id),
        )

    def record_failure(self, run: RunRequest, execution: str, error: dict[str, Any]) -> dict[str, Any]:
        cause = str(error.get("Cause", ""))
        with contextlib.suppress(ValueError, AttributeError):  # Lambda errors arrive as a JSON document in Cause
            cause = json.loads(cause).get("errorMessage", cause)
        recorded, _ = self.registry.record_run_failure(
            run.model,
            execution,
            error=str(error.get("Error", "Unknown")),
            cause=cause,
            trigger=run.trigger,
            dataset_version=run.dataset_version,
        )
        return recorded.model_dump(mode="json")
