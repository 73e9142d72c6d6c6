"""Live model quality from labelled predictions, as counts that add up across label files and days.

numpy only. A slice of labelled predictions (one model version, one day) is summarised by counts: for
classification a confusion matrix and, per class, histograms of the predicted probability of that class among rows
of the class and among the others (one-vs-rest ROC AUC, to within the histogram's resolution); for regression the
count and the sums of errors, squared errors and absolute errors. Slices merge by addition, so any window's metrics
come from its slices without touching a row again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from loopml_core.contract import PerformanceMetric

# Probability histogram bins: ROC AUC within a few thousandths of the exact value, and a slice of counts small enough
# for one registry item (400 KB) up to dozens of classes.
SCORE_BINS = 256


@dataclass(frozen=True)
class PerformanceCounts:
    """Counts behind the live metrics of a set of labelled predictions; `+` merges two sets."""

    rows: int
    classes: tuple[str, ...] = ()
    confusion: NDArray[np.int64] | None = None  # [true class, predicted class]
    positives: NDArray[np.int64] | None = None  # [class, bin]: P(class) among rows of the class
    negatives: NDArray[np.int64] | None = None  # [class, bin]: P(class) among rows of the other classes
    error_sum: float = 0.0
    squared_error_sum: float = 0.0
    absolute_error_sum: float = 0.0

    def __add__(self, other: PerformanceCounts) -> PerformanceCounts:
        if self.classes != other.classes:
            raise ValueError(f"cannot merge counts of classes {self.classes} and {other.classes}")
        return PerformanceCounts(
            rows=self.rows + other.rows,
            classes=self.classes,
            confusion=_add(self.confusion, other.confusion),
            positives=_add(self.positives, other.positives),
            negatives=_add(self.negatives, other.negatives),
            error_sum=self.error_sum + other.error_sum,
            squared_error_sum=self.squared_error_sum + other.squared_error_sum,
            absolute_error_sum=self.absolute_error_sum + other.absolute_error_sum,
        )

    def to_json(self) -> dict[str, Any]:
        """Compact JSON: histograms as sparse {bin: count} maps (most bins of a confident model are empty)."""
        document: dict[str, Any] = {"rows": self.rows}
        if self.classes:
            assert self.confusion is not None and self.positives is not None and self.negatives is not None
            document |= {
                "classes": list(self.classes),
                "confusion": self.confusion.tolist(),
                "positives": [_sparse(row) for row in self.positives],
                "negatives": [_sparse(row) for row in self.negatives],
            }
        else:
            document |= {
                "error_sum": self.error_sum,
                "squared_error_sum": self.squared_error_sum,
                "absolute_error_sum": self.absolute_error_sum,
            }
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PerformanceCounts:
        if "classes" not in document:
            return cls(
                rows=int(document["rows"]),
                error_sum=float(document["error_sum"]),
                squared_error_sum=float(document["squared_error_sum"]),
                absolute_error_sum=float(document["absolute_error_sum"]),
            )
        return cls(
            rows=int(document["rows"]),
            classes=tuple(document["classes"]),
            confusion=np.asarray(document["confusion"], dtype=np.int64),
            positives=np.stack([_dense(row) for row in document["positives"]]),
            negatives=np.stack([_dense(row) for row in document["negatives"]]),
        )


def _add(a: NDArray[np.int64] | None, b: NDArray[np.int64] | None) -> NDArray[np.int64] | None:
    return None if a is None or b is None else a + b


def _sparse(row: NDArray[np.int64]) -> dict[str, int]:
    return {str(i): int(row[i]) for i in np.flatnonzero(row)}


def _dense(row: Mapping[str, int]) -> NDArray[np.int64]:
    dense = np.zeros(SCORE_BINS, dtype=np.int64)
    dense[np.fromiter(row.keys(), dtype=np.int64, count=len(row))] = np.fromiter(row.values(), np.int64, len(row))
    return dense


def classification_counts(
    classes: Sequence[str], truth: NDArray[np.int64], predicted: NDArray[np.int64], probabilities: NDArray[np.float64]
) -> PerformanceCounts:
    """Counts of labelled classifier predictions: class indexes into `classes` (truth, predicted) and the
    [rows, classes] probability matrix, all vectorized."""
    k = len(classes)
    confusion = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k).astype(np.int64)
    bins = np.clip((probabilities * SCORE_BINS).astype(np.int64), 0, SCORE_BINS - 1)  # [rows, classes]
    mine = truth[:, None] == np.arange(k)[None, :]
    flat = np.arange(k)[None, :] * SCORE_BINS + bins
    positives = np.bincount(flat[mine], minlength=k * SCORE_BINS).reshape(k, SCORE_BINS)
    negatives = np.bincount(flat[~mine], minlength=k * SCORE_BINS).reshape(k, SCORE_BINS)
    return PerformanceCounts(
        rows=int(truth.size),
        classes=tuple(classes),
        confusion=confusion,
        positives=positives.astype(np.int64),
        negatives=negatives.astype(np.int64),
    )


def regression_counts(truth: NDArray[np.float64], predicted: NDArray[np.float64]) -> PerformanceCounts:
    error = predicted - truth
    return PerformanceCounts(
        rows=int(truth.size),
        error_sum=float(error.sum()),
        squared_error_sum=float(np.square(error).sum()),
        absolute_error_sum=float(np.abs(error).sum()),
    )


def _auc(positives: NDArray[np.int64], negatives: NDArray[np.int64]) -> float | None:
    """Mann-Whitney AUC from score histograms: P(score of a positive > score of a negative), ties count half."""
    p, n = float(positives.sum()), float(negatives.sum())
    if p == 0 or n == 0:
        return None
    negatives_below = np.cumsum(negatives) - negatives
    return float((positives * (negatives_below + 0.5 * negatives)).sum() / (p * n))


def metrics(counts: PerformanceCounts) -> dict[str, float]:
    """The live metrics of `counts`: accuracy, f1_macro, roc_auc (classification) or rmse, mae (regression).

    F1 is macro-averaged over the classes that occur in the truth or the predictions, as scikit-learn does; ROC AUC
    is the positive class's for two classes and the one-vs-rest macro average for more.
    """
    if counts.rows == 0:
        return {}
    if not counts.classes:
        return {
            "rmse": float(np.sqrt(counts.squared_error_sum / counts.rows)),
            "mae": counts.absolute_error_sum / counts.rows,
        }
    assert counts.confusion is not None and counts.positives is not None and counts.negatives is not None
    confusion = counts.confusion.astype(np.float64)
    true_positives = np.diag(confusion)
    actual, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (actual + predicted) > 0
    f1 = 2 * true_positives[present] / (actual[present] + predicted[present])
    result = {"accuracy": float(true_positives.sum() / confusion.sum()), "f1_macro": float(f1.mean())}
    if len(counts.classes) == 2:
        auc = _auc(counts.positives[1], counts.negatives[1])
    else:
        scores = [_auc(counts.positives[c], counts.negatives[c]) for c in range(len(counts.classes))]
        known = [s for s in scores if s is not None]
        auc = float(np.mean(known)) if known else None
    if auc is not None:
        result["roc_auc"] = auc
    return result


def dropped(metric: PerformanceMetric, holdout: float, live: float, tolerance: float) -> bool:
    """Whether `live` is worse than `holdout` by more than `tolerance` (relative)."""
    if metric.higher_is_better:
        return live < holdout * (1 - tolerance)
    return live > holdout * (1 + tolerance)


def limit(metric: PerformanceMetric, holdout: float, tolerance: float) -> float:
    return holdout * (1 - tolerance) if metric.higher_is_better else holdout * (1 + tolerance)
