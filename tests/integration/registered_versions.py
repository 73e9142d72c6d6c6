"""Dataset versions registered by hand on the local cloud, and pipeline runs started on them, for integration tests
whose subject is not the upload path."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from infra.demo import data
from loopml_core.clock import iso
from loopml_core.models import DatasetVersion, ObjectRef, UploadOutcome, UploadStatus


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


def register(cloud, registry, store, dataset: str, body: bytes, file_format: str, rows: int) -> DatasetVersion:
    """Register a dataset version as validation does when it accepts an upload: the object copied to its versioned
    key, the record in the registry. (Done by hand: the upload path is not what these tests are about.)"""
    bucket, sha256 = cloud.names.data_bucket, hashlib.sha256(body).hexdigest()
    source_key = f"incoming/{dataset}/{uuid.uuid4().hex}.{file_format}"

    def build(number: int) -> DatasetVersion:
        key = f"datasets/{dataset}/v{number}/data.{file_format}"
        stored = store.put(bucket, key, body)
        return DatasetVersion(
            dataset=dataset,
            version=number,
            object=ObjectRef(bucket=bucket, key=key, version_id=stored.version_id),
            source_key=source_key,
            sha256=sha256,
            rows=rows,
            contract_version=registry.dataset(dataset).contract_version,
            format=file_format,
            created_at=iso(),
        )

    upload = UploadOutcome(
        dataset=dataset,
        source_key=source_key,
        source_version_id="1",
        status=UploadStatus.ACCEPTED,
        summary=f"{rows} rows",
        sha256=sha256,
        format=file_format,
        rows=rows,
        at=iso(),
    )
    outcome = registry.register_dataset_version(dataset, upload=upload, build=build)
    assert outcome.status is UploadStatus.ACCEPTED and outcome.dataset_version is not None
    return registry.dataset_version(dataset, outcome.dataset_version)


def run_pipeline(cloud, model: str, dataset_version: int, wait: bool = True) -> tuple[str, str]:
    name = f"{model}-dv{dataset_version}-manual-{uuid.uuid4().hex[:8]}"
    cloud.client("stepfunctions").start_execution(
        stateMachineArn=cloud.names.state_machine_arn(),
        name=name,
        input=json.dumps({"run": {"model": model, "dataset_version": dataset_version, "trigger": "manual"}}),
    )
    return name, cloud.wait_for_execution(name).status if wait else "RUNNING"
