"""Drift: a baseline profile of the training data, and the population stability index of live traffic against it.

numpy only, so it runs in the inference layer next to onnxruntime. A profile is plain JSON:

    {
      "version": 1,
      "rows": 1600,
      "features": {
        "age":  {"kind": "numeric", "edges": [null, 23.0, ..., 61.0, null], "fractions": [...], "null_fraction": 0.0},
        "plan": {"kind": "category", "values": ["basic", "pro"], "fractions": [...], "other_fraction": 0.0,
                 "null_fraction": 0.0}
      },
      "prediction": {... same shape as a feature, or null ...},
      "target": {... same shape as a feature, or null ...}
    }

Numeric bins are open-ended: `null` outer edges stand for -inf and +inf, and bin i holds values in
(edges[i], edges[i + 1]]. Nulls and unseen categories get their own buckets so that a rise in either shows as drift.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from loopml_core.contract import DatasetContract, Task

PROFILE_VERSION = 1
NUMERIC_BINS = 10
DEFAULT_THRESHOLD = 0.2
DEFAULT_MIN_ROWS = 50
PREDICTION = "prediction"


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value == ""


def _numeric_array(values: Iterable[Any]) -> NDArray[np.float64]:
    """Floats with NaN for nulls; values that are not numbers count as nulls too (validation happens upstream)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    out: list[float] = []
    for v in values:
        if _is_null(v):
            out.append(math.nan)
            continue
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.asarray(out, dtype=np.float64)


def _numeric_profile(values: Iterable[Any]) -> dict[str, Any]:
    x = _numeric_array(values)
    present = x[~np.isnan(x)]
    cuts: list[float] = []
    if present.size:
        quantiles = np.linspace(0.0, 1.0, NUMERIC_BINS + 1)[1:-1]
        # Empirical quantiles are data values, so a heavily tied column gets its ties as edges, not interpolations.
        cuts = [float(c) for c in np.unique(np.quantile(present, quantiles, method="inverted_cdf"))]
    profile: dict[str, Any] = {"kind": "numeric", "edges": [None, *cuts, None]}
    profile.update(_numeric_fractions(profile, x))
    return profile


def numeric_bucket_counts(entry: Mapping[str, Any], x: NDArray[np.float64]) -> NDArray[np.int64]:
    """How many of `x` (NaN for null) fall in each bucket of a numeric entry: its bins, then null."""
    cuts = np.asarray([e for e in entry["edges"] if e is not None], dtype=np.float64)
    nulls = np.isnan(x)
    # side="left" puts a value equal to a cut in the bin that cut closes, matching (edges[i], edges[i + 1]].
    bins = np.bincount(np.searchsorted(cuts, x[~nulls], side="left"), minlength=cuts.size + 1)
    return np.append(bins, nulls.sum()).astype(np.int64)


def _numeric_fractions(profile: Mapping[str, Any], x: NDArray[np.float64]) -> dict[str, Any]:
    counts = numeric_bucket_counts(profile, x)
    denominator = max(x.size, 1)
    return {
        "fractions": [float(c) / denominator for c in counts[:-1]],
        "null_fraction": float(counts[-1]) / denominator,
    }


def _category_profile(values: Iterable[Any], categories: Sequence[str]) -> dict[str, Any]:
    profile: dict[str, Any] = {"kind": "category", "values": [str(c) for c in categories]}
    profile.update(_category_fractions(profile, values))
    return profile


def _category_fractions(profile: Mapping[str, Any], values: Iterable[Any]) -> dict[str, Any]:
    index = {v: i for i, v in enumerate(profile["values"])}
    counts = [0] * len(index)
    other = nulls = n = 0
    for v in values:
        n += 1
        if _is_null(v):
            nulls += 1
            continue
        i = index.get(str(v))
        if i is None:
            other += 1
        else:
            counts[i] += 1
    denominator = max(n, 1)
    return {
        "fractions": [c / denominator for c in counts],
        "other_fraction": other / denominator,
        "null_fraction": nulls / denominator,
    }


def bucket_fractions(entry: Mapping[str, Any]) -> NDArray[np.float64]:
    """All buckets of a profile entry as one fraction vector, in a fixed order, for the PSI: bins (or values, then
    other), then null."""
    tail = [entry["other_fraction"]] if entry["kind"] == "category" else []
    return np.asarray([*entry["fractions"], *tail, entry["null_fraction"]], dtype=np.float64)


def numeric_entry(sample: NDArray[np.float64], *, null_fraction: float) -> dict[str, Any]:
    """A numeric entry from an evenly spaced sample of a column (NaN for nulls) and the column's exact null fraction.

    Bin edges and bin shares come from the sample's non-null values; nulls are counted over every row, so a column
    whose few nulls all fall between sampled rows still shows them.
    """
    present = sample[~np.isnan(sample)]
    entry = _numeric_profile(present)
    share = 1.0 - null_fraction
    entry["fractions"] = [f * share for f in entry["fractions"]] if present.size else entry["fractions"]
    entry["null_fraction"] = null_fraction
    return entry


def category_entry(
    values: Sequence[str], counts: Mapping[str, int], *, other: int, nulls: int, rows: int
) -> dict[str, Any]:
    """A category entry from exact counts: of each contract value, of values outside the list, and of nulls."""
    denominator = max(rows, 1)
    return {
        "kind": "category",
        "values": [str(v) for v in values],
        "fractions": [counts.get(str(v), 0) / denominator for v in values],
        "other_fraction": other / denominator,
        "null_fraction": nulls / denominator,
    }


def profile_from_entries(contract: DatasetContract, rows: int, features: Mapping[str, Any]) -> dict[str, Any]:
    """A dataset profile (features only; no prediction or target) from entries built elsewhere, e.g. streamed."""
    return {
        "version": PROFILE_VERSION,
        "task": str(contract.task),
        "rows": rows,
        "features": {f.name: features[f.name] for f in contract.features},
        PREDICTION: None,
        "target": None,
    }


def _observe(entry: Mapping[str, Any], values: Sequence[Any]) -> dict[str, Any]:
    if entry["kind"] == "numeric":
        return _numeric_fractions(entry, _numeric_array(values))
    return _category_fractions(entry, values)


def _prediction_values(task: Task | str, outputs: Sequence[Mapping[str, Any]]) -> list[Any]:
    key = "label" if Task(task) is Task.CLASSIFICATION else "value"
    return [o.get(key) for o in outputs]


def build_profile(
    contract: DatasetContract,
    columns: Mapping[str, NDArray[Any] | Sequence[Any]],
    outputs: Sequence[Mapping[str, Any]] | None,
    *,
    targets: NDArray[Any] | Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Profile the training features (and optionally the model's outputs and the target) as JSON-serialisable data.

    `columns` maps every contract feature to its training values; `outputs` are predictions in the serving shape
    (`{"label": ..., "probabilities": ...}` or `{"value": ...}`).
    """
    missing = [f.name for f in contract.features if f.name not in columns]
    if missing:
        raise ValueError(f"profile needs every contract feature; missing: {', '.join(missing)}")
    rows = {len(columns[f.name]) for f in contract.features}
    if len(rows) != 1:
        raise ValueError(f"feature columns have different lengths: {sorted(rows)}")
    features: dict[str, Any] = {}
    for f in contract.features:
        values = columns[f.name]
        features[f.name] = _numeric_profile(values) if f.is_numeric else _category_profile(values, f.values or ())

    def profile_labels(values: Sequence[Any]) -> dict[str, Any]:
        if contract.task is Task.REGRESSION:
            return _numeric_profile(values)
        seen = {str(v) for v in values if not _is_null(v)}
        return _category_profile(values, sorted(seen | set(contract.target_values or ())))

    return {
        "version": PROFILE_VERSION,
        "task": str(contract.task),
        "rows": rows.pop(),
        "features": features,
        PREDICTION: profile_labels(_prediction_values(contract.task, outputs)) if outputs is not None else None,
        "target": profile_labels(list(targets)) if targets is not None else None,
    }


def population_stability_index(
    expected: NDArray[np.float64] | Sequence[float],
    observed: NDArray[np.float64] | Sequence[float],
    epsilon: float = 1e-4,
) -> float:
    """PSI = sum((o - e) * ln(o / e)) over buckets of two fraction vectors; empty buckets are floored at `epsilon`."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    o = np.maximum(np.asarray(observed, dtype=np.float64), epsilon)
    if e.shape != o.shape:
        raise ValueError(f"expected and observed have different bucket counts: {e.shape} vs {o.shape}")
    return float(np.sum((o - e) * np.log(o / e)))


@dataclass(frozen=True)
class DriftReport:
    """PSI of live traffic against the training profile, per feature (and `prediction` when outputs were given)."""

    per_feature: dict[str, float]
    drifted: list[str]
    threshold: float
    rows: int
    min_rows: int = DEFAULT_MIN_ROWS
    insufficient_data: bool = False
    observed: dict[str, list[float]] = field(default_factory=dict)

    @property
    def has_drift(self) -> bool:
        """True when enough rows were observed and at least one PSI is over the threshold."""
        return not self.insufficient_data and bool(self.drifted)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, including `has_drift`."""
        data = asdict(self)
        data["has_drift"] = self.has_drift
        return data


def compare(
    profile: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> DriftReport:
    """Compare observed records (and the model's outputs on them) with a profile from `build_profile`.

    Below `min_rows` observed records the PSI is too noisy to act on, so the report says `insufficient_data` and
    never `has_drift`.
    """
    rows = len(records)
    if outputs is not None and len(outputs) != rows:
        raise ValueError(f"{len(outputs)} outputs for {rows} records")
    if rows < min_rows:
        return DriftReport({}, [], threshold, rows, min_rows, insufficient_data=True)

    per_feature: dict[str, float] = {}
    observed: dict[str, list[float]] = {}
    for name, entry in profile["features"].items():
        seen = {**entry, **_observe(entry, [r.get(name) for r in records])}
        per_feature[name] = population_stability_index(bucket_fractions(entry), bucket_fractions(seen))
        observed[name] = [float(v) for v in bucket_fractions(seen)]
    prediction_entry = profile.get(PREDICTION)
    if outputs is not None and prediction_entry is not None:
        seen = {**prediction_entry, **_observe(prediction_entry, _prediction_values(profile["task"], outputs))}
        per_feature[PREDICTION] = population_stability_index(bucket_fractions(prediction_entry), bucket_fractions(seen))
        observed[PREDICTION] = [float(v) for v in bucket_fractions(seen)]

    drifted = [name for name, psi in per_feature.items() if psi > threshold]
    return DriftReport(per_feature, drifted, threshold, rows, min_rows, insufficient_data=False, observed=observed)
