"""Canary and shadow through the local API: the header says who answered, and a shadow scoring reaches the captured
traffic after the response without changing it."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest

from infra import declaration as decl
from infra.local.api_gateway import ApiGateway
from infra.local.seed import register_model
from loopml_core.contract import load_contract
from loopml_core.training import train

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract(
    """
name: loans
task: classification
target: defaulted
target_values: ["no", "yes"]
features:
  - {name: amount, type: float, min: 0, max: 100000}
  - {name: term_months, type: int, min: 1, max: 120}
  - {name: purpose, type: category, values: [car, home, study, other]}
"""
)
PREDICT = "/v1/models/loans/predict"


def loans(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "amount": round(float(rng.uniform(500, 50_000)), 2),
            "term_months": int(rng.integers(6, 120)),
            "purpose": str(rng.choice(["car", "home", "study", "other"])),
        }
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def two_versions(cloud, registry, store) -> None:
    """v1 the champion; v2 a different model of the same contract, registered beside it."""
    for version, (algorithm, threshold) in enumerate([("gradient_boosting", 0.5), ("logistic_regression", 0.2)], 1):
        frame = pd.DataFrame(loans(600, seed=version))
        frame["defaulted"] = np.where(frame["amount"] / 50_000 > threshold, "yes", "no")
        onnx_model = train(CONTRACT.model_copy(update={"algorithm": algorithm}), frame).onnx_model
        bucket = cloud.names.artifact_bucket
        register_model(registry, store, bucket, "loans", onnx_model, promote=version == 1, dataset_rows=600)


def ask(api: ApiGateway, records: list[dict], client: str | None = None):
    headers = {"Content-Type": "application/json", decl.API.api_key_header: api.default_key or ""}
    if client is not None:
        headers["X-LoopML-Key"] = client
    status, reply_headers, data = api.handle("POST", PREDICT, headers, json.dumps({"records": records}).encode())
    assert status == 200, data
    return reply_headers, json.loads(data)


def predict_log_lines(cloud) -> list[dict]:
    group = f"/aws/lambda/{decl.FUNCTIONS['predict'].physical_name()}"
    events = cloud.client("logs").filter_log_events(logGroupName=group)["events"]
    return [json.loads(e["message"]) for e in events if e["message"].startswith('{"loopml_capture"')]


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def test_shadow_and_canary_through_the_api(cloud, registry, two_versions):
    api = ApiGateway(cloud)
    records = loans(25, seed=9)
    # Given the champion's answers alone
    headers, alone = ask(api, records)
    assert headers["X-Model-Version"] == "1" and headers["X-LoopML-Variant"] == "champion"

    # When v2 shadows v1
    registry.deploy("loans", 2, "shadow", None, "watch v2")
    time.sleep(decl_ttl())
    headers, shadowed = ask(api, records, client="anyone")
    # Then v1 answered exactly as before
    assert headers["X-Model-Version"] == "1" and shadowed["predictions"] == alone["predictions"]
    # And v2's scoring of the same request reached the function's log stream (what Firehose delivers) after it
    request_id = shadowed["request_id"]

    def captured() -> list[dict]:
        return [line for line in predict_log_lines(cloud) if line["request_id"] == request_id]

    lines = wait_for(lambda: len(captured()) == 2 and captured())
    by_version = {line["version"]: line for line in lines}
    assert set(by_version) == {1, 2} and by_version[2]["shadow"] is True and "shadow" not in by_version[1]
    assert by_version[2]["n"] == len(records) and by_version[2]["features"] == by_version[1]["features"]

    # When v2 becomes a canary for every client but the few the hash keeps on v1
    registry.rollback("loans")
    registry.deploy("loans", 2, "canary", 50, "half")
    time.sleep(decl_ttl())
    answered = {client: ask(api, records[:1], client)[0] for client in (f"client-{i}" for i in range(40))}
    # Then each answer names its version and variant, and a client asking again gets the same one
    assert {h["X-Model-Version"] for h in answered.values()} == {"1", "2"}
    for client, first in answered.items():
        assert first["X-LoopML-Variant"] == ("challenger" if first["X-Model-Version"] == "2" else "champion")
        assert ask(api, records[:1], client)[0]["X-Model-Version"] == first["X-Model-Version"]


def decl_ttl() -> float:
    return float(dict(decl.FUNCTIONS["predict"].environment)["LOOPML_ALIAS_TTL_SECONDS"]) + 0.1


def test_concurrent_requests_each_get_their_own_answer(cloud, registry, two_versions):
    # Given clients calling the local API at once, each with its own number of records
    api = ApiGateway(cloud)
    answers: dict[int, list] = {}

    def client(count: int) -> None:
        answers[count] = [ask(api, loans(count, seed=count)) for _ in range(10)]

    threads = [threading.Thread(target=client, args=(count,)) for count in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every answer is to the request that asked it: its own records, its own request id
    for count, replies in answers.items():
        for headers, body in replies:
            assert len(body["predictions"]) == count and body["request_id"] == headers["X-Request-Id"]
    # And the invocations took turns, as in one execution environment (Powertools keeps the request in class state)
    assert cloud.runner.most_running("predict") == 1
