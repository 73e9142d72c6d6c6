"""`loopml lineage` and `loopml models history`, invoked as click commands on the in-memory registry and bucket (the
backend the CLI would resolve is replaced by the in-memory implementations of the same interfaces)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from infra.cli.lineage import history, lineage
from infra.local.seed import register_model
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.table import InMemoryTable
from loopml_core.capture import columnar_capture_lines
from loopml_core.contract import load_contract
from loopml_core.registry import Registry

BUCKET = "artifacts"
CONTRACT = load_contract(
    """
name: churn
task: classification
target: churned
target_values: ["no", "yes"]
features:
  - {name: tenure, type: int}
"""
)


@pytest.fixture
def backend() -> SimpleNamespace:
    """churn v1 champion, then v2 promoted after a canary; one request v1 answered, captured."""
    registry = Registry(InMemoryTable(), actor="cli:alice")
    registry.declare_dataset(CONTRACT)
    store = InMemoryObjectStore()
    register_model(registry, store, BUCKET, "churn", b"onnx-1", promote=True, dataset_rows=500)
    register_model(registry, store, BUCKET, "churn", b"onnx-2", promote=False, dataset_rows=900)
    now = datetime.now(UTC)
    [capture] = columnar_capture_lines(
        model="churn",
        version=1,
        retention="30d",
        request_id="req-1",
        at=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        features={"tenure": [3, 4, 5]},
        prediction=["yes", "no", "no"],
        classes=["no", "yes"],
        probabilities=[[0.1, 0.9], [0.8, 0.2], [0.7, 0.3]],
    )
    key = f"captures/30d/churn/{now:%Y/%m/%d/%H}/loopml-captures-1-{now:%Y-%m-%d-%H-%M-%S}-x.gz"
    store.put(BUCKET, key, gzip.compress(capture + b"\n"))
    registry.deploy("churn", 2, "canary", 10, reason="try v2")
    registry.promote("churn", reason="v2 wins")
    return SimpleNamespace(registry=registry, store=store, names=SimpleNamespace(artifact_bucket=BUCKET))


def run(command, args: list[str], backend: SimpleNamespace):
    return CliRunner().invoke(command, args, obj=SimpleNamespace(backend=backend), catch_exceptions=False)


def test_lineage_prints_the_version_run_data_code_and_who_promoted_it(backend):
    result = run(lineage, ["req-1"], backend)
    assert result.exit_code == 0, result.output
    dataset = backend.registry.dataset_version("churn", 1)
    out = result.output
    assert "answered: churn v1" in out and "records 0..2" in out
    assert "execution     run-1 (SUCCEEDED" in out and f"sha256        {dataset.sha256}" in out
    assert "500 rows" in out and "code version  dev" in out and "contract      v1 (fingerprint" in out
    assert "cli:alice" in out and "model.alias.moved" in out
    assert "serving then  champion v1 (since" in out
    assert "champion none -> v1 (model.alias.moved): registered by hand, promoted" in out
    assert "champion v1 -> v2 (model.alias.moved): v2 wins" in out  # the move away from it, too
    assert "shadow" not in out


def test_lineage_json_carries_the_whole_walk(backend):
    result = run(lineage, ["req-1", "--model", "churn", "--since", "1h", "--json"], backend)
    document = json.loads(result.output)
    [answer] = document["answered"]
    assert answer["capture"]["prediction"] == ["yes", "no", "no"]
    assert (
        answer["lineage"]["dataset"]["object"]["version_id"]
        == backend.registry.dataset_version("churn", 1).object.version_id
    )
    assert answer["lineage"]["run"]["execution"] == "run-1" and document["search"]["objects_read"] == 1


def test_lineage_of_an_unknown_request_exits_1_and_says_where_it_looked(backend):
    result = run(lineage, ["nobody"], backend)
    assert result.exit_code == 1
    assert "not found" in result.output and "churn from" in result.output and "1 capture batches" in result.output


def test_an_unknown_model_is_named(backend):
    result = CliRunner().invoke(lineage, ["req-1", "--model", "nope"], obj=SimpleNamespace(backend=backend))
    assert result.exit_code == 1 and "no model 'nope' is registered" in str(result.exception)


def test_a_bad_since_is_a_usage_error(backend):
    result = CliRunner().invoke(lineage, ["req-1", "--since", "whenever"], obj=SimpleNamespace(backend=backend))
    assert result.exit_code == 2 and "ISO date or time" in result.output


def test_history_lists_the_changes_and_answers_at_an_instant(backend):
    result = run(history, ["churn"], backend)
    lines = result.output.strip().splitlines()
    assert [line.split(None, 2)[2] for line in lines] == [
        "champion none -> v1: registered by hand, promoted",
        "challenger v2 started: canary 10%: try v2",
        "champion v1 -> v2: v2 wins",
        "challenger v2 promoted (canary 10%): v2 wins",
    ]
    assert all(line.split()[1] == "cli:alice" for line in lines)
    now = run(history, ["churn", "--at", "now", "--json"], backend)
    assert json.loads(now.output)["at"]["champion"] == 2
    before = run(history, ["churn", "--at", "2000-01-01"], backend)
    assert "no version of the model was serving yet" in before.output
