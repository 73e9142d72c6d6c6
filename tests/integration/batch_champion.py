"""The champion the batch tests score with, registered on the local cloud as the pipeline would leave it, and the
batch plan step's chunk size lowered so that a few hundred rows make several chunks."""

from __future__ import annotations

import pandas as pd

from infra import declaration as decl
from infra.demo import data
from infra.local.cloud import LocalCloud
from infra.local.seed import register_model
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.contract import load_contract
from loopml_core.registry import Registry
from loopml_core.training import train

CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text() + "algorithm: logistic_regression\n")


def register_batch_champion(cloud: LocalCloud, registry: Registry, store: S3ObjectStore, chunk_rows: int) -> bytes:
    """Version 1 of churn as champion (training is not what is under test), and batch chunks of `chunk_rows` rows
    instead of the declared 100,000, set as an operator would on the deployed function. Returns the ONNX model."""
    onnx = train(CONTRACT, pd.DataFrame(data.customers(600, seed=1))).onnx_model
    register_model(registry, store, cloud.names.artifact_bucket, "churn", onnx, dataset_rows=600)
    lam = cloud.client("lambda")
    function = decl.FUNCTIONS["batch_plan"].physical_name()
    variables = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName=function, Environment={"Variables": {**variables, "LOOPML_BATCH_CHUNK_ROWS": str(chunk_rows)}}
    )
    return onnx
