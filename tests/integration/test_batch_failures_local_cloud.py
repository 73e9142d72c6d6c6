"""A batch that fails still tells the user, and an older upload never overwrites a newer one's results: on the local
cloud, through the very ASL CDK deploys (its Catches, RecordFailure, the Fail state's cause) and the real steps.

Faults are injected by making a step raise (as a crash, an out-of-memory or a bug would); the retries, the Catches,
the failed report and the execution's end are the real ones."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from batch_champion import CONTRACT, register_batch_champion  # noqa: F401 - CONTRACT: the registry fixture declares it
from click.testing import CliRunner

from infra import declaration as decl
from infra.cli import backend as cli_backend
from infra.cli.batch import batch as batch_command
from infra.cli.batch import wait_for_outcome
from infra.cli.main import Context
from infra.demo import data
from infra.local.cloud import REGION, LocalCloud
from infra.local.runner import HandlerRunner
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.batch import layout
from loopml_core.logic.batch import BatchFinisher, BatchPlanner, ChunkScorer
from loopml_core.registry import Registry

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CHUNK_ROWS = 400


@pytest.fixture(scope="module")
def champion(cloud: LocalCloud, registry: Registry, store: S3ObjectStore) -> None:
    register_batch_champion(cloud, registry, store, CHUNK_ROWS)


@pytest.fixture
def cli_context(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Context:
    backend = cli_backend.Backend(REGION, None, None, None, cloud.names)
    monkeypatch.setattr(cli_backend.Backend, "resolve", classmethod(lambda cls, *args: backend))
    return Context(None, None)


def report_at(store: S3ObjectStore, bucket: str, key: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(store.get(bucket, key))
    return document


def failure_of(cloud: LocalCloud, execution: str) -> dict[str, Any]:
    arn = cloud.names.batch_state_machine_arn().replace(":stateMachine:", ":execution:") + f":{execution}"
    reply: dict[str, Any] = cloud.client("stepfunctions").describe_execution(executionArn=arn)
    return reply


@pytest.mark.usefixtures("champion")
def test_a_finish_that_crashes_every_attempt_still_writes_the_failed_report(
    cloud: LocalCloud, store: S3ObjectStore, cli_context: Context, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    # Given a Finish step that dies while joining the output, on every attempt
    def crash(self: BatchFinisher, *args: Any) -> Any:
        raise MemoryError("joining the parts ran out of memory")

    monkeypatch.setattr(BatchFinisher, "_join", crash)
    path = tmp_path / "june.csv"
    path.write_bytes(data.to_csv(data.customers(1000, seed=31)))
    # When `loopml batch churn june.csv --wait` runs
    result = CliRunner().invoke(batch_command, ["churn", str(path), "--wait", "--timeout", "180"], obj=cli_context)
    # Then it exits 1 and prints the failure: the step, the error, and what to do
    assert result.exit_code == 1, result.output
    assert "failed: error: the Finish step failed: MemoryError: joining the parts ran out of memory" in result.output
    assert "3 of 3 chunks had finished (0-2); nothing was output" in result.output
    # and the report says so, with the chunks that had finished, and the input is tagged failed
    bucket, key = cloud.names.data_bucket, "batch/churn/input/june.csv"
    version = cloud.client("s3").head_object(Bucket=bucket, Key=key)["VersionId"]
    report = report_at(store, bucket, "batch/churn/output/june.report.json")
    assert report["status"] == "failed" and report["source_version_id"] == version and report["output"] is None
    assert report["error"] == {"step": "Finish", "error": "MemoryError", "cause": "joining the parts ran out of memory"}
    assert report["chunks"] == 3 and report["finished_chunks"] == [[0, 2]]
    assert store.tags(bucket, key, version)[layout.STATUS_TAG] == "failed"
    assert store.list_keys(bucket, "batch/churn/output/june") == ["batch/churn/output/june.report.json"]
    # and the execution still ended FAILED, its cause the report's summary
    described = failure_of(cloud, layout.execution_name("churn", key, version))
    assert described["status"] == "FAILED" and described["error"] == "BatchFailed"
    assert described["cause"] == report["summary"]


@pytest.mark.usefixtures("champion")
def test_a_plan_that_crashes_fails_the_batch_with_a_report(
    cloud: LocalCloud, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: BatchPlanner, job: dict[str, Any], execution: str) -> dict[str, Any]:
        raise RuntimeError("registry unreachable")

    monkeypatch.setattr(BatchPlanner, "plan", crash)
    bucket, key = cloud.names.data_bucket, "batch/churn/input/july.csv"
    stored = store.put(bucket, key, data.to_csv(data.customers(50, seed=32)))
    execution = cloud.wait_for_batch(layout.execution_name("churn", key, stored.version_id), timeout=120)
    assert execution.status == "FAILED"
    report = report_at(store, bucket, "batch/churn/output/july.report.json")
    assert report["error"] == {"step": "Plan", "error": "RuntimeError", "cause": "registry unreachable"}
    assert report["status"] == "failed" and report["finished_chunks"] == [] and report["model_version"] is None
    assert store.tags(bucket, key, stored.version_id)[layout.STATUS_TAG] == "failed"


@pytest.mark.usefixtures("champion")
def test_a_chunk_whose_worker_keeps_failing_fails_the_batch_naming_the_chunks_that_finished(
    cloud: LocalCloud, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    score = ChunkScorer.score

    def second_chunk_crashes(self: ChunkScorer, work: str, item: dict[str, Any]) -> dict[str, Any]:
        if item["index"] == 1:
            raise OSError("the worker's disk is full")
        return score(self, work, item)

    monkeypatch.setattr(ChunkScorer, "score", second_chunk_crashes)
    bucket, key = cloud.names.data_bucket, "batch/churn/input/august.csv"
    stored = store.put(bucket, key, data.to_csv(data.customers(1500, seed=33)))
    execution = cloud.wait_for_batch(layout.execution_name("churn", key, stored.version_id), timeout=180)
    assert execution.status == "FAILED"
    report = report_at(store, bucket, "batch/churn/output/august.report.json")
    # moto lets the failed child through the map, so Finish finds the missing result; AWS fails the map, and the
    # ScoreChunks Catch records it: either way the report names the step and the chunks that had finished
    assert report["error"]["step"] == "ScoreChunks"
    assert report["chunks"] == 4 and report["finished_chunks"] == [[0, 0], [2, 3]]
    assert "3 of 4 chunks had finished (0, 2-3)" in report["summary"] and report["output"] is None
    assert store.list_keys(bucket, "batch/churn/output/august") == ["batch/churn/output/august.report.json"]


@pytest.mark.usefixtures("champion")
def test_an_older_upload_whose_batch_ends_last_writes_beside_the_newer_one(
    cloud: LocalCloud, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the first upload of sept.csv, whose Finish step may not start before a second upload's batch has ended
    bucket, key = cloud.names.data_bucket, "batch/churn/input/sept.csv"
    finish_function = decl.FUNCTIONS["batch_finish"].physical_name()
    older_version: list[str] = []
    released, holding = threading.Event(), threading.Event()
    run = HandlerRunner.run

    def older_finish_held_back(self: HandlerRunner, function_name: str, environment: dict[str, str], event: Any):
        payload = json.loads(event) if isinstance(event, str | bytes) else event
        job = payload.get("job", {}) if isinstance(payload, dict) else {}
        if function_name == finish_function and job.get("key") == key and job.get("version_id") in older_version:
            holding.set()
            with self.moto_lock.released():  # held before the function's container, as a slow Lambda start would be
                assert released.wait(timeout=120), "the test never released the first batch"
        return run(self, function_name, environment, event)

    monkeypatch.setattr(HandlerRunner, "run", older_finish_held_back)
    older = store.put(bucket, key, data.to_csv(data.customers(300, seed=34)))
    older_version.append(older.version_id)
    # When the same name is uploaded again, and that newer batch ends first
    newer = store.put(bucket, key, data.to_csv(data.customers(200, seed=35)))
    ended = cloud.wait_for_batch(layout.execution_name("churn", key, newer.version_id), timeout=120)
    assert ended.status == "SUCCEEDED"
    assert holding.wait(timeout=60)  # the older batch was scored and waits to finish
    released.set()
    late = cloud.wait_for_batch(layout.execution_name("churn", key, older.version_id), timeout=120)
    # Then the older batch succeeded, but wrote under its version's name, saying so
    assert late.status == "SUCCEEDED"
    outcome = late.output or {}
    assert outcome["superseded_by"] == newer.version_id
    stem = f"sept.{older.version_id}"
    assert outcome["output"] == f"s3://{bucket}/batch/churn/output/{stem}.csv"
    assert outcome["report"] == f"s3://{bucket}/batch/churn/output/{stem}.report.json"
    older_report = report_at(store, bucket, f"batch/churn/output/{stem}.report.json")
    assert older_report["source_version_id"] == older.version_id and older_report["rows"] == 300
    assert older_report["superseded_by"] == newer.version_id and "superseded" in older_report["summary"]
    assert store.get(bucket, f"batch/churn/output/{stem}.csv").count(b"\n") == 301
    # and the file's own name still holds the newer upload's output and report, which nothing wrote over
    newer_report = report_at(store, bucket, "batch/churn/output/sept.report.json")
    assert newer_report["source_version_id"] == newer.version_id and newer_report["superseded_by"] is None
    assert store.get(bucket, "batch/churn/output/sept.csv").count(b"\n") == 201
    versions = cloud.client("s3").list_object_versions(Bucket=bucket, Prefix="batch/churn/output/sept.csv")
    latest = [v for v in versions["Versions"] if v["Key"] == "batch/churn/output/sept.csv" and v["IsLatest"]]
    assert [v["VersionId"] for v in latest] == [newer_report["output_version_id"]]
    assert store.tags(bucket, key, older.version_id)[layout.STATUS_TAG] == "scored"
    # and `loopml batch --wait` reports each upload's own outcome, not whatever holds the file's name
    backend = cli_backend.Backend(REGION, None, None, None, cloud.names)
    for stored, rows in ((older, 300), (newer, 200)):
        report = wait_for_outcome(backend, stored, "churn", timeout=10)
        assert (report["source_version_id"], report["rows"]) == (stored.version_id, rows)
