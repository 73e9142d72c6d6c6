"""Lineage on the local cloud: a prediction served over the API, captured through the log stream and Firehose, traced
back to the pipeline run, the uploaded data and the audit trail; and which version served when, after real
deploy, promote and rollback calls."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from infra import declaration as decl
from infra.cli.backend import upload_and_wait
from infra.cli.lineage import history, lineage
from infra.demo import data
from infra.local.api_gateway import ApiGateway
from infra.local.seed import register_model
from loopml_core.contract import load_contract
from loopml_core.lineage import parse_time, serving_at, serving_history, trace

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text().replace("drift", "upload"))
UPLOAD = data.to_csv(data.customers(600, seed=1))


@pytest.fixture(scope="module")
def served(cloud, registry, store):
    """v1 trained by the pipeline from an upload and champion; v2 registered beside it and deployed in shadow; one
    request answered by v1 and scored by v2, both capture lines delivered to S3."""
    tags = upload_and_wait(store, cloud.names.data_bucket, "incoming/churn/jan.csv", UPLOAD)
    assert tags["loopml-status"] == "accepted"
    [execution] = cloud.pipeline_executions()
    assert cloud.wait_for_execution(execution).status == "SUCCEEDED"
    first = registry.champion_version("churn")
    onnx = store.get(first.artifact.bucket, first.artifact.key, first.artifact.version_id)
    register_model(registry, store, cloud.names.artifact_bucket, "churn", onnx, promote=False, dataset_rows=600)
    registry.deploy("churn", 2, "shadow", reason="watch v2 before it serves")
    time.sleep(float(dict(decl.FUNCTIONS["predict"].environment)["LOOPML_ALIAS_TTL_SECONDS"]) + 0.1)
    status, headers, body = ApiGateway(cloud).request(
        "POST", "/v1/models/churn/predict", {"records": data.requests_for(data.customers(3, seed=5))}
    )
    assert status == 200 and headers["X-Model-Version"] == "1"
    request_id = body["request_id"]
    deadline = time.monotonic() + 20
    while True:  # the shadow scoring runs after the response: deliver until both lines are in S3
        cloud.flush_deliveries()
        found = trace(registry, store, cloud.names.artifact_bucket, request_id, models=["churn"])
        if len(found.search.lines) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return SimpleNamespace(request_id=request_id, body=body, execution=execution, found=found)


def test_a_served_prediction_traces_back_to_its_run_data_contract_code_and_promotion(served, cloud, registry, store):
    found = served.found
    # Then v1 answered (all three records) and v2's shadow scoring is there too, marked as such
    assert [(line.version, line.shadow, line.first, line.n) for line in found.search.lines] == [
        (1, False, 0, 3),
        (2, True, 0, 3),
    ]
    assert found.search.lines[0].prediction == [p["label"] for p in served.body["predictions"]]
    walked = found.lineages[("churn", 1)]
    # And v1's lineage is the pipeline run that trained it on the uploaded bytes
    assert walked.version is not None and walked.version.execution == served.execution
    assert walked.run is not None and walked.run.trigger == "upload" and walked.run.status.value == "SUCCEEDED"
    dataset = walked.dataset
    assert dataset is not None and dataset.sha256 == hashlib.sha256(UPLOAD).hexdigest() and dataset.rows == 600
    assert dataset.object.version_id == store.current_version(dataset.object.bucket, dataset.object.key)
    assert dataset.source_key == "incoming/churn/jan.csv"
    assert walked.contract_version == 1 and walked.contract_fingerprint == CONTRACT.fingerprint()
    assert walked.version.code_version and walked.dataset_registered_by is not None
    # And who made it champion, and what served the model when the request came
    [promoted] = [r for r in walked.audit if r.action == "model.alias.moved"]
    assert promoted.details["to"] == 1 and promoted.actor
    assert walked.serving_then is not None and walked.serving_then.champion == 1
    assert (walked.serving_then.challenger, walked.serving_then.mode) == (2, "shadow")
    # And the search read only the batches it needed
    assert found.search.objects_read <= found.search.objects_listed and found.search.listings == 5


def test_the_lineage_command_on_the_local_cloud(served, cloud, registry, store):
    backend = SimpleNamespace(registry=registry, store=store, names=cloud.names)
    result = CliRunner().invoke(lineage, [served.request_id, "--json"], obj=SimpleNamespace(backend=backend))
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [a["capture"]["version"] for a in document["answered"]] == [1]
    assert [s["capture"]["version"] for s in document["shadow"]] == [2]
    assert document["answered"][0]["lineage"]["dataset"]["sha256"] == hashlib.sha256(UPLOAD).hexdigest()
    missing = CliRunner().invoke(lineage, ["no-such-request"], obj=SimpleNamespace(backend=backend))
    assert missing.exit_code == 1 and "no capture line of request no-such-request" in missing.output


def test_history_after_real_promote_and_rollback(served, cloud, registry, store):
    # Given the shadow deployment promoted, then the champion rolled back to v1
    registry.promote("churn", reason="v2 matched v1 in shadow")
    promoted_at = datetime.now(UTC)
    time.sleep(0.01)
    registry.rollback("churn", 1, reason="v2 misbehaves")
    # When the history is read from the audit trail
    changes = serving_history(registry.audit_records(), "churn")
    # Then every move is there, in order, with its actor and reason
    assert [c.describe() for c in changes] == [
        "champion none -> v1",
        "challenger v2 started: shadow",
        "champion v1 -> v2",
        "challenger v2 promoted (shadow)",
        "champion v2 -> v1",
    ]
    assert changes[-1].reason == "v2 misbehaves" and changes[2].reason == "v2 matched v1 in shadow"
    # And the state at any instant
    captured_at = parse_time(served.found.search.lines[0].at)
    assert (serving_at(changes, captured_at).champion, serving_at(changes, captured_at).challenger) == (1, 2)
    assert serving_at(changes, promoted_at).champion == 2 and serving_at(changes, promoted_at).challenger is None
    assert serving_at(changes, datetime.now(UTC)).champion == 1
    # And the command says the same
    backend = SimpleNamespace(registry=registry, store=store, names=cloud.names)
    result = CliRunner().invoke(
        history, ["churn", "--at", promoted_at.isoformat(), "--json"], obj=SimpleNamespace(backend=backend)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["at"]["champion"] == 2
