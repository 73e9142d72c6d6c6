"""Model cards through the real pipeline on the local cloud: the evaluation step computes the card's numbers once,
the register step stores them with the version and writes the card beside the artefact, and `loopml models card`
prints or saves it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from registered_versions import register, run_pipeline

from infra import declaration as decl
from infra.cli.cards import card
from infra.demo import data
from loopml_core.cards import card_keys
from loopml_core.contract import load_contract

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract(
    (decl.ROOT / "infra" / "demo" / "churn.yaml").read_text()
    + "governance: {sensitive_features: [region]}\nintended_use: Rank customers for a retention offer.\n"
)
ROWS = 1000
FEATURES = {f.name for f in CONTRACT.features}


@pytest.fixture(scope="module")
def versions(cloud, registry, store):
    """v1 trained on one month of customers, v2 on another and judged against v1, through the real state machine."""
    for seed in (21, 22):
        registered = register(
            cloud, registry, store, "churn", data.to_csv(data.customers(ROWS, seed=seed)), "csv", ROWS
        )
        _, status = run_pipeline(cloud, "churn", registered.version)
        assert status == "SUCCEEDED"
    return registry.model_version("churn", 1), registry.model_version("churn", 2)


def test_the_evaluation_numbers_are_stored_with_the_version(versions):
    first, second = versions
    for version in (first, second):
        # Every holdout metric has an interval around it
        assert set(version.metric_intervals) == set(version.metrics)
        for name, value in version.metrics.items():
            assert version.metric_intervals[name]["low"] <= value <= version.metric_intervals[name]["high"]
        # Every feature has its permutation importance; support calls and tenure drive churn in the demo data
        assert {entry["feature"] for entry in version.feature_importance} == FEATURES
        assert version.feature_importance[0]["feature"] in {"tenure_months", "support_calls", "monthly_charges"}
        # Fairness across the declared sensitive feature, every region a group
        region = version.fairness["features"]["region"]
        assert {g["group"] for g in region["per_class"][0]["groups"]} == {"north", "south", "east", "west"}
        assert 0 <= region["demographic_parity_difference"] <= 1
        assert version.evaluation_method == {
            "bootstrap_resamples": 1000,
            "confidence": 0.95,
            "importance_repeats": 5,
            "seed": 7,
        }
        assert version.contract_fingerprint == CONTRACT.fingerprint()
    # v1 had no champion to meet; v2 was judged against v1 on the same holdout, with a paired interval
    assert first.champion_version is None and first.comparison is None
    assert second.champion_version == 1 and second.champion_metrics is not None
    assert second.comparison["metric"] == "accuracy"
    assert second.comparison["difference"] == pytest.approx(
        second.metrics["accuracy"] - second.champion_metrics["accuracy"]
    )
    assert (
        second.comparison["interval"]["low"] <= second.comparison["difference"] <= second.comparison["interval"]["high"]
    )


def test_the_register_step_stores_the_card_beside_the_artefact(versions, store):
    _, second = versions
    markdown_key, html_key = card_keys(second)
    folder = second.artifact.key.rsplit("/", 1)[0]
    assert markdown_key == f"{folder}/card.md" and html_key == f"{folder}/card.html"
    markdown = store.get(second.artifact.bucket, markdown_key).decode()
    page = store.get(second.artifact.bucket, html_key).decode()
    # The stored card shows the registry's numbers
    accuracy, interval = second.metrics["accuracy"], second.metric_intervals["accuracy"]
    row = f"| accuracy | {accuracy:.4f} | {interval['low']:.4f} to {interval['high']:.4f} |"
    assert row in markdown
    assert f"{interval['low']:.4f} to {interval['high']:.4f}" in page
    top = second.feature_importance[0]
    assert f"| {top['feature']} | {top['mean']:.4f} | {top['std']:.4f} |" in markdown
    dpd = second.fairness["features"]["region"]["demographic_parity_difference"]
    assert f"demographic parity difference {dpd:.4f}" in markdown
    assert "Rank customers for a retention offer." in markdown
    champion = second.champion_metrics["accuracy"]
    assert f"| accuracy | {accuracy:.4f} | {champion:.4f} | {accuracy - champion:.4f} |" in markdown
    assert "| register_model | model.version.registered | churn/v2 |" in markdown
    assert "<script" not in page


def test_the_cli_prints_and_writes_the_stored_card(versions, registry, store, tmp_path):
    _, second = versions
    backend = SimpleNamespace(registry=registry, store=store)
    markdown_key, html_key = card_keys(second)
    stored = store.get(second.artifact.bucket, markdown_key).decode()
    # When the Markdown card is asked for, it is printed as stored, and where it came from goes to stderr
    result = CliRunner().invoke(card, ["churn", "2"], obj=SimpleNamespace(backend=backend))
    assert result.exit_code == 0, result.output
    assert result.stdout == stored
    assert f"s3://{second.artifact.bucket}/{markdown_key}" in result.stderr
    # And --html --out writes the page to a file
    out = tmp_path / "card.html"
    result = CliRunner().invoke(card, ["churn", "2", "--html", "--out", str(out)], obj=SimpleNamespace(backend=backend))
    assert result.exit_code == 0, result.output
    assert out.read_text() == store.get(second.artifact.bucket, html_key).decode()
    assert f"wrote the HTML card of churn v2 to {out}" in result.stdout


def test_the_cli_renders_a_card_from_the_registry_when_none_is_stored(versions, registry, store, cloud):
    # Given a version whose card is not in the bucket (registered before cards existed, or deleted)
    first, _ = versions
    markdown_key, _html = card_keys(first)
    stored = store.get(first.artifact.bucket, markdown_key).decode()
    cloud.client("s3").delete_object(Bucket=first.artifact.bucket, Key=markdown_key)
    # When it is asked for
    result = CliRunner().invoke(
        card, ["churn", "1"], obj=SimpleNamespace(backend=SimpleNamespace(registry=registry, store=store))
    )
    # Then it is rendered from the registry's records: the same card, but for its summary (the champion may have
    # moved since) and the audit records since
    assert result.exit_code == 0, result.output
    assert "rendered from the registry" in result.stderr

    def stable(text: str) -> str:
        return text.split("## Intended use")[1].split("## Approval", maxsplit=1)[0]

    assert stable(result.stdout) == stable(stored)


def test_an_unknown_version_is_a_clear_error(versions, registry, store):
    result = CliRunner().invoke(
        card, ["churn", "99"], obj=SimpleNamespace(backend=SimpleNamespace(registry=registry, store=store))
    )
    assert result.exit_code != 0
    assert "model 'churn' has no version 99" in str(result.exception)


def test_help_has_an_example():
    result = CliRunner().invoke(card, ["--help"])
    assert result.exit_code == 0
    assert "loopml models card churn 2 --html --out card.html" in result.output
