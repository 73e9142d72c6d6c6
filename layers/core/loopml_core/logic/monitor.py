"""The drift check: compare what the champion has seen since the last check with its training baseline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from loopml_core.adapters.notifier import Notifier
from loopml_core.adapters.object_store import ObjectStore
from loopml_core.adapters.pipeline import PipelineRunner
from loopml_core.drift import compare
from loopml_core.errors import NotFoundError
from loopml_core.logic.inference import CAPTURES
from loopml_core.logic.runs import start_training
from loopml_core.registry import Registry


@dataclass
class DriftOutcome:
    model: str
    status: str  # no-champion | insufficient-data | ok | drift
    rows: int = 0
    per_feature: dict[str, float] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)
    action: str = ""
    execution: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class DriftMonitor:
    def __init__(
        self,
        store: ObjectStore,
        registry: Registry,
        pipeline: PipelineRunner,
        notifier: Notifier,
        artifact_bucket: str,
        threshold: float = 0.2,
        min_rows: int = 50,
    ) -> None:
        self.store = store
        self.registry = registry
        self.pipeline = pipeline
        self.notifier = notifier
        self.artifact_bucket = artifact_bucket
        self.threshold = threshold
        self.min_rows = min_rows

    def check_all(self) -> list[DriftOutcome]:
        return [self.check(name) for name in self.registry.models()]

    def check(self, model: str) -> DriftOutcome:
        try:
            champion = self.registry.champion_version(model)
        except NotFoundError:
            return DriftOutcome(model, "no-champion")
        cursor_name = f"drift/{model}"
        keys = self.store.list_keys(self.artifact_bucket, f"{CAPTURES}{model}/", self.registry.cursor(cursor_name))
        records: list[dict[str, Any]] = []
        outputs: list[dict[str, Any]] = []
        for key in keys:
            capture = json.loads(self.store.get(self.artifact_bucket, key))
            if capture.get("version") == champion.version:
                records.extend(capture["records"])
                outputs.extend(capture["outputs"])
        baseline = json.loads(
            self.store.get(champion.baseline.bucket, champion.baseline.key, champion.baseline.version_id)
        )
        report = compare(baseline, records, outputs, threshold=self.threshold, min_rows=self.min_rows)
        if report.insufficient_data:
            # Keep the cursor: the next check sees these rows plus newer ones.
            return DriftOutcome(model, "insufficient-data", rows=report.rows)
        self.registry.advance_cursor(cursor_name, keys[-1])
        outcome = DriftOutcome(
            model, "ok", rows=report.rows, per_feature=dict(report.per_feature), drifted=list(report.drifted)
        )
        if not report.has_drift:
            return outcome
        outcome.status = "drift"
        latest = self.registry.latest_dataset_version(model)
        if latest is None:
            outcome.action = "no dataset version to retrain on"
        else:
            decision = start_training(
                self.pipeline,
                model=model,
                dataset_version=latest.version,
                trigger="drift",
                reason=f"drift in {', '.join(report.drifted)}",
                skip_if_running=True,
            )
            outcome.execution = decision.execution.name if decision.execution else None
            outcome.action = (
                f"started retraining on dataset v{latest.version}: {outcome.execution}"
                if decision.started
                else f"not restarted: {decision.reason}"
            )
        scores = ", ".join(f"{name}={outcome.per_feature[name]:.3f}" for name in outcome.drifted)
        self.notifier.publish(
            f"LoopML drift: {model} v{champion.version}",
            f"Model {model} (champion v{champion.version}) drifted over PSI {self.threshold} on {report.rows} rows: "
            f"{scores}. Action: {outcome.action}.",
        )
        self.registry.record_drift(
            model,
            {"rows": report.rows, "psi": outcome.per_feature, "drifted": outcome.drifted, "threshold": self.threshold},
            outcome.action,
        )
        return outcome
