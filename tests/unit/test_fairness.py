"""Group fairness of the evaluation step (numpy only, on the inference layer) against fairlearn's own functions, and
the contract's `governance.sensitive_features`."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from pydantic import ValidationError

from loopml_core.contract import DatasetContract, load_contract
from loopml_core.evaluation import fairness_report, group_fairness


def generated(rows: int, seed: int, classes: tuple[str, ...] = ("no", "yes")):
    """Labels, predictions that depend on the group (so the groups differ), and the group of each row."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(["north", "south", "east", "west"], rows, p=[0.4, 0.3, 0.2, 0.1])
    truth = rng.choice(classes, rows)
    bias = {"north": 0.1, "south": 0.3, "east": 0.5, "west": 0.2}
    wrong = rng.random(rows) < np.vectorize(bias.get)(groups)
    predicted = np.where(wrong, rng.choice(classes, rows), truth)
    return truth.tolist(), predicted.tolist(), groups.tolist()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_binary_differences_equal_fairlearns(seed):
    # Given labels and predictions where every group has both outcomes
    truth, predicted, groups = generated(2000, seed)
    y = (np.asarray(truth) == "yes").astype(int)
    p = (np.asarray(predicted) == "yes").astype(int)
    # When LoopML measures fairness with 'yes' as the positive class
    ours = group_fairness(truth, predicted, groups, "yes")
    # Then both differences are fairlearn's, between groups, worst case
    assert ours["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, p, sensitive_features=groups), abs=1e-12
    )
    assert ours["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, p, sensitive_features=groups), abs=1e-12
    )
    # And so is every group's selection rate, TPR and FPR
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y,
        y_pred=p,
        sensitive_features=np.asarray(groups),
    ).by_group
    for entry in ours["groups"]:
        row = frame.loc[entry["group"]]
        assert entry["selection_rate"] == pytest.approx(row["selection_rate"], abs=1e-12)
        assert entry["true_positive_rate"] == pytest.approx(row["tpr"], abs=1e-12)
        assert entry["false_positive_rate"] == pytest.approx(row["fpr"], abs=1e-12)
        assert entry["rows"] == groups.count(entry["group"])


def test_a_group_without_positives_has_no_tpr_where_fairlearn_counts_zero():
    # Given a group whose rows are all negatives (fairlearn scores its TPR 0 and so reports an odds gap of 1)
    truth = ["no", "no", "no", "yes", "yes", "no", "yes", "no"]
    predicted = ["no", "yes", "no", "yes", "no", "no", "yes", "yes"]
    groups = ["a", "a", "a", "b", "b", "b", "c", "c"]
    y = (np.asarray(truth) == "yes").astype(int)
    p = (np.asarray(predicted) == "yes").astype(int)
    assert equalized_odds_difference(y, p, sensitive_features=groups) == 1.0
    # When LoopML measures it
    ours = group_fairness(truth, predicted, groups, "yes")
    # Then that group has no TPR and is left out of the TPR spread (c 1.0 - b 0.5), while the FPR spread counts it
    by_group = {g["group"]: g for g in ours["groups"]}
    assert by_group["a"]["true_positive_rate"] is None
    assert by_group["a"]["false_positive_rate"] == pytest.approx(1 / 3)
    fpr = [1 / 3, 0.0, 1.0]  # a, b, c
    assert ours["equalized_odds_difference"] == pytest.approx(max(1.0 - 0.5, max(fpr) - min(fpr)))
    # And demographic parity (defined for every group) is still fairlearn's
    assert ours["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, p, sensitive_features=groups)
    )


CONTRACT = """
name: toy
task: classification
target: y
features:
  - {name: x, type: float}
  - {name: region, type: category, values: [north, south, east, west]}
governance: {sensitive_features: [region]}
"""


def outputs_of(predicted, classes):
    return [{"label": label, "probabilities": {c: float(c == label) for c in classes}} for label in predicted]


def test_multiclass_is_one_vs_rest_and_reports_the_worst_class():
    # Given a three-class model's predictions
    classes = ("a", "b", "c")
    truth, predicted, groups = generated(3000, seed=4, classes=classes)
    contract = load_contract(CONTRACT)
    records = [{"x": 0.0, "region": g} for g in groups]
    # When fairness is reported for the sensitive feature
    report = fairness_report(contract, records, truth, outputs_of(predicted, classes))
    assert report is not None
    region = report["features"]["region"]
    # Then each class is measured against the rest as fairlearn would on the binarised labels
    for positive, per_class in zip(classes, region["per_class"], strict=True):
        y = (np.asarray(truth) == positive).astype(int)
        p = (np.asarray(predicted) == positive).astype(int)
        assert per_class["positive"] == positive
        assert per_class["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y, p, sensitive_features=groups), abs=1e-12
        )
        assert per_class["equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(y, p, sensitive_features=groups), abs=1e-12
        )
    # And the headline is the worst class, the convention stated
    assert region["demographic_parity_difference"] == max(
        c["demographic_parity_difference"] for c in region["per_class"]
    )
    assert region["equalized_odds_difference"] == max(c["equalized_odds_difference"] for c in region["per_class"])
    assert "one-vs-rest" in report["convention"]


def test_binary_reports_the_second_class_as_positive():
    truth, predicted, groups = generated(500, seed=6)
    report = fairness_report(
        load_contract(CONTRACT), [{"region": g} for g in groups], truth, outputs_of(predicted, ("no", "yes"))
    )
    assert report is not None and report["convention"] == "positive class 'yes'"
    assert [c["positive"] for c in report["features"]["region"]["per_class"]] == ["yes"]


def test_no_sensitive_feature_no_report():
    contract = load_contract(CONTRACT.replace("governance: {sensitive_features: [region]}", ""))
    assert fairness_report(contract, [{"region": "north"}], ["yes"], outputs_of(["yes"], ("no", "yes"))) is None


@pytest.mark.parametrize(
    ("sensitive", "message"),
    [("[age]", "'age', which is not a feature"), ("[x]", "'x' must be a category feature")],
)
def test_sensitive_features_must_be_category_features(sensitive, message):
    with pytest.raises(ValidationError, match=message):
        load_contract(CONTRACT.replace("[region]", sensitive))


def test_contracts_without_the_new_sections_keep_their_fingerprint():
    # Given a contract that sets none of description, intended_use and governance
    plain = load_contract(CONTRACT.replace("governance: {sensitive_features: [region]}", ""))
    # Then its fingerprint hashes what it hashed before those sections existed (the model dump without them)
    import hashlib

    before = plain.model_dump_json(exclude={"description", "intended_use", "governance"})
    assert plain.fingerprint() == hashlib.sha256(before.encode()).hexdigest()[:16]
    # And setting any of them changes it
    assert load_contract(CONTRACT).fingerprint() != plain.fingerprint()
    described = DatasetContract.model_validate({**plain.model_dump(), "description": "churn"})
    assert described.fingerprint() != plain.fingerprint()
