"""The local cloud runs invocations side by side, as Lambda does: only the calls into moto take turns."""

from __future__ import annotations

import time

import pytest
from registered_versions import as_parquet, register, run_pipeline

from infra import declaration as decl
from infra.demo import data
from infra.local.api_gateway import ApiGateway
from loopml_core.contract import load_contract

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
# A random forest trains (and exports) slowly enough, on a few ten thousand rows, to be seen running.
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text()).model_copy(
    update={"algorithm": "random_forest"}
)
TRAINING_ROWS = 30_000
PREDICTIONS = 20


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_prediction_is_answered_while_a_training_runs(cloud, registry, store):
    # Given a champion
    first = register(cloud, registry, store, "churn", as_parquet(400, seed=1), "parquet", 400)
    assert run_pipeline(cloud, "churn", first.version)[1] == "SUCCEEDED"
    # And a training under way on a larger version
    larger = register(cloud, registry, store, "churn", as_parquet(TRAINING_ROWS, seed=2), "parquet", TRAINING_ROWS)
    execution, _ = run_pipeline(cloud, "churn", larger.version, wait=False)
    wait_until(lambda: cloud.runner.running("train_model") == 1)
    # When clients ask for predictions meanwhile
    api = ApiGateway(cloud)
    answers = [
        api.request("POST", "/v1/models/churn/predict", {"records": data.requests_for(data.customers(1, seed=seed))})
        for seed in range(PREDICTIONS)
    ]
    # Then every one was answered by the champion before the training ended
    assert cloud.runner.running("train_model") == 1
    assert [status for status, _, _ in answers] == [200] * PREDICTIONS
    assert {body["version"] for _, _, body in answers} == {1}
    # And the training itself completes
    assert cloud.wait_for_execution(execution).status == "SUCCEEDED"
