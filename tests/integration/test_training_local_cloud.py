"""The training pipeline on the local cloud reads each stored format, and records a too-large version's reason."""

from __future__ import annotations

import json

import pytest
from registered_versions import as_csv_gz, as_parquet, register, run_pipeline

from infra import declaration as decl
from loopml_core import training
from loopml_core.contract import load_contract
from loopml_core.errors import DatasetTooLargeError

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text())
ROWS = 400


@pytest.mark.parametrize(("file_format", "encode"), [("parquet", as_parquet), ("csv.gz", as_csv_gz)])
def test_a_version_trains_from_its_stored_format(cloud, registry, store, file_format, encode):
    # Given a dataset version stored as Parquet (or gzip-compressed CSV)
    registered = register(cloud, registry, store, "churn", encode(ROWS, seed=11), file_format, ROWS)
    assert registered.object.key.endswith(f"/data.{file_format}")
    # When the pipeline runs on it
    name, status = run_pipeline(cloud, "churn", registered.version)
    # Then the train function read it and the model was evaluated and registered
    assert status == "SUCCEEDED"
    [model] = [v for v in registry.model_versions("churn") if v.execution == name]
    assert model.dataset_version == registered.version
    assert model.params["train_rows"] + model.params["holdout_rows"] == ROWS
    assert model.parity["ok"] is True and model.metrics["accuracy"] > 0.6


def test_a_version_too_large_for_the_function_fails_with_a_readable_reason(cloud, registry, store):
    # Given a version registered with more rows than train_model's declared memory trains (its object is a small,
    # trainable file: the run can only fail because of the registered row count, before anything is fetched)
    memory_mb = decl.FUNCTIONS["train_model"].memory_mb
    rows = training.max_rows(CONTRACT, memory_mb) + 1
    registered = register(cloud, registry, store, "churn", as_parquet(ROWS, seed=12), "parquet", rows)
    champion_before = registry.champion("churn")
    # When the pipeline runs on it
    name, status = run_pipeline(cloud, "churn", registered.version)
    # Then the run is recorded as failed, with the error's type and its whole message as plain text
    assert status == "FAILED"
    [run] = [r for r in registry.runs("churn") if r.execution == name]
    with pytest.raises(DatasetTooLargeError) as expected:
        training.check_memory(CONTRACT, registered, memory_mb)
    assert run.status.value == "FAILED" and run.error == "DatasetTooLargeError"
    assert run.cause == str(expected.value)
    assert f"dataset 'churn' v{registered.version} is too large to train: its {rows:,} rows" in run.cause
    assert f"train_model has {memory_mb:,} MB" in run.cause
    assert "raise memory_mb of train_model in infra/declaration.py (Lambda allows up to 10240 MB" in run.cause
    assert run.dataset_version == registered.version
    # And the champion is untouched, the failure audited
    assert registry.champion("churn") == champion_before
    failed = [r for r in registry.audit_records() if r.action == "pipeline.run.failed" and name in r.subject]
    assert len(failed) == 1 and "too large to train" in json.dumps(failed[0].details)
    assert [i.errored for i in cloud.runner.invocations if i.function == "train_model"][-1] is True
