"""Drift: baseline profiles and the population stability index of live traffic against them."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from loopml_core.contract import DatasetContract
from loopml_core.drift import build_profile, compare, population_stability_index

CONTRACT = DatasetContract.model_validate(
    {
        "name": "loans",
        "task": "classification",
        "target": "default",
        "features": [
            {"name": "amount", "type": "float"},
            {"name": "term", "type": "int", "nullable": True},
            {"name": "purpose", "type": "category", "values": ["car", "home", "other"]},
        ],
        "target_values": ["no", "yes"],
    }
)


def sample(n: int, seed: int, amount_shift: float = 0.0, purpose_p: tuple[float, ...] = (0.5, 0.3, 0.2)) -> dict:
    rng = np.random.default_rng(seed)
    term = rng.integers(12, 60, n).astype(float)
    term[rng.random(n) < 0.05] = np.nan
    return {
        "amount": rng.lognormal(9.0 + amount_shift, 0.4, n),
        "term": term,
        "purpose": rng.choice(["car", "home", "other"], n, p=list(purpose_p)),
    }


def records(columns: dict) -> list[dict[str, Any]]:
    n = len(columns["amount"])
    return [
        {
            "amount": float(columns["amount"][i]),
            "term": None if np.isnan(columns["term"][i]) else float(columns["term"][i]),
            "purpose": str(columns["purpose"][i]),
        }
        for i in range(n)
    ]


def outputs(labels: list[str]) -> list[dict[str, Any]]:
    return [{"label": lab, "probabilities": {"no": 0.5, "yes": 0.5}} for lab in labels]


def test_psi_known_values() -> None:
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = 0.2 * math.log(0.7 / 0.5) + (-0.2) * math.log(0.3 / 0.5)
    assert population_stability_index([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    # An empty bucket is floored at epsilon instead of dividing by zero.
    floored = population_stability_index([0.5, 0.5, 0.0], [0.5, 0.4, 0.1], epsilon=1e-4)
    assert math.isfinite(floored) and floored > 0.2
    with pytest.raises(ValueError):
        population_stability_index([0.5, 0.5], [1.0])


def test_profile_is_json_and_describes_the_training_data() -> None:
    columns = sample(2000, seed=1)
    profile = build_profile(CONTRACT, columns, outputs(["no"] * 1500 + ["yes"] * 500), targets=["no"] * 2000)
    text = json.dumps(profile, allow_nan=False)
    assert json.loads(text) == profile
    amount = profile["features"]["amount"]
    assert amount["edges"][0] is None and amount["edges"][-1] is None
    assert len(amount["edges"]) == 11  # 9 quantile cuts, open-ended at both ends: 10 bins
    assert all(f == pytest.approx(0.1, abs=0.002) for f in amount["fractions"])
    assert profile["features"]["term"]["null_fraction"] == pytest.approx(np.isnan(columns["term"]).mean())
    purpose = profile["features"]["purpose"]
    assert purpose["values"] == ["car", "home", "other"]
    assert sum(purpose["fractions"]) == pytest.approx(1.0)
    assert profile["prediction"]["fractions"] == [0.75, 0.25]
    assert profile["target"]["fractions"] == [1.0, 0.0]
    assert profile["rows"] == 2000


def test_tied_quantiles_are_deduplicated() -> None:
    columns = sample(500, seed=2)
    columns["amount"] = np.where(np.arange(500) < 450, 0.0, 1.0)
    profile = build_profile(CONTRACT, columns, None)
    assert profile["features"]["amount"]["edges"] == [None, 0.0, None]
    assert profile["features"]["amount"]["fractions"] == [0.9, 0.1]


def test_same_distribution_has_no_drift() -> None:
    profile = build_profile(CONTRACT, sample(2000, seed=1), outputs(["no"] * 1000 + ["yes"] * 1000))
    live = sample(2000, seed=2)
    report = compare(profile, records(live), outputs(["no", "yes"] * 1000))
    assert not report.has_drift and report.drifted == []
    assert all(psi < 0.05 for psi in report.per_feature.values())
    assert set(report.per_feature) == {"amount", "term", "purpose", "prediction"}
    assert report.rows == 2000


def test_shifted_feature_is_flagged_and_only_it() -> None:
    profile = build_profile(CONTRACT, sample(2000, seed=1), None)
    report = compare(profile, records(sample(1000, seed=3, amount_shift=0.5)), None)
    assert report.has_drift
    assert report.drifted == ["amount"]
    assert report.per_feature["amount"] > 0.2
    assert "prediction" not in report.per_feature


def test_category_shift_and_unseen_categories_show_as_drift() -> None:
    profile = build_profile(CONTRACT, sample(2000, seed=1), None)
    shifted = compare(profile, records(sample(1000, seed=4, purpose_p=(0.1, 0.1, 0.8))), None)
    assert shifted.drifted == ["purpose"]
    unseen = records(sample(1000, seed=5))
    for r in unseen[:300]:
        r["purpose"] = "boat"
    report = compare(profile, unseen, None)
    assert report.drifted == ["purpose"]


def test_rising_nulls_show_as_drift() -> None:
    profile = build_profile(CONTRACT, sample(2000, seed=1), None)
    live = records(sample(1000, seed=6))
    for r in live[:400]:
        r["term"] = None
    assert compare(profile, live, None).drifted == ["term"]


def test_prediction_drift() -> None:
    profile = build_profile(CONTRACT, sample(2000, seed=1), outputs(["no"] * 1800 + ["yes"] * 200))
    report = compare(profile, records(sample(500, seed=7)), outputs(["yes"] * 300 + ["no"] * 200))
    assert report.drifted == ["prediction"]


def test_regression_prediction_profile_is_binned() -> None:
    regression = DatasetContract.model_validate(
        {"name": "prices", "task": "regression", "target": "price", "features": CONTRACT.model_dump()["features"]}
    )
    values = np.random.default_rng(0).normal(100, 10, 2000)
    profile = build_profile(regression, sample(2000, seed=1), [{"value": float(v)} for v in values])
    assert profile["prediction"]["kind"] == "numeric"
    same = compare(profile, records(sample(500, seed=8)), [{"value": float(v)} for v in values[:500]])
    moved = compare(profile, records(sample(500, seed=8)), [{"value": float(v) + 15} for v in values[:500]])
    assert same.per_feature["prediction"] < 0.1
    assert moved.drifted == ["prediction"]


def test_insufficient_data_never_reports_drift() -> None:
    profile = build_profile(CONTRACT, sample(2000, seed=1), None)
    few = records(sample(49, seed=9, amount_shift=2.0))
    report = compare(profile, few, None)
    assert report.insufficient_data and not report.has_drift
    assert report.rows == 49 and report.per_feature == {}
    enough = compare(profile, records(sample(60, seed=9, amount_shift=2.0)), None, min_rows=50)
    assert not enough.insufficient_data and enough.has_drift
    assert json.loads(json.dumps(enough.to_dict()))["has_drift"] is True


def test_threshold_is_respected() -> None:
    profile = build_profile(CONTRACT, sample(2000, seed=1), None)
    live = records(sample(1000, seed=3, amount_shift=0.5))
    psi = compare(profile, live, None).per_feature["amount"]
    assert compare(profile, live, None, threshold=psi + 0.01).drifted == []
    assert compare(profile, live, None, threshold=psi - 0.01).drifted == ["amount"]


def test_profile_requires_every_feature() -> None:
    columns = sample(100, seed=1)
    del columns["term"]
    with pytest.raises(ValueError, match="term"):
        build_profile(CONTRACT, columns, None)
