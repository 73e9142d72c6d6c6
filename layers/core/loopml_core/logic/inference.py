"""Online predictions from the champion: validate the request against the contract, predict, capture.

Imports onnxruntime and numpy only (through loopml_core.serving); never scikit-learn or pandas, never pickle.
Capture goes to a `CaptureSink` (the function's log stream), never to S3 from the request path.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loopml_core.adapters.object_store import ObjectStore
from loopml_core.capture import CaptureSink, capture_lines, retention_class, sampled
from loopml_core.clock import iso
from loopml_core.contract import DatasetContract, Feature, FeatureType, OutOfRange
from loopml_core.errors import FieldProblem, InvalidRequestError
from loopml_core.registry import Registry
from loopml_core.serving import OnnxModel

MAX_PROBLEMS = 50
DEFAULT_ALIAS_TTL_S = 5.0  # how stale a warm container's champion may be after a promotion or rollback


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
    accept = contract.serving.out_of_range == OutOfRange.ACCEPT
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
                message = _value_problem(feature, record[feature.name], accept)
                if message:
                    problems.append(FieldProblem(feature.name, message, index))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise InvalidRequestError(f"{len(problems)} invalid field(s) in 'records'", problems[:MAX_PROBLEMS])
    return records


FLOAT32_MAX = 3.4028234663852886e38  # the model computes in float32: a larger number would reach it as infinity


def _value_problem(feature: Feature, value: Any, accept_out_of_range: bool) -> str | None:
    if value is None:
        return "must not be null"
    if feature.type is FeatureType.CATEGORY:
        if not isinstance(value, str):
            return f"must be a string, one of {list(feature.values or ())}"
        if feature.values is not None and value not in feature.values:
            return f"'{value}' is not one of {list(feature.values)}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number ({feature.type.value}), got {type(value).__name__}"
    try:
        number = float(value)
    except OverflowError:
        return "must be a finite number"
    if not math.isfinite(number):
        return "must be a finite number"
    if abs(number) > FLOAT32_MAX:
        return f"{number:g} overflows the model's float32 inputs"
    if feature.type is FeatureType.INT and number != int(value):
        return f"must be an integer, got {value}"
    if not accept_out_of_range:
        if feature.min is not None and number < feature.min:
            return f"{value} is below the contract's minimum {feature.min:g}"
        if feature.max is not None and number > feature.max:
            return f"{value} is above the contract's maximum {feature.max:g}"
    return None


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    contract: DatasetContract
    model: OnnxModel


@dataclass(frozen=True)
class Prediction:
    model: str
    version: int
    request_id: str
    predictions: list[dict[str, Any]]  # in record order, each with its `index` in the request


class PredictionService:
    """Keeps the champion in memory for the life of the container; looks the alias up again at most every
    `alias_ttl_s` seconds, so a request makes no AWS call in steady state and a promotion or rollback reaches every
    warm container within that bound."""

    def __init__(
        self,
        store: ObjectStore,
        registry: Registry,
        capture: CaptureSink,
        max_records: int = 1000,
        on_capture_error: Any = None,
        alias_ttl_s: float = DEFAULT_ALIAS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.registry = registry
        self.capture = capture
        self.max_records = max_records
        self.alias_ttl_s = alias_ttl_s
        self._clock = clock
        self._on_capture_error = on_capture_error
        self._loaded: dict[str, LoadedModel] = {}
        self._checked_at: dict[str, float] = {}  # when each model's alias was last read
        self._lock = threading.Lock()
        self.loads = 0

    def champion(self, name: str) -> LoadedModel:
        now = self._clock()
        loaded = self._loaded.get(name)
        if loaded is not None and now - self._checked_at[name] < self.alias_ttl_s:
            return loaded
        version = self.registry.champion_version(name)
        if loaded is None or loaded.version != version.version:
            with self._lock:
                artifact = self.store.get(version.artifact.bucket, version.artifact.key, version.artifact.version_id)
                contract = self.registry.contract(name)
                loaded = LoadedModel(name, version.version, contract, OnnxModel(artifact, contract))
                self._loaded[name] = loaded
                self.loads += 1
        self._checked_at[name] = now
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

    def predict(self, name: str, records: Any, request_id: str) -> Prediction:
        loaded = self.champion(name)
        checked = validate_records(loaded.contract, records, self.max_records)
        outputs = loaded.model.predict(checked)
        if sampled(loaded.contract.monitoring.sample_rate):
            self._capture(loaded, checked, outputs, request_id)
        predictions = [{"index": index, **output} for index, output in enumerate(outputs)]
        return Prediction(name, loaded.version, request_id, predictions)

    def _capture(
        self, loaded: LoadedModel, records: list[dict[str, Any]], outputs: list[dict[str, Any]], request_id: str
    ) -> None:
        lines = capture_lines(
            model=loaded.name,
            version=loaded.version,
            retention=retention_class(loaded.contract.monitoring.retention_days),
            request_id=request_id,
            at=iso(),
            features=loaded.contract.feature_names,
            records=records,
            outputs=outputs,
            classes=loaded.model.classes,
        )
        try:
            self.capture.emit(lines)
        except (ValueError, TypeError, KeyError, OSError) as error:  # the answer matters more than its record
            if self._on_capture_error is not None:
                self._on_capture_error(error)
