"""Training refuses, with a reason, a dataset version estimated not to fit in the training function's memory."""

from __future__ import annotations

import hashlib
import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.demo import data
from loopml_core import training
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.table import InMemoryTable
from loopml_core.clock import iso
from loopml_core.contract import DatasetContract
from loopml_core.errors import DatasetTooLargeError
from loopml_core.logic.pipeline_steps import MEMORY_ENV, PipelineSteps, RunRequest, function_memory_mb
from loopml_core.models import DatasetVersion, ObjectRef, UploadOutcome, UploadStatus
from loopml_core.registry import Registry

DATA_BUCKET, ARTIFACT_BUCKET = "data", "artifacts"
DEFAULT_MEMORY_MB = 2048  # train_model's memory_mb in infra/declaration.py
LARGE_ROWS = 50_000_000


def numeric_contract(features: int, algorithm: str | None = None) -> DatasetContract:
    return DatasetContract.model_validate(
        {
            "name": "wide",
            "task": "regression",
            "target": "y",
            "features": [{"name": f"x{i}", "type": "float"} for i in range(features)],
            "algorithm": algorithm,
        }
    )


def churn_contract() -> DatasetContract:
    return DatasetContract.model_validate(
        {
            "name": "churn",
            "task": "classification",
            "target": "churned",
            "target_values": ["no", "yes"],
            "features": [
                {"name": "tenure_months", "type": "int", "min": 0, "max": 600},
                {"name": "monthly_charges", "type": "float", "min": 0},
                {"name": "support_calls", "type": "int", "min": 0},
                {"name": "plan", "type": "category", "values": ["basic", "plus", "pro"]},
                {"name": "region", "type": "category", "values": ["north", "south", "east", "west"]},
            ],
        }
    )


def version(rows: int, number: int = 3, file_format: str = "parquet") -> DatasetVersion:
    return DatasetVersion(
        dataset="churn",
        version=number,
        object=ObjectRef(bucket=DATA_BUCKET, key=f"datasets/churn/v{number}/data.{file_format}", version_id="1"),
        source_key=f"incoming/churn/big.{file_format}",
        sha256="0" * 64,
        rows=rows,
        contract_version=1,
        format=file_format,
        created_at=iso(),
    )


def test_the_estimate_grows_with_rows_columns_and_category_values() -> None:
    narrow, wide = numeric_contract(5), numeric_contract(20)
    assert training.estimate_memory_mb(narrow, 0) == training.BASE_MB
    assert training.estimate_memory_mb(narrow, 100_000) < training.estimate_memory_mb(narrow, 1_000_000)
    assert training.estimate_memory_mb(narrow, 1_000_000) < training.estimate_memory_mb(wide, 1_000_000)
    # One-hot columns count: ten values of a category cost more than one number
    few = churn_contract()
    plan = few.features[3].model_copy(update={"values": tuple("abcdefghij")})
    many = few.model_copy(update={"features": (*few.features[:3], plan, few.features[4])})
    assert training.estimate_memory_mb(few, 1_000_000) < training.estimate_memory_mb(many, 1_000_000)
    # A random forest's trees and their ONNX conversion come on top
    forest = numeric_contract(20, "random_forest")
    assert training.estimate_memory_mb(forest, 0) == training.BASE_MB + training.ALGORITHM_MB["random_forest"]


@pytest.mark.parametrize("memory_mb", [512, 2048, 10240])
def test_max_rows_is_the_largest_count_the_estimate_lets_through(memory_mb: int) -> None:
    for c in (numeric_contract(20), churn_contract(), numeric_contract(20, "random_forest")):
        most = training.max_rows(c, memory_mb)
        if training.estimate_memory_mb(c, 0) > memory_mb:  # a forest's fixed share alone is more than 512 MB
            assert most == 0
            continue
        assert training.estimate_memory_mb(c, most) <= memory_mb < training.estimate_memory_mb(c, most + 1)


def test_how_large_a_dataset_the_default_deployment_trains_on() -> None:
    # 20 numeric features and a target at train_model's default 2048 MB: about 1.1 million rows
    assert training.max_rows(numeric_contract(20), DEFAULT_MEMORY_MB) == 1_101_508
    assert training.max_rows(numeric_contract(20, "random_forest"), DEFAULT_MEMORY_MB) == 660_401
    # the demo's churn contract: 5 features, 2 categories of 3 and 4 values
    assert training.max_rows(churn_contract(), DEFAULT_MEMORY_MB) == 3_369_321


def test_no_memory_limit_means_no_check() -> None:
    training.check_memory(churn_contract(), version(10**12), None)


def test_a_version_that_fits_passes() -> None:
    c = churn_contract()
    training.check_memory(c, version(training.max_rows(c, DEFAULT_MEMORY_MB)), DEFAULT_MEMORY_MB)


def test_the_error_names_the_version_its_size_the_memory_and_what_to_do() -> None:
    c = churn_contract()
    rows = training.max_rows(c, DEFAULT_MEMORY_MB) * 3
    needed = training.estimate_memory_mb(c, rows)
    with pytest.raises(DatasetTooLargeError) as raised:
        training.check_memory(c, version(rows), DEFAULT_MEMORY_MB)
    message = str(raised.value)
    assert message.startswith("dataset 'churn' v3 is too large to train: ")
    assert f"its {rows:,} rows x 6 columns (parquet, gradient_boosting)" in message
    assert f"need an estimated {needed:,} MB of memory, and train_model has 2,048 MB" in message
    assert f"enough for about {training.max_rows(c, DEFAULT_MEMORY_MB):,} rows of it" in message
    assert (
        "raise memory_mb of train_model in infra/declaration.py (Lambda allows up to 10240 MB; "
        f"{needed:,} MB would do) and redeploy, or upload a sample." in message
    )
    assert needed <= training.LAMBDA_MAX_MEMORY_MB


def test_beyond_lambdas_maximum_the_error_says_to_sample() -> None:
    c = churn_contract()
    with pytest.raises(DatasetTooLargeError) as raised:
        training.check_memory(c, version(10**9), DEFAULT_MEMORY_MB)
    message = str(raised.value)
    assert "1,000,000,000 rows" in message
    assert "To train it, upload a sample: even if you raise memory_mb of train_model in infra/declaration.py" in message
    assert f"(10240 MB) and redeploy, only about {training.max_rows(c, 10240):,} rows fit." in message


@pytest.mark.parametrize(
    ("value", "expected"), [("2048", 2048), ("128", 128), ("", None), ("lots", None), ("0", None), (None, None)]
)
def test_the_functions_memory_comes_from_lambdas_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int | None
) -> None:
    if value is None:
        monkeypatch.delenv(MEMORY_ENV, raising=False)
    else:
        monkeypatch.setenv(MEMORY_ENV, value)
    assert function_memory_mb() == expected


# -- the train step, on in-memory fakes ------------------------------------------------------------------------------


@pytest.fixture
def steps() -> PipelineSteps:
    registry = Registry(InMemoryTable(), actor="test")
    registry.declare_dataset(churn_contract())
    return PipelineSteps(InMemoryObjectStore(), registry, ARTIFACT_BUCKET)


def register(steps: PipelineSteps, body: bytes, file_format: str, rows: int, store: bool = True) -> DatasetVersion:
    """Register a dataset version as validation does on acceptance (the upload path is not what is tested here)."""
    sha256 = hashlib.sha256(body).hexdigest()

    def build(number: int) -> DatasetVersion:
        key = f"datasets/churn/v{number}/data.{file_format}"
        version_id = steps.store.put(DATA_BUCKET, key, body).version_id if store else "never-stored"
        return DatasetVersion(
            dataset="churn",
            version=number,
            object=ObjectRef(bucket=DATA_BUCKET, key=key, version_id=version_id),
            source_key=f"incoming/churn/upload.{file_format}",
            sha256=sha256,
            rows=rows,
            contract_version=1,
            format=file_format,
            created_at=iso(),
        )

    upload = UploadOutcome(
        dataset="churn",
        source_key=f"incoming/churn/upload.{file_format}",
        source_version_id=sha256[:16],
        status=UploadStatus.ACCEPTED,
        summary="accepted",
        sha256=sha256,
        format=file_format,
        rows=rows,
        at=iso(),
    )
    outcome = steps.registry.register_dataset_version("churn", upload=upload, build=build)
    assert outcome.dataset_version is not None
    return steps.registry.dataset_version("churn", outcome.dataset_version)


def churn_parquet(rows: int, seed: int) -> bytes:
    frame = pd.DataFrame(data.customers(rows, seed=seed))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("plan"), "plan", table.column("plan").dictionary_encode())
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def test_the_train_step_trains_on_a_parquet_version_when_there_is_no_limit(
    steps: PipelineSteps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    registered = register(steps, churn_parquet(300, seed=1), "parquet", rows=300)
    candidate = steps.train(RunRequest(model="churn", dataset_version=registered.version), "exec-1")
    assert candidate.train_rows + candidate.holdout_rows == 300
    assert candidate.dataset_version == registered.version
    holdout = steps.store.get(candidate.holdout.bucket, candidate.holdout.key, candidate.holdout.version_id)
    assert holdout.decode().splitlines()[0] == "tenure_months,monthly_charges,support_calls,plan,region,churned"


def test_the_train_step_refuses_a_too_large_version_before_fetching_it(
    steps: PipelineSteps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a version whose registered row count is beyond what 512 MB trains (and whose object was never stored,
    # so fetching it would fail differently)
    monkeypatch.setenv(MEMORY_ENV, "512")
    registered = register(steps, b"not fetched", "csv.gz", rows=LARGE_ROWS, store=False)
    # When the train step runs, Then it fails with the reason, before touching S3
    with pytest.raises(DatasetTooLargeError, match=rf"dataset 'churn' v{registered.version} is too large to train"):
        steps.train(RunRequest(model="churn", dataset_version=registered.version), "exec-2")
    # And the memory the handler passes (the Lambda context's) wins over the environment
    with pytest.raises(DatasetTooLargeError, match="train_model has 10,240 MB"):
        steps.train(RunRequest(model="churn", dataset_version=registered.version), "exec-3", memory_mb=10240)


def test_record_failure_keeps_the_reason_readable(steps: PipelineSteps) -> None:
    # Given the error Step Functions catches when the train function raises DatasetTooLargeError
    c = churn_contract()
    with pytest.raises(DatasetTooLargeError) as raised:
        training.check_memory(c, version(LARGE_ROWS), DEFAULT_MEMORY_MB)
    message = str(raised.value)
    error = {
        "Error": "DatasetTooLargeError",
        "Cause": json.dumps({"errorMessage": message, "errorType": "DatasetTooLargeError", "stackTrace": ["..."]}),
    }
    # When the Catch target records it
    steps.record_failure(RunRequest(model="churn", dataset_version=3), "exec-4", error)
    # Then the run says what happened and what to do, as plain text
    [run] = steps.registry.runs("churn")
    assert run.status.value == "FAILED" and run.error == "DatasetTooLargeError"
    assert run.cause == message and len(message) < 2000  # the registry keeps 2000 characters of a cause
