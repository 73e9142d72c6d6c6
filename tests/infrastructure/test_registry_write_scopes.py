"""Each function role writes only the registry partitions it owns (`dynamodb:LeadingKeys`), and those partitions
cover exactly what the registry code on that function's path writes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from cfn_template import NAMES, Template, arn, flatten

from infra.declaration import FUNCTIONS, Access, Grants, RegistryItems
from infra.local.seed import version_builder
from loopml_core.adapters.events import InMemoryEventPublisher
from loopml_core.adapters.table import Check, Delete, InMemoryTable, Item, Put, Write
from loopml_core.contract import load_contract
from loopml_core.models import (
    Alert,
    DatasetVersion,
    ModelVersion,
    ObjectRef,
    UploadOutcome,
    UploadStatus,
    VersionStatus,
)
from loopml_core.performance import regression_counts
from loopml_core.registry import UNDECLARED, Registry

pytestmark = pytest.mark.xdist_group("cdk")

TABLE_ARN = arn("dynamodb", f"table/{NAMES.registry_table}")
READS = {"dynamodb:GetItem", "dynamodb:Query"}

# Written out independently of the declaration: what each function may write, per action, by partition key pattern.
EXPECTED_WRITES: dict[str, dict[str, set[str]]] = {
    "validate_upload": {"dynamodb:PutItem": {"AUDIT", "DATASET#*"}},
    "register_model": {"dynamodb:PutItem": {"AUDIT", "MODEL#*", "MODELS", "OUTBOX"}, "dynamodb:DeleteItem": {"OUTBOX"}},
    "request_approval": {
        "dynamodb:PutItem": {"AUDIT", "MODEL#*", "OUTBOX"},
        "dynamodb:DeleteItem": {"MODEL#*", "OUTBOX"},
    },
    "record_failure": {"dynamodb:PutItem": {"AUDIT", "MODEL#*"}},
    "upload_failed": {"dynamodb:PutItem": {"AUDIT", "DATASET#*"}},
    "ingest_labels": {"dynamodb:PutItem": {"AUDIT", "DATASET#*", "PERF#*"}},
    "drift_check": {"dynamodb:PutItem": {"AUDIT", "MODEL#*", "OUTBOX", "PERF#*"}, "dynamodb:DeleteItem": {"OUTBOX"}},
}


# --- reading the template -------------------------------------------------------------------------------------------


def _role_statements(template: Template, key: str) -> list[dict[str, Any]]:
    function = template.one("AWS::Lambda::Function", FunctionName=FUNCTIONS[key].physical_name())
    role = template.props(function)["Role"]["Fn::GetAtt"][0]
    inline = [s for p in template.props(role).get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    attached = [
        statement
        for policy in template.of_type("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    return inline + attached


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _table_statements(statements: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for statement in statements:
        if TABLE_ARN in {flatten(r) for r in _listed(statement["Resource"])}:
            yield statement


def registry_writes(template: Template, key: str) -> dict[str, set[str]]:
    """{write action: the partition-key patterns it is allowed under} of a function's role."""
    writes: dict[str, set[str]] = {}
    for statement in _table_statements(_role_statements(template, key)):
        actions = set(_listed(statement["Action"])) - READS
        if not actions:
            continue
        assert statement["Effect"] == "Allow"
        # A write is never table-wide: exactly one condition, on the partition keys of the items written.
        assert list(statement.get("Condition", {})) == ["ForAllValues:StringLike"], statement
        (condition_key, patterns), *others = statement["Condition"]["ForAllValues:StringLike"].items()
        assert condition_key == "dynamodb:LeadingKeys" and not others, statement
        for action in actions:
            writes.setdefault(action, set()).update(patterns)
    return writes


def _string_like(pattern: str, value: str) -> bool:
    """IAM's StringLike: `*` any run of characters, `?` one character, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def allowed(template: Template, key: str, action: str, partition_key: str) -> bool:
    """Whether the function's role may `action` an item of the registry whose partition key is `partition_key`."""
    return statements_allow(_role_statements(template, key), action, partition_key)


def statements_allow(statements: list[dict[str, Any]], action: str, partition_key: str) -> bool:
    """IAM's evaluation of these Allow statements (no statement denies; nothing else grants) for `action` on an item
    of the registry whose partition key is `partition_key`."""
    for statement in _table_statements(statements):
        if action not in _listed(statement["Action"]):
            continue
        condition = statement.get("Condition")
        if condition is None:
            return True
        patterns = condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        if any(_string_like(pattern, partition_key) for pattern in patterns):
            return True
    return False


# --- the template ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", FUNCTIONS)
def test_each_role_writes_exactly_its_partitions(template: Template, key: str) -> None:
    assert registry_writes(template, key) == EXPECTED_WRITES.get(key, {})


def test_every_writer_may_append_to_the_audit_chain(template: Template) -> None:
    # Every registry commit writes its audit records and the chain's HEAD in the same transaction.
    for key in EXPECTED_WRITES:
        assert allowed(template, key, "dynamodb:PutItem", "AUDIT"), key


def test_no_role_in_the_stack_writes_the_registry_table_wide(template: Template) -> None:
    for logical_id, policy in template.of_type("AWS::IAM::Policy").items():
        for statement in _table_statements(policy["Properties"]["PolicyDocument"]["Statement"]):
            if set(_listed(statement["Action"])) - READS:
                assert "dynamodb:LeadingKeys" in str(statement.get("Condition")), (logical_id, statement)


def test_predict_cannot_write_the_registry_at_all(template: Template) -> None:
    statements = _role_statements(template, "predict")
    dynamodb = {a for s in statements for a in _listed(s["Action"]) if a.startswith("dynamodb:")}
    assert dynamodb == READS
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"):
        for partition_key in ("AUDIT", "MODEL#churn", "DATASET#churn", "OUTBOX"):
            assert not allowed(template, "predict", action, partition_key)


@pytest.mark.parametrize(
    ("key", "partition_key"),
    [
        ("drift_check", "DATASET#churn"),  # a check reads datasets, never records an upload
        ("drift_check", "MODELS"),
        ("validate_upload", "MODEL#churn"),  # an upload cannot move the champion
        ("validate_upload", "PERF#churn#v00000001"),
        ("upload_failed", "MODEL#churn"),
        ("ingest_labels", "MODEL#churn"),  # labels count performance; they never touch a model's aliases
        ("record_failure", "DATASET#churn"),
        ("record_failure", "MODELS"),
        ("register_model", "DATASET#churn"),
        ("request_approval", "DATASET#churn"),
        ("request_approval", "MODELS"),
        ("train_model", "MODEL#churn"),  # readers write nothing
        ("evaluate_model", "AUDIT"),
        ("batch_plan", "MODEL#churn"),
    ],
)
def test_a_function_is_denied_partitions_it_does_not_own(template: Template, key: str, partition_key: str) -> None:
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
        assert not allowed(template, key, action, partition_key), (key, action, partition_key)


def test_deletes_take_only_published_outbox_items_and_approval_requests(template: Template) -> None:
    deleters = {key for key in FUNCTIONS if "dynamodb:DeleteItem" in registry_writes(template, key)}
    assert deleters == {"drift_check", "register_model", "request_approval"}
    for key in deleters:
        assert allowed(template, key, "dynamodb:DeleteItem", "OUTBOX")
        assert not allowed(template, key, "dynamodb:DeleteItem", "AUDIT"), key  # nobody removes audit records
    assert not allowed(template, "drift_check", "dynamodb:DeleteItem", "MODEL#churn")
    assert not allowed(template, "register_model", "dynamodb:DeleteItem", "MODEL#churn")


# --- the registry code each function runs writes only what its role allows ------------------------------------------

CONTRACT = """
name: churn
task: regression
target: churned
features:
  - {name: tenure_months, type: int, min: 0}
"""
ACTIONS = {Put: "dynamodb:PutItem", Delete: "dynamodb:DeleteItem", Check: "dynamodb:ConditionCheckItem"}


class RecordingTable(InMemoryTable):
    """The in-memory table, noting (action, partition key) of every write made while `recording`."""

    def __init__(self) -> None:
        super().__init__()
        self.recording = False
        self.writes: set[tuple[str, str]] = set()

    def transact(self, puts: Any) -> None:
        writes: list[Write] = list(puts)
        super().transact(writes)
        if self.recording:
            self.writes |= {(ACTIONS[type(write)], write.key[0]) for write in writes}

    def delete(self, pk: str, sk: str) -> None:
        super().delete(pk, sk)
        if self.recording:
            self.writes.add(("dynamodb:DeleteItem", pk))

    def put_unconditionally(self, item: Item) -> None:
        super().put_unconditionally(item)
        if self.recording:
            self.writes.add(("dynamodb:PutItem", str(item["pk"])))


def _outcome(status: UploadStatus, source: str, dataset: str = "churn", **fields: Any) -> UploadOutcome:
    key = f"labels/{dataset}/{source}.csv" if fields.pop("labels", False) else f"incoming/{dataset}/{source}.csv"
    return UploadOutcome(
        dataset=dataset, source_key=key, source_version_id=source, status=status, summary="", at="t", **fields
    )


def _dataset_version(number: int) -> DatasetVersion:
    ref = ObjectRef(bucket="b", key=f"datasets/churn/v{number}/data.csv", version_id="v")
    return DatasetVersion(
        dataset="churn",
        version=number,
        object=ref,
        source_key="incoming/churn/a.csv",
        sha256="abc",
        rows=100,
        contract_version=1,
        created_at="2026-01-01T00:00:00Z",
    )


def _model_version(
    execution: str, model: str = "churn", status: VersionStatus = VersionStatus.READY
) -> Callable[[int], ModelVersion]:
    return version_builder(model, execution, status=status, task="regression")


def _validate_upload(registry: Registry) -> None:
    accepted = _outcome(UploadStatus.ACCEPTED, "a", sha256="abc")
    registry.register_dataset_version("churn", upload=accepted, build=_dataset_version)
    again = _outcome(UploadStatus.ACCEPTED, "b", sha256="abc")
    registry.register_dataset_version("churn", upload=again, build=_dataset_version)  # duplicate
    registry.record_upload(_outcome(UploadStatus.QUARANTINED, "c"))
    registry.record_upload(_outcome(UploadStatus.QUARANTINED, "d", dataset=UNDECLARED))


def _upload_failed(registry: Registry) -> None:
    registry.record_upload(_outcome(UploadStatus.ERROR, "e"))


def _ingest_labels(registry: Registry) -> None:
    counts = {(1, "2026-01-01"): regression_counts(np.ones(3), np.zeros(3))}
    registry.record_labels(_outcome(UploadStatus.ACCEPTED, "l1", labels=True, rows=3), counts)
    registry.record_upload(_outcome(UploadStatus.QUARANTINED, "l2", labels=True))


def _register_model(registry: Registry) -> None:
    registry.register_model_version("churn", "run-2", _model_version("run-2"), promote=True, trigger="upload")
    registry.register_model_version("churn", "run-3", _model_version("run-3"), promote=False, trigger="drift")
    # A model's first version adds it to the models index.
    registry.register_model_version("fraud", "run-4", _model_version("run-4", "fraud"), promote=True, trigger="upload")


def _record_failure(registry: Registry) -> None:
    registry.record_run_failure("churn", "run-9", error="E", cause="c", trigger="upload", dataset_version=1)


def _drift_check(registry: Registry) -> None:
    previous = registry.monitor_state("churn")
    alert = Alert(id="churn-1", subject="drift", message="m", created_at="t")
    late = {"labels/churn/l1.csv#v1": {(1, "2026-01-02"): regression_counts(np.ones(2), np.zeros(2))}}
    registry.record_check(previous, previous.model_copy(), {"status": "drift"}, alert, late)
    for pending in registry.pending_alerts():
        registry.alert_sent(pending)


def _request_approval(registry: Registry) -> None:
    registry.request_approval("churn", 2, token="t", execution="run-p", deadline="2026-01-08T00:00:00Z")
    registry.reject("churn", 2, "no decision within 168 hours")  # the step's timeout


PATHS: dict[str, Callable[[Registry], None]] = {
    "validate_upload": _validate_upload,
    "upload_failed": _upload_failed,
    "ingest_labels": _ingest_labels,
    "register_model": _register_model,
    "record_failure": _record_failure,
    "drift_check": _drift_check,
    "request_approval": _request_approval,
}


@pytest.fixture
def table() -> RecordingTable:
    """A registry with a dataset, a champion (v1) and a monitoring state, set up without recording."""
    table = RecordingTable()
    setup = Registry(table, actor="setup")
    setup.declare_dataset(load_contract(CONTRACT))
    setup.register_model_version("churn", "run-1", _model_version("run-1"), promote=True, trigger="upload")
    pending = _model_version("run-p", status=VersionStatus.PENDING_APPROVAL)  # v2 waits for a person
    setup.register_model_version("churn", "run-p", pending, promote=False, trigger="upload")
    table.recording = True
    return table


@pytest.mark.parametrize("key", PATHS)
def test_the_registry_calls_of_a_function_need_exactly_its_grant(
    template: Template, table: RecordingTable, key: str
) -> None:
    events = InMemoryEventPublisher() if FUNCTIONS[key].grants.publish_events else None
    PATHS[key](Registry(table, actor=key, events=events))
    assert table.writes, key
    for action, partition_key in sorted(table.writes):
        assert allowed(template, key, action, partition_key), (key, action, partition_key)
    # and nothing granted goes unused: every pattern of the role is written by this path
    for action, patterns in registry_writes(template, key).items():
        for pattern in patterns:
            assert any(a == action and _string_like(pattern, pk) for a, pk in table.writes), (key, action, pattern)


def test_every_registry_writer_has_a_path_here() -> None:
    assert set(PATHS) == set(EXPECTED_WRITES) == {k for k, s in FUNCTIONS.items() if s.grants.registry_writes}


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"registry_table": Access.READ_WRITE, "audit_checkpoints": True}, "names the partitions"),
        ({"registry_table": Access.READ, "registry_writes": (RegistryItems.AUDIT,)}, "names the partitions"),
        (
            {"registry_table": Access.READ_WRITE, "registry_writes": (RegistryItems.MODEL,), "audit_checkpoints": True},
            "audit chain",
        ),
        ({"registry_table": Access.READ, "registry_deletes": (RegistryItems.OUTBOX,)}, "only a registry writer"),
        ({"registry_table": Access.READ_WRITE, "registry_writes": (RegistryItems.AUDIT,)}, "checkpoint"),
    ],
)
def test_a_grant_that_writes_the_registry_must_say_where(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Grants(**fields)
