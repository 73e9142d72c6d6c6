"""Live performance counts against scikit-learn's metrics on the same labelled predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from loopml_core.contract import PerformanceMetric
from loopml_core.evaluation import roc_auc
from loopml_core.performance import (
    PerformanceCounts,
    classification_counts,
    dropped,
    limit,
    metrics,
    regression_counts,
)


def classifier_outputs(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[truth]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return truth, probabilities.argmax(axis=1), probabilities


@pytest.mark.parametrize("k", [2, 3, 5])
def test_classification_metrics_match_scikit_learn(k):
    truth, predicted, probabilities = classifier_outputs(20_000, k, seed=k)
    classes = [f"c{i}" for i in range(k)]
    live = metrics(classification_counts(classes, truth, predicted, probabilities))
    assert live["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted))
    assert live["f1_macro"] == pytest.approx(sk.f1_score(truth, predicted, average="macro"))
    expected_auc = (
        sk.roc_auc_score(truth, probabilities[:, 1])
        if k == 2
        else sk.roc_auc_score(truth, probabilities, multi_class="ovr", average="macro")
    )
    assert live["roc_auc"] == pytest.approx(expected_auc, abs=5e-3)  # from histograms of 256 bins
    exact = roc_auc(np.asarray(classes, dtype=object)[truth], classes, probabilities)
    assert exact == pytest.approx(expected_auc, abs=1e-12)


def test_regression_metrics_match_scikit_learn():
    rng = np.random.default_rng(1)
    truth = rng.normal(50, 10, 5_000)
    predicted = truth + rng.normal(0, 3, 5_000)
    live = metrics(regression_counts(truth, predicted))
    assert live["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(truth, predicted)))
    assert live["mae"] == pytest.approx(sk.mean_absolute_error(truth, predicted))


def test_counts_merge_to_the_whole_and_survive_json():
    truth, predicted, probabilities = classifier_outputs(6_000, 3, seed=9)
    classes = ["a", "b", "c"]
    whole = classification_counts(classes, truth, predicted, probabilities)
    halves = classification_counts(classes, truth[:2_500], predicted[:2_500], probabilities[:2_500]) + (
        classification_counts(classes, truth[2_500:], predicted[2_500:], probabilities[2_500:])
    )
    restored = PerformanceCounts.from_json(halves.to_json())
    assert metrics(restored) == metrics(whole)
    with pytest.raises(ValueError, match="classes"):
        whole + classification_counts(["a", "b"], truth % 2, predicted % 2, probabilities[:, :2])


def test_a_drop_is_judged_relative_to_the_holdout_in_the_metrics_direction():
    assert dropped(PerformanceMetric.F1_MACRO, 0.80, 0.71, 0.1) and not dropped(
        PerformanceMetric.F1_MACRO, 0.8, 0.73, 0.1
    )
    assert dropped(PerformanceMetric.RMSE, 5.0, 5.6, 0.1) and not dropped(PerformanceMetric.RMSE, 5.0, 5.4, 0.1)
    assert limit(PerformanceMetric.F1_MACRO, 0.8, 0.1) == pytest.approx(0.72)
    assert limit(PerformanceMetric.MAE, 2.0, 0.25) == pytest.approx(2.5)
