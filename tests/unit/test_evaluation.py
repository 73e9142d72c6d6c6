"""Evaluation: holdout parsing, metrics, ONNX parity, and the candidate-vs-champion decision on one holdout."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml_core.contract import DatasetContract
from loopml_core.evaluation import (
    PRIMARY_METRIC,
    check_parity,
    compute_metrics,
    evaluate,
    read_holdout,
)
from loopml_core.training import TrainingResult, export_onnx, fit_pipeline, predict_outputs, read_dataset, train

FEATURES = [
    {"name": "x", "type": "float"},
    {"name": "n", "type": "int", "nullable": True},
    {"name": "colour", "type": "category", "values": ["red", "green", "blue"]},
]
COLOUR_EFFECT = {"red": -1.0, "green": 0.0, "blue": 1.0}


def contract(task: str = "classification") -> DatasetContract:
    return DatasetContract.model_validate({"name": "toy", "task": task, "target": "y", "features": FEATURES})


def make_frame(n: int, seed: int, task: str = "classification", flip: bool = False) -> pd.DataFrame:
    """`flip` inverts how the features drive the target: a model trained on it is wrong on normal data."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    count = rng.integers(0, 10, n).astype(float)
    colour = rng.choice(list(COLOUR_EFFECT), n)
    score = 1.5 * x + 0.2 * (count - 4.5) + np.array([COLOUR_EFFECT[c] for c in colour]) + rng.normal(0, 0.4, n)
    if flip:
        score = -score
    count[rng.random(n) < 0.05] = np.nan
    frame = pd.DataFrame({"x": x, "n": count, "colour": colour})
    frame["y"] = np.where(score > 0, "pos", "neg") if task == "classification" else 10.0 + 3.0 * score
    return frame


@pytest.fixture(scope="module")
def good() -> TrainingResult:
    return train(contract(), make_frame(1000, seed=1))


@pytest.fixture(scope="module")
def shifted() -> TrainingResult:
    return train(contract(), make_frame(1000, seed=2, flip=True))


def test_read_holdout_types_per_contract() -> None:
    csv_bytes = b"colour,y,x,n,extra\nred,pos,1.5,3,zzz\nblue,neg,-0.25,,zzz\n"
    records, targets = read_holdout(contract(), csv_bytes)
    assert records == [{"x": 1.5, "n": 3.0, "colour": "red"}, {"x": -0.25, "n": None, "colour": "blue"}]
    assert targets == ["pos", "neg"]
    _, values = read_holdout(contract("regression"), b"x,n,colour,y\n1,2,red,3.5\n")
    assert values == [3.5]
    with pytest.raises(ValueError, match="lacks columns"):
        read_holdout(contract(), b"x,colour,y\n1,red,pos\n")
    with pytest.raises(ValueError, match="not a number"):
        read_holdout(contract(), b"x,n,colour,y\nabc,1,red,pos\n")


def test_classification_metrics_by_hand() -> None:
    outputs = [
        {"label": "a", "probabilities": {"a": 0.8, "b": 0.2}},
        {"label": "b", "probabilities": {"a": 0.4, "b": 0.6}},
        {"label": "a", "probabilities": {"a": 0.7, "b": 0.3}},
        {"label": "b", "probabilities": {"a": 0.1, "b": 0.9}},
    ]
    got = compute_metrics("classification", ["a", "b", "b", "b"], outputs)
    assert got["accuracy"] == 0.75
    # a: tp 1, fp 1, fn 0 -> 2/3; b: tp 2, fp 0, fn 1 -> 4/5
    assert got["f1_macro"] == pytest.approx((2 / 3 + 4 / 5) / 2, abs=1e-12)
    assert got["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6) + math.log(0.3) + math.log(0.9)) / 4)


def test_log_loss_of_a_class_the_model_never_saw_is_finite_and_large() -> None:
    outputs = [{"label": "a", "probabilities": {"a": 1.0}}]
    got = compute_metrics("classification", ["z"], outputs)
    assert math.isfinite(got["log_loss"]) and got["log_loss"] > 30


def test_regression_metrics_by_hand() -> None:
    got = compute_metrics("regression", [1.0, 2.0, 3.0, 4.0], [{"value": v} for v in (1.0, 2.0, 3.0, 6.0)])
    assert got["rmse"] == pytest.approx(1.0)
    assert got["mae"] == pytest.approx(0.5)
    assert got["r2"] == pytest.approx(1 - 4.0 / 5.0)
    with pytest.raises(ValueError):
        compute_metrics("regression", [1.0], [])


def test_primary_metrics() -> None:
    assert PRIMARY_METRIC["classification"] == ("accuracy", True)
    assert PRIMARY_METRIC["regression"] == ("rmse", False)


def _cls(label: str, p_yes: float) -> dict[str, Any]:
    return {"label": label, "probabilities": {"no": round(1 - p_yes, 6), "yes": p_yes}}


def test_parity_passes_within_tolerance_and_fails_beyond() -> None:
    reference = [_cls("yes", 0.7)] * 200
    assert check_parity("classification", [_cls("yes", 0.75)] * 200, reference).ok
    too_far = check_parity("classification", [_cls("yes", 0.8)] * 200, reference)
    assert not too_far.ok
    assert "tolerance 0.06" in too_far.message and "FAILED" in too_far.message


def test_parity_requires_995_per_mille_label_agreement() -> None:
    reference = [_cls("yes", 0.51)] * 400
    one_off = [_cls("no", 0.49), *reference[1:]]
    assert check_parity("classification", one_off, reference).ok  # 99.75% agree
    three_off = [_cls("no", 0.49)] * 3 + reference[3:]
    report = check_parity("classification", three_off, reference)  # 99.25% agree
    assert not report.ok
    assert report.label_agreement == pytest.approx(397 / 400)


def test_parity_regression_is_relative_and_length_checked() -> None:
    reference = [{"value": v} for v in (1000.0, 2000.0, 0.0)]
    assert check_parity("regression", [{"value": v} for v in (1000.5, 2000.0, 0.01)], reference).ok
    assert not check_parity("regression", [{"value": v} for v in (1010.0, 2000.0, 0.0)], reference).ok
    assert not check_parity("regression", reference[:2], reference).ok
    assert not check_parity("regression", [{"value": float("nan")}] * 3, reference).ok


def test_no_champion_promotes_a_candidate_with_parity(good: TrainingResult) -> None:
    result = evaluate(contract(), good.onnx_model, None, good.holdout_csv, good.reference_predictions)
    assert result.parity.ok and result.promote
    assert result.champion_metrics is None
    assert result.holdout_rows == good.holdout_rows
    assert result.candidate_metrics["accuracy"] == pytest.approx(good.metrics["accuracy"], abs=0.005)
    assert result.reason.startswith("no champion")


def test_better_candidate_beats_champion_on_the_same_holdout(good: TrainingResult, shifted: TrainingResult) -> None:
    result = evaluate(contract(), good.onnx_model, shifted.onnx_model, good.holdout_csv, good.reference_predictions)
    assert result.promote
    assert result.champion_metrics is not None
    assert result.candidate_metrics["accuracy"] > result.champion_metrics["accuracy"]
    assert f"on {good.holdout_rows} holdout rows" in result.reason
    assert "candidate accuracy" in result.reason and ">" in result.reason
    json.dumps(result.to_dict(), allow_nan=False)


def test_worse_candidate_is_refused_on_the_same_holdout(good: TrainingResult) -> None:
    c = contract()
    worse = fit_pipeline(c, make_frame(1000, seed=2, flip=True))
    holdout = read_dataset(c, good.holdout_csv)
    reference = predict_outputs(c, worse, holdout)
    result = evaluate(c, export_onnx(c, worse), good.onnx_model, good.holdout_csv, reference)
    assert result.parity.ok
    assert not result.promote
    assert "does not beat champion" in result.reason


def test_equal_candidate_is_not_promoted(good: TrainingResult) -> None:
    result = evaluate(contract(), good.onnx_model, good.onnx_model, good.holdout_csv, good.reference_predictions)
    assert result.candidate_metrics == result.champion_metrics
    assert not result.promote


def test_parity_failure_blocks_promotion(good: TrainingResult) -> None:
    tampered = [dict(p) for p in good.reference_predictions]
    for p in tampered[:5]:
        p["label"] = "neg" if p["label"] == "pos" else "pos"
    result = evaluate(contract(), good.onnx_model, None, good.holdout_csv, tampered)
    assert not result.parity.ok
    assert not result.promote
    assert "does not reproduce scikit-learn" in result.reason


def test_champion_that_no_longer_fits_the_contract_is_replaced(good: TrainingResult) -> None:
    c = contract()
    other = DatasetContract.model_validate(
        {"name": "toy", "task": "classification", "target": "y", "features": FEATURES[:2]}
    )
    old = train(other, make_frame(300, seed=3).drop(columns=["colour"]))
    result = evaluate(c, good.onnx_model, old.onnx_model, good.holdout_csv, good.reference_predictions)
    assert result.promote
    assert result.champion_error is not None and "colour" in result.champion_error


def test_regression_promotion_uses_lower_rmse() -> None:
    c = contract("regression")
    good = train(c, make_frame(600, seed=4, task="regression"))
    bad = train(c, make_frame(600, seed=5, task="regression", flip=True))
    result = evaluate(c, good.onnx_model, bad.onnx_model, good.holdout_csv, good.reference_predictions)
    assert result.primary_metric == "rmse" and not result.higher_is_better
    assert result.promote and "<" in result.reason
    assert result.champion_metrics is not None
    assert result.candidate_metrics["rmse"] < result.champion_metrics["rmse"]


def test_read_holdout_rejects_short_rows() -> None:
    with pytest.raises(ValueError, match="shorter than the header"):
        read_holdout(contract(), b"x,n,colour,y\n1.0,2\n")


def _with_floors(floors: dict[str, float], task: str = "classification") -> DatasetContract:
    return DatasetContract.model_validate(
        {"name": "toy", "task": task, "target": "y", "features": FEATURES, "governance": {"min_metrics": floors}}
    )


def test_the_floors_hold_back_even_the_first_model(good: TrainingResult) -> None:
    accuracy = evaluate(contract(), good.onnx_model, None, good.holdout_csv, good.reference_predictions)
    reached = accuracy.candidate_metrics["accuracy"]
    below = _with_floors({"accuracy": reached + 0.01, "f1_macro": 0.1})
    result = evaluate(below, good.onnx_model, None, good.holdout_csv, good.reference_predictions)
    assert not result.promote
    assert result.reason.startswith("not promoted: below the contract's floors (accuracy ")
    assert f"< floor {reached + 0.01:g}" in result.reason and "f1_macro" not in result.reason
    within = _with_floors({"accuracy": reached - 0.01})
    assert evaluate(within, good.onnx_model, None, good.holdout_csv, good.reference_predictions).promote


def test_an_error_metric_floor_is_a_ceiling_and_must_fit_the_task() -> None:
    regression = train(contract("regression"), make_frame(600, seed=4, task="regression"))
    free = evaluate(
        contract("regression"), regression.onnx_model, None, regression.holdout_csv, regression.reference_predictions
    )
    rmse = free.candidate_metrics["rmse"]
    tight = _with_floors({"rmse": rmse / 2}, task="regression")
    result = evaluate(tight, regression.onnx_model, None, regression.holdout_csv, regression.reference_predictions)
    assert not result.promote and f"rmse {rmse:.3f} > ceiling" in result.reason
    with pytest.raises(ValueError, match="'rmse' does not apply to classification"):
        _with_floors({"rmse": 1.0})


def test_floors_left_out_keep_the_contract_fingerprint() -> None:
    assert _with_floors({}).fingerprint() == contract().fingerprint()
    assert _with_floors({"accuracy": 0.5}).fingerprint() != contract().fingerprint()
