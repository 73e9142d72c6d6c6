"""The stack emits one managed policy per declared duty, exporting its ARN, and each grants exactly its duty."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cfn_template import NAMES, Template, arn, flatten
from test_registry_write_scopes import RecordingTable, _model_version, statements_allow

from infra.declaration import API, DUTIES, Duty, DutySpec
from loopml_core.adapters.events import InMemoryEventPublisher
from loopml_core.models import DeliveryMode, VersionStatus
from loopml_core.registry import Registry

pytestmark = pytest.mark.xdist_group("cdk")

Permission = tuple[str, str]  # (action, flattened resource, with the statement's condition if it has one)

TABLE = arn("dynamodb", f"table/{NAMES.registry_table}")
PIPELINE = arn("states", f"stateMachine:{NAMES.state_machine}")
EXECUTIONS = arn("states", f"execution:{NAMES.state_machine}:*")
BUS = arn("events", "event-bus/default")
OBJECT_READ = ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging")
REGISTRY_COMMANDS = ("dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem")


def bucket(name: str) -> str:
    return arn("s3", name, regional=False)


DATA, ARTIFACTS, AUDIT = bucket(NAMES.data_bucket), bucket(NAMES.artifact_bucket), bucket(NAMES.audit_bucket)
CHECKPOINTS = f"{AUDIT}/audit/checkpoints/*"


def when(resource: str, condition: dict[str, Any]) -> str:
    return f"{resource} when {json.dumps(condition, sort_keys=True)}"


def model_items_only() -> str:
    """Versions, aliases and approvals; a model's description and tags; the events of those changes; the audit."""
    keys = ["AUDIT", "MODEL#*", "MODELS", "OUTBOX"]
    return when(TABLE, {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": keys}})


def policy_id(template: Template, spec: DutySpec) -> str:
    return template.one("AWS::IAM::ManagedPolicy", ManagedPolicyName=spec.policy_name())


def permissions(template: Template, duty: Duty) -> set[Permission]:
    found: set[Permission] = set()
    for statement in template.props(policy_id(template, DUTIES[duty]))["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow", statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        condition = statement.get("Condition")
        for resource in map(flatten, resources):
            named = resource if condition is None else when(resource, condition)
            found |= {(action, named) for action in actions}
    return found


def actions(template: Template, duty: Duty) -> set[str]:
    return {action for action, _ in permissions(template, duty)}


def test_one_managed_policy_per_duty_its_arn_exported(template: Template) -> None:
    outputs = template.body["Outputs"]
    for spec in DUTIES.values():
        policy = policy_id(template, spec)
        assert template.props(policy)["Description"] == spec.description
        assert outputs[spec.output]["Value"] == {"Ref": policy}  # a managed policy's Ref is its ARN
    assert {spec.output for spec in DUTIES.values()} == {
        "DataProducerPolicyArn",
        "ApproverPolicyArn",
        "OperatorPolicyArn",
        "ConsumerPolicyArn",
    }


def test_the_data_producer_uploads_and_reads_its_outcomes_only(template: Template) -> None:
    uploads = [f"{DATA}/incoming/*", f"{DATA}/labels/*", f"{DATA}/batch/*/input/*"]
    upload_actions = (
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:AbortMultipartUpload",
        "s3:GetObjectTagging",  # the outcome LoopML tags the upload with (loopml-status)
        "s3:GetObjectVersionTagging",
    )
    prefixes = ["incoming/*", "labels/*", "batch/*/input/*", "quarantine/*", "batch/*/output/*"]
    assert permissions(template, Duty.DATA_PRODUCER) == {
        *((action, resource) for action in upload_actions for resource in uploads),
        *((action, f"{DATA}/{key}") for action in OBJECT_READ for key in ("quarantine/*", "batch/*/output/*")),
        ("s3:ListBucket", when(DATA, {"StringLike": {"s3:prefix": prefixes}})),
    }


def test_the_data_producer_cannot_touch_the_registry_nor_trained_data(template: Template) -> None:
    granted = permissions(template, Duty.DATA_PRODUCER)
    assert not {a for a, _ in granted if not a.startswith("s3:")}  # no DynamoDB, Step Functions, API or IAM
    assert not {r for _, r in granted if r.startswith((f"{DATA}/datasets/", ARTIFACTS, AUDIT))}
    assert not {a for a, _ in granted if "Delete" in a}


def test_the_approver_decides_versions_and_aliases(template: Template) -> None:
    assert permissions(template, Duty.APPROVER) == {
        ("dynamodb:GetItem", TABLE),
        ("dynamodb:Query", TABLE),
        *((action, model_items_only()) for action in REGISTRY_COMMANDS),
        ("s3:PutObject", CHECKPOINTS),  # each commit's audit checkpoint
        *((action, f"{ARTIFACTS}/models/*") for action in OBJECT_READ),  # the model cards
        ("s3:ListBucket", when(ARTIFACTS, {"StringLike": {"s3:prefix": ["models/*"]}})),
        # the pipeline's manual approval step waits on a task token
        ("states:SendTaskSuccess", PIPELINE),
        ("states:SendTaskFailure", PIPELINE),
        ("events:PutEvents", BUS),  # the registry events of its changes
    }


def test_the_operator_deploys_rolls_back_starts_runs_and_reads_everything(template: Template) -> None:
    reads = {
        (action, resource)
        for name in (DATA, ARTIFACTS, AUDIT)
        for action, resource in [("s3:ListBucket", name), *((a, f"{name}/*") for a in OBJECT_READ)]
    }
    assert permissions(template, Duty.OPERATOR) == reads | {
        ("dynamodb:GetItem", TABLE),
        ("dynamodb:Query", TABLE),
        *((action, model_items_only()) for action in REGISTRY_COMMANDS),
        ("s3:PutObject", CHECKPOINTS),
        ("states:StartExecution", PIPELINE),
        ("states:ListExecutions", PIPELINE),
        ("states:DescribeExecution", EXECUTIONS),
        ("events:PutEvents", BUS),
    }


def test_the_consumer_only_invokes_the_inference_api(template: Template) -> None:
    api = template.one("AWS::ApiGateway::RestApi", Name=API.name)
    stage = f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api}}}/{API.stage}/*/*"
    assert permissions(template, Duty.CONSUMER) == {("execute-api:Invoke", stage)}
    assert not {a for a in actions(template, Duty.CONSUMER) if a.startswith("s3:")}  # it cannot read S3


@pytest.mark.parametrize("duty", [Duty.APPROVER, Duty.OPERATOR])
def test_people_who_write_the_registry_write_model_items_only(template: Template, duty: Duty) -> None:
    writes = {r for a, r in permissions(template, duty) if a in REGISTRY_COMMANDS}
    assert writes == {model_items_only()}  # never a dataset, an upload's outcome or performance counts


def test_no_duty_deletes_objects_uses_wildcard_actions_or_manages_iam(template: Template) -> None:
    for duty in DUTIES:
        for action in actions(template, duty):
            assert "*" not in action and not action.startswith(("iam:", "s3:Delete", "s3:PutBucket")), (duty, action)


def test_only_the_approver_answers_approvals_and_only_the_operator_starts_runs(template: Template) -> None:
    answering = {d for d in DUTIES if "states:SendTaskSuccess" in actions(template, d)}
    starting = {d for d in DUTIES if "states:StartExecution" in actions(template, d)}
    assert answering == {Duty.APPROVER} and starting == {Duty.OPERATOR}


# --- the registry commands of each duty write only what its policy allows -------------------------------------------


def _setup_registry() -> RecordingTable:
    """A model with a champion (v1) and a second READY version, set up without recording."""
    table = RecordingTable()
    setup = Registry(table, actor="setup")
    for run in ("run-1", "run-2"):
        setup.register_model_version("churn", run, _model_version(run), promote=run == "run-1", trigger="upload")
    table.recording = True
    return table


def _approver_commands(registry: Registry) -> None:
    registry.describe_model("churn", "who cancels")
    registry.set_model_tag("churn", "team", "risk")
    registry.set_alias("churn", "staging", 2, reason="QA")
    registry.delete_alias("churn", "staging", reason="done")
    registry.transition_version("churn", 2, VersionStatus.ARCHIVED, reason="superseded")


def _operator_commands(registry: Registry) -> None:
    registry.deploy("churn", 2, DeliveryMode.CANARY, 10, reason="try v2")
    registry.promote("churn", reason="v2 wins")
    registry.deploy("churn", 1, DeliveryMode.SHADOW, reason="compare v1")
    registry.rollback("churn", reason="v1 loses")


@pytest.mark.parametrize(
    ("duty", "commands"), [(Duty.APPROVER, _approver_commands), (Duty.OPERATOR, _operator_commands)]
)
def test_a_duty_s_registry_commands_need_only_its_policy(
    template: Template, duty: Duty, commands: Callable[[Registry], None]
) -> None:
    table = _setup_registry()
    commands(Registry(table, actor=str(duty), events=InMemoryEventPublisher()))  # the CLI publishes its events
    statements = template.props(policy_id(template, DUTIES[duty]))["PolicyDocument"]["Statement"]
    assert {pk.split("#")[0] for _, pk in table.writes} <= {"MODEL", "MODELS", "OUTBOX", "AUDIT"}
    for action, partition_key in sorted(table.writes):
        assert statements_allow(statements, action, partition_key), (duty, action, partition_key)
    for partition_key in ("DATASET#churn", "PERF#churn#v00000001", "DATASETS"):
        assert not statements_allow(statements, "dynamodb:PutItem", partition_key), (duty, partition_key)


def test_the_data_producer_and_the_consumer_may_write_no_registry_item(template: Template) -> None:
    for duty in (Duty.DATA_PRODUCER, Duty.CONSUMER):
        statements = template.props(policy_id(template, DUTIES[duty]))["PolicyDocument"]["Statement"]
        for partition_key in ("AUDIT", "MODEL#churn", "DATASET#churn"):
            assert not statements_allow(statements, "dynamodb:PutItem", partition_key)
            assert not statements_allow(statements, "dynamodb:GetItem", partition_key)
