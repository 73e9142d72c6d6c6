"""Champion against challenger on live labels: each variant's metrics with confidence intervals, and a verdict.

numpy and the standard library only. The inputs are the per-version live performance counts the label join already
keeps (`loopml_core.performance.PerformanceCounts`, merged over the days since the deployment began), so a
comparison never reads a row again. Each interval is one that is valid for what those counts hold:

- **accuracy**: Wilson score interval per variant (good at small counts and near 0 or 1); the difference
  challenger - champion by Newcombe's hybrid score interval (his method 10), built from the two Wilson intervals.
- **f1_macro**: bootstrap. A labelled row is fully described, for F1, by its cell of the confusion matrix, so
  resampling rows with replacement is exactly a multinomial draw of the cells at their observed frequencies: the
  counts bootstrap is the row bootstrap, not an approximation of it. Percentile intervals from a fixed number of
  replicates with a fixed seed, so the same counts always give the same answer. The difference is bootstrapped
  from the two variants' independent replicates.
- **roc_auc** (two classes): the same bootstrap on the score histograms, stratified by class (positives and
  negatives resampled separately, as is usual for AUC). With more classes the macro average's per-class histograms
  share rows, which independent resampling would ignore: the value is shown without an interval, and a verdict on
  roc_auc is taken on f1_macro instead (the result says so).
- **mae**: the central limit theorem on |error|: its mean is `absolute_error_sum / n` and its variance follows from
  `squared_error_sum` (|e|^2 = e^2), so the normal interval needs no assumption about the errors' distribution.
- **rmse**: a normal interval for the mean squared error, mapped through the square root. Its variance needs the
  fourth moment of the errors, which the counts do not keep; it is taken from the errors' mean and variance as if
  they were normal (var(e^2) = 2 s^4 + 4 m^2 s^2). With heavy-tailed errors this interval is too narrow; MAE's is not.

The verdict is read from the interval of the difference in the contract's metric: "challenger better" or "champion
better" when it excludes zero (and each variant has at least `min_labels` labels), else "no significant difference
yet", with an estimate of how many more labels would make the observed difference significant if it held: an
interval's width shrinks as 1/sqrt(n), so labels arriving in the current proportions need to multiply by
(half-width / |difference|)^2. Each look is a fresh interval at `confidence`: checking again and again until one
side wins raises the chance of a false verdict, so decide beforehand how many labels the comparison waits for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from loopml_core.contract import PerformanceMetric
from loopml_core.performance import PerformanceCounts, metrics

CHALLENGER_BETTER = "challenger better"
CHAMPION_BETTER = "champion better"
UNDECIDED = "no significant difference yet"
BOOTSTRAP_REPLICATES = 4000
SEED = 2718  # fixed: the same counts always give the same intervals and verdict

METHODS = {
    "accuracy": "Wilson score interval; difference: Newcombe's hybrid score interval",
    "f1_macro": f"percentile bootstrap of the confusion counts ({BOOTSTRAP_REPLICATES} multinomial resamples)",
    "roc_auc": f"percentile bootstrap of the score histograms by class ({BOOTSTRAP_REPLICATES} resamples; 2 classes)",
    "rmse": "normal interval of the mean squared error, assuming roughly normal errors; difference by the delta method",
    "mae": "normal interval of the mean absolute error (central limit theorem)",
}


@dataclass(frozen=True)
class Estimate:
    """A metric's value and its confidence interval (None when no valid interval can be had from the counts)."""

    value: float
    low: float | None = None
    high: float | None = None

    def to_json(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class VariantMetrics:
    variant: str  # "champion" or "challenger"
    version: int
    labels: int
    metrics: dict[str, Estimate]

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "version": self.version,
            "labels": self.labels,
            "metrics": {name: estimate.to_json() for name, estimate in self.metrics.items()},
        }


@dataclass(frozen=True)
class Comparison:
    metric: str  # the metric the verdict is read from
    higher_is_better: bool
    confidence: float
    champion: VariantMetrics
    challenger: VariantMetrics
    difference: Estimate | None  # challenger - champion in `metric`, with its interval
    differences: dict[str, Estimate]  # challenger - champion in every metric both variants have an interval for
    verdict: str
    more_labels: int | None  # labels still needed, when undecided and estimable
    notes: list[str]

    @property
    def summary(self) -> str:
        """The verdict as one line, e.g. `no significant difference yet (need ~1,200 more labels)`."""
        if self.verdict != UNDECIDED:
            return self.verdict
        if self.more_labels is None:
            return f"{self.verdict} (the variants measure the same so far: more labels may never separate them)"
        return f"{self.verdict} (need ~{self.more_labels:,} more labels)"

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "confidence": self.confidence,
            "champion": self.champion.to_json(),
            "challenger": self.challenger.to_json(),
            "difference": self.difference.to_json() if self.difference else None,
            "differences": {name: estimate.to_json() for name, estimate in self.differences.items()},
            "verdict": self.verdict,
            "more_labels": self.more_labels,
            "summary": self.summary,
            "methods": {name: METHODS[name] for name in self.champion.metrics | self.challenger.metrics},
            "notes": self.notes,
        }


def z_value(confidence: float) -> float:
    """The two-sided normal quantile for `confidence` (1.96 for 0.95)."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be at least 0.5 and below 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion of `successes` in `n`."""
    if n <= 0:
        raise ValueError("a proportion needs at least one trial")
    z = z_value(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Newcombe's hybrid score interval for p_b - p_a (his method 10): (difference, low, high)."""
    p_a, p_b = successes_a / n_a, successes_b / n_b
    low_a, high_a = wilson(successes_a, n_a, confidence)
    low_b, high_b = wilson(successes_b, n_b, confidence)
    difference = p_b - p_a
    low = difference - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
    high = difference + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    return difference, low, high


def macro_f1(confusion: NDArray[np.int64]) -> NDArray[np.float64]:
    """Macro F1 of one confusion matrix [true, predicted] or a stack of them [..., k, k], over the classes present in
    the truth or the predictions (as `performance.metrics` and scikit-learn compute it)."""
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    both = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    present = both > 0
    f1 = np.divide(2 * true_positives, both, out=np.zeros(both.shape), where=present)
    return np.asarray(f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1), dtype=np.float64)


def histogram_auc(positives: NDArray[np.int64], negatives: NDArray[np.int64]) -> NDArray[np.float64]:
    """Mann-Whitney AUC from score histograms [..., bins] (ties count half), as `performance` computes it."""
    below = np.cumsum(negatives, axis=-1) - negatives
    pairs = positives.sum(axis=-1) * negatives.sum(axis=-1)
    return np.asarray((positives * (below + 0.5 * negatives)).sum(axis=-1) / pairs, dtype=np.float64)


def _resample(counts: NDArray[np.int64], rng: np.random.Generator, replicates: int) -> NDArray[np.int64]:
    """`replicates` bootstrap resamples of a table of counts (any shape): multinomial at the observed frequencies."""
    flat = counts.ravel()
    total = int(flat.sum())
    draws = rng.multinomial(total, flat / total, size=replicates)
    return np.asarray(draws.reshape(replicates, *counts.shape), dtype=np.int64)


@dataclass
class _Variant:
    """One variant's estimates and, for bootstrapped metrics, their replicates (to bootstrap the difference)."""

    result: VariantMetrics
    replicates: dict[str, NDArray[np.float64]]
    standard_errors: dict[str, float]  # for the normal-approximation metrics


def _percentile(replicates: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


def _classification(
    variant: str, version: int, counts: PerformanceCounts, confidence: float, replicates: int, seed: int
) -> _Variant:
    assert counts.confusion is not None and counts.positives is not None and counts.negatives is not None
    rng = np.random.default_rng([seed, version])
    point = metrics(counts)
    n = counts.rows
    correct = int(np.trace(counts.confusion))
    estimates = {"accuracy": Estimate(correct / n, *wilson(correct, n, confidence))}
    f1 = macro_f1(_resample(counts.confusion, rng, replicates))
    draws = {"f1_macro": f1}
    estimates["f1_macro"] = Estimate(point["f1_macro"], *_percentile(f1, confidence))
    if "roc_auc" in point:
        if len(counts.classes) == 2:
            positives, negatives = counts.positives[1], counts.negatives[1]
            auc = histogram_auc(_resample(positives, rng, replicates), _resample(negatives, rng, replicates))
            draws["roc_auc"] = auc
            estimates["roc_auc"] = Estimate(point["roc_auc"], *_percentile(auc, confidence))
        else:
            estimates["roc_auc"] = Estimate(point["roc_auc"])
    return _Variant(VariantMetrics(variant, version, n, estimates), draws, {})


def _regression(variant: str, version: int, counts: PerformanceCounts, confidence: float) -> _Variant:
    n = counts.rows
    z = z_value(confidence)
    mean_error = counts.error_sum / n
    mse = counts.squared_error_sum / n
    mae = counts.absolute_error_sum / n
    # |e| has the mean `mae` and the second moment `mse`: its sample variance comes from the counts exactly.
    mae_variance = max(0.0, (counts.squared_error_sum - n * mae * mae) / (n - 1)) if n > 1 else 0.0
    mae_se = math.sqrt(mae_variance / n)
    # var(e^2) needs E[e^4], which the counts do not keep: taken from a normal error of this mean and variance.
    spread = max(0.0, mse - mean_error * mean_error)
    mse_se = math.sqrt((2 * spread * spread + 4 * mean_error * mean_error * spread) / n)
    rmse = math.sqrt(mse)
    estimates = {
        "rmse": Estimate(rmse, math.sqrt(max(0.0, mse - z * mse_se)), math.sqrt(mse + z * mse_se)),
        "mae": Estimate(mae, max(0.0, mae - z * mae_se), mae + z * mae_se),
    }
    rmse_se = mse_se / (2 * rmse) if rmse > 0 else 0.0  # delta method, for the difference
    return _Variant(VariantMetrics(variant, version, n, estimates), {}, {"rmse": rmse_se, "mae": mae_se})


def _variant(
    variant: str,
    version: int,
    counts: PerformanceCounts | None,
    confidence: float,
    replicates: int,
    seed: int,
) -> _Variant:
    if counts is None or counts.rows == 0:
        return _Variant(VariantMetrics(variant, version, 0, {}), {}, {})
    if counts.classes:
        return _classification(variant, version, counts, confidence, replicates, seed)
    return _regression(variant, version, counts, confidence)


def _difference(
    metric: str,
    champion: _Variant,
    challenger: _Variant,
    counts: tuple[PerformanceCounts, PerformanceCounts],
    confidence: float,
) -> Estimate:
    """challenger - champion in `metric`, with its interval."""
    value = challenger.result.metrics[metric].value - champion.result.metrics[metric].value
    if metric == "accuracy":
        a, b = counts
        assert a.confusion is not None and b.confusion is not None
        _, low, high = newcombe(int(np.trace(a.confusion)), a.rows, int(np.trace(b.confusion)), b.rows, confidence)
        return Estimate(value, low, high)
    if metric in challenger.replicates:
        return Estimate(value, *_percentile(challenger.replicates[metric] - champion.replicates[metric], confidence))
    se = math.hypot(champion.standard_errors[metric], challenger.standard_errors[metric])
    half = z_value(confidence) * se
    return Estimate(value, value - half, value + half)


def counts_since(days: Mapping[str, PerformanceCounts], since: str) -> PerformanceCounts | None:
    """A version's counts (per day of prediction, as `Registry.performance` returns them) merged over the days from
    `since` (an ISO date or timestamp; its day counts whole), or None when there are none."""
    first_day = since[:10]
    merged: PerformanceCounts | None = None
    for day, counted in sorted(days.items()):
        if day >= first_day:
            merged = counted if merged is None else merged + counted
    return merged


def compare(
    *,
    champion_version: int,
    champion_counts: PerformanceCounts | None,
    challenger_version: int,
    challenger_counts: PerformanceCounts | None,
    metric: PerformanceMetric | str,
    confidence: float = 0.95,
    min_labels: int = 100,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = SEED,
) -> Comparison:
    """Compare two versions' live performance: every metric with its interval per variant, the difference in
    `metric` (challenger - champion) with its interval, and the verdict (see the module doc)."""
    chosen = PerformanceMetric(metric)
    z_value(confidence)
    notes: list[str] = []
    champion = _variant("champion", champion_version, champion_counts, confidence, replicates, seed)
    challenger = _variant("challenger", challenger_version, challenger_counts, confidence, replicates, seed)
    name = chosen.value
    if name == "roc_auc" and any(
        "roc_auc" in v.result.metrics and v.result.metrics["roc_auc"].low is None for v in (champion, challenger)
    ):
        name = "f1_macro"
        notes.append("roc_auc has no interval for more than two classes from these counts: judged on f1_macro")
    labels = (champion.result.labels, challenger.result.labels)
    differences = {}
    for metric_name, estimate in champion.result.metrics.items():
        other = challenger.result.metrics.get(metric_name)
        if estimate.low is not None and other is not None and other.low is not None:
            assert champion_counts is not None and challenger_counts is not None
            counts = (champion_counts, challenger_counts)
            differences[metric_name] = _difference(metric_name, champion, challenger, counts, confidence)
    difference = differences.get(name)
    verdict, more = _verdict(difference, chosen.higher_is_better, labels, min_labels)
    if min(labels) < min_labels:
        notes.append(f"a verdict waits for {min_labels} labels per variant (monitoring.performance.min_labels)")
    return Comparison(
        metric=name,
        higher_is_better=chosen.higher_is_better,
        confidence=confidence,
        champion=champion.result,
        challenger=challenger.result,
        difference=difference,
        differences=differences,
        verdict=verdict,
        more_labels=more,
        notes=notes,
    )


def _verdict(
    difference: Estimate | None, higher_is_better: bool, labels: tuple[int, int], min_labels: int
) -> tuple[str, int | None]:
    total = sum(labels)
    shortfall = 0
    if min(labels) < min_labels:
        if min(labels) == 0:  # the split is unknown yet: at least what each variant lacks
            shortfall = sum(max(0, min_labels - n) for n in labels)
        else:
            shortfall = math.ceil((max(min_labels / n for n in labels) - 1) * total)
    if difference is None or difference.low is None or difference.high is None:
        return UNDECIDED, shortfall or None
    if shortfall == 0 and (difference.low > 0 or difference.high < 0):
        better = difference.low > 0 if higher_is_better else difference.high < 0
        return (CHALLENGER_BETTER if better else CHAMPION_BETTER), None
    if difference.low > 0 or difference.high < 0:  # separated already, but on too few labels to say so
        return UNDECIDED, shortfall
    if difference.value == 0:
        return UNDECIDED, shortfall or None
    half = (difference.high - difference.low) / 2
    needed = math.ceil(((half / abs(difference.value)) ** 2 - 1) * total)
    return UNDECIDED, max(needed, shortfall, 1)
