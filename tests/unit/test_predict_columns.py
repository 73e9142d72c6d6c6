"""The columnar serving path gives exactly what the record-by-record one does: the same tensors, the same answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from infra.demo import data
from loopml_core.contract import DatasetContract
from loopml_core.logic.inference import validate_records
from loopml_core.serving import ModelOutputs, OnnxModel, regression_values
from loopml_core.training import train

FEATURES = [
    {"name": "x", "type": "float", "nullable": True},
    {"name": "n", "type": "int", "min": 0},
    {"name": "c", "type": "category", "values": ["a", "b", "z"], "nullable": True},
]


def _model(task: str) -> tuple[OnnxModel, list[dict]]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x": np.where(rng.random(400) < 0.1, np.nan, rng.normal(size=400)),
            "n": rng.integers(0, 20, 400),
            "c": rng.choice(["a", "b", "z"], 400),
        }
    )
    signal = frame["x"].fillna(0) + frame["n"] / 10 + (frame["c"] == "a")
    frame["y"] = np.where(signal > 1, "yes", "no") if task == "classification" else signal * 3.3
    contract = DatasetContract.model_validate({"name": "t", "task": task, "target": "y", "features": FEATURES})
    records = [
        {"x": None if i % 7 == 0 else float(v), "n": int(n), "c": None if i % 5 == 0 else str(c)}
        for i, (v, n, c) in enumerate(zip(frame["x"].fillna(0), frame["n"], frame["c"], strict=True))
    ][:50]
    return OnnxModel(train(contract, frame).onnx_model, contract), records


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_columns_feed_the_model_what_records_do_and_get_the_same_answers(task):
    model, records = _model(task)
    columns = validate_records(model.contract, records, 100)
    from_columns = model.column_feeds(columns.numbers, columns.categories)
    from_records = model.feeds(records)
    assert set(from_columns) == set(from_records)
    for name, tensor in from_records.items():
        assert from_columns[name].shape == tensor.shape and from_columns[name].dtype == tensor.dtype
        np.testing.assert_array_equal(from_columns[name], tensor)
    outputs = model.outputs(model.run(from_columns))
    assert outputs.rows() == [{"index": i, **answer} for i, answer in enumerate(model.predict(records))]
    assert len(outputs.prediction) == len(records)


def test_rows_keep_the_class_order_for_any_number_of_classes():
    binary = ModelOutputs(["no", "yes"], labels=["yes"], probabilities=[[0.25, 0.75]])
    assert binary.rows() == [{"index": 0, "label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}}]
    three = ModelOutputs(["a", "b", "c"], labels=["c", "a"], probabilities=[[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    assert [list(row["probabilities"]) for row in three.rows()] == [["a", "b", "c"]] * 2
    assert three.rows()[1] == {"index": 1, "label": "a", "probabilities": {"a": 0.6, "b": 0.3, "c": 0.1}}


def test_a_float32_regression_value_is_its_shortest_decimal():
    values = regression_values(np.array([[3.14], [0.1], [-2.5e-8]], dtype=np.float32))
    assert values == [3.14, 0.1, -2.5e-8] and all(type(v) is float for v in values)
    assert regression_values(np.array([1.0000001], dtype=np.float64)) == [1.0000001]


def test_demo_requests_validate_into_columns():
    records = data.requests_for(data.customers(3, seed=2))
    contract = DatasetContract.model_validate(
        {
            "name": "churn",
            "task": "classification",
            "target": "churned",
            "features": [
                {"name": "tenure_months", "type": "int"},
                {"name": "monthly_charges", "type": "float"},
                {"name": "support_calls", "type": "int"},
                {"name": "plan", "type": "category", "values": ["basic", "plus", "pro"]},
                {"name": "region", "type": "category", "values": ["north", "south", "east", "west"]},
            ],
        }
    )
    columns = validate_records(contract, records, 10)
    assert columns.numbers.shape == (3, 3) and columns.categories["plan"].tolist() == [r["plan"] for r in records]
