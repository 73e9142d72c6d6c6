"""`loopml models`: deploy, promote, rollback, compare and show, through the CLI against a registry on moto's
DynamoDB (the table the CLI's backend opens, with the declared name)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import numpy as np
import pytest
from click.testing import CliRunner
from moto import mock_aws

from infra import declaration as decl
from infra.cli.backend import Backend
from infra.cli.main import cli
from infra.local.cloud import provision_audit_bucket
from loopml_core.contract import load_contract
from loopml_core.models import ModelVersion, ObjectRef, UploadOutcome, UploadStatus
from loopml_core.performance import classification_counts
from loopml_core.registry import Registry

CONTRACT = """
name: churn
task: classification
target: churned
target_values: ["no", "yes"]
features:
  - {name: tenure_months, type: int, min: 0}
monitoring: {performance: {metric: accuracy, min_labels: 50}}
"""


@pytest.fixture
def registry(monkeypatch) -> Iterator[Registry]:
    """churn with v1 champion and v2, v3 beside it; the CLI resolves to this backend."""
    with mock_aws():
        backend = Backend("us-east-1", None, None, None, decl.Names("123456789012", "us-east-1"))
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=backend.names.registry_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        provision_audit_bucket(boto3.client("s3", region_name="us-east-1"), backend.names.audit_bucket)
        monkeypatch.setattr(Backend, "resolve", classmethod(lambda cls, *args, **kwargs: backend))
        registry = backend.registry
        registry.declare_dataset(load_contract(CONTRACT))
        ref = ObjectRef(bucket="a", key="m.onnx", version_id="1")
        for run in ("run-1", "run-2", "run-3"):
            registry.register_model_version(
                "churn",
                run,
                lambda n, run=run: ModelVersion(
                    model="churn",
                    version=n,
                    task="classification",
                    dataset_version=1,
                    execution=run,
                    artifact=ref,
                    baseline=ref,
                    metrics={"accuracy": 0.8},
                    code_version="t",
                    promoted=n == 1,
                    decision=f"decision {n}",
                    created_at="t",
                ),
                promote=run == "run-1",
                trigger="upload",
            )
        yield registry


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize(
    "command",
    [
        "deploy",
        "promote",
        "rollback",
        "compare",
        "show",
        "list",
        "describe",
        "tag",
        "alias",
        "archive",
        "search",
        "approve",
        "reject",
        "history",
        "card",
    ],
)
def test_every_models_command_explains_itself_with_an_example(command):
    result = run("models", command, "--help")
    assert result.exit_code == 0
    assert "loopml models " in result.output.split("xample", 1)[1]


def test_deploy_a_canary_and_see_it_in_show_and_list(registry):
    deployed = run("models", "deploy", "churn", "--version", "3", "--canary", "10", "--reason", "new features")
    assert deployed.exit_code == 0, deployed.output
    assert "v3 deployed beside champion v1" in deployed.output and "10% of traffic" in deployed.output
    deployment = registry.deployment("churn")
    assert (deployment.version, deployment.mode, deployment.weight, deployment.reason) == (
        3,
        "canary",
        10,
        "new features",
    )
    assert deployment.by.startswith("cli:")  # who, from the CLI's actor
    shown = run("models", "show", "churn")
    assert shown.exit_code == 0 and "challenger (canary 10%)" in shown.output
    assert "deployment: v3 beside champion v1" in " ".join(shown.output.split())
    as_json = json.loads(run("models", "show", "churn", "--json").output)
    assert as_json["champion"] == 1 and as_json["deployment"]["weight"] == 10
    assert "v3 canary 10%" in run("models", "list").output


def test_ab_alone_splits_evenly_and_a_given_share_is_kept(registry):
    assert run("models", "deploy", "churn", "--version", "2", "--ab").exit_code == 0
    assert registry.deployment("churn").weight == 50
    assert run("models", "deploy", "churn", "--version", "2", "--ab", "20").exit_code == 0
    assert registry.deployment("churn").weight == 20
    again = run("models", "deploy", "churn", "--version", "2", "--ab", "20")
    assert again.exit_code == 0 and "unchanged" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --canary PCT, --shadow or --ab"),
        (["--canary", "10", "--shadow"], "exactly one of"),
        (["--canary", "0"], "0 is not in the range 1<=x<=99"),
        (["--canary", "100"], "100 is not in the range"),
        (["--ab", "150"], "150 is not in the range"),
    ],
)
def test_a_bad_deploy_is_a_usage_error(registry, args, message):
    result = run("models", "deploy", "churn", "--version", "3", *args)
    assert result.exit_code == 2 and message in result.output
    assert registry.deployment("churn") is None


@pytest.mark.parametrize(
    ("version", "message"),
    [("1", "v1 is already the champion of 'churn'"), ("9", "model 'churn' has no version 9")],
)
def test_deploying_the_champion_or_a_missing_version_says_why(registry, version, message):
    result = run("models", "deploy", "churn", "--version", version, "--shadow")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_a_second_version_waits_for_the_first_deployment(registry):
    assert run("models", "deploy", "churn", "--version", "2", "--canary", "5").exit_code == 0
    result = run("models", "deploy", "churn", "--version", "3", "--shadow")
    assert result.exit_code == 2 and "promote it or roll it back" in result.output


def test_promote_makes_the_challenger_champion(registry):
    run("models", "deploy", "churn", "--version", "3", "--shadow")
    promoted = run("models", "promote", "churn", "--reason", "it wins")
    assert promoted.exit_code == 0 and "v3 is champion now" in promoted.output
    assert registry.champion("churn").version == 3 and registry.deployment("churn") is None
    assert registry.audit_records("model/churn/alias/champion")[-1].details["reason"] == "it wins"
    again = run("models", "promote", "churn")
    assert again.exit_code == 2 and "no deployment in progress to promote (v3 is champion)" in again.output


def test_rollback_without_a_version_stops_the_challenger_at_once(registry):
    run("models", "deploy", "churn", "--version", "2", "--canary", "30")
    result = run("models", "rollback", "churn")
    assert result.exit_code == 0, result.output
    assert "deployment of v2 ended; champion v1 answers all traffic" in result.output
    assert registry.deployment("churn") is None and registry.champion("churn").version == 1
    nothing = run("models", "rollback", "churn")
    assert nothing.exit_code == 2 and "no deployment in progress" in nothing.output
    assert "loopml models rollback churn 1" in nothing.output


@pytest.mark.parametrize("spelling", [["2"], ["--to", "2"]])
def test_rollback_to_a_version_moves_the_champion_and_ends_a_deployment(registry, spelling):
    run("models", "deploy", "churn", "--version", "3", "--canary", "10")
    result = run("models", "rollback", "churn", *spelling)
    assert result.exit_code == 0 and "champion of churn is now v2; the canary of v3 ended" in result.output
    assert registry.champion("churn").version == 2 and registry.deployment("churn") is None
    assert registry.verify_audit().ok


def test_rollback_with_two_different_versions_is_a_usage_error(registry):
    result = run("models", "rollback", "churn", "1", "--to", "2")
    assert result.exit_code == 2 and "disagree" in result.output
    assert registry.champion("churn").version == 1


def _label(registry: Registry, version: int, day: str, rows: int, correct: int, source: str) -> None:
    """Record a label file's counts for one version and day, as the label join does."""
    truth = np.arange(rows) % 2
    predicted = truth.copy()
    predicted[correct:] = 1 - truth[correct:]
    probabilities = np.where(predicted[:, None] == np.arange(2)[None, :], 0.8, 0.2)
    counts = classification_counts(("no", "yes"), truth, predicted, probabilities)
    outcome = UploadOutcome(
        dataset="churn",
        source_key=f"labels/churn/{source}.csv",
        status=UploadStatus.ACCEPTED,
        summary="",
        rows=rows,
        at="t",
    )
    registry.record_labels(outcome, {(version, day): counts})


def test_compare_reports_each_variant_with_intervals_and_a_verdict(registry):
    run("models", "deploy", "churn", "--version", "3", "--ab", "50")
    day = registry.deployment("churn").since[:10]
    _label(registry, 1, "2020-01-01", 5000, 1000, "old")  # before the deployment: not counted
    _label(registry, 1, day, 2000, 1600, "a")  # champion 0.80
    _label(registry, 3, day, 2000, 1800, "b")  # challenger 0.90
    result = run("models", "compare", "churn", "--json")
    assert result.exit_code == 0, result.output
    compared = json.loads(result.output)
    assert (compared["metric"], compared["verdict"], compared["since"]) == ("accuracy", "challenger better", day)
    assert compared["champion"]["labels"] == 2000 and compared["challenger"]["labels"] == 2000
    accuracy = compared["champion"]["metrics"]["accuracy"]
    assert accuracy["value"] == pytest.approx(0.8) and accuracy["low"] < 0.8 < accuracy["high"]
    assert compared["difference"]["value"] == pytest.approx(0.1) and compared["difference"]["low"] > 0
    table = run("models", "compare", "churn")
    assert table.exit_code == 0 and "verdict: challenger better" in table.output and "v3" in table.output


def test_compare_says_how_many_more_labels_it_needs(registry):
    run("models", "deploy", "churn", "--version", "2", "--canary", "10")
    day = registry.deployment("churn").since[:10]
    _label(registry, 1, day, 900, 720, "a")
    _label(registry, 2, day, 100, 84, "b")
    compared = json.loads(run("models", "compare", "churn", "--json").output)
    assert compared["verdict"] == "no significant difference yet" and compared["more_labels"] > 0
    assert f"need ~{compared['more_labels']:,} more labels" in compared["summary"]


def test_compare_without_a_deployment_needs_a_version(registry):
    result = run("models", "compare", "churn")
    assert result.exit_code == 2 and "give --version V" in result.output
    labels_free = run("models", "compare", "churn", "--version", "2", "--json")
    assert labels_free.exit_code == 0
    assert json.loads(labels_free.output)["verdict"] == "no significant difference yet"


def test_describe_tag_alias_archive_and_search_through_the_cli(registry):
    assert run("models", "describe", "churn", "--description", "Who cancels next month").exit_code == 0
    tagged = run("models", "tag", "churn", "team=risk", "owner=ana")
    assert tagged.exit_code == 0 and "owner=ana, team=risk" in tagged.output
    assert run("models", "tag", "churn", "--version", "2", "validated_by=qa").exit_code == 0
    assert run("models", "alias", "set", "churn", "staging", "2", "--reason", "QA run").exit_code == 0
    archived = run("models", "archive", "churn", "3", "--reason", "superseded")
    assert archived.exit_code == 0 and "churn v3 is ARCHIVED" in archived.output
    described = json.loads(run("models", "describe", "churn", "--json").output)
    assert described["description"] == "Who cancels next month" and described["tags"] == {
        "team": "risk",
        "owner": "ana",
    }
    assert described["aliases"] == {"champion": 1, "staging": 2}
    assert [(v["version"], v["status"], v["tags"]) for v in described["versions"]] == [
        (1, "READY", {}),
        (2, "READY", {"validated_by": "qa"}),
        (3, "ARCHIVED", {}),
    ]
    found = json.loads(run("models", "search", "--filter", "tag.team = 'risk'", "--json").output)
    assert [m["name"] for m in found["models"]] == ["churn"] and found["next_page_token"] is None
    assert "no model matches" in run("models", "search", "--filter", "tag.team = 'ops'").output
    assert [r.action for r in registry.audit_records()[-6:]] == [
        "model.described",
        "model.tag.set",
        "model.tag.set",
        "model.version.tag.set",
        "model.alias.set",
        "model.version.status",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alias", "set", "churn", "champion", "2"], "use `loopml models promote`"),
        (["archive", "churn", "1", "--reason", "x"], "named by champion"),
        (["search", "--filter", "team = 'risk'"], "cannot read"),
        (["tag", "churn", "novalue"], "give KEY=VALUE"),
    ],
)
def test_registry_vocabulary_mistakes_say_why(registry, args, message):
    result = run("models", *args)
    assert result.exit_code == 2 and message in result.output


def test_on_aws_the_audit_names_the_callers_iam_principal(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))  # no local cloud running: the AWS account in the environment
    monkeypatch.delenv("LOOPML_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        backend = Backend.resolve()
        identity = boto3.client("sts", region_name="us-east-1").get_caller_identity()
        assert backend.principal == identity["Arn"] and backend.registry.actor == f"cli:{identity['Arn']}"
    local = Backend("us-east-1", "http://127.0.0.1:4566", None, None, decl.Names("123456789012", "us-east-1"))
    monkeypatch.setenv("USER", "ana")
    monkeypatch.setenv("LOGNAME", "ana")
    assert local.registry.actor == "cli:ana"  # the operating-system user on a local cloud


def test_a_change_made_from_the_cli_reaches_an_eventbridge_rule(registry):
    events, sqs = boto3.client("events", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="ci")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["loopml"], "detail-type": ["LoopML Alias Change"]}
    events.put_rule(Name="aliases", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="aliases", Targets=[{"Id": "q", "Arn": arn}])
    assert run("models", "alias", "set", "churn", "staging", "2", "--reason", "QA").exit_code == 0
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    detail = json.loads(message["Body"])["detail"]
    assert (detail["model"], detail["alias"], detail["action"]) == ("churn", "staging", "model.alias.set")
    assert detail["details"] == {"from": None, "to": 2, "reason": "QA"}
    assert registry.pending_events() == []
