"""Batch scoring on the local cloud: a file put under batch/<model>/input/ is planned, its chunks are scored by the
batch state machine's Distributed Map (the very ASL CDK deploys, on moto's interpreter), and the output and the report
land beside each other; a redelivered S3 event starts nothing new; `loopml batch` follows it to the end."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batch_champion import CONTRACT, register_batch_champion
from click.testing import CliRunner

from infra.cli import backend as cli_backend
from infra.cli.batch import batch as batch_command
from infra.cli.main import Context
from infra.demo import data
from infra.local.cloud import REGION, LocalCloud
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.batch import layout
from loopml_core.registry import Registry
from loopml_core.serving import OnnxModel

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CHUNK_ROWS = 700  # a few thousand rows make several chunks: the map runs several child executions
PREDICTIONS = ["prediction", "probability_no", "probability_yes", "model_version"]


@pytest.fixture(scope="module")
def champion(cloud: LocalCloud, registry: Registry, store: S3ObjectStore) -> OnnxModel:
    """Version 1 of churn, champion, registered as the pipeline would; several chunks per file."""
    return OnnxModel(register_batch_champion(cloud, registry, store, CHUNK_ROWS), CONTRACT)


def scored_by_the_api(model: OnnxModel, rows: list[dict[str, Any]]) -> list[list[str]]:
    outputs = model.predict([{f: r[f] for f in CONTRACT.feature_names} for r in rows])
    return [[o["label"], str(o["probabilities"]["no"]), str(o["probabilities"]["yes"]), "1"] for o in outputs]


def chunk_invocations(cloud: LocalCloud) -> int:
    return sum(1 for i in cloud.runner.invocations if i.function == "batch_score" and not i.errored)


def test_a_csv_with_bad_rows_is_scored_chunk_by_chunk_by_the_distributed_map(cloud, store, champion):
    # Given 3,000 customers, three of them with values the contract refuses
    records = data.customers(3000, seed=21)
    records[4]["plan"] = "gold"
    records[1500]["tenure_months"] = "-3"
    records[2999]["monthly_charges"] = "n/a"
    before = chunk_invocations(cloud)
    # When the file is put under batch/churn/input/
    key = "batch/churn/input/customers.csv"
    stored = store.put(cloud.names.data_bucket, key, data.to_csv(records), "text/csv")
    execution = cloud.wait_for_batch(layout.execution_name("churn", key, stored.version_id), timeout=180)
    # Then the batch state machine scored it in five chunks, one child execution (one batch_score call) each
    assert execution.status == "SUCCEEDED", execution.output
    assert chunk_invocations(cloud) - before == 5
    outcome = execution.output or {}
    assert (outcome["status"], outcome["rows"], outcome["scored"], outcome["not_scored"]) == ("scored", 3000, 2997, 3)
    # And the output keeps every input column and row, in order, followed by the predictions and the model version
    output = store.get(cloud.names.data_bucket, "batch/churn/output/customers.csv").decode()
    rows = list(csv.reader(io.StringIO(output)))
    header = list(records[0])
    assert rows[0] == [*header, *PREDICTIONS]
    assert [row[: len(header)] for row in rows[1:]] == [[str(r[c]) for c in header] for r in records]
    refused = {4, 1500, 2999}
    assert all(rows[1 + i][len(header) :] == ["", "", "", ""] for i in refused)
    valid = [r for i, r in enumerate(records) if i not in refused]
    got = [row[len(header) :] for i, row in enumerate(rows[1:]) if i not in refused]
    expected = scored_by_the_api(champion, valid)
    assert [g[0] for g in got] == [e[0] for e in expected] and {g[3] for g in got} == {"1"}
    assert all(float(g[2]) == float(e[2]) for g, e in zip(got, expected, strict=True))
    # And the report beside it names each refused row by record, file line, column and value
    report = json.loads(store.get(cloud.names.data_bucket, "batch/churn/output/customers.report.json"))
    issues = {(i["check"], i["column"]): (i["rows"], i["lines"], i["values"]) for i in report["issues"]}
    assert issues == {
        ("categories", "plan"): ([4], [6], ["gold"]),
        ("ranges", "tenure_months"): ([1500], [1502], ["-3.0"]),  # as read: a number
        ("types", "monthly_charges"): ([2999], [3001], ["n/a"]),
    }
    assert report["model_version"] == 1 and report["output"] == outcome["output"]
    assert store.tags(cloud.names.data_bucket, key, stored.version_id) == {
        layout.STATUS_TAG: "scored",
        layout.VERSION_TAG: "1",
    }


def test_a_parquet_file_keeps_its_id_column_and_its_row_order(cloud, store, champion):
    # Given a Parquet file in row groups of 500 rows, uploaded with the id column tag, one row with a null plan
    frame = pd.DataFrame(data.customers(2500, seed=22)).drop(columns=["churned"])
    frame.insert(0, "customer_id", [f"c-{i:05d}" for i in range(len(frame))])
    frame.loc[1234, "plan"] = None
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, row_group_size=500)
    key = "batch/churn/input/march.parquet"
    reply = cloud.client("s3").put_object(
        Bucket=cloud.names.data_bucket, Key=key, Body=sink.getvalue(), Tagging=f"{layout.ID_COLUMN_TAG}=customer_id"
    )
    # When its batch has run
    execution = cloud.wait_for_batch(layout.execution_name("churn", key, reply["VersionId"]), timeout=180)
    # Then the output is Parquet: the id column and the typed predictions, in the input's order
    assert execution.status == "SUCCEEDED" and (execution.output or {})["scored"] == 2499
    table = pq.read_table(io.BytesIO(store.get(cloud.names.data_bucket, "batch/churn/output/march.parquet")))
    assert table.column_names == ["customer_id", *PREDICTIONS]
    assert table.column("customer_id").to_pylist() == frame["customer_id"].tolist()
    out = table.to_pylist()
    assert out[1234]["prediction"] is None and out[1234]["model_version"] is None
    valid = [r for i, r in enumerate(frame.to_dict("records")) if i != 1234]
    assert [r["prediction"] for i, r in enumerate(out) if i != 1234] == [
        p[0] for p in scored_by_the_api(champion, valid)
    ]
    assert {r["model_version"] for i, r in enumerate(out) if i != 1234} == {1}
    report = json.loads(store.get(cloud.names.data_bucket, "batch/churn/output/march.report.json"))
    [issue] = report["issues"]
    assert (issue["check"], issue["column"], issue["rows"], issue["lines"]) == ("nulls", "plan", [1234], [])


def test_a_redelivered_s3_event_starts_nothing_new(cloud, store, champion, s3_event: Callable[..., dict[str, Any]]):
    # Given a batch that has run
    key = "batch/churn/input/twice.csv"
    stored = store.put(cloud.names.data_bucket, key, data.to_csv(data.customers(800, seed=23)))
    name = layout.execution_name("churn", key, stored.version_id)
    assert cloud.wait_for_batch(name, timeout=180).status == "SUCCEEDED"
    executions, chunks = len(cloud.batches().executions()), chunk_invocations(cloud)
    # When S3 delivers the same event again (at least once delivery), while and after it runs
    reply = cloud.invoke("batch_start", s3_event(key, stored.version_id))
    cloud.wait_for_idle(timeout=60)
    # Then it names the execution of that object version, and nothing is started, scored or written again
    assert [b["execution"] for b in reply["batches"]] == [name]
    assert len(cloud.batches().executions()) == executions and chunk_invocations(cloud) == chunks
    versions = cloud.client("s3").list_object_versions(
        Bucket=cloud.names.data_bucket, Prefix="batch/churn/output/twice.csv"
    )["Versions"]
    assert len(versions) == 1


def test_an_upload_for_a_model_without_a_champion_is_refused_with_a_report(cloud, store, champion):
    key = "batch/nobody/input/customers.csv"
    stored = store.put(cloud.names.data_bucket, key, data.to_csv(data.customers(10, seed=24)))
    execution = cloud.wait_for_batch(layout.execution_name("nobody", key, stored.version_id), timeout=120)
    assert execution.status == "SUCCEEDED" and (execution.output or {})["status"] == "refused"
    report = json.loads(store.get(cloud.names.data_bucket, "batch/nobody/output/customers.report.json"))
    assert report["issues"][0]["message"] == "no model named 'nobody': declare its dataset and train it first"
    assert store.list_keys(cloud.names.data_bucket, "batch/nobody/output/") == [
        "batch/nobody/output/customers.report.json"
    ]


@pytest.fixture
def cli_context(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Context:
    """The CLI pointed at this local cloud (in-process, as `loopml local up` would serve it)."""
    backend = cli_backend.Backend(REGION, None, None, None, cloud.names)
    monkeypatch.setattr(cli_backend.Backend, "resolve", classmethod(lambda cls, *args: backend))
    return Context(None, None)


def test_loopml_batch_uploads_follows_and_prints_where_the_output_is(cloud, champion, cli_context, tmp_path):
    # Given a local CSV file of 1,500 customers, one of them with an unknown region
    records = data.customers(1500, seed=25)
    records[7]["region"] = "mars"
    path = tmp_path / "april.csv"
    path.write_bytes(data.to_csv(records))
    # When `loopml batch churn april.csv --wait` runs
    result = CliRunner().invoke(batch_command, ["churn", str(path), "--wait", "--timeout", "180"], obj=cli_context)
    # Then it exits 0 and says how many rows were scored, where the output and the report are, and what was refused
    assert result.exit_code == 0, result.output
    bucket = cloud.names.data_bucket
    assert "scored: scored 1,499 of 1,500 rows with churn v1" in result.output
    assert f"output: s3://{bucket}/batch/churn/output/april.csv" in result.output
    assert f"report: s3://{bucket}/batch/churn/output/april.report.json" in result.output
    assert "categories[region] 1 row (line 9)" in result.output and "mars" in result.output


def test_loopml_batch_exits_1_when_the_file_is_refused(cloud, champion, cli_context, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("tenure,plan\n1,basic\n")
    result = CliRunner().invoke(batch_command, ["churn", str(path), "--wait"], obj=cli_context)
    assert result.exit_code == 1, result.output
    assert "refused" in result.output and "feature column 'tenure_months' is missing" in result.output


def test_loopml_batch_without_wait_uploads_with_the_id_column_tag_and_returns(
    cloud, store, champion, cli_context, tmp_path
):
    path = tmp_path / "may.csv"
    records = data.customers(300, seed=26)
    for i, record in enumerate(records):
        record["customer_id"] = f"m{i}"
    path.write_bytes(data.to_csv(records))
    result = CliRunner().invoke(batch_command, ["churn", str(path), "--id-column", "customer_id"], obj=cli_context)
    assert result.exit_code == 0, result.output
    assert "its outcome will be in" in result.output and "batch/churn/output/may.report.json" in result.output
    key = "batch/churn/input/may.csv"
    version = cloud.client("s3").head_object(Bucket=cloud.names.data_bucket, Key=key)["VersionId"]
    assert cloud.wait_for_batch(layout.execution_name("churn", key, version), timeout=120).status == "SUCCEEDED"
    header = store.get(cloud.names.data_bucket, "batch/churn/output/may.csv").split(b"\n", 1)[0].decode()
    assert header.split(",") == ["customer_id", *PREDICTIONS]
    assert store.tags(cloud.names.data_bucket, key, version)[layout.ID_COLUMN_TAG] == "customer_id"
