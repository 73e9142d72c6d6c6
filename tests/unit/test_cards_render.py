"""Model cards rendered from registry records: every section, with the registry's numbers, in Markdown and in one
self-contained HTML page."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from loopml_core import drift
from loopml_core.adapters.table import InMemoryTable
from loopml_core.cards import (
    NOT_RECORDED,
    card_keys,
    gather_card,
    render_html,
    render_markdown,
    sections,
    version_audit,
)
from loopml_core.clock import iso
from loopml_core.contract import load_contract
from loopml_core.models import DatasetVersion, ModelVersion, ObjectRef, UploadOutcome, UploadStatus
from loopml_core.registry import Registry

CONTRACT = """
name: churn
task: classification
target: churned
target_values: ["no", "yes"]
description: "Which customers <b>leave</b> next month"
intended_use: Rank customers for a retention call; not for pricing.
features:
  - {name: tenure_months, type: int, min: 0, max: 600}
  - {name: monthly_charges, type: float, min: 0}
  - {name: region, type: category, values: [north, south]}
governance: {sensitive_features: [region]}
"""
SECTIONS = [
    "Summary",
    "Intended use",
    "Training data",
    "Algorithm and parameters",
    "Holdout metrics",
    "Comparison with the champion",
    "Feature importance",
    "Fairness",
    "Approval",
    "Limitations",
]
ARTIFACT = ObjectRef(bucket="artifacts", key="models/churn/runs/run-2/model.onnx", version_id="av2")


def group(name: str, rows: int, selection: float) -> dict[str, Any]:
    return {
        "group": name,
        "rows": rows,
        "selection_rate": selection,
        "true_positive_rate": 0.7,
        "false_positive_rate": 0.2,
        "accuracy": 0.8,
    }


CARD_NUMBERS: dict[str, Any] = {
    "champion_version": 1,
    "champion_metrics": {"accuracy": 0.7712, "roc_auc": 0.8011},
    "metrics": {"accuracy": 0.8125, "roc_auc": 0.8834},
    "metric_intervals": {"accuracy": {"low": 0.7731, "high": 0.8502}, "roc_auc": {"low": 0.8456, "high": 0.9177}},
    "champion_metric_intervals": {"accuracy": {"low": 0.7301, "high": 0.8114}},
    "comparison": {
        "metric": "accuracy",
        "higher_is_better": True,
        "candidate": 0.8125,
        "champion": 0.7712,
        "difference": 0.0413,
        "interval": {"low": 0.0125, "high": 0.0688},
    },
    "feature_importance": [
        {"feature": "tenure_months", "mean": 0.1634, "std": 0.0211, "repeats": 5},
        {"feature": "region", "mean": -0.0021, "std": 0.0043, "repeats": 5},
    ],
    "fairness": {
        "convention": "positive class 'yes'",
        "features": {
            "region": {
                "demographic_parity_difference": 0.1234,
                "equalized_odds_difference": 0.0987,
                "per_class": [
                    {
                        "positive": "yes",
                        "demographic_parity_difference": 0.1234,
                        "equalized_odds_difference": 0.0987,
                        "groups": [group("north", 300, 0.4321), group("south", 20, 0.5555)],
                    }
                ],
            }
        },
    },
    "evaluation_method": {"bootstrap_resamples": 1000, "confidence": 0.95, "importance_repeats": 5, "seed": 7},
}


def model_version(number: int, execution: str, **numbers: Any) -> ModelVersion:
    return ModelVersion(
        model="churn",
        version=number,
        task="classification",
        dataset_version=1,
        execution=execution,
        artifact=ARTIFACT
        if number == 2
        else ObjectRef(bucket="artifacts", key=f"models/churn/runs/{execution}/model.onnx", version_id="a"),
        baseline=ARTIFACT,
        metrics=numbers.pop("metrics", {"accuracy": 0.7712, "roc_auc": 0.8011}),
        params={"algorithm": "gradient_boosting", "max_iter": 100, "train_rows": 1280, "holdout_rows": 320},
        parity={"ok": True, "message": "parity ok: labels agree"},
        code_version="abc123",
        promoted=True,
        decision=f"decision of v{number}",
        created_at=iso(),
        **numbers,
    )


@pytest.fixture
def registry() -> Registry:
    """churn: dataset v1 with a profile, model v1 (registered before cards: no card numbers) and v2 beating it."""
    registry = Registry(InMemoryTable(), actor="pipeline")
    contract = load_contract(CONTRACT)
    registry.declare_dataset(contract)
    rng = np.random.default_rng(1)
    profile = drift.build_profile(
        contract,
        {
            "tenure_months": rng.integers(0, 72, 500).astype(float),
            "monthly_charges": rng.uniform(20, 120, 500),
            "region": rng.choice(["north", "south"], 500, p=[0.75, 0.25]),
        },
        None,
        targets=rng.choice(["no", "yes"], 500, p=[0.6, 0.4]),
    )

    def build(number: int) -> DatasetVersion:
        return DatasetVersion(
            dataset="churn",
            version=number,
            object=ObjectRef(bucket="data", key="datasets/churn/v1/data.csv", version_id="dv1"),
            source_key="incoming/churn/a.csv",
            sha256="ab" * 32,
            rows=1600,
            contract_version=1,
            profile=profile,
            created_at=iso(),
        )

    upload = UploadOutcome(
        dataset="churn",
        source_key="incoming/churn/a.csv",
        status=UploadStatus.ACCEPTED,
        summary="",
        sha256="ab" * 32,
        at=iso(),
    )
    registry.register_dataset_version("churn", upload=upload, build=build)
    registry.register_model_version(
        "churn", "run-1", lambda n: model_version(n, "run-1"), promote=True, trigger="upload"
    )
    fingerprint = contract.fingerprint()
    registry.register_model_version(
        "churn",
        "run-2",
        lambda n: model_version(n, "run-2", contract_version=1, contract_fingerprint=fingerprint, **dict(CARD_NUMBERS)),
        promote=True,
        trigger="upload",
    )
    return registry


def markdown_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_the_markdown_card_has_every_section_with_the_registrys_numbers(registry):
    # Given v2 as registered, with the numbers the evaluation step computed
    version = registry.model_version("churn", 2)
    # When its card is rendered from the registry
    text = render_markdown(gather_card(registry, version))
    found = markdown_sections(text)
    # Then every section is there, in order
    assert text.startswith("# Model card: churn v2\n")
    assert list(found) == SECTIONS
    # And each shows what the registry holds
    assert "the champion (it answers predictions)" in found["Summary"] and "decision of v2" in found["Summary"]
    assert "Which customers <b>leave</b> next month" in found["Intended use"]
    assert "Rank customers for a retention call; not for pricing." in found["Intended use"]
    assert "| tenure_months | int | [0, 600] | no |  |" in found["Intended use"]
    assert "| region | category | north, south | no | yes |" in found["Intended use"]
    assert "SHA-256 " + "ab" * 32 in found["Training data"]
    assert "1,600 rows, stored as csv at s3://data/datasets/churn/v1/data.csv" in found["Training data"]
    assert f"fingerprint {load_contract(CONTRACT).fingerprint()}" in found["Training data"]
    assert re.search(r"\| region \| category \| north 7\d%, south 2\d% \| 0.0% \|", found["Training data"])
    assert re.search(r"\| churned \(target\) \| category \| no [56]\d%, yes [34]\d% \|", found["Training data"])
    assert "| max_iter | 100 |" in found["Algorithm and parameters"]
    assert "s3://artifacts/models/churn/runs/run-2/model.onnx" in found["Algorithm and parameters"]
    assert "| accuracy | 0.8125 | 0.7731 to 0.8502 |" in found["Holdout metrics"]
    assert "| roc_auc | 0.8834 | 0.8456 to 0.9177 |" in found["Holdout metrics"]
    assert "1,000 resamples of the 320 holdout rows" in found["Holdout metrics"]
    assert "| accuracy | 0.8125 | 0.7712 | 0.0413 | 0.7301 to 0.8114 |" in found["Comparison with the champion"]
    assert "paired bootstrap interval 0.0125 to 0.0688" in found["Comparison with the champion"]
    assert "| tenure_months | 0.1634 | 0.0211 |" in found["Feature importance"]
    assert "demographic parity difference 0.1234, equalized-odds difference 0.0987" in found["Fairness"]
    assert "| north | 300 | 0.4321 | 0.7000 | 0.2000 | 0.8000 |" in found["Fairness"]
    assert "| south (few rows) | 20 | 0.5555 |" in found["Fairness"]
    assert "model.version.registered" in found["Approval"] and "model.alias.moved" in found["Approval"]
    assert "No approval decision is recorded" in found["Approval"]
    assert "tenure_months in [0, 600]" in found["Limitations"]
    assert "No range is declared for" not in found["Limitations"]  # monthly_charges has a min
    assert "The holdout has 320 rows" in found["Limitations"]
    assert "region=south" in found["Limitations"]


def test_the_html_card_is_self_contained_and_says_the_same(registry):
    card = gather_card(registry, registry.model_version("churn", 2))
    page = render_html(card)
    # Then it is one page: no script, no stylesheet or image fetched, only inline CSS and SVG
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"<script|<link|<img|<iframe|src=|@import|url\(", page, flags=re.IGNORECASE)
    assert set(re.findall(r"https?://[^\"' <]+", page)) == {"http://www.w3.org/2000/svg"}  # SVG's namespace only
    assert page.count("<svg") == 2  # metric intervals and feature importance
    # And every section, with the same numbers as the Markdown, text escaped
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "Which customers &lt;b&gt;leave&lt;/b&gt; next month" in page
    for number in ("0.7731 to 0.8502", "0.0125 to 0.0688", "0.1634", "0.1234", "0.4321", "ab" * 32):
        assert number in page
    blocks = [b for s in sections(card) for b in s.blocks if not hasattr(b, "svg")]
    assert len(blocks) > 20


def test_a_version_registered_before_cards_says_what_was_not_recorded(registry):
    # Given v1, registered before the evaluation step computed intervals, importance and fairness
    text = render_markdown(gather_card(registry, registry.model_version("churn", 1)))
    found = markdown_sections(text)
    # Then the card still renders, says so, and shows what exists
    assert list(found) == SECTIONS
    assert "| accuracy | 0.7712 | - |" in found["Holdout metrics"]
    assert f"Confidence intervals: {NOT_RECORDED}" in found["Holdout metrics"]
    assert f"Permutation importance: {NOT_RECORDED}" in found["Feature importance"]
    assert f"Fairness metrics: {NOT_RECORDED}" in found["Fairness"]
    assert "no champion: this was the model's first version" in found["Comparison with the champion"]
    # And the approval section lists its audit records, the alias moving away from it included
    assert "model.version.registered" in found["Approval"]
    assert found["Approval"].count("model.alias.moved") == 2  # to v1, then from v1 to v2


def test_audit_records_of_v1_are_not_those_of_v10(registry):
    records = registry.audit_records("model/churn/")
    v1 = version_audit(records, "churn", 1)
    fake_v10 = records[-1].model_copy(update={"subject": "model/churn/v10", "details": {}})
    assert version_audit([*records, fake_v10], "churn", 1) == v1
    assert version_audit([fake_v10], "churn", 10) == [fake_v10]


def test_the_card_is_stored_beside_the_artefact():
    version = model_version(2, "run-2")
    assert card_keys(version) == ("models/churn/runs/run-2/card.md", "models/churn/runs/run-2/card.html")
