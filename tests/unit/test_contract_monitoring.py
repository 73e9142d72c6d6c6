"""The contract's `monitoring:` and `retraining:` sections: defaults a user can rely on, clear refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from loopml_core.contract import RETENTION_DAYS, PerformanceMetric, load_contract

BASE = """
name: churn
task: classification
target: churned
target_values: ["no", "yes"]
features:
  - {name: tenure, type: int, min: 0}
"""


def test_sections_default_to_documented_values() -> None:
    contract = load_contract(BASE)
    assert contract.monitoring.sample_rate == 1.0 and contract.monitoring.retention_days == 30
    assert (contract.monitoring.drift.psi, contract.monitoring.drift.p_value) == (0.2, 0.01)
    assert contract.performance_metric is PerformanceMetric.F1_MACRO
    assert contract.retraining.daily_budget == 3 and contract.retraining.cooldown_hours == 6.0
    regression = load_contract(BASE.replace("classification", "regression").replace('target_values: ["no", "yes"]', ""))
    assert regression.performance_metric is PerformanceMetric.RMSE


def test_sections_are_read_from_yaml() -> None:
    contract = load_contract(
        BASE
        + """
monitoring:
  sample_rate: 0.25
  retention_days: 90
  drift: {psi: 0.1, p_value: 0.05, min_effect: 0.2}
  performance: {metric: roc_auc, tolerance: 0.05, min_labels: 10}
retraining: {cooldown_hours: 1, min_captured_rows: 0, min_new_rows: 0, daily_budget: 10}
"""
    )
    assert contract.monitoring.sample_rate == 0.25 and contract.monitoring.retention_days == 90
    assert contract.monitoring.drift.min_effect == 0.2
    assert contract.performance_metric is PerformanceMetric.ROC_AUC
    assert contract.retraining.daily_budget == 10


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("monitoring: {retention_days: 45}", "retention_days must be one of " + ", ".join(map(str, RETENTION_DAYS))),
        ("monitoring: {sample_rate: 0}", "sample_rate"),
        ("monitoring: {performance: {metric: rmse}}", "'rmse' does not apply to classification"),
        ("monitoring: {drift: {p_value: 1.5}}", "p_value"),
        ("retraining: {daily_budget: -1}", "daily_budget"),
        ("retraining: {cooldown: 3}", "cooldown"),
    ],
)
def test_bad_settings_are_refused_by_name(section: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_contract(BASE + section + "\n")
