"""Approval before production through the very state machine CDK deploys, on the local cloud: a winner of a manual
contract is registered PENDING_APPROVAL and its run waits on a task token; `loopml models approve` makes it champion
and resumes the run, `reject` ends it with the version REJECTED, and a run nobody answers times out into a rejection.
Metric floors hold back the first model too."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from registered_versions import as_csv_gz, register, run_pipeline

from infra import declaration as decl
from infra.cli import backend as cli_backend
from infra.cli.main import cli
from infra.local.cloud import REGION, LocalCloud
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.contract import Approval, DatasetContract, PerformanceMetric, load_contract
from loopml_core.models import VersionStatus
from loopml_core.registry import Registry

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time
BASE = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text() + "algorithm: logistic_regression\n")
CONTRACT = BASE.model_copy(update={"governance": BASE.governance.model_copy(update={"approval": Approval.MANUAL})})
ROWS = 600


@pytest.fixture
def cli_backend_of(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> cli_backend.Backend:
    backend = cli_backend.Backend(REGION, None, None, None, cloud.names)
    monkeypatch.setattr(cli_backend.Backend, "resolve", classmethod(lambda cls, *args: backend))
    monkeypatch.setenv("USER", "ana")
    monkeypatch.setenv("LOGNAME", "ana")
    return backend


def _declare(registry: Registry, name: str, contract: DatasetContract = CONTRACT) -> None:
    """A model of its own per test: its first candidate has no champion to beat, so it always wins."""
    registry.declare_dataset(contract.model_copy(update={"name": name}))


def _events_queue(cloud: LocalCloud) -> str:
    """An SQS queue behind a rule on the default bus for LoopML's events of model churn-a, as a CI/CD hook is."""
    events, sqs = cloud.client("events"), cloud.client("sqs")
    queue = sqs.create_queue(QueueName="approval-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="churn-a", EventPattern=json.dumps({"source": ["loopml"], "detail": {"model": ["churn-a"]}}))
    events.put_targets(Rule="churn-a", Targets=[{"Id": "q", "Arn": arn}])
    return str(queue)


def _received(cloud: LocalCloud, queue: str) -> list[dict]:
    sqs, received = cloud.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        received += [json.loads(m["Body"]) for m in messages]
        for message in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return sorted(received, key=lambda e: e["detail"]["audit_seq"])


def _waiting_run(cloud: LocalCloud, registry: Registry, store: S3ObjectStore, name: str) -> tuple[str, int, list]:
    """A pipeline run of a new dataset version that registered its winner PENDING_APPROVAL and now waits, with the
    alerts published meanwhile (the approvers' alert follows the token's record: both are waited for)."""
    dataset = register(cloud, registry, store, name, as_csv_gz(ROWS, seed=1), "csv.gz", ROWS)
    execution, _ = run_pipeline(cloud, name, dataset.version, wait=False)
    alerts: list = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alerts += cloud.alerts()
        versions = [v for v in registry.model_versions(name) if v.execution == execution]
        asked = any(f"approval needed: {name} v" in a["Subject"] for a in alerts)
        if versions and asked and registry.approval_request(name, versions[0].version) is not None:
            return execution, versions[0].version, alerts
        time.sleep(0.1)
    raise AssertionError(f"run {execution} registered nothing waiting for approval")


def test_a_winner_waits_and_an_approval_makes_it_champion_and_ends_the_run(
    cloud: LocalCloud, registry: Registry, store: S3ObjectStore, cli_backend_of: cli_backend.Backend
) -> None:
    _declare(registry, "churn-a")
    cloud.alerts()  # drain
    queue = _events_queue(cloud)
    execution, version, alerts = _waiting_run(cloud, registry, store, "churn-a")
    # Then nothing serves yet, the run waits, and the approvers were told how to decide
    assert registry.model_version("churn-a", version).status is VersionStatus.PENDING_APPROVAL
    assert registry.champion("churn-a") is None
    assert cloud.pipeline().describe(execution).status == "RUNNING"
    [alert] = [a for a in alerts if "approval needed" in a["Subject"]]
    assert f"loopml models approve churn-a {version}" in alert["Message"]
    # When the approver approves from the CLI
    result = CliRunner().invoke(cli, ["models", "approve", "churn-a", str(version), "--reason", "card reviewed"])
    assert result.exit_code == 0, result.output
    assert f"v{version} is READY and champion; pipeline run {execution} resumed" in result.output
    # Then the version serves, the run ends at Approved, and the audit names the approver and the reason
    assert cloud.wait_for_execution(execution).status == "SUCCEEDED"
    assert registry.champion("churn-a").version == version
    approved = [r for r in registry.audit_records(f"model/churn-a/v{version}") if r.action == "model.version.approved"]
    assert [(r.actor, r.details["reason"]) for r in approved] == [("cli:ana", "card reviewed")]
    history = cloud.client("stepfunctions").get_execution_history(
        executionArn=cloud.pipeline().describe(execution).arn
    )["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered[-3:] == ["NeedsApproval", "AwaitApproval", "Approved"]
    # and EventBridge carried each change, from the functions (registered, waiting) and from the CLI (approved, moved)
    changes = [(e["detail-type"], e["detail"]["action"]) for e in _received(cloud, queue)]
    assert changes == [
        ("LoopML Model Version State Change", "model.version.registered"),
        ("LoopML Model Version State Change", "model.version.approval.requested"),
        ("LoopML Model Version State Change", "model.version.approved"),
        ("LoopML Alias Change", "model.alias.moved"),
    ]


def test_a_rejection_ends_the_run_and_the_version_never_serves(
    cloud: LocalCloud, registry: Registry, store: S3ObjectStore, cli_backend_of: cli_backend.Backend
) -> None:
    _declare(registry, "churn-b")
    execution, version, _ = _waiting_run(cloud, registry, store, "churn-b")
    result = CliRunner().invoke(cli, ["models", "reject", "churn-b", str(version), "--reason", "recall too low"])
    assert result.exit_code == 0 and "is REJECTED; pipeline run" in result.output
    assert cloud.wait_for_execution(execution).status == "SUCCEEDED"  # the run did its job; the version is turned down
    assert registry.model_version("churn-b", version).status is VersionStatus.REJECTED
    assert registry.approval_request("churn-b", version) is None
    again = CliRunner().invoke(cli, ["models", "approve", "churn-b", str(version), "--reason", "changed my mind"])
    assert again.exit_code == 2 and "REJECTED: only a PENDING_APPROVAL version is decided on" in again.output


def test_a_run_nobody_answers_times_out_into_a_rejection(
    cloud: LocalCloud, registry: Registry, store: S3ObjectStore
) -> None:
    hurried = CONTRACT.governance.model_copy(update={"approval_timeout_hours": 2 / 3600})  # two seconds
    _declare(registry, "churn-c", CONTRACT.model_copy(update={"governance": hurried}))
    cloud.alerts()
    execution, version, _ = _waiting_run(cloud, registry, store, "churn-c")
    assert cloud.wait_for_execution(execution, timeout=60).status == "SUCCEEDED"
    assert registry.model_version("churn-c", version).status is VersionStatus.REJECTED
    reason = registry.audit_records(f"model/churn-c/v{version}")[-1].details["reason"]
    assert reason == "no decision within 0.000555556 hours"
    assert any("approval timed out" in a["Subject"] for a in cloud.alerts())


def test_floors_hold_back_the_first_model(cloud: LocalCloud, registry: Registry, store: S3ObjectStore) -> None:
    floors = BASE.governance.model_copy(update={"min_metrics": {PerformanceMetric.ACCURACY: 0.999}})
    _declare(registry, "churn-d", BASE.model_copy(update={"governance": floors}))
    dataset = register(cloud, registry, store, "churn-d", as_csv_gz(ROWS, seed=4), "csv.gz", ROWS)
    _, status = run_pipeline(cloud, "churn-d", dataset.version)
    assert status == "SUCCEEDED"
    [record] = registry.model_versions("churn-d")
    assert not record.promoted and "below the contract's floors (accuracy" in record.decision
    assert registry.champion("churn-d") is None  # no champion: the first model did not reach the floor
