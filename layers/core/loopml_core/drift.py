"""Drift: a baseline profile of the training data, live traffic counted against it, and the tests that compare them.

numpy only, so it runs beside onnxruntime or pyarrow. A profile is plain JSON:

    {
      "version": 2,
      "rows": 1600,
      "features": {
        "age":  {"kind": "numeric", "edges": [null, 23.0, ..., 61.0, null], "fractions": [...], "null_fraction": 0.0,
                 "fine_edges": [18.0, ..., 74.0], "fine_fractions": [...]},
        "plan": {"kind": "category", "values": ["basic", "pro"], "fractions": [...], "other_fraction": 0.0,
                 "null_fraction": 0.0}
      },
      "prediction": {... same shape as a feature, or null ...},
      "target": {... same shape as a feature, or null ...}
    }

Numeric bins are open-ended: `null` outer edges stand for -inf and +inf, and bin i holds values in
(edges[i], edges[i + 1]]. Nulls and unseen categories get their own buckets so that a rise in either shows as drift.
`fine_edges` are the cuts of a hundred quantile bins of the non-null values (`fine_fractions` sum to one), for the
Kolmogorov-Smirnov test; version-1 profiles lack them and are tested on their ten bins.

Traffic is counted into the baseline's buckets (`Tally`, `Window`): counts add up, so hours, files and chunks of a
window are counted apart and merged, and a check costs features x bins whatever the traffic or the baseline size.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from loopml_core.contract import DatasetContract, DriftThresholds, Task

PROFILE_VERSION = 2
NUMERIC_BINS = 10
FINE_BINS = 100  # quantile bins behind the KS test: its statistic is exact to within 1 % of the CDF
DEFAULT_THRESHOLDS = DriftThresholds()  # the contract's `monitoring.drift` defaults; frozen, so shared
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
    fine: list[float] = []
    if present.size:
        quantiles = np.linspace(0.0, 1.0, FINE_BINS + 1)[1:-1]
        fine = [float(c) for c in np.unique(np.quantile(present, quantiles, method="inverted_cdf"))]
    profile["fine_edges"] = fine
    counts = _bin_counts(np.asarray(fine, dtype=np.float64), present)
    profile["fine_fractions"] = [float(c) / max(present.size, 1) for c in counts]
    return profile


def _bin_counts(cuts: NDArray[np.float64], present: NDArray[np.float64]) -> NDArray[np.int64]:
    """How many of `present` (no NaN) fall in each bin (edges[i], edges[i + 1]] of the cuts, plus the open ends."""
    # side="left" puts a value equal to a cut in the bin that cut closes.
    return np.bincount(np.searchsorted(cuts, present, side="left"), minlength=cuts.size + 1).astype(np.int64)


def _sorted_bin_counts(cuts: NDArray[np.float64], ordered: NDArray[np.float64]) -> NDArray[np.int64]:
    # Searching the few cuts in the sorted values costs one sort for any number of cut sets, where searching every
    # value among the cuts costs a binary search per value per set. side="right" counts the values at or below each
    # cut, so a value equal to a cut lands in the bin that cut closes.
    below = np.searchsorted(ordered, cuts, side="right")
    return np.diff(below, prepend=0, append=ordered.size).astype(np.int64)


def numeric_bucket_counts(entry: Mapping[str, Any], x: NDArray[np.float64]) -> NDArray[np.int64]:
    """How many of `x` (NaN for null) fall in each bucket of a numeric entry: its bins, then null."""
    cuts = np.asarray([e for e in entry["edges"] if e is not None], dtype=np.float64)
    nulls = np.isnan(x)
    return np.append(_bin_counts(cuts, x[~nulls]), nulls.sum()).astype(np.int64)


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


def load_profile(raw: bytes | str) -> dict[str, Any]:
    """A stored profile (JSON), checked to be one: a baseline that is not is the platform's fault, not traffic's."""
    profile: Any = json.loads(raw)
    if not isinstance(profile, dict) or not isinstance(profile.get("features"), dict):
        raise ValueError("not a LoopML profile: no 'features' mapping")
    return profile


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


# -- the tests --------------------------------------------------------------------------------------------------------


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


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution: the asymptotic p-value of a KS statistic scaled by sqrt(n)."""
    if x <= 0:
        return 1.0
    if x < 1.18:  # the theta-function form converges fast for small x, where the alternating series does not
        k = np.arange(1, 9)
        cdf = math.sqrt(2 * math.pi) / x * float(np.sum(np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * x * x))))
        return min(1.0, max(0.0, 1.0 - cdf))
    k = np.arange(1, 101)
    return min(1.0, max(0.0, float(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k**2 * x * x)))))


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for a chi-squared variable with `dof` degrees of freedom: the regularized upper incomplete gamma
    Q(dof / 2, x / 2), by its series below a + 1 and its continued fraction above (Numerical Recipes, 6.2)."""
    if dof <= 0:
        raise ValueError("degrees of freedom must be positive")
    if x <= 0:
        return 1.0
    a, z = dof / 2.0, x / 2.0
    log_prefix = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= z / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return min(1.0, max(0.0, 1.0 - total * math.exp(log_prefix)))
    tiny = 1e-300
    b = z + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-15:
            break
    return min(1.0, max(0.0, math.exp(log_prefix) * h))


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float
    effect: float  # KS: the statistic itself; chi-squared: Cramer's V


def ks_test(expected: NDArray[np.float64], n_expected: float, observed: NDArray[np.int64]) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test on binned samples: `expected` are the baseline's fractions in ordered bins
    (summing to one) of `n_expected` values, `observed` the window's counts in the same bins. The statistic is the
    largest gap between the two CDFs at the bin edges; the p-value is the asymptotic one, with n*m/(n+m) values."""
    n_observed = float(observed.sum())
    if n_observed == 0 or n_expected <= 0:
        return TestResult(0.0, 1.0, 0.0)
    gap = np.abs(np.cumsum(expected) - np.cumsum(observed) / n_observed)
    statistic = float(gap.max()) if gap.size else 0.0
    effective = n_expected * n_observed / (n_expected + n_observed)
    return TestResult(statistic, kolmogorov_sf(math.sqrt(effective) * statistic), statistic)


def chi2_test(expected_counts: NDArray[np.float64], observed: NDArray[np.int64]) -> TestResult:
    """Chi-squared test of homogeneity of a 2 x k table (baseline counts, window counts), buckets empty in both
    left out; Cramer's V = sqrt(chi2 / N) is its effect size."""
    table = np.vstack([np.asarray(expected_counts, dtype=np.float64), np.asarray(observed, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    total = table.sum()
    if table.shape[1] < 2 or np.any(table.sum(axis=1) == 0):
        return TestResult(0.0, 1.0, 0.0)
    fitted = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    statistic = float(np.sum((table - fitted) ** 2 / fitted))
    return TestResult(statistic, chi2_sf(statistic, table.shape[1] - 1), math.sqrt(statistic / total))


# -- a window of traffic, counted against a profile ----------------------------------------------------------------


@dataclass
class Tally:
    """One column of a window counted in a profile entry's buckets; tallies of the same entry add up."""

    buckets: NDArray[np.int64]  # in `bucket_fractions` order: bins or values (then other), then null
    fine: NDArray[np.int64] | None = None  # numeric: the non-null values in the fine bins

    def __add__(self, other: Tally) -> Tally:
        fine = self.fine + other.fine if self.fine is not None and other.fine is not None else None
        return Tally(self.buckets + other.buckets, fine)


def tally(entry: Mapping[str, Any], values: NDArray[Any] | Sequence[Any]) -> Tally:
    """Count `values` into `entry`'s buckets: floats with NaN for null (numeric), or labels with None or "" for null.

    Numeric counting is vectorized; labels are counted per distinct value, never per row in Python.
    """
    if entry["kind"] == "numeric":
        x = _numeric_array(values)
        nulls = int(np.count_nonzero(np.isnan(x)))
        present = np.sort(x)[: x.size - nulls]  # NaN sorts last: the nulls are the tail
        cuts = np.asarray([e for e in entry["edges"] if e is not None], dtype=np.float64)
        buckets = np.append(_sorted_bin_counts(cuts, present), nulls).astype(np.int64)
        fine = None
        if "fine_edges" in entry:
            fine = _sorted_bin_counts(np.asarray(entry["fine_edges"], dtype=np.float64), present)
        return Tally(buckets, fine)
    # Counter hashes each label in C (str hashes are cached); a sort of a million strings would take ten times as long.
    counts = Counter(values.tolist() if isinstance(values, np.ndarray) else values)
    nulls = counts.pop(None, 0) + counts.pop("", 0)
    merged: dict[str, int] = {}
    for value, count in counts.items():
        merged[str(value)] = merged.get(str(value), 0) + count
    return label_tally(entry, merged, nulls)


def label_tally(entry: Mapping[str, Any], counts: Mapping[str, int], nulls: int) -> Tally:
    """A category entry's tally from counts per distinct label (e.g. from an Arrow dictionary) and the null count."""
    index = {v: i for i, v in enumerate(entry["values"])}
    buckets = np.zeros(len(index) + 2, dtype=np.int64)
    for value, count in counts.items():
        buckets[index.get(value, len(index))] += count
    buckets[-1] = nulls
    return Tally(buckets)


@dataclass
class Window:
    """Traffic of a time window counted against one profile: rows, then a tally per feature (and the prediction)."""

    rows: int = 0
    tallies: dict[str, Tally] = field(default_factory=dict)

    def add(self, name: str, counted: Tally) -> None:
        self.tallies[name] = self.tallies[name] + counted if name in self.tallies else counted

    def merge(self, other: Window) -> None:
        self.rows += other.rows
        for name, counted in other.tallies.items():
            self.add(name, counted)


def bucket_labels(entry: Mapping[str, Any]) -> list[str]:
    """What each bucket of `bucket_fractions(entry)` holds, as a report shows it."""
    if entry["kind"] == "category":
        return [*(str(v) for v in entry["values"]), "(other)", "(null)"]
    cuts = [e for e in entry["edges"] if e is not None]
    bounds = ["-inf", *(f"{c:.4g}" for c in cuts), "inf"]
    return [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(bounds)] + ["(null)"]


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict: its PSI, its test (KS for numbers, chi-squared for categories) and the distributions."""

    kind: str
    psi: float
    test: str
    statistic: float
    p_value: float
    effect: float
    drifted: bool
    buckets: list[str]
    expected: list[float]  # baseline fraction per bucket
    observed: list[float]  # window fraction per bucket

    def summary(self) -> dict[str, Any]:
        return {
            "psi": round(self.psi, 6),
            "test": self.test,
            "statistic": round(self.statistic, 6),
            "p_value": self.p_value,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftReport:
    """A window of traffic against the training profile, per feature (and `prediction` when outputs were counted)."""

    columns: dict[str, ColumnDrift]
    drifted: list[str]
    thresholds: DriftThresholds
    rows: int
    min_rows: int = DEFAULT_MIN_ROWS
    insufficient_data: bool = False

    @property
    def has_drift(self) -> bool:
        """True when enough rows were observed and at least one column drifted."""
        return not self.insufficient_data and bool(self.drifted)

    @property
    def per_feature(self) -> dict[str, float]:
        """PSI per column."""
        return {name: column.psi for name, column in self.columns.items()}

    @property
    def threshold(self) -> float:
        return self.thresholds.psi

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: the shape `loopml drift check --json` prints under `features`."""
        return {
            "rows": self.rows,
            "min_rows": self.min_rows,
            "insufficient_data": self.insufficient_data,
            "has_drift": self.has_drift,
            "drifted": list(self.drifted),
            "thresholds": self.thresholds.model_dump(),
            "features": {name: column.summary() for name, column in self.columns.items()},
        }


def _judge(
    entry: Mapping[str, Any], counted: Tally, baseline_rows: int, thresholds: DriftThresholds, tests: int
) -> ColumnDrift:
    expected = bucket_fractions(entry)
    total = max(int(counted.buckets.sum()), 1)
    observed = counted.buckets / total
    psi = population_stability_index(expected, observed)
    if entry["kind"] == "numeric":
        present = 1.0 - float(entry["null_fraction"])
        if counted.fine is not None and entry.get("fine_fractions"):
            result = ks_test(
                np.asarray(entry["fine_fractions"], dtype=np.float64), baseline_rows * present, counted.fine
            )
        else:  # a version-1 profile: its ten bins, nulls left out
            bins = expected[:-1] / max(float(expected[:-1].sum()), 1e-12)
            result = ks_test(bins, baseline_rows * present, counted.buckets[:-1])
        test = "ks"
    else:
        result = chi2_test(expected * baseline_rows, counted.buckets)
        test = "chi2"
    significant = result.p_value < thresholds.p_value / max(tests, 1) and result.effect >= thresholds.min_effect
    return ColumnDrift(
        kind=str(entry["kind"]),
        psi=psi,
        test=test,
        statistic=result.statistic,
        p_value=result.p_value,
        effect=result.effect,
        drifted=psi > thresholds.psi or significant,
        buckets=bucket_labels(entry),
        expected=[float(v) for v in expected],
        observed=[float(v) for v in observed],
    )


def judge(
    profile: Mapping[str, Any],
    window: Window,
    thresholds: DriftThresholds = DEFAULT_THRESHOLDS,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> DriftReport:
    """Compare a window of traffic with the profile it was counted against.

    Below `min_rows` rows the statistics are too noisy to act on: the report says `insufficient_data` and never
    `has_drift`. The p-value threshold is divided by the number of columns tested (Bonferroni), so checking twenty
    features does not multiply the false alarms by twenty.
    """
    if window.rows < min_rows:
        return DriftReport({}, [], thresholds, window.rows, min_rows, insufficient_data=True)
    entries = {name: entry for name, entry in profile["features"].items() if name in window.tallies}
    if profile.get(PREDICTION) is not None and PREDICTION in window.tallies:
        entries[PREDICTION] = profile[PREDICTION]
    baseline_rows = int(profile.get("rows") or 0)
    columns = {
        name: _judge(entry, window.tallies[name], baseline_rows, thresholds, len(entries))
        for name, entry in entries.items()
    }
    drifted = [name for name, column in columns.items() if column.drifted]
    return DriftReport(columns, drifted, thresholds, window.rows, min_rows)


def count_records(
    profile: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]] | None = None,
) -> Window:
    """A window from records and outputs in the serving shape (small inputs: tests, the CLI on a file)."""
    if outputs is not None and len(outputs) != len(records):
        raise ValueError(f"{len(outputs)} outputs for {len(records)} records")
    window = Window(rows=len(records))
    for name, entry in profile["features"].items():
        window.add(name, tally(entry, [r.get(name) for r in records]))
    prediction_entry = profile.get(PREDICTION)
    if outputs is not None and prediction_entry is not None:
        window.add(PREDICTION, tally(prediction_entry, _prediction_values(profile["task"], outputs)))
    return window


def compare(
    profile: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]] | None = None,
    thresholds: DriftThresholds = DEFAULT_THRESHOLDS,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> DriftReport:
    """Compare records (and the model's outputs on them) with a profile from `build_profile`."""
    return judge(profile, count_records(profile, records, outputs), thresholds, min_rows=min_rows)
