"""scikit-learn -> ONNX -> onnxruntime round trip: the graph must reproduce the pipeline, preprocessing included."""

from __future__ import annotations

import gzip
import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from loopml_core import training
from loopml_core.contract import DatasetContract
from loopml_core.evaluation import check_parity, compute_metrics, read_holdout
from loopml_core.serving import ModelContractError, OnnxModel
from loopml_core.training import TrainingError, read_dataset, train

PLANS = ("basic", "pro", "enterprise")
PLAN_EFFECT = {"basic": -1.0, "pro": 0.5, "enterprise": 1.5}
FEATURES = [
    {"name": "age", "type": "int", "min": 18, "max": 90},
    {"name": "income", "type": "float", "nullable": True},
    {"name": "plan", "type": "category", "values": list(PLANS)},
    {"name": "region", "type": "category", "values": ["north", "south", "NA"]},
]


def contract(task: str = "classification", **extra: object) -> DatasetContract:
    target = "churn" if task == "classification" else "spend"
    return DatasetContract.model_validate(
        {"name": "customers", "task": task, "target": target, "features": FEATURES, **extra}
    )


def make_frame(n: int, seed: int, task: str = "classification", classes: int = 2) -> pd.DataFrame:
    """Synthetic customers whose target depends on every feature, with a few nulls in `income`."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    income = rng.lognormal(10.0, 0.5, n)
    plan = rng.choice(PLANS, n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "NA"], n)
    score = (
        0.04 * (age - 50)
        + 1.2 * (np.log(income) - 10.0)
        + np.array([PLAN_EFFECT[p] for p in plan])
        + np.where(region == "NA", 0.7, 0.0)
        + rng.normal(0.0, 0.5, n)
    )
    income[rng.random(n) < 0.05] = np.nan
    frame = pd.DataFrame({"age": age, "income": income, "plan": plan, "region": region})
    if task == "regression":
        frame["spend"] = 100.0 + 20.0 * score
    elif classes == 2:
        frame["churn"] = np.where(score > 0, "yes", "no")
    else:
        frame["churn"] = np.select([score < -0.7, score < 0.7], ["low", "mid"], "high")
    return frame


def to_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


@pytest.fixture(scope="module")
def classifier() -> training.TrainingResult:
    c = contract()
    return train(c, read_dataset(c, to_csv(make_frame(1500, seed=1))))


def test_read_dataset_types_columns_per_contract() -> None:
    c = contract()
    frame = make_frame(50, seed=3)
    frame.loc[0, "region"] = "NA"
    frame.loc[1, "plan"] = None
    read = read_dataset(c, to_csv(frame[["churn", "region", "plan", "income", "age"]]))
    assert list(read.columns) == ["age", "income", "plan", "region", "churn"]
    assert read["age"].dtype == np.float64
    assert read.loc[0, "region"] == "NA"  # only empty cells are nulls
    assert read.loc[1, "plan"] is None
    assert read["income"].isna().sum() == frame["income"].isna().sum()


@pytest.mark.parametrize("file_format", ["csv.gz", "parquet"])
def test_every_stored_format_trains_the_model_csv_trains(file_format: str) -> None:
    c = contract()
    frame = make_frame(600, seed=12)
    if file_format == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, engine="pyarrow", index=False)  # as users write it; training reads with fastparquet
        body = buffer.getvalue()
    else:
        body = gzip.compress(to_csv(frame))
    from_csv = train(c, read_dataset(c, to_csv(frame)))
    other = train(c, read_dataset(c, body, file_format))
    assert other.holdout_csv == from_csv.holdout_csv
    assert other.reference_predictions == from_csv.reference_predictions
    assert other.onnx_model == from_csv.onnx_model


def test_onnx_graph_has_one_named_input_per_feature(classifier: training.TrainingResult) -> None:
    model = OnnxModel(classifier.onnx_model, contract())
    inputs = {i.name: (i.type, i.shape) for i in model.session.get_inputs()}
    assert inputs == {
        "age": ("tensor(float)", [None, 1]),
        "income": ("tensor(float)", [None, 1]),
        "plan": ("tensor(string)", [None, 1]),
        "region": ("tensor(string)", [None, 1]),
    }
    assert model.classes == ["no", "yes"]
    assert model.algorithm == "gradient_boosting"


def test_onnx_reproduces_sklearn_on_the_holdout(classifier: training.TrainingResult) -> None:
    c = contract()
    records, targets = read_holdout(c, classifier.holdout_csv)
    assert len(records) == classifier.holdout_rows == 300
    assert classifier.train_rows == 1200
    assert any(r["income"] is None for r in records)  # the imputer inside the graph is exercised
    outputs = OnnxModel(classifier.onnx_model, c).predict(records)

    labels = [o["label"] for o in outputs]
    reference_labels = [r["label"] for r in classifier.reference_predictions]
    assert np.mean(np.array(labels) == np.array(reference_labels)) >= 0.995
    worst = max(
        abs(o["probabilities"][k] - r["probabilities"][k])
        for o, r in zip(outputs, classifier.reference_predictions, strict=True)
        for k in ("no", "yes")
    )
    assert worst <= 0.06
    assert check_parity(c.task, outputs, classifier.reference_predictions).ok
    # The ONNX model is as good as scikit-learn and much better than chance on a learnable target.
    onnx_metrics = compute_metrics(c.task, targets, outputs)
    assert onnx_metrics["accuracy"] == pytest.approx(classifier.metrics["accuracy"], abs=0.005)
    assert onnx_metrics["accuracy"] > 0.8


def test_preprocessing_lives_in_the_graph(classifier: training.TrainingResult) -> None:
    model = OnnxModel(classifier.onnx_model, contract())
    base = {"age": 50, "income": 22000.0, "region": "north"}
    by_plan = {p: model.predict([{**base, "plan": p}])[0]["probabilities"]["yes"] for p in PLANS}
    # Raw category strings go in; the one-hot encoding inside the graph makes the plan matter as it was learnt.
    assert by_plan["basic"] < by_plan["pro"] < by_plan["enterprise"]


def test_unseen_category_and_null_do_not_crash(classifier: training.TrainingResult) -> None:
    model = OnnxModel(classifier.onnx_model, contract())
    out = model.predict(
        [
            {"age": 40, "income": None, "plan": "platinum", "region": "east"},
            {"age": 40, "income": 30000.0, "plan": None, "region": "south"},
        ]
    )
    assert len(out) == 2
    for o in out:
        assert o["label"] in ("no", "yes")
        assert set(o["probabilities"]) == {"no", "yes"}
        assert sum(o["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_batch_predict_keeps_record_order(classifier: training.TrainingResult) -> None:
    model = OnnxModel(classifier.onnx_model, contract())
    records, _ = read_holdout(contract(), classifier.holdout_csv)
    batch = model.predict(records[:20])
    one_by_one = [model.predict([r])[0] for r in records[:20]]
    assert batch == one_by_one
    assert model.predict([]) == []


def test_multiclass_round_trip() -> None:
    c = contract(target_values=["low", "mid", "high"])
    result = train(c, make_frame(900, seed=5, classes=3))
    model = OnnxModel(result.onnx_model, c)
    assert model.classes == ["high", "low", "mid"]
    records, _ = read_holdout(c, result.holdout_csv)
    parity = check_parity(c.task, model.predict(records), result.reference_predictions)
    assert parity.ok, parity.message
    assert parity.label_agreement is not None and parity.label_agreement >= 0.995


@pytest.mark.parametrize("algorithm", ["gradient_boosting", "linear_regression", "random_forest"])
def test_regression_round_trip(algorithm: str) -> None:
    c = contract("regression", algorithm=algorithm)
    result = train(c, make_frame(800, seed=2, task="regression"))
    records, targets = read_holdout(c, result.holdout_csv)
    outputs = OnnxModel(result.onnx_model, c).predict(records)
    assert all(set(o) == {"value"} and isinstance(o["value"], float) for o in outputs)
    parity = check_parity(c.task, outputs, result.reference_predictions)
    assert parity.ok, parity.message
    assert parity.max_relative_value_difference is not None and parity.max_relative_value_difference < 1e-4
    assert compute_metrics(c.task, targets, outputs)["r2"] > 0.8
    assert result.params["algorithm"] == algorithm


@pytest.mark.parametrize("algorithm", ["logistic_regression", "random_forest"])
def test_other_classifiers_round_trip(algorithm: str) -> None:
    c = contract(algorithm=algorithm)
    result = train(c, make_frame(800, seed=4))
    records, _ = read_holdout(c, result.holdout_csv)
    parity = check_parity(c.task, OnnxModel(result.onnx_model, c).predict(records), result.reference_predictions)
    assert parity.ok, parity.message
    assert result.params["estimator"] in ("LogisticRegression", "RandomForestClassifier")


def test_training_result_is_deterministic_and_serialisable() -> None:
    c = contract()
    frame = make_frame(400, seed=8)
    first, second = train(c, frame, seed=3), train(c, frame, seed=3)
    assert first.holdout_csv == second.holdout_csv
    assert first.reference_predictions == second.reference_predictions
    json.dumps([first.reference_predictions, first.metrics, first.params, first.baseline], allow_nan=False)
    assert train(c, frame, seed=4).holdout_csv != first.holdout_csv
    header = first.holdout_csv.decode().splitlines()[0]
    assert header == "age,income,plan,region,churn"


def test_stratified_split_keeps_class_balance() -> None:
    c = contract()
    frame = make_frame(500, seed=9)
    result = train(c, frame)
    _, targets = read_holdout(c, result.holdout_csv)
    assert np.mean(np.array(targets) == "yes") == pytest.approx(np.mean(frame["churn"] == "yes"), abs=0.01)


def test_untrainable_datasets_are_refused() -> None:
    c = contract()
    one_class = make_frame(200, seed=1).assign(churn="yes")
    with pytest.raises(TrainingError, match="single class"):
        train(c, one_class)
    with pytest.raises(TrainingError, match="too few"):
        train(c, make_frame(15, seed=1))
    with pytest.raises(TrainingError, match="lacks contract columns"):
        train(c, make_frame(200, seed=1).drop(columns=["plan"]))
    with pytest.raises(TrainingError, match="does not apply"):
        train(contract(algorithm="linear_regression"), make_frame(200, seed=1))
    not_nullable = make_frame(200, seed=1)
    not_nullable.loc[3, "age"] = np.nan
    with pytest.raises(TrainingError, match="not nullable"):
        train(c, not_nullable)


def test_model_that_does_not_fit_the_contract_is_refused(classifier: training.TrainingResult) -> None:
    other = DatasetContract.model_validate(
        {
            "name": "customers",
            "task": "classification",
            "target": "churn",
            "features": [*FEATURES[:3], {"name": "tenure", "type": "int"}],
        }
    )
    with pytest.raises(ModelContractError, match="tenure"):
        OnnxModel(classifier.onnx_model, other)
    with pytest.raises(ModelContractError):
        OnnxModel(classifier.onnx_model, contract("regression"))


def test_baseline_profiles_training_features_and_predictions(classifier: training.TrainingResult) -> None:
    baseline = classifier.baseline
    assert baseline["rows"] == classifier.train_rows
    assert set(baseline["features"]) == {"age", "income", "plan", "region"}
    assert baseline["features"]["income"]["null_fraction"] > 0
    assert baseline["prediction"]["values"] == ["no", "yes"]
    assert math.isclose(sum(baseline["prediction"]["fractions"]), 1.0)


def _sklearn_case(seed: int) -> tuple[list[str], list[dict[str, object]], np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    proba = rng.dirichlet([1.0, 1.0, 1.0], 200)
    proba[0] = [1.0, 0.0, 0.0]  # exercises the epsilon clipping
    truth = [classes[i] for i in rng.integers(0, 3, 200)]
    truth[0] = "b"
    labels = [classes[i] for i in np.argmax(proba, axis=1)]
    outputs = [
        {"label": lab, "probabilities": dict(zip(classes, row.tolist(), strict=True))}
        for lab, row in zip(labels, proba, strict=True)
    ]
    return truth, outputs, proba


def test_classification_metrics_match_sklearn() -> None:
    truth, outputs, proba = _sklearn_case(0)
    labels = [o["label"] for o in outputs]
    got = compute_metrics("classification", truth, outputs)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth, labels), abs=1e-9)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(truth, labels, average="macro"), abs=1e-9)
    assert got["log_loss"] == pytest.approx(skm.log_loss(truth, proba, labels=["a", "b", "c"]), abs=1e-9)


def test_f1_macro_matches_sklearn_when_a_class_is_never_predicted() -> None:
    truth = ["a", "a", "b", "c", "c", "c"]
    labels = ["a", "a", "a", "c", "a", "c"]
    outputs = [{"label": lab, "probabilities": {lab: 1.0}} for lab in labels]
    got = compute_metrics("classification", truth, outputs)
    expected = skm.f1_score(truth, labels, average="macro", zero_division=0.0)
    assert got["f1_macro"] == pytest.approx(expected, abs=1e-9)


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(50, 10, 300)
    p = y + rng.normal(0, 3, 300)
    got = compute_metrics("regression", y.tolist(), [{"value": float(v)} for v in p])
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p), abs=1e-9)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), abs=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), abs=1e-9)
    constant = [5.0] * 4
    assert compute_metrics("regression", constant, [{"value": 5.0}] * 4)["r2"] == skm.r2_score(constant, constant)
    off = [{"value": 6.0}] * 4
    assert compute_metrics("regression", constant, off)["r2"] == skm.r2_score(constant, [6.0] * 4)


def test_holdout_csv_round_trips_to_the_values_the_model_was_fitted_on(classifier: training.TrainingResult) -> None:
    c = contract()
    frame = read_dataset(c, classifier.holdout_csv)
    records, _ = read_holdout(c, classifier.holdout_csv)
    income = np.array([np.nan if r["income"] is None else r["income"] for r in records], dtype=np.float32)
    assert np.array_equal(income, frame["income"].to_numpy(np.float32), equal_nan=True)
    assert pd.read_csv(io.BytesIO(classifier.holdout_csv)).shape == (300, 5)
