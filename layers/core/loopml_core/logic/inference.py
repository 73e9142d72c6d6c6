"""Online predictions from the champion: validate the request against the contract, predict, capture.

Imports onnxruntime and numpy only (through loopml_core.serving); never scikit-learn or pandas, never pickle.
Capture goes to a `CaptureSink` (the function's log stream), never to S3 from the request path.

The request path is columnar. A body as sent (`JsonRequest`) is decoded by a msgspec decoder built from the model's
contract, which checks each value's type, every feature's presence, nulls and category membership as it reads; the
numbers are then checked at once with numpy (finite, float32 range, integers, min/max). A body that path refuses is
read again by the API's strict reader and walked record by record, to name every fault with its record and field.
The model is fed straight from the checked columns, and the capture line is written from the same columns and the
model's outputs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from loopml_core import routing
from loopml_core.adapters.object_store import ObjectStore
from loopml_core.capture import CaptureSink, columnar_capture_lines, retention_class, sampled
from loopml_core.clock import iso
from loopml_core.contract import DatasetContract, Feature, FeatureType, OutOfRange
from loopml_core.errors import FieldProblem, InvalidRequestError
from loopml_core.registry import Registry
from loopml_core.routing import Variant

if TYPE_CHECKING:
    from loopml_core.models import ServingState
from loopml_core.serving import ModelOutputs, OnnxModel, category_column

MAX_PROBLEMS = 50
DEFAULT_ALIAS_TTL_S = 5.0  # how stale a warm container's champion may be after a promotion or rollback
FLOAT32_MAX = 3.4028234663852886e38  # the model computes in float32: a larger number would reach it as infinity
NUMBER_TYPES = frozenset({int, float})  # exactly: a bool is not a number here, nor is a str holding one
NULL_TYPE = type(None)
INT64_LIMIT = 2.0**63  # an integer this large reads as a float from the strict reader, and is captured as one


@dataclass(frozen=True)
class JsonRequest:
    """A predict request's body as it was sent, not yet read.

    The validator of the model that answers decodes it straight into checked columns (`RecordValidator.validate`).
    A body that fast path refuses is handed to `read`, the API's strict reader, which raises the API's error for a
    body that is not a request and otherwise returns its `records` to be checked one by one.
    """

    body: bytes
    read: Callable[[bytes], Any]


@dataclass(frozen=True)
class FeatureColumns:
    """Records that passed the contract, held column by column, in record order.

    `values` are each feature's values as the client sent them (what capture records). `numbers` holds the int and
    float features for the model, one row per feature in contract order, float64 with NaN for a null; `categories`
    holds each category feature as the graph takes it (`serving.category_column`: strings, "" for a null).
    """

    count: int
    values: dict[str, Sequence[Any]]
    numbers: NDArray[np.float64]
    categories: dict[str, NDArray[Any]]


class RecordValidator:
    """Checks request records against one contract (built once per loaded model, used for every request).

    Every numeric feature is checked at once, as one [features, records] float64 matrix against per-feature bounds,
    so a request costs a dozen numpy operations whatever its width; only the types are looked at value by value.
    """

    def __init__(self, contract: DatasetContract) -> None:
        self.contract = contract
        self.names = contract.feature_names
        numeric = [f for f in contract.features if f.is_numeric]
        self._numeric_names = [f.name for f in numeric]
        self._nullable = np.array([f.nullable for f in numeric], dtype=bool).reshape(-1, 1)
        self._integers = np.array([f.type is FeatureType.INT for f in numeric], dtype=bool)
        reject = contract.serving.out_of_range != OutOfRange.ACCEPT
        # NaN where a feature has no bound (or out-of-range values are accepted): a comparison with NaN is false.
        self._minimum = np.array([f.min if reject and f.min is not None else np.nan for f in numeric]).reshape(-1, 1)
        self._maximum = np.array([f.max if reject and f.max is not None else np.nan for f in numeric]).reshape(-1, 1)
        self._categories = {
            f.name: (frozenset(f.values or ()), f.nullable) for f in contract.features if not f.is_numeric
        }
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_request_type(contract))

    def validate(self, records: Any, max_records: int) -> FeatureColumns:
        """The records, or a `JsonRequest` holding them, as checked columns; raises InvalidRequestError naming every
        field at fault (up to 50)."""
        if isinstance(records, JsonRequest):
            decoded = self._decoded(records.body, max_records)
            if decoded is not None:
                return decoded
            records = records.read(records.body)
        _check_shape(records, max_records)
        columns = self._columns(records)
        if columns is not None:
            return columns
        problems = record_problems(self.contract, records)
        if problems:
            raise InvalidRequestError(f"{len(problems)} invalid field(s) in 'records'", problems)
        # The record walk is the rule; the vectorised checks only skip it. Values they do not know (a numpy scalar
        # from a Python caller, say) that the rule accepts are converted one by one.
        return self._columns_of(records, {name: [record[name] for record in records] for name in self.names})

    def _row_getter(self, first: Any) -> Callable[[Any], tuple[Any, ...]]:
        """A function giving a record's values in contract order. It looks the features up with the first record's own
        key objects: orjson hands every record the same key strings, and a dict lookup that finds the very object it
        was given skips comparing the characters (twice as fast over a thousand records)."""
        keys = {key: key for key in first} if isinstance(first, dict) else {}
        names = [keys.get(name, name) for name in self.names]
        if len(names) == 1:
            return _single_field_row(names[0])
        return itemgetter(*names)

    def _decoded(self, body: bytes, max_records: int) -> FeatureColumns | None:
        """The body decoded by the contract's own decoder and checked; None for anything it or the checks refuse."""
        try:
            records = self._decoder.decode(body).records
        except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec.ValidationError is a DecodeError
            return None
        if not 0 < len(records) <= max_records:
            return None
        columns = zip(*map(msgspec.structs.astuple, records), strict=True)
        values: dict[str, Sequence[Any]] = dict(zip(self.names, columns, strict=True))
        return self._checked(len(records), values, has_float=True, categories_known=True)

    def _columns(self, records: list[Any]) -> FeatureColumns | None:
        """Each feature's column, checked with vectorised tests; None as soon as anything is at fault."""
        try:
            rows = list(map(self._row_getter(records[0]), records))
        except (KeyError, TypeError, IndexError):  # a record that is not an object, or lacks a feature
            return None
        if set(map(len, records)) != {len(self.names)}:  # every feature is there: a longer record has extra fields
            return None
        values: dict[str, Sequence[Any]] = dict(zip(self.names, zip(*rows, strict=True), strict=True))
        kinds = set(map(type, chain.from_iterable(values[name] for name in self._numeric_names)))
        if not kinds <= NUMBER_TYPES | {NULL_TYPE}:
            return None
        return self._checked(len(records), values, has_float=float in kinds, categories_known=False)

    def _checked(
        self, count: int, values: dict[str, Sequence[Any]], has_float: bool, categories_known: bool
    ) -> FeatureColumns | None:
        """Columns whose numeric values are all ints, floats or None, checked against the contract at once. With
        `categories_known` the category columns hold only their feature's values (and None where it is nullable)."""
        numeric = [values[name] for name in self._numeric_names]
        shape = (len(numeric), count)
        try:  # a None becomes NaN
            numbers = np.fromiter(chain.from_iterable(numeric), np.float64, shape[0] * shape[1]).reshape(shape)
        except OverflowError:  # an integer beyond float64: the strict reader names it
            return None
        if not self._numbers_pass(numbers, numeric, has_float):
            return None
        if categories_known:
            if (np.abs(numbers) >= INT64_LIMIT).any():  # the strict reader would read such an integer as a float
                return None
            categories = {
                name: category_column(values[name], nullable and None in values[name])
                for name, (_, nullable) in self._categories.items()
            }
            return FeatureColumns(count, values, numbers, categories)
        categories = {}
        for name, (allowed, nullable) in self._categories.items():
            column = values[name]
            try:
                seen = set(column)
            except TypeError:  # an object or a list where a string belongs
                return None
            has_null = None in seen
            if has_null:
                if not nullable:
                    return None
                seen.discard(None)
            if set(map(type, seen)) - {str} or not seen <= allowed:
                return None
            categories[name] = category_column(column, has_null)
        return FeatureColumns(count, values, numbers, categories)

    def _numbers_pass(self, numbers: NDArray[np.float64], numeric: list[Sequence[Any]], has_float: bool) -> bool:
        not_finite = ~np.isfinite(numbers)
        if not_finite.any():
            # Nulls became NaN: each feature's count of non-finite values must be its count of nulls, and only a
            # nullable feature may hold one. Anything else is a NaN or an infinity sent as a number.
            for row in np.flatnonzero(not_finite.any(axis=1)):
                if not self._nullable[row, 0] or numeric[row].count(None) != int(not_finite[row].sum()):
                    return False
        with np.errstate(invalid="ignore"):  # NaN (a null, or no bound) compares false everywhere below
            if (np.abs(numbers) > FLOAT32_MAX).any():
                return False
            if has_float and self._integers.any():
                integers = numbers[self._integers]
                if ((integers != np.trunc(integers)) & np.isfinite(integers)).any():  # NaN != NaN: nulls are out
                    return False
            if (numbers < self._minimum).any() or (numbers > self._maximum).any():
                return False
        return True

    def _columns_of(self, records: list[Any], values: dict[str, Sequence[Any]]) -> FeatureColumns:
        numeric = [[math.nan if v is None else float(v) for v in values[name]] for name in self._numeric_names]
        numbers = np.array(numeric, dtype=np.float64).reshape(len(numeric), len(records))
        categories = {name: category_column(values[name]) for name in self._categories}
        return FeatureColumns(len(records), values, numbers, categories)


def _request_type(contract: DatasetContract) -> type[msgspec.Struct]:
    """The type of a predict request's body under `contract`, for msgspec: `{"records": [record, ...]}` and nothing
    else, each record an object of exactly the contract's features. A number is an int or a float (never a bool or
    a string), a category one of its values, and null only where the feature is nullable. Fields are named by
    position and renamed to the features' names, which need not be Python identifiers."""
    fields: list[tuple[str, Any]] = []
    for position, feature in enumerate(contract.features):
        kind: Any = int | float if feature.is_numeric else Literal[tuple(feature.values or ())]
        fields.append((f"f{position}", kind | None if feature.nullable else kind))
    rename = {f"f{position}": feature.name for position, feature in enumerate(contract.features)}
    record: Any = msgspec.defstruct("Record", fields, rename=rename, forbid_unknown_fields=True, gc=False)
    return msgspec.defstruct("PredictBody", [("records", list[record])], forbid_unknown_fields=True, gc=False)


def _single_field_row(name: str) -> Callable[[Any], tuple[Any]]:
    def row(record: Any) -> tuple[Any]:
        return (record[name],)

    return row


def validate_records(contract: DatasetContract, records: Any, max_records: int) -> FeatureColumns:
    """Check `records` against the contract; raise InvalidRequestError naming every field at fault (up to 50)."""
    return RecordValidator(contract).validate(records, max_records)


def _check_shape(records: Any, max_records: int) -> None:
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


def record_problems(contract: DatasetContract, records: list[Any]) -> list[FieldProblem]:
    """Every field at fault, record by record (at most `MAX_PROBLEMS`): the rule the vectorised checks implement."""
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
    return problems[:MAX_PROBLEMS]


def _value_problem(feature: Feature, value: Any, accept_out_of_range: bool) -> str | None:
    if value is None:
        return None if feature.nullable else "must not be null"
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
    validator: RecordValidator


@dataclass(frozen=True)
class Prediction:
    model: str
    version: int  # the version that answered
    request_id: str
    predictions: list[dict[str, Any]]  # in record order, each with its `index` in the request
    variant: Variant = "champion"


class PredictionService:
    """Keeps the versions it serves in memory for the life of the container. The champion and any deployment in
    progress (challenger, mode, weight) are read again at most every `alias_ttl_s` seconds, in one registry call, so
    a request makes no AWS call in steady state and a promotion, deployment or rollback reaches every warm container
    within that bound. Each request is routed (`loopml_core.routing`) to the version that answers it; a challenger
    in shadow scores the same checked columns after the response (`defer`), and its lines are captured apart."""

    def __init__(
        self,
        store: ObjectStore,
        registry: Registry,
        capture: CaptureSink,
        max_records: int = 1000,
        on_capture_error: Any = None,
        alias_ttl_s: float = DEFAULT_ALIAS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        on_shadow_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.capture = capture
        self.max_records = max_records
        self.alias_ttl_s = alias_ttl_s
        self._clock = clock
        self._on_capture_error = on_capture_error
        self._on_shadow_error = on_shadow_error
        self._states: dict[str, tuple[ServingState, float]] = {}  # model -> what it serves, and when that was read
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def serving_state(self, name: str) -> ServingState:
        """The champion and deployment of `name`, at most `alias_ttl_s` old."""
        now = self._clock()
        cached = self._states.get(name)
        if cached is not None and now - cached[1] < self.alias_ttl_s:
            return cached[0]
        state = self.registry.serving_state(name)
        with self._lock:
            newer = self._states.get(name)
            if newer is not None and newer[1] > now:  # another thread read it later: keep the later reading
                return newer[0]
            self._states[name] = (state, now)
            # Only the versions named now stay loaded: at most two models per name in memory.
            named = {state.champion} | ({state.deployment.version} if state.deployment else set())
            for key in [key for key in self._loaded if key[0] == name and key[1] not in named]:
                del self._loaded[key]
        return state

    def model(self, name: str, version: int) -> LoadedModel:
        """Version `version` of `name`, loaded from its artefact the first time it is needed (versions never change)."""
        loaded = self._loaded.get((name, version))
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._loaded.get((name, version))
            if loaded is None:
                registered = self.registry.model_version(name, version)
                artifact = registered.artifact
                onnx_model = self.store.get(artifact.bucket, artifact.key, artifact.version_id)
                contract = self.registry.contract(name)
                model = OnnxModel(onnx_model, contract)
                loaded = LoadedModel(name, version, contract, model, RecordValidator(contract))
                self._loaded[(name, version)] = loaded
                self.loads += 1
        return loaded

    def champion(self, name: str) -> LoadedModel:
        return self.model(name, self.serving_state(name).champion)

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

    def predict(
        self,
        name: str,
        records: Any,
        request_id: str,
        client_key: str | None = None,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> Prediction:
        """Answer `records` with the version the request is routed to; `defer` runs work after the response (a
        shadow scoring), and defaults to running it at once."""
        route = routing.route(self.serving_state(name), client_key=client_key, request_id=request_id)
        loaded = self.model(name, route.answering_version)
        columns = loaded.validator.validate(records, self.max_records)
        outputs = loaded.model.outputs(loaded.model.run(loaded.model.column_feeds(columns.numbers, columns.categories)))
        if sampled(loaded.contract.monitoring.sample_rate):
            self._capture(loaded, columns, outputs, request_id)
            if route.shadow_version is not None:
                shadow_version = route.shadow_version
                (defer or _now)(lambda: self._score_in_shadow(name, shadow_version, columns, request_id))
        return Prediction(name, loaded.version, request_id, outputs.rows(), route.variant)

    def _score_in_shadow(self, name: str, version: int, columns: FeatureColumns, request_id: str) -> None:
        """The challenger's answer to checked columns the champion answered, captured as a shadow line; never raises."""
        try:
            challenger = self.model(name, version)
            feeds = challenger.model.column_feeds(columns.numbers, columns.categories)
            self._capture(challenger, columns, challenger.model.outputs(challenger.model.run(feeds)), request_id, True)
        except Exception as error:  # the answer has gone; a failed shadow scoring must not fail anything else
            if self._on_shadow_error is not None:
                self._on_shadow_error(error)

    def _capture(
        self,
        loaded: LoadedModel,
        columns: FeatureColumns,
        outputs: ModelOutputs,
        request_id: str,
        shadow: bool = False,
    ) -> None:
        lines = columnar_capture_lines(
            model=loaded.name,
            version=loaded.version,
            shadow=shadow,
            retention=retention_class(loaded.contract.monitoring.retention_days),
            request_id=request_id,
            at=iso(),
            features=columns.values,
            prediction=outputs.prediction,
            classes=outputs.classes,
            probabilities=outputs.probabilities,
        )
        try:
            self.capture.emit(lines)
        except (ValueError, TypeError, KeyError, OSError) as error:  # the answer matters more than its record
            if self._on_capture_error is not None:
                self._on_capture_error(error)


def _now(task: Callable[[], None]) -> None:
    task()
