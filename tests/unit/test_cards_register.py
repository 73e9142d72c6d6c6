"""The register step stores the evaluation's card numbers with the version and the card beside the artefact; the card
is rendered from those records only, and a card that cannot be stored does not fail a registered version's run."""

from __future__ import annotations

import hashlib

import pytest

from infra import declaration as decl
from infra.demo import data
from loopml_core.adapters.object_store import InMemoryObjectStore, StoredObject
from loopml_core.adapters.table import InMemoryTable
from loopml_core.cards import card_keys, stored_or_rendered
from loopml_core.clock import iso
from loopml_core.contract import load_contract
from loopml_core.logic.pipeline_steps import PipelineSteps, RunRequest
from loopml_core.models import DatasetVersion, ObjectRef, UploadOutcome, UploadStatus
from loopml_core.registry import Registry

CONTRACT = load_contract(
    (decl.ROOT / "infra" / "demo" / "churn.yaml").read_text() + "governance: {sensitive_features: [region]}\n"
)
ROWS = 600


class CardlessStore(InMemoryObjectStore):
    """An artifact bucket that refuses the cards (as a role without the grant would)."""

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        if key.endswith(("card.md", "card.html")):
            raise PermissionError(f"AccessDenied: PutObject on {key}")
        return super().put(bucket, key, body, content_type)


def pipeline(store: InMemoryObjectStore) -> tuple[PipelineSteps, RunRequest]:
    registry = Registry(InMemoryTable(), actor="register_model")
    registry.declare_dataset(CONTRACT)
    body = data.to_csv(data.customers(ROWS, seed=4))
    sha256 = hashlib.sha256(body).hexdigest()

    def build(number: int) -> DatasetVersion:
        stored = store.put("data", f"datasets/churn/v{number}/data.csv", body)
        return DatasetVersion(
            dataset="churn",
            version=number,
            object=ObjectRef(bucket="data", key=stored.key, version_id=stored.version_id),
            source_key="incoming/churn/a.csv",
            sha256=sha256,
            rows=ROWS,
            contract_version=1,
            created_at=iso(),
        )

    upload = UploadOutcome(
        dataset="churn",
        source_key="incoming/churn/a.csv",
        status=UploadStatus.ACCEPTED,
        summary="",
        sha256=sha256,
        at=iso(),
    )
    outcome = registry.register_dataset_version("churn", upload=upload, build=build)
    assert outcome.dataset_version is not None
    return PipelineSteps(store, registry, "artifacts"), RunRequest(
        model="churn", dataset_version=outcome.dataset_version
    )


def test_the_card_numbers_travel_from_evaluate_to_the_registry_and_the_card(monkeypatch):
    # Given a candidate trained and evaluated
    store = InMemoryObjectStore()
    steps, run = pipeline(store)
    candidate = steps.train(run, "run-1")
    evaluation = steps.evaluate(candidate)
    # When it is registered
    registered = steps.register(run, candidate, evaluation)
    version = steps.registry.model_version("churn", registered["version"])
    # Then the version holds exactly what the evaluate step computed
    assert version.metric_intervals == evaluation["metric_intervals"]
    assert version.feature_importance == evaluation["feature_importance"]
    assert version.fairness == evaluation["fairness"]
    assert version.evaluation_method == evaluation["method"]
    assert version.contract_fingerprint == CONTRACT.fingerprint() and version.contract_version == 1
    # And the card is beside the artefact, and the step's result says where
    markdown_key, html_key = card_keys(version)
    assert (
        markdown_key == "models/churn/runs/run-1/card.md"
        and version.artifact.key == "models/churn/runs/run-1/model.onnx"
    )
    assert registered["card"] == {"markdown": f"s3://artifacts/{markdown_key}", "html": f"s3://artifacts/{html_key}"}
    assert store.get("artifacts", html_key).startswith(b"<!DOCTYPE html>")

    # And rendering a card computes nothing: with the evaluation's statistics unavailable (and no card stored in the
    # bucket it is asked from), it renders the registry's numbers
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a card must not compute statistics")

    for name in ("bootstrap_samples", "permutation_importance", "fairness_report", "compute_metrics"):
        monkeypatch.setattr(f"loopml_core.evaluation.{name}", refuse)
    rendered = stored_or_rendered(steps.registry, InMemoryObjectStore(), "churn", version.version, as_html=False)
    assert rendered.uri is None
    interval = version.metric_intervals["accuracy"]
    assert f"| accuracy | {version.metrics['accuracy']:.4f} | {interval['low']:.4f} to {interval['high']:.4f} |" in (
        rendered.text
    )


def test_a_card_that_cannot_be_stored_leaves_the_version_registered(caplog):
    # Given an artifact bucket that refuses the card
    steps, run = pipeline(CardlessStore())
    candidate = steps.train(run, "run-1")
    # When the version is registered
    registered = steps.register(run, candidate, steps.evaluate(candidate))
    # Then it is registered and champion, the step succeeds, and it says why there is no card
    assert registered["version"] == 1 and registered["promoted"] is True
    assert registered["card"] is None and "AccessDenied" in registered["card_error"]
    assert steps.registry.champion("churn").version == 1
    assert "model card of churn v1 could not be stored" in caplog.text
    # And the CLI's path still renders it from the registry
    rendered = stored_or_rendered(steps.registry, steps.store, "churn", 1, as_html=True)
    assert rendered.uri is None and "<h2>Holdout metrics</h2>" in rendered.text


@pytest.mark.parametrize("as_html", [False, True])
def test_a_stored_card_is_read_back_as_stored(as_html):
    store = InMemoryObjectStore()
    steps, run = pipeline(store)
    candidate = steps.train(run, "run-1")
    steps.register(run, candidate, steps.evaluate(candidate))
    version = steps.registry.model_version("churn", 1)
    key = card_keys(version)[1 if as_html else 0]
    found = stored_or_rendered(steps.registry, store, "churn", 1, as_html=as_html)
    assert found.uri == f"s3://artifacts/{key}" and found.text == store.get("artifacts", key).decode()
