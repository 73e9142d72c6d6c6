"""Every upload ends with one outcome, through the real handler on the local cloud: accepted (CSV, gzip-compressed
CSV, Parquet), duplicate, or quarantined with a small report — recorded in the registry and the audit trail."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from infra import declaration as decl
from infra.cli.backend import Backend, upload_and_wait
from infra.cli.main import cli
from infra.demo import data
from loopml_core.contract import load_contract

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text().replace("drift", "upload"))


def parquet_bytes(records: list[dict[str, object]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue()


def upload(cloud, store, registry, key: str, body: bytes):
    tags = upload_and_wait(store, cloud.names.data_bucket, key, body)
    outcome = registry.upload("churn", f"{key}@{tags['version_id']}")
    assert outcome is not None and tags["loopml-status"] == outcome.status
    return outcome, tags


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("feb.csv.gz", lambda records: gzip.compress(data.to_csv(records))),
        ("mar.parquet", parquet_bytes),
    ],
)
def test_compressed_csv_and_parquet_are_versioned_in_their_format_and_trained_on(cloud, store, registry, name, encode):
    body = encode(data.customers(400, seed=len(name)))
    outcome, tags = upload(cloud, store, registry, f"incoming/churn/{name}", body)
    assert outcome.status == "accepted" and outcome.rows == 400
    version = registry.dataset_version("churn", outcome.dataset_version)
    fmt = name.split(".", 1)[1]
    assert (version.format, version.object.key) == (fmt, f"datasets/churn/v{version.version}/data.{fmt}")
    assert store.get(cloud.names.data_bucket, version.object.key, version.object.version_id) == body
    assert tags["loopml-dataset-version"] == str(version.version)
    assert version.profile is not None and set(version.profile["features"]) == set(CONTRACT.feature_names)
    assert cloud.wait_for_execution(outcome.execution).status == "SUCCEEDED"
    assert any(v.dataset_version == version.version for v in registry.model_versions("churn"))


def test_the_same_content_again_is_a_duplicate_and_trains_nothing(cloud, store, registry):
    body = data.to_csv(data.customers(300, seed=42))
    first, _ = upload(cloud, store, registry, "incoming/churn/april.csv", body)
    cloud.wait_for_execution(first.execution)
    versions, executions = len(registry.dataset_versions("churn")), cloud.pipeline_executions()

    again, tags = upload(cloud, store, registry, "incoming/churn/april-copy.csv", body)
    assert (again.status, again.dataset_version, again.execution) == ("duplicate", first.dataset_version, None)
    assert tags["loopml-duplicate-of"] == str(first.dataset_version)
    assert len(registry.dataset_versions("churn")) == versions
    assert cloud.pipeline_executions() == executions
    record = registry.audit_records("dataset/churn")[-1]
    assert (record.action, record.details["dataset_version"]) == ("dataset.upload.duplicate", first.dataset_version)


def test_a_ten_megabyte_field_is_quarantined_with_a_small_report_and_audited(cloud, store, registry):
    records = data.customers(200, seed=5)
    records[10]["plan"] = "x" * 10_000_000
    outcome, _ = upload(cloud, store, registry, "incoming/churn/huge-field.csv", data.to_csv(records))
    assert outcome.status == "quarantined"
    bucket, key = outcome.report.removeprefix("s3://").split("/", 1)
    report = store.get(bucket, key)
    assert len(report) < 1_000_000
    plan = next(i for i in json.loads(report)["issues"] if i["column"] == "plan")
    assert plan["rows"] == [10] and plan["lines"] == [12] and len(plan["values"][0]) <= 200
    item = cloud.client("dynamodb").get_item(
        TableName=cloud.names.registry_table,
        Key={"pk": {"S": "DATASET#churn"}, "sk": {"S": f"UPLOAD#{outcome.source_id}"}},
    )["Item"]
    assert len(json.dumps(item)) < 100_000
    assert registry.audit_records("dataset/churn")[-1].action == "dataset.upload.quarantined"
    assert registry.verify_audit().ok
    quarantined_bucket, quarantined_key = outcome.quarantined.removeprefix("s3://").split("/", 1)
    assert store.get(quarantined_bucket, quarantined_key) == data.to_csv(records)  # kept whole, never deleted


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("customers.xlsx", b"PK\x03\x04 not a csv", "unsupported file type"),
        ("customers.parquet", b"tenure_months,plan\n1,basic\n", "not Parquet"),
        ("customers.csv.gz", gzip.compress(data.to_csv(data.customers(500, seed=2)), mtime=0)[:-200], "truncated"),
    ],
)
def test_a_file_that_cannot_be_read_is_quarantined_with_its_reason(cloud, store, registry, name, body, reason):
    outcome, _ = upload(cloud, store, registry, f"incoming/churn/{name}", body)
    assert outcome.status == "quarantined" and reason in outcome.summary
    bucket, key = outcome.report.removeprefix("s3://").split("/", 1)
    assert reason in json.loads(store.get(bucket, key))["issues"][0]["message"]


def test_the_cli_uploads_and_shows_every_outcome(cloud, registry, tmp_path, monkeypatch):
    backend = Backend("us-east-1", None, None, None, cloud.names)
    monkeypatch.setattr(Backend, "resolve", classmethod(lambda cls, *args: backend))
    good = tmp_path / "may.csv"
    good.write_bytes(data.to_csv(data.customers(250, seed=77)))
    bad = tmp_path / "broken.csv"
    bad.write_bytes(data.malformed_csv())

    accepted = CliRunner().invoke(cli, ["upload", str(good), "--dataset", "churn"])
    assert accepted.exit_code == 0, accepted.output
    assert "accepted" in accepted.output and "250 rows" in accepted.output
    duplicate = CliRunner().invoke(cli, ["upload", str(good), "--dataset", "churn"])
    assert duplicate.exit_code == 0 and "duplicate" in duplicate.output
    quarantined = CliRunner().invoke(cli, ["upload", str(bad), "--dataset", "churn"])
    assert quarantined.exit_code == 1 and "quarantined" in quarantined.output and "tenure_months" in quarantined.output

    shown = CliRunner().invoke(cli, ["datasets", "show", "churn"])
    assert shown.exit_code == 0
    for word in ("may.csv", "broken.csv", "accepted", "duplicate", "quarantined"):
        assert word in shown.output
