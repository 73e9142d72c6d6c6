"""Nothing is lost when a batch cannot be started: on the local cloud, a batch_start that fails on every attempt
(StartExecution denied) is retried as declared, then its event goes to upload_failed, which tags the file `error` and
alerts once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from infra import declaration as decl
from infra.cli import backend as cli_backend
from infra.cli.main import cli
from infra.local.cloud import REGION, LocalCloud
from infra.local.runner import Invocation
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.pipeline import Execution, StepFunctionsRunner
from loopml_core.batch import layout
from loopml_core.contract import load_contract
from loopml_core.registry import UNDECLARED, Registry

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text())


@pytest.fixture
def start_execution_denied(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """StartExecution on the batch state machine is refused, as a role missing `states:StartExecution` would be; the
    function, its retries and its on-failure destination are the real ones."""
    start = StepFunctionsRunner.start
    batch_machine = cloud.names.batch_state_machine_arn()

    def denied(self: StepFunctionsRunner, name: str, payload: dict[str, Any]) -> Execution:
        if self.state_machine_arn != batch_machine:
            return start(self, name, payload)
        error = {"Code": "AccessDeniedException", "Message": "not authorized to perform: states:StartExecution"}
        raise ClientError({"Error": error}, "StartExecution")

    monkeypatch.setattr(StepFunctionsRunner, "start", denied)


def invocations_during(cloud: LocalCloud, action: Callable[[], Any]) -> tuple[Any, list[Invocation]]:
    before = len(cloud.runner.invocations)
    result = action()
    cloud.wait_for_idle(timeout=60)
    return result, cloud.runner.invocations[before:]


def test_the_declared_async_invocation_of_batch_start_is_provisioned(cloud: LocalCloud) -> None:
    spec = decl.ASYNC_INVOCATIONS["batch_start"]
    config = cloud.client("lambda").get_function_event_invoke_config(
        FunctionName=decl.FUNCTIONS[spec.function].physical_name()
    )
    assert config["MaximumRetryAttempts"] == spec.retry_attempts == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == cloud.names.function_arn("upload_failed")


@pytest.mark.usefixtures("start_execution_denied")
def test_a_batch_start_that_fails_every_attempt_ends_with_the_error_tag_and_one_alert(
    cloud: LocalCloud, store: S3ObjectStore, registry: Registry, s3_event: Callable[..., dict[str, Any]]
) -> None:
    cloud.alerts()  # drain
    bucket, key = cloud.names.data_bucket, "batch/churn/input/denied.csv"
    # Given a batch file uploaded with its id column tag, when batch_start cannot start its execution
    stored, invocations = invocations_during(
        cloud,
        lambda: cloud.client("s3").put_object(
            Bucket=bucket, Key=key, Body=b"customer_id,tenure_months\nc1,3\n", Tagging="loopml-id-column=customer_id"
        ),
    )
    version = stored["VersionId"]
    # Then Lambda made the declared attempts, all failed, and the on-failure destination ran once
    starts = [i for i in invocations if i.function == "batch_start"]
    assert len(starts) == 1 + decl.ASYNC_INVOCATIONS["batch_start"].retry_attempts == 3
    assert all(i.errored for i in starts)
    assert [i.errored for i in invocations if i.function == "upload_failed"] == [False]
    # and the object version has the error outcome, the uploader's tag kept
    assert store.tags(bucket, key, version) == {layout.ID_COLUMN_TAG: "customer_id", layout.STATUS_TAG: "error"}
    # and one alert names the file, the error and what to do
    [alert] = [a for a in cloud.alerts() if key in a["Subject"]]
    assert "AccessDeniedException" in alert["Message"] and "states:StartExecution" in alert["Message"]
    assert "`loopml batch churn denied.csv --wait`" in alert["Message"]
    # and no execution, no report, no registry record
    execution = layout.execution_name("churn", key, version)
    assert execution not in [e.name for e in cloud.batches().executions()]
    assert store.list_keys(bucket, "batch/churn/output/denied") == []
    assert not any(o.source_key == key for name in ("churn", UNDECLARED) for o in registry.uploads(name))

    # When Lambda delivers the same destination record again (it delivers at least once)
    record = {
        "version": "1.0",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "requestContext": {
            "requestId": "8f5f2f1e-1111-2222-3333-444455556666",
            "functionArn": f"{cloud.names.function_arn('batch_start')}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": s3_event(key, version),
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "denied", "errorType": "ClientError"},
    }
    audit_before = registry.audit_records()
    result = cloud.invoke("upload_failed", record)
    # Then nothing changes: no second alert, the tags as they were, no registry record
    [handled] = result["uploads"]
    assert (handled["status"], handled["tagged"], handled["alerted"]) == ("error", False, False)
    assert cloud.alerts() == []
    assert store.tags(bucket, key, version) == {layout.ID_COLUMN_TAG: "customer_id", layout.STATUS_TAG: "error"}
    assert registry.audit_records() == audit_before


@pytest.mark.usefixtures("start_execution_denied")
def test_loopml_batch_wait_says_at_once_that_the_batch_could_not_be_started(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = cli_backend.Backend(REGION, None, None, None, cloud.names)
    monkeypatch.setattr(cli_backend.Backend, "resolve", classmethod(lambda cls, *args: backend))
    path = tmp_path / "refused.csv"
    path.write_text("customer_id,tenure_months\nc1,3\n")
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["batch", "churn", str(path), "--wait", "--timeout", "120"])
    assert result.exit_code == 2 and time.monotonic() - started < 60  # not the whole timeout
    assert "could not be started: batch_start failed after its retries" in result.output
