"""Drift: baseline profiles and the population stability index of live traffic against them."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from loopml_core.contract import DatasetContract, DriftThresholds
from loopml_core.drift import (
    build_profile,
    chi2_sf,
    chi2_test,
    compare,
    count_records,
    judge,
    kolmogorov_sf,
    ks_test,
    population_stability_index,
    tally,
)

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
    psi_only = DriftThresholds(psi=psi + 0.01, min_effect=1.0)  # a KS effect can never reach 1 here
    assert compare(profile, live, None, thresholds=psi_only).drifted == []
    assert compare(profile, live, None, DriftThresholds(psi=psi - 0.01)).drifted == ["amount"]


def test_profile_requires_every_feature() -> None:
    columns = sample(100, seed=1)
    del columns["term"]
    with pytest.raises(ValueError, match="term"):
        build_profile(CONTRACT, columns, None)


# --- the tests, against scipy ------------------------------------------------------------------------------------


def test_chi2_survival_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 3, 5, 10, 24, 99):
        for x in (0.01, 0.5, 1.0, dof * 0.5, float(dof), dof + 3.0, 2.0 * dof + 10, 150.0):
            assert chi2_sf(x, dof) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-9, abs=1e-15), (x, dof)


def test_kolmogorov_survival_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for x in np.linspace(0.05, 3.0, 60):
        assert kolmogorov_sf(float(x)) == pytest.approx(stats.kstwobign.sf(x), rel=1e-9, abs=1e-15), x


def test_ks_on_binned_values_is_scipys_two_sample_test() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    baseline = rng.integers(0, 60, 20_000).astype(float)  # fewer distinct values than fine bins: binning is exact
    current = rng.integers(3, 62, 30_000).astype(float)
    profile = build_profile(CONTRACT, {**sample(20_000, seed=1), "amount": baseline}, None)
    entry = profile["features"]["amount"]
    counted = tally(entry, current)
    result = ks_test(np.asarray(entry["fine_fractions"]), 20_000, counted.fine)
    exact = stats.ks_2samp(baseline, current, method="asymp")
    assert result.statistic == pytest.approx(exact.statistic, abs=1e-12)
    assert result.p_value == pytest.approx(stats.kstwobign.sf(result.statistic * math.sqrt(12_000)), rel=1e-9)


def test_ks_on_continuous_values_is_within_one_fine_bin_of_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    baseline, current = rng.normal(0, 1, 50_000), rng.normal(0.08, 1.1, 80_000)
    profile = build_profile(CONTRACT, {**sample(50_000, seed=1), "amount": baseline}, None)
    entry = profile["features"]["amount"]
    result = ks_test(np.asarray(entry["fine_fractions"]), 50_000, tally(entry, current).fine)
    exact = stats.ks_2samp(baseline, current)
    assert exact.statistic - 0.01 <= result.statistic <= exact.statistic + 1e-12


def test_chi2_is_scipys_test_of_homogeneity() -> None:
    stats = pytest.importorskip("scipy.stats")
    expected = np.array([500.0, 300.0, 200.0, 0.0, 0.0])
    observed = np.array([230, 160, 90, 20, 0])
    result = chi2_test(expected, observed)
    table = np.array([expected[:4], observed[:4]])  # the bucket empty in both is no category of the table
    statistic, p_value, _dof, _ = stats.chi2_contingency(table, correction=False)
    assert (result.statistic, result.p_value) == (pytest.approx(statistic), pytest.approx(p_value))
    assert result.effect == pytest.approx(math.sqrt(statistic / table.sum()))


def test_a_significant_but_tiny_shift_in_a_large_window_is_not_drift() -> None:
    profile = build_profile(CONTRACT, sample(200_000, seed=1), None)
    window = count_records(profile, records(sample(200_000, seed=2, amount_shift=0.02)))
    report = judge(profile, window, DriftThresholds(psi=0.2, p_value=0.01, min_effect=0.1))
    amount = report.columns["amount"]
    assert amount.p_value < 1e-6 and amount.statistic < 0.1  # significant, and small
    assert not amount.drifted and report.drifted == []
    strict = judge(profile, window, DriftThresholds(psi=0.2, p_value=0.01, min_effect=0.01))
    assert strict.drifted == ["amount"]


def test_windows_merge_to_the_whole() -> None:
    profile = build_profile(CONTRACT, sample(5_000, seed=1), None)
    live = sample(3_000, seed=7, amount_shift=0.3)
    whole = count_records(profile, records(live))
    first = count_records(profile, records({k: v[:1_000] for k, v in live.items()}))
    first.merge(count_records(profile, records({k: v[1_000:] for k, v in live.items()})))
    assert first.rows == whole.rows
    for name, counted in whole.tallies.items():
        assert np.array_equal(first.tallies[name].buckets, counted.buckets)
        if counted.fine is not None:
            assert np.array_equal(first.tallies[name].fine, counted.fine)
    assert judge(profile, first).to_dict() == judge(profile, whole).to_dict()
