"""Model card numbers computed by the evaluation step: bootstrap intervals of the holdout metrics, the paired
interval of the difference with the champion, and permutation importance on an ONNX model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml_core.contract import DatasetContract
from loopml_core.evaluation import (
    PredictionArrays,
    bootstrap_intervals,
    bootstrap_samples,
    compare_bootstrap,
    compute_metrics,
    permutation_importance,
    read_holdout,
)
from loopml_core.serving import OnnxModel
from loopml_core.training import train


def classifier_outputs(rows: int, seed: int, classes: tuple[str, ...] = ("no", "yes"), skill: float = 1.5):
    """Targets and serving-shaped outputs of a classifier that is right more often than not."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(classes), rows)
    logits = rng.normal(0.0, 1.0, (rows, len(classes)))
    logits[np.arange(rows), truth] += skill
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probabilities = np.round(probabilities, 6)
    outputs = [
        {"label": classes[int(np.argmax(p))], "probabilities": dict(zip(classes, p.tolist(), strict=True))}
        for p in probabilities
    ]
    return [classes[t] for t in truth], outputs


def regressor_outputs(rows: int, seed: int, noise: float = 1.0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(10.0, 3.0, rows)
    values = truth + rng.normal(0.0, noise, rows)
    return truth.tolist(), [{"value": float(v)} for v in values]


@pytest.mark.parametrize("classes", [("no", "yes"), ("a", "b", "c")])
def test_vectorised_resamples_equal_compute_metrics_on_each_resample(classes):
    # Given a classifier's outputs on 60 holdout rows
    targets, outputs = classifier_outputs(60, seed=3, classes=classes)
    arrays = PredictionArrays.from_outputs("classification", targets, outputs)
    # When the bootstrap scores 25 resamples at once
    samples = bootstrap_samples(arrays, resamples=25, seed=11)
    # Then each resample's metrics are what compute_metrics says for the same rows (drawn with the same seed)
    idx = np.random.default_rng(11).integers(0, 60, size=(25, 60))
    for r in range(25):
        rows = idx[r].tolist()
        expected = compute_metrics("classification", [targets[i] for i in rows], [outputs[i] for i in rows])
        for name, value in expected.items():
            assert samples[name][r] == pytest.approx(value, abs=1e-12), (name, r)


def test_vectorised_regression_resamples_equal_compute_metrics():
    targets, outputs = regressor_outputs(50, seed=4)
    samples = bootstrap_samples(PredictionArrays.from_outputs("regression", targets, outputs), resamples=20, seed=5)
    idx = np.random.default_rng(5).integers(0, 50, size=(20, 50))
    for r in range(20):
        rows = idx[r].tolist()
        expected = compute_metrics("regression", [targets[i] for i in rows], [outputs[i] for i in rows])
        for name, value in expected.items():
            assert samples[name][r] == pytest.approx(value, rel=1e-9), (name, r)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_intervals_contain_the_point_estimate_and_shrink_with_more_rows(task):
    widths: dict[int, dict[str, float]] = {}
    for rows in (200, 5000):
        # Given a model's outputs on a small and on a large holdout of the same kind
        make = classifier_outputs if task == "classification" else regressor_outputs
        targets, outputs = make(rows, seed=rows)
        point = compute_metrics(task, targets, outputs)
        # When the intervals are computed
        intervals = bootstrap_intervals(PredictionArrays.from_outputs(task, targets, outputs), resamples=500, seed=1)
        # Then every metric has one, and it holds the point estimate
        assert set(intervals) == set(point)
        for name, value in point.items():
            assert intervals[name]["low"] <= value <= intervals[name]["high"], (rows, name)
        widths[rows] = {name: i["high"] - i["low"] for name, i in intervals.items()}
    # And 25 times the rows give intervals about 5 times narrower (the standard error falls with the square root)
    for name in widths[200]:
        assert widths[5000][name] < widths[200][name] / 3, name


def test_intervals_are_deterministic_per_seed():
    targets, outputs = classifier_outputs(300, seed=2)
    arrays = PredictionArrays.from_outputs("classification", targets, outputs)
    assert bootstrap_intervals(arrays, seed=9) == bootstrap_intervals(arrays, seed=9)
    assert bootstrap_intervals(arrays, seed=9) != bootstrap_intervals(arrays, seed=10)


def test_blocks_of_resamples_bound_memory_without_changing_the_result(monkeypatch):
    # Given the same holdout bootstrapped in one block and in blocks of 7 resamples
    targets, outputs = classifier_outputs(100, seed=8)
    arrays = PredictionArrays.from_outputs("classification", targets, outputs)
    whole = bootstrap_samples(arrays, resamples=50, seed=3)
    monkeypatch.setattr("loopml_core.evaluation.BOOTSTRAP_BLOCK_CELLS", 700)
    blocked = bootstrap_samples(arrays, resamples=50, seed=3)
    # Then the samples are the same (the same indices are drawn, block after block)
    for name in whole:
        np.testing.assert_allclose(blocked[name], whole[name])


def test_the_paired_difference_interval_tells_a_better_model_from_a_copy():
    # Given a champion, a clearly better candidate, and a copy of the champion
    targets, weak = classifier_outputs(2000, seed=5, skill=0.5)
    _, strong = classifier_outputs(2000, seed=5, skill=2.5)  # same truth (same seed), better logits
    candidate = PredictionArrays.from_outputs("classification", targets, strong)
    champion = PredictionArrays.from_outputs("classification", targets, weak)
    # Then the better model's accuracy difference is positive with the whole interval above 0
    better = compare_bootstrap(candidate, champion, "accuracy", resamples=400)
    assert better is not None and better["low"] > 0
    # And a copy differs by exactly 0 on every resample
    assert compare_bootstrap(champion, champion, "accuracy", resamples=400) == {"low": 0.0, "high": 0.0}


def synthetic_frame(rows: int, seed: int) -> pd.DataFrame:
    """`signal` decides the label (with 5 % noise); `noise` and `colour` are unrelated to it."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0.0, 1.0, rows)
    flip = rng.random(rows) < 0.05
    label = np.where((signal > 0) ^ flip, "yes", "no")
    return pd.DataFrame(
        {
            "signal": signal,
            "noise": rng.normal(0.0, 1.0, rows),
            "colour": rng.choice(["red", "green"], rows),
            "y": label,
        }
    )


def test_permutation_importance_ranks_the_informative_feature_first():
    # Given a model trained where only `signal` carries the label
    contract = DatasetContract.model_validate(
        {
            "name": "synthetic",
            "task": "classification",
            "target": "y",
            "features": [
                {"name": "noise", "type": "float"},
                {"name": "signal", "type": "float"},
                {"name": "colour", "type": "category", "values": ["red", "green"]},
            ],
            "algorithm": "logistic_regression",
        }
    )
    result = train(contract, synthetic_frame(1500, seed=1))
    records, targets = read_holdout(contract, result.holdout_csv)
    model = OnnxModel(result.onnx_model, contract)
    # When its permutation importance is measured on the holdout
    calls: list[int] = []
    run = model.run

    def counted_run(feeds: Any) -> Any:
        calls.append(len(next(iter(feeds.values()))))
        return run(feeds)

    model.run = counted_run  # type: ignore[method-assign]
    importance = permutation_importance(model, records, targets, repeats=4, seed=3)
    # Then `signal` comes first with a large accuracy drop, the others next to nothing
    by_feature = {entry["feature"]: entry for entry in importance}
    assert importance[0]["feature"] == "signal"
    assert by_feature["signal"]["mean"] > 0.3
    assert abs(by_feature["noise"]["mean"]) < 0.03 and abs(by_feature["colour"]["mean"]) < 0.03
    assert all(entry["repeats"] == 4 and entry["std"] >= 0 for entry in importance)
    # And it ran the whole holdout once per feature per repeat (plus the unshuffled baseline), never per row
    assert calls == [len(records)] * (1 + 3 * 4)
    # And the same seed gives the same figures
    model.run = run  # type: ignore[method-assign]
    assert permutation_importance(model, records, targets, repeats=4, seed=3) == importance
