"""Labels for served predictions: joined with the captured traffic into live performance, or quarantined."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sklearn import metrics as sk

from infra import declaration as decl
from infra.cli.backend import upload_and_wait
from infra.demo import data
from infra.local.api_gateway import ApiGateway
from loopml_core.contract import load_contract

pytestmark = pytest.mark.xdist_group("local-cloud")
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text().replace("drift", "upload"))


@pytest.fixture(scope="module")
def served(cloud, registry, store):
    """A champion, and 150 predictions it served (with the truth for each), captured and delivered."""
    tags = upload_and_wait(
        store, cloud.names.data_bucket, "incoming/churn/jan.csv", data.to_csv(data.customers(600, seed=1))
    )
    assert tags["loopml-status"] == "accepted"
    assert cloud.wait_for_execution(cloud.pipeline_executions()[0]).status == "SUCCEEDED"
    api = ApiGateway(cloud)
    served = []
    for seed in (11, 12, 13):
        customers = data.customers(50, seed=seed)
        status, _, body = api.request("POST", "/v1/models/churn/predict", {"records": data.requests_for(customers)})
        assert status == 200
        for prediction, customer in zip(body["predictions"], customers, strict=True):
            served.append((body["request_id"], prediction["index"], prediction, customer["churned"]))
    cloud.flush_deliveries()
    return served


def label_file(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["request_id", "index", "churned"])
    writer.writerows(rows)
    return out.getvalue().encode()


def test_labels_join_the_predictions_they_name_into_live_performance(served, cloud, registry, store):
    rows = [(request_id, index, truth) for request_id, index, _, truth in served]
    rows.append(("never-served", 0, "yes"))
    tags = upload_and_wait(store, cloud.names.data_bucket, "labels/churn/day1.csv", label_file(rows))
    assert tags["loopml-status"] == "accepted"
    [outcome] = [u for u in registry.uploads("churn") if u.source_key == "labels/churn/day1.csv"]
    assert outcome.rows == 151 and "150 joined" in outcome.summary and "1 name no prediction" in outcome.summary
    [(day, counts)] = registry.performance("churn", 1).items()
    assert counts.rows == 150 and len(day) == 10
    from loopml_core.performance import metrics

    truth = [t for *_, t in served]
    predicted = [p["label"] for _, _, p, _ in served]
    live = metrics(counts)
    assert live["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted))
    assert live["f1_macro"] == pytest.approx(sk.f1_score(truth, predicted, average="macro"))
    scores = [p["probabilities"]["yes"] for _, _, p, _ in served]
    assert live["roc_auc"] == pytest.approx(sk.roc_auc_score([t == "yes" for t in truth], scores), abs=0.01)
    assert registry.audit_records()[-1].action == "dataset.labels.accepted"


def test_a_redelivered_label_event_counts_nothing_twice(served, cloud, registry, store, s3_event):
    key = "labels/churn/day2.csv"
    request_id, index, _, truth = served[0]
    tags = upload_and_wait(store, cloud.names.data_bucket, key, label_file([(request_id, index, truth)]))
    before = {day: c.rows for day, c in registry.performance("churn", 1).items()}
    cloud.invoke("ingest_labels", s3_event(key, tags["version_id"]))
    assert {day: c.rows for day, c in registry.performance("churn", 1).items()} == before


@pytest.mark.parametrize(
    ("rows", "header", "check", "column"),
    [
        ([("r", "0", "maybe")], ["request_id", "index", "churned"], "categories", "churned"),
        ([("r", "first", "yes")], ["request_id", "index", "churned"], "types", "index"),
        ([("", "0", "yes")], ["request_id", "index", "churned"], "nulls", "request_id"),
        ([("r", "0")], ["request_id", "index"], "schema", None),
        ([("r", "0", "yes"), ("r", "0", "no")], ["request_id", "index", "churned"], "quality", "index"),
    ],
)
def test_a_bad_label_file_is_quarantined_with_a_report_naming_rows_and_columns(
    served, cloud, registry, store, rows, header, check, column
):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    key = f"labels/churn/bad-{check}.csv"
    tags = upload_and_wait(store, cloud.names.data_bucket, key, out.getvalue().encode())
    assert tags["loopml-status"] == "quarantined"
    [outcome] = [u for u in registry.uploads("churn") if u.source_key == key]
    report = json.loads(store.get(cloud.names.data_bucket, outcome.report.split("/", 3)[3]))
    [issue] = [i for i in report["issues"] if i["check"] == check]
    assert issue["column"] == column
    if check in {"categories", "types", "nulls"}:
        assert issue["rows"] == [0] and issue["lines"] == [2]


def test_a_hand_written_header_with_spaces_is_read(served, cloud, registry, store):
    request_id, index, _, truth = served[1]
    body = f"request_id, index, churned\n{request_id}, {index}, {truth}\n".encode()
    tags = upload_and_wait(store, cloud.names.data_bucket, "labels/churn/spaced.csv", body)
    assert tags["loopml-status"] == "accepted"
    [outcome] = [u for u in registry.uploads("churn") if u.source_key == "labels/churn/spaced.csv"]
    assert outcome.rows == 1 and "1 joined" in outcome.summary
