"""The training pipeline on the local cloud reads each stored format, and records a too-large version's reason."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra import declaration as decl
from infra.demo import data
from loopml_core import training
from loopml_core.clock import iso
from loopml_core.contract import load_contract
from loopml_core.errors import DatasetTooLargeError
from loopml_core.models import DatasetVersion, ObjectRef, UploadOutcome, UploadStatus

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text())
ROWS = 400


def as_parquet(rows: int, seed: int) -> bytes:
    """The demo's customers as a typical writer types them: int64 and int32 numbers, a dictionary-encoded category."""
    table = pa.Table.from_pandas(pd.DataFrame(data.customers(rows, seed=seed)), preserve_index=False)
    table = table.set_column(
        table.schema.get_field_index("support_calls"), "support_calls", table.column("support_calls").cast(pa.int32())
    )
    table = table.set_column(table.schema.get_field_index("plan"), "plan", table.column("plan").dictionary_encode())
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def as_csv_gz(rows: int, seed: int) -> bytes:
    return gzip.compress(data.to_csv(data.customers(rows, seed=seed)))


def register(cloud, registry, store, body: bytes, file_format: str, rows: int) -> DatasetVersion:
    """Register a dataset version as validation does when it accepts an upload: the object copied to its versioned
    key, the record in the registry. (Done by hand: the upload path is not what these tests are about.)"""
    bucket, sha256 = cloud.names.data_bucket, hashlib.sha256(body).hexdigest()
    source_key = f"incoming/churn/{uuid.uuid4().hex}.{file_format}"

    def build(number: int) -> DatasetVersion:
        key = f"datasets/churn/v{number}/data.{file_format}"
        stored = store.put(bucket, key, body)
        return DatasetVersion(
            dataset="churn",
            version=number,
            object=ObjectRef(bucket=bucket, key=key, version_id=stored.version_id),
            source_key=source_key,
            sha256=sha256,
            rows=rows,
            contract_version=registry.dataset("churn").contract_version,
            format=file_format,
            created_at=iso(),
        )

    upload = UploadOutcome(
        dataset="churn",
        source_key=source_key,
        source_version_id="1",
        status=UploadStatus.ACCEPTED,
        summary=f"{rows} rows",
        sha256=sha256,
        format=file_format,
        rows=rows,
        at=iso(),
    )
    outcome = registry.register_dataset_version("churn", upload=upload, build=build)
    assert outcome.status is UploadStatus.ACCEPTED and outcome.dataset_version is not None
    return registry.dataset_version("churn", outcome.dataset_version)


def run_pipeline(cloud, dataset_version: int) -> tuple[str, str]:
    name = f"churn-dv{dataset_version}-manual-{uuid.uuid4().hex[:8]}"
    cloud.client("stepfunctions").start_execution(
        stateMachineArn=cloud.names.state_machine_arn(),
        name=name,
        input=json.dumps({"run": {"model": "churn", "dataset_version": dataset_version, "trigger": "manual"}}),
    )
    return name, cloud.wait_for_execution(name).status


@pytest.mark.parametrize(("file_format", "encode"), [("parquet", as_parquet), ("csv.gz", as_csv_gz)])
def test_a_version_trains_from_its_stored_format(cloud, registry, store, file_format, encode):
    # Given a dataset version stored as Parquet (or gzip-compressed CSV)
    registered = register(cloud, registry, store, encode(ROWS, seed=11), file_format, ROWS)
    assert registered.object.key.endswith(f"/data.{file_format}")
    # When the pipeline runs on it
    name, status = run_pipeline(cloud, registered.version)
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
    registered = register(cloud, registry, store, as_parquet(ROWS, seed=12), "parquet", rows)
    champion_before = registry.champion("churn")
    # When the pipeline runs on it
    name, status = run_pipeline(cloud, registered.version)
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
