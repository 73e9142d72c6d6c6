"""The handlers through their adapters on moto, provisioned by the local cloud from the deploy declaration."""

from __future__ import annotations

import gzip
import inspect
import json
import re

import moto
import pytest
from moto.awslambda.models import LambdaFunction

from infra import declaration as decl
from infra.cli.backend import upload_and_wait
from infra.demo import data
from infra.local.api_gateway import ApiGateway
from loopml_core.contract import load_contract

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text().replace("drift", "upload"))


def test_moto_internals_the_local_cloud_relies_on():
    """The local cloud replaces moto's private Lambda runner; pin and guard exactly what it relies on."""
    assert moto.__version__ == "5.2.5"
    assert list(inspect.signature(LambdaFunction._invoke_lambda).parameters) == ["self", "event"]
    from moto.s3 import notifications

    assert list(inspect.signature(notifications._get_s3_event).parameters) == [
        "event_name",
        "bucket",
        "key",
        "notification_id",
    ]
    assert list(inspect.signature(notifications._invoke_awslambda).parameters)[:2] == ["account_id", "event_body"]


@pytest.fixture(scope="module")
def api(cloud):
    return ApiGateway(cloud)


@pytest.fixture(scope="module")
def trained(cloud, registry, store):
    tags = upload_and_wait(
        store, cloud.names.data_bucket, "incoming/churn/jan.csv", data.to_csv(data.customers(600, seed=1))
    )
    assert tags["loopml-status"] == "accepted"
    execution = cloud.pipeline_executions()[0]
    assert cloud.wait_for_execution(execution).status == "SUCCEEDED"
    return registry.champion_version("churn")


def test_resources_carry_the_declared_names_and_environment(cloud):
    lam = cloud.client("lambda")
    for spec in decl.FUNCTIONS.values():
        config = lam.get_function_configuration(FunctionName=spec.physical_name())
        assert config["Handler"] == spec.handler and config["Runtime"] == decl.LAMBDA_RUNTIME
        assert config["Environment"]["Variables"] == decl.function_environment(cloud.names, spec)
    definition = cloud.client("stepfunctions").describe_state_machine(stateMachineArn=cloud.names.state_machine_arn())[
        "definition"
    ]
    arns = {key: cloud.names.function_arn(key) for key in decl.FUNCTIONS}
    assert json.loads(definition) == json.loads(decl.PIPELINE.render(arns))


def test_a_clean_upload_is_versioned_and_trains_a_champion(trained, registry, cloud, store):
    assert trained.version == 1 and trained.promoted
    version = registry.dataset_version("churn", 1)
    stored = store.get(version.object.bucket, version.object.key, version.object.version_id)
    assert stored == data.to_csv(data.customers(600, seed=1))  # the immutable copy is byte-identical
    assert trained.parity["ok"] is True
    assert set(trained.metrics) >= {"accuracy", "f1_macro", "log_loss"}
    assert trained.code_version and trained.params["holdout_rows"] > 0
    assert store.get(trained.artifact.bucket, trained.artifact.key, trained.artifact.version_id)[:4] != b""


def test_a_redelivered_upload_event_registers_nothing_new(trained, cloud, registry, s3_event):
    executions_before = cloud.pipeline_executions()
    version = registry.dataset_version("churn", 1)
    event = s3_event(version.source_key, _source_version(cloud, version.source_key))
    audit_before = len(registry.audit_records())
    outcome = cloud.invoke("validate_upload", event)["outcomes"][0]
    # The first outcome stands: the same object version is the same upload, not a second one.
    assert outcome["status"] == "accepted" and outcome["dataset_version"] == 1
    assert len(registry.dataset_versions("churn")) == 1
    assert len(registry.audit_records()) == audit_before
    assert cloud.pipeline_executions() == executions_before


def _source_version(cloud, key):
    versions = cloud.client("s3").list_object_versions(Bucket=cloud.names.data_bucket, Prefix=key)["Versions"]
    return [v for v in versions if v["Key"] == key][-1]["VersionId"]


def test_undeclared_and_misplaced_uploads_are_quarantined_not_lost(cloud, store):
    bucket = cloud.names.data_bucket
    body = data.to_csv(data.customers(150, seed=9))
    tags = upload_and_wait(store, bucket, "incoming/fraud/x.csv", body)
    assert tags["loopml-status"] == "quarantined"
    [report_key] = [k for k in store.list_keys(bucket, "quarantine/fraud/") if k.endswith(".report.json")]
    report = json.loads(store.get(bucket, report_key))
    assert "'fraud' is not declared" in report["summary"]
    quarantined = report_key.removesuffix(".report.json")
    assert store.get(bucket, quarantined) == body == store.get(bucket, "incoming/fraud/x.csv")


def test_a_malformed_upload_report_names_rows_and_columns(cloud, store, registry):
    tags = upload_and_wait(store, cloud.names.data_bucket, "incoming/churn/broken.csv", data.malformed_csv())
    assert tags["loopml-status"] == "quarantined"
    [report_key] = [
        k for k in store.list_keys(cloud.names.data_bucket, "quarantine/churn/") if k.endswith("broken.csv.report.json")
    ]
    issues = json.loads(store.get(cloud.names.data_bucket, report_key))["issues"]
    by_column = {(i["check"], i["column"]) for i in issues}
    assert {
        ("schema", "region"),
        ("schema", "coupon"),
        ("types", "tenure_months"),
        ("ranges", "monthly_charges"),
        ("categories", "plan"),
        ("nulls", "support_calls"),
    } <= by_column
    tenure = next(i for i in issues if i["column"] == "tenure_months")
    assert tenure["rows"] == [3]
    assert registry.audit_records()[-1].action == "dataset.upload.quarantined"


def test_predict_serves_the_champion_in_order(trained, api):
    records = data.requests_for(data.customers(5, seed=4))
    status, headers, body = api.request("POST", "/v1/models/churn/predict", {"records": records})
    assert status == 200 and headers["X-Model-Version"] == "1"
    assert body["model"] == "churn" and body["version"] == 1 and len(body["predictions"]) == 5
    for prediction in body["predictions"]:
        assert prediction["label"] in {"yes", "no"}
        assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-5
    status, _, summary = api.request("GET", "/v1/models/churn")
    assert status == 200 and summary["version"] == 1 and summary["task"] == "classification"


def _with_raw_tenure(raw: str) -> bytes:
    """A one-record request whose tenure_months is written as `raw`, exactly (json.dumps could not write it)."""
    record = {**data.requests_for(data.customers(1, seed=1))[0], "tenure_months": 0}
    return json.dumps({"records": [record]}).replace('"tenure_months": 0', f'"tenure_months": {raw}').encode()


@pytest.mark.parametrize(
    ("body", "status", "field", "says"),
    [
        (_with_raw_tenure("1" + "0" * 400), 400, None, "beyond the range of a float64"),
        (_with_raw_tenure("9" * 5000), 400, None, "5000 digits"),
        (_with_raw_tenure("NaN"), 400, None, "NaN is not a JSON number"),
        (_with_raw_tenure("-Infinity"), 400, None, "-Infinity is not a JSON number"),
        (_with_raw_tenure("1e400"), 400, None, "overflows a float64"),
        (b'{"records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, None, "nested too deeply"),
        (b'{"records": [{"plan": "\xff\xfe"}]}', 400, None, "UTF-8"),
        (_with_raw_tenure("1e39"), 422, "tenure_months", "float32"),
        (_with_raw_tenure("700"), 422, "tenure_months", "above the contract's maximum 600"),
        (_with_raw_tenure("-1"), 422, "tenure_months", "below the contract's minimum 0"),
    ],
)
def test_bodies_json_would_take_but_no_client_meant_get_a_4xx(trained, api, body, status, field, says):
    got, _, reply = api.request("POST", "/v1/models/churn/predict", body)
    assert got == status, reply
    assert set(reply) == {"error", "details"}
    [detail] = reply["details"]
    assert detail["field"] == field and says in detail["message"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        ({"rows": []}, 422, "records"),
        ({"records": []}, 422, "records"),
        ({"records": [{"plan": "pro"}]}, 422, "tenure_months"),
        ({"records": [{**data.requests_for(data.customers(1, seed=1))[0], "plan": "gold"}]}, 422, "plan"),
        ({"records": [{**data.requests_for(data.customers(1, seed=1))[0], "coupon": 1}]}, 422, "coupon"),
        (
            {"records": [{**data.requests_for(data.customers(1, seed=1))[0], "tenure_months": None}]},
            422,
            "tenure_months",
        ),
        ({"records": data.requests_for(data.customers(1, seed=1)) * 1001}, 413, "records"),
    ],
)
def test_bad_requests_get_a_4xx_that_names_the_field(trained, api, body, status, field):
    got, _, reply = api.request("POST", "/v1/models/churn/predict", body)
    assert got == status, reply
    assert reply["error"]
    if field:
        assert field in {d["field"] for d in reply["details"]}


def test_unknown_model_and_routes(trained, api, registry):
    assert api.request("POST", "/v1/models/fraud/predict", {"records": [{}]})[0] == 404
    assert api.request("GET", "/v1/models/fraud")[0] == 404
    assert api.request("GET", "/v1/nothing")[0] == 403
    assert api.request("GET", "/health") == (200, {"Content-Type": "application/json"}, {"status": "ok"})
    body = json.dumps({"records": data.requests_for(data.customers(1, seed=1))}).encode()
    status, _, reply = api.handle(
        "POST",
        "/v1/models/churn/predict",
        {"Content-Type": "application/x-www-form-urlencoded", "x-api-key": api.default_key},
        body,
    )
    assert status == 415 and b"Content-Type: application/json" in reply


def test_a_failing_step_is_caught_recorded_and_leaves_the_champion(trained, cloud, registry):
    name = "churn-dv99-manual-test"
    cloud.client("stepfunctions").start_execution(
        stateMachineArn=cloud.names.state_machine_arn(),
        name=name,
        input=json.dumps({"run": {"model": "churn", "dataset_version": 99, "trigger": "manual"}}),
    )
    assert cloud.wait_for_execution(name).status == "FAILED"
    [run] = [r for r in registry.runs("churn") if r.execution == name]
    assert run.status.value == "FAILED" and "no version 99" in (run.cause or "")
    assert registry.champion_version("churn").version == trained.version
    assert registry.audit_records()[-1].action == "pipeline.run.failed"
    assert registry.verify_audit().ok


def test_predictions_are_captured_through_the_log_stream_in_batches(trained, api, cloud, store):
    """No S3 object per request: capture lines go through the log group's subscription to Firehose, which writes one
    gzipped, partitioned batch when its buffer is delivered."""
    bucket = cloud.names.artifact_bucket
    cloud.flush_deliveries()
    before = set(store.list_keys(bucket, "captures/"))
    answers = []
    for seed in (8, 9):
        status, headers, body = api.request(
            "POST", "/v1/models/churn/predict", {"records": data.requests_for(data.customers(2, seed=seed))}
        )
        assert status == 200 and headers["X-Request-Id"] == body["request_id"]
        assert [p["index"] for p in body["predictions"]] == [0, 1]
        answers.append(body)
    assert set(store.list_keys(bucket, "captures/")) == before  # buffered, not written per request
    assert cloud.flush_deliveries() == 1
    [key] = sorted(set(store.list_keys(bucket, "captures/")) - before)
    assert re.fullmatch(r"captures/30d/churn/\d{4}/\d\d/\d\d/\d\d/loopml-captures-1-[-0-9]{19}-[-0-9a-f]{36}\.gz", key)
    lines = [json.loads(line) for line in gzip.decompress(store.get(bucket, key)).decode().splitlines()]
    assert [line["request_id"] for line in lines] == [a["request_id"] for a in answers]  # nothing but captures
    for line, answer in zip(lines, answers, strict=True):
        assert (line["model"], line["version"], line["first"], line["n"]) == ("churn", 1, 0, 2)
        assert line["prediction"] == [p["label"] for p in answer["predictions"]]
        assert set(line["features"]) == set(CONTRACT.feature_names) and len(line["features"]["plan"]) == 2
        assert line["classes"] == ["no", "yes"] and len(line["probabilities"]) == 2


def test_capture_delivery_is_declared_on_moto_as_for_cdk(cloud):
    spec = decl.CAPTURE_DELIVERY
    group = f"/aws/lambda/{decl.FUNCTIONS[spec.function].physical_name()}"
    [subscription] = cloud.client("logs").describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
    assert subscription["filterPattern"] == spec.filter_pattern
    stream = cloud.client("firehose").describe_delivery_stream(DeliveryStreamName=spec.physical_name())
    assert subscription["destinationArn"] == stream["DeliveryStreamDescription"]["DeliveryStreamARN"]
    rules = cloud.client("s3").get_bucket_lifecycle_configuration(Bucket=cloud.names.artifact_bucket)["Rules"]
    expiring = {(r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules if "Expiration" in r}
    assert expiring == set(decl.artifact_expiry(spec)) and (spec.error_prefix, 30) in expiring
    [abort] = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert abort["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == decl.ABORT_INCOMPLETE_UPLOADS_DAYS


def test_alarms_and_dashboard_are_declared_on_moto_as_for_cdk(cloud):
    cloudwatch = cloud.client("cloudwatch")
    alarms = {
        alarm["AlarmName"]: alarm
        for alarm in cloudwatch.describe_alarms(AlarmNamePrefix=f"{decl.PREFIX}-")["MetricAlarms"]
    }
    assert sorted(alarms) == sorted(spec.physical_name() for spec in decl.ALARMS)
    watched = decl.WatchedResources.named(cloud.names)
    for spec in decl.ALARMS:
        alarm = alarms[spec.physical_name()]
        assert alarm["AlarmActions"] == [cloud.names.alert_topic_arn()]
        declared = decl.metric_alarm(spec, watched, [cloud.names.alert_topic_arn()])
        summed = declared.pop("Metrics", [])  # metric math: compared by the metrics it sums
        assert {key: alarm.get(key) for key in declared} == declared
        assert [query.get("MetricStat") for query in alarm.get("Metrics", [])] == [
            query.get("MetricStat") for query in summed
        ]
    dashboard = cloudwatch.get_dashboard(DashboardName=decl.DASHBOARD.name)
    assert dashboard["DashboardBody"] == decl.dashboard_body(decl.DASHBOARD, watched)
