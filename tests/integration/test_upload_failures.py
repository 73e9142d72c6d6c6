"""Every upload ends with an outcome: a validation that crashes on every attempt gives the upload `error`, on the
local cloud, through the declared retries and on-failure destination."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from infra import declaration as decl
from infra.cli.backend import upload_and_wait
from infra.demo import data
from infra.local.cloud import LocalCloud
from infra.local.runner import Invocation
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.contract import load_contract
from loopml_core.logic.ingest import Ingestor
from loopml_core.models import UploadStatus
from loopml_core.registry import UNDECLARED, Registry

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text())


@pytest.fixture
def crashing_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stands in for whatever makes validation die (a bug, a poisoned file); the retries and the outcome are real."""

    def crash(self: Ingestor, upload: Any) -> None:
        raise RuntimeError(f"disk full while reading {upload.key}")

    monkeypatch.setattr(Ingestor, "ingest", crash)


def invocations_during(cloud: LocalCloud, action: Any) -> tuple[Any, list[Invocation]]:
    before = len(cloud.runner.invocations)
    result = action()
    cloud.wait_for_idle(timeout=60)
    return result, cloud.runner.invocations[before:]


def test_moto_internals_the_async_invocation_relies_on() -> None:
    from moto.s3 import notifications

    assert list(inspect.signature(notifications._invoke_awslambda).parameters) == [
        "account_id",
        "event_body",
        "fn_arn",
        "region_name",
    ]


def test_the_declared_async_invocation_is_provisioned(cloud: LocalCloud) -> None:
    spec = decl.VALIDATION_FAILURES
    config = cloud.client("lambda").get_function_event_invoke_config(
        FunctionName=decl.FUNCTIONS[spec.function].physical_name()
    )
    assert config["MaximumRetryAttempts"] == spec.retry_attempts == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == cloud.names.function_arn("upload_failed")
    [alarm] = cloud.client("cloudwatch").describe_alarms(AlarmNames=[decl.UPLOAD_ERRORS_ALARM.physical_name()])[
        "MetricAlarms"
    ]
    assert alarm["AlarmActions"] == [cloud.names.alert_topic_arn()]
    assert alarm["MetricName"] == "Invocations" and alarm["Namespace"] == "AWS/Lambda"


@pytest.mark.usefixtures("crashing_validation")
def test_a_validation_that_crashes_every_time_ends_with_the_error_outcome(
    cloud: LocalCloud, registry: Registry, store: S3ObjectStore
) -> None:
    # Given a validation that crashes, when a file is uploaded
    key = "incoming/churn/crash.csv"
    body = data.to_csv(data.customers(150, seed=3))
    executions_before = cloud.pipeline_executions()
    tags, invocations = invocations_during(
        cloud, lambda: upload_and_wait(store, cloud.names.data_bucket, key, body, timeout=60)
    )

    # Then Lambda's declared retries were made, and then the on-failure destination ran once
    validations = [i for i in invocations if i.function == "validate_upload"]
    assert len(validations) == 1 + decl.VALIDATION_FAILURES.retry_attempts == 3
    assert all(i.errored for i in validations)
    assert [i.errored for i in invocations if i.function == "upload_failed"] == [False]

    # and the upload has the error outcome: tag, registry record with the reason, audit record, alert
    assert tags["loopml-status"] == "error"
    [outcome] = [o for o in registry.uploads("churn") if o.source_key == key]
    assert outcome.status is UploadStatus.ERROR and outcome.source_version_id == tags["version_id"]
    assert outcome.summary == f"validation failed after 3 attempts: RuntimeError: disk full while reading {key}"
    [audit] = [r for r in registry.audit_records("dataset/churn") if r.action == "dataset.upload.error"]
    assert audit.details["source_key"] == key and audit.details["source_version_id"] == tags["version_id"]
    assert audit.actor == "upload_failed"
    assert registry.verify_audit().ok
    [alert] = [a for a in cloud.alerts() if key in a["Subject"]]
    assert "RuntimeError: disk full" in alert["Message"] and "Nothing was registered" in alert["Message"]

    # and nothing was registered or trained
    assert registry.dataset("churn").latest_version == 0
    assert cloud.pipeline_executions() == executions_before


@pytest.mark.usefixtures("crashing_validation")
def test_a_crashed_upload_outside_any_dataset_is_recorded_as_undeclared(
    cloud: LocalCloud, registry: Registry, store: S3ObjectStore
) -> None:
    tags = upload_and_wait(store, cloud.names.data_bucket, "incoming/loose.csv", b"a,b\n1,2\n", timeout=60)
    cloud.wait_for_idle(timeout=60)
    assert tags["loopml-status"] == "error"
    [outcome] = [o for o in registry.uploads(UNDECLARED) if o.source_key == "incoming/loose.csv"]
    assert outcome.status is UploadStatus.ERROR
    assert [a for a in cloud.alerts() if "incoming/loose.csv" in a["Subject"]]


@pytest.mark.usefixtures("crashing_validation")
def test_a_redelivered_failure_record_changes_nothing(
    cloud: LocalCloud, registry: Registry, store: S3ObjectStore, s3_event: Callable[..., dict[str, Any]]
) -> None:
    # Given an upload that already has the error outcome
    key = "incoming/churn/again.csv"
    upload_and_wait(store, cloud.names.data_bucket, key, data.to_csv(data.customers(150, seed=4)), timeout=60)
    cloud.wait_for_idle(timeout=60)
    [outcome] = [o for o in registry.uploads("churn") if o.source_key == key]
    audit_before = registry.audit_records()
    cloud.alerts()  # drain
    # When Lambda delivers the same destination record again (it delivers at least once)
    record = {
        "version": "1.0",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "requestContext": {
            "requestId": "8f5f2f1e-1111-2222-3333-444455556666",
            "functionArn": f"{cloud.names.function_arn('validate_upload')}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": s3_event(outcome.source_key, outcome.source_version_id),
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "disk full", "errorType": "RuntimeError"},
    }
    result = cloud.invoke("upload_failed", record)
    # Then the outcome, the audit trail and the alerts are unchanged
    assert result["uploads"] == [
        {
            "dataset": "churn",
            "source_id": outcome.source_id,
            "status": "error",
            "recorded": False,
            "tagged": True,
            "alerted": False,
        }
    ]
    assert [o for o in registry.uploads("churn") if o.source_key == outcome.source_key] == [outcome]
    assert registry.audit_records() == audit_before
    assert cloud.alerts() == []
