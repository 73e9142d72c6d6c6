"""An older upload never overwrites a newer one's results: the steps of two batches of the same file name, on
in-memory adapters, interleaved at each point where the older one's Finish could meet the newer upload (before its
join, during it, and after the newer batch's own join). The local cloud runs the first case under the state machine
(tests/integration/test_batch_failures_local_cloud.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from infra.demo import data
from infra.local.seed import register_model
from loopml_core.adapters.object_store import InMemoryObjectStore, StoredObject
from loopml_core.adapters.object_writer import InMemoryObjectWriters
from loopml_core.adapters.table import InMemoryTable
from loopml_core.batch import layout
from loopml_core.contract import load_contract
from loopml_core.logic.batch import BatchFinisher, BatchPlanner, ChunkLimits, ChunkScorer
from loopml_core.registry import Registry
from loopml_core.training import train

ROOT = Path(__file__).resolve().parents[2]
CHURN = load_contract((ROOT / "infra" / "demo" / "churn.yaml").read_text() + "algorithm: logistic_regression\n")
DATA, ARTIFACTS = "data-bucket", "artifact-bucket"
KEY = "batch/churn/input/sept.csv"
OUTPUT, REPORT = "batch/churn/output/sept.csv", "batch/churn/output/sept.report.json"


class HookedStore(InMemoryObjectStore):
    """An in-memory bucket that runs a hook right before or after a write to a given key: where another batch's step
    lands."""

    def __init__(self) -> None:
        super().__init__()
        self.before_put: dict[str, Callable[[], None]] = {}
        self.after_put: dict[str, Callable[[], None]] = {}

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        hook = self.before_put.pop(key, None)
        if hook is not None:
            hook()
        stored = super().put(bucket, key, body, content_type)
        hook = self.after_put.pop(key, None)
        if hook is not None:
            hook()
        return stored


@dataclass
class Batch:
    job: dict[str, Any]
    execution: str
    version_id: str
    rows: int


class World:
    def __init__(self, onnx: bytes) -> None:
        self.store = HookedStore()
        self.registry = Registry(InMemoryTable())
        self.registry.declare_dataset(CHURN)
        register_model(self.registry, self.store, ARTIFACTS, "churn", onnx)
        self.writers = InMemoryObjectWriters(self.store)

    def upload_and_score(self, rows: int, seed: int) -> Batch:
        """Upload a version of sept.csv and run its batch up to (not including) Finish."""
        stored = self.store.put(DATA, KEY, data.to_csv(data.customers(rows, seed=seed)))
        job = {"bucket": DATA, "key": KEY, "version_id": stored.version_id, "model": "churn"}
        execution = layout.execution_name("churn", KEY, stored.version_id)
        planned = BatchPlanner(self.store, self.registry, ARTIFACTS, ChunkLimits(rows=150)).plan(job, execution)
        scorer = ChunkScorer(self.store, self.writers, ARTIFACTS)
        for item in json.loads(self.store.get(ARTIFACTS, planned["manifest"])):
            scorer.score(planned["work"], item)
        return Batch(job, execution, stored.version_id, rows)

    def finish(self, batch: Batch) -> dict[str, Any]:
        return BatchFinisher(self.store, self.writers, ARTIFACTS).finish(batch.job, batch.execution)

    def rows_at(self, key: str, version_id: str | None = None) -> int:
        return self.store.get(DATA, key, version_id).count(b"\n") - 1  # the header

    def report(self, key: str = REPORT) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.store.get(DATA, key))
        return document


@pytest.fixture(scope="module")
def onnx() -> bytes:
    return train(CHURN, pd.DataFrame(data.customers(600, seed=1))).onnx_model


@pytest.fixture
def world(onnx: bytes) -> World:
    return World(onnx)


def versioned(batch: Batch, suffix: str) -> str:
    return f"batch/churn/output/sept.{batch.version_id}.{suffix}"


def test_the_current_version_writes_the_files_name(world: World) -> None:
    only = world.upload_and_score(300, seed=1)
    outcome = world.finish(only)
    assert outcome["superseded_by"] is None and outcome["output"] == f"s3://{DATA}/{OUTPUT}"
    assert world.rows_at(OUTPUT) == 300 and world.report()["superseded_by"] is None
    assert world.store.list_keys(DATA, "batch/churn/output/") == [OUTPUT, REPORT]


def test_an_older_batch_that_finishes_after_a_newer_upload_writes_beside_it(world: World) -> None:
    # Given two uploads of sept.csv, the newer one's batch done first
    older = world.upload_and_score(300, seed=1)
    newer = world.upload_and_score(200, seed=2)
    world.finish(newer)
    newer_output = world.store.current_version(DATA, OUTPUT)
    # When the older one's batch finishes last
    outcome = world.finish(older)
    # Then its results are under its version's name, and its report says why
    assert outcome["status"] == "scored" and outcome["superseded_by"] == newer.version_id
    assert outcome["output"] == f"s3://{DATA}/{versioned(older, 'csv')}"
    assert world.rows_at(versioned(older, "csv")) == 300
    report = world.report(versioned(older, "report.json"))
    assert report["superseded_by"] == newer.version_id and report["source_version_id"] == older.version_id
    assert f"these results are under sept.{older.version_id}.*" in report["summary"]
    # and the file's name keeps the newer upload's output and report, untouched
    assert world.store.current_version(DATA, OUTPUT) == newer_output and world.rows_at(OUTPUT) == 200
    assert world.report()["source_version_id"] == newer.version_id
    assert world.store.tags(DATA, KEY, older.version_id)[layout.STATUS_TAG] == "scored"


def test_a_refused_or_failed_older_batch_reports_beside_the_newer_one_too(world: World) -> None:
    older = world.upload_and_score(300, seed=1)
    newer = world.upload_and_score(200, seed=2)
    world.finish(newer)
    finisher = BatchFinisher(world.store, world.writers, ARTIFACTS)
    failed = finisher.record_failure(older.job, older.execution, "Finish", {"Error": "States.Timeout", "Cause": ""})
    assert failed["status"] == "failed" and failed["report"] == f"s3://{DATA}/{versioned(older, 'report.json')}"
    assert world.report(versioned(older, "report.json"))["error"]["cause"] == "no cause given"
    assert world.report()["source_version_id"] == newer.version_id and world.report()["status"] == "scored"


def test_a_newer_upload_during_the_older_join_gets_its_finished_output_back_on_top(world: World) -> None:
    # Given an older batch whose join is under way when a newer upload arrives, and the newer batch ends first
    older = world.upload_and_score(300, seed=1)
    newer: list[Batch] = []

    def newer_batch_runs_to_its_end() -> None:
        newer.append(world.upload_and_score(200, seed=2))
        world.finish(newer[0])

    # the older join's output commits right after the newer batch ended: over the newer output
    world.store.before_put[OUTPUT] = newer_batch_runs_to_its_end
    # When the older batch's Finish completes
    outcome = world.finish(older)
    # Then it saw it was superseded once its join was done: its results went under its version's name
    assert outcome["superseded_by"] == newer[0].version_id
    assert world.rows_at(versioned(older, "csv")) == 300
    assert world.report(versioned(older, "report.json"))["output"] == f"s3://{DATA}/{versioned(older, 'csv')}"
    # and the newer upload's output, which the older join had landed on, is back on top, its report untouched
    assert world.rows_at(OUTPUT) == 200 and world.report()["source_version_id"] == newer[0].version_id


def test_a_newer_upload_during_the_older_join_whose_batch_ends_later_writes_over_it(world: World) -> None:
    older = world.upload_and_score(300, seed=1)
    newer: list[Batch] = []
    world.store.after_put[OUTPUT] = lambda: newer.append(world.upload_and_score(200, seed=2))
    outcome = world.finish(older)
    assert outcome["superseded_by"] == newer[0].version_id and world.rows_at(versioned(older, "csv")) == 300
    assert not world.store.list_keys(DATA, REPORT)  # nothing wrote the file's report: it is the newer batch's to write
    world.finish(newer[0])
    assert world.rows_at(OUTPUT) == 200 and world.report()["source_version_id"] == newer[0].version_id


def test_an_older_output_landing_after_the_newer_batch_is_put_back_under_by_the_newer_finish(world: World) -> None:
    # Given an older batch whose join ended right after the newer batch's join, and which saw no newer report yet
    # (so could not give the newer output back): its output lands while the newer Finish writes its report
    world.upload_and_score(300, seed=1)
    newer = world.upload_and_score(200, seed=2)
    stale = data.to_csv(data.customers(300, seed=1))
    world.store.after_put[REPORT] = lambda: world.store.put(DATA, OUTPUT, stale)
    # When the newer batch's Finish completes
    outcome = world.finish(newer)
    # Then its own output is on top again, the version its report names
    assert world.rows_at(OUTPUT) == 200
    assert world.store.get(DATA, OUTPUT) == world.store.get(DATA, OUTPUT, outcome["output_version_id"])
    assert world.report()["source_version_id"] == newer.version_id
