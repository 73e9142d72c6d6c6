"""Online predictions from the champion: validate the request against the contract, predict, capture.

Imports onnxruntime and numpy only (through loopml_core.serving); never scikit-learn or pandas, never pickle.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import Any

from loopml_core.adapters.object_store import ObjectStore
from loopml_core.clock import utc_now
from loopml_core.contract import DatasetContract, FeatureType
from loopml_core.errors import FieldProblem, InvalidRequestError
from loopml_core.registry import Registry
from loopml_core.serving import OnnxModel

CAPTURES = "captures/"
MAX_PROBLEMS = 50


def validate_records(contract: DatasetContract, records: Any, max_records: int) -> list[dict[str, Any]]:
    """Check `records` against the contract; raise InvalidRequestError naming every field at fault (up to 50)."""
    if not isinstance(records, list):
        raise InvalidRequestError("'records' must be a list of objects", [FieldProblem("records", "must be a list")])
    if not records:
        raise InvalidRequestError("'records' is empty", [FieldProblem("records", "must hold at least one record")])
    if len(records) > max_records:
        raise InvalidRequestError(
            f"too many records: {len(records)} > {max_records}",
            [FieldProblem("records", f"at most {max_records} records per request")],
            status_code=413,
        )
    expected = contract.feature_names
    problems: list[FieldProblem] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(FieldProblem(None, "must be an object of feature values", index))
            continue
        for missing in (n for n in expected if n not in record):
            problems.append(FieldProblem(missing, "is required", index))
        for extra in sorted(set(record) - set(expected)):
            problems.append(FieldProblem(extra, f"is not a feature of model '{contract.name}'", index))
        for feature in contract.features:
            if feature.name in record:
                message = _value_problem(feature.type, feature.values, record[feature.name])
                if message:
                    problems.append(FieldProblem(feature.name, message, index))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise InvalidRequestError(f"{len(problems)} invalid field(s) in 'records'", problems[:MAX_PROBLEMS])
    return records


def _value_problem(kind: FeatureType, values: tuple[str, ...] | None, value: Any) -> str | None:
    if value is None:
        return "must not be null"
    if kind is FeatureType.CATEGORY:
        if not isinstance(value, str):
            return f"must be a string, one of {list(values or ())}"
        if values is not None and value not in values:
            return f"'{value}' is not one of {list(values)}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number ({kind.value}), got {type(value).__name__}"
    if not math.isfinite(value):
        return "must be a finite number"
    if kind is FeatureType.INT and float(value) != int(value):
        return f"must be an integer, got {value}"
    return None


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    contract: DatasetContract
    model: OnnxModel


class PredictionService:
    """Keeps the champion in memory for the life of the container and reloads it when the alias moves."""

    def __init__(self, store: ObjectStore, registry: Registry, artifact_bucket: str, max_records: int = 1000) -> None:
        self.store = store
        self.registry = registry
        self.artifact_bucket = artifact_bucket
        self.max_records = max_records
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def champion(self, name: str) -> LoadedModel:
        # One consistent read per request: a rollback takes effect on the very next request.
        version = self.registry.champion_version(name)
        loaded = self._loaded.get(name)
        if loaded is not None and loaded.version == version.version:
            return loaded
        with self._lock:
            artifact = self.store.get(version.artifact.bucket, version.artifact.key, version.artifact.version_id)
            contract = self.registry.contract(name)
            loaded = LoadedModel(name, version.version, contract, OnnxModel(artifact, contract))
            self._loaded[name] = loaded
            self.loads += 1
        return loaded

    def describe(self, name: str) -> dict[str, Any]:
        version = self.registry.champion_version(name)
        contract = self.registry.contract(name)
        return {
            "model": name,
            "version": version.version,
            "task": version.task,
            "metrics": version.metrics,
            "dataset_version": version.dataset_version,
            "created_at": version.created_at,
            "features": [f.model_dump(mode="json", exclude_none=True) for f in contract.features],
        }

    def predict(self, name: str, records: Any, request_id: str) -> tuple[int, list[dict[str, Any]]]:
        loaded = self.champion(name)
        checked = validate_records(loaded.contract, records, self.max_records)
        predictions = loaded.model.predict(checked)
        self._capture(loaded, checked, predictions, request_id)
        return loaded.version, predictions

    def _capture(
        self, loaded: LoadedModel, records: list[dict[str, Any]], outputs: list[dict[str, Any]], request_id: str
    ) -> None:
        now = utc_now()
        key = f"{CAPTURES}{loaded.name}/{now:%Y/%m/%d/%H%M%S%f}-{request_id}.json"
        document = {
            "model": loaded.name,
            "version": loaded.version,
            "at": now.isoformat(),
            "records": records,
            "outputs": outputs,
        }
        self.store.put(self.artifact_bucket, key, json.dumps(document).encode(), "application/json")
