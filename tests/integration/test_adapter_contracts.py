"""One contract per adapter, run against the in-memory fake and the AWS adapter on moto alike."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from loopml_core.adapters.notifier import InMemoryNotifier, SnsNotifier
from loopml_core.adapters.object_store import InMemoryObjectStore, S3ObjectStore
from loopml_core.adapters.pipeline import InMemoryPipelineRunner, StepFunctionsRunner
from loopml_core.adapters.table import Check, Delete, DynamoTable, InMemoryTable, Put
from loopml_core.errors import ConflictError, NotFoundError

BUCKET = "contract-bucket"


@pytest.fixture
def moto_env():
    with mock_aws():
        yield


@pytest.fixture(params=["fake", "s3"])
def store(request, moto_env):
    if request.param == "fake":
        return InMemoryObjectStore()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return S3ObjectStore(s3)


def test_store_keeps_every_version(store):
    first = store.put(BUCKET, "a/b.csv", b"one")
    second = store.put(BUCKET, "a/b.csv", b"two")
    assert first.version_id != second.version_id
    assert store.get(BUCKET, "a/b.csv") == b"two"
    assert store.get(BUCKET, "a/b.csv", first.version_id) == b"one"


def test_store_copy_leaves_the_source(store):
    original = store.put(BUCKET, "incoming/x.csv", b"data")
    copied = store.copy(BUCKET, "incoming/x.csv", BUCKET, "quarantine/x.csv", original.version_id)
    assert store.get(BUCKET, "incoming/x.csv") == b"data"
    assert store.get(BUCKET, copied.key, copied.version_id) == b"data"


def test_store_streams_an_object_version_in_pieces(store):
    body = bytes(range(256)) * 40_000  # 10 MB
    first = store.put(BUCKET, "incoming/big.csv", body)
    store.put(BUCKET, "incoming/big.csv", b"newer")
    assert store.size(BUCKET, "incoming/big.csv", first.version_id) == len(body)
    pieces = []
    with store.open(BUCKET, "incoming/big.csv", first.version_id) as stream:
        while piece := stream.read(1 << 20):
            assert len(piece) <= 1 << 20
            pieces.append(piece)
    assert b"".join(pieces) == body
    with pytest.raises(NotFoundError):
        store.size(BUCKET, "incoming/none.csv")


def test_store_reads_byte_ranges_of_an_object_version(store):
    body = bytes(range(256)) * 40_000
    first = store.put(BUCKET, "incoming/t.parquet", body)
    store.put(BUCKET, "incoming/t.parquet", b"newer")
    with store.open_random_access(BUCKET, "incoming/t.parquet", first.version_id) as handle:
        handle.seek(-8, 2)
        assert handle.read(8) == body[-8:]
        assert handle.read(8) == b""
        handle.seek(3_000_001)
        assert handle.read(5) == body[3_000_001:3_000_006]
        assert handle.tell() == 3_000_006
        handle.seek(0)
        assert handle.read(4) == body[:4]


def test_store_lists_in_key_order_after_a_cursor(store):
    for key in ["p/3", "p/1", "p/2", "q/1"]:
        store.put(BUCKET, key, b"x")
    assert store.list_keys(BUCKET, "p/") == ["p/1", "p/2", "p/3"]
    assert store.list_keys(BUCKET, "p/", start_after="p/1") == ["p/2", "p/3"]


def test_store_tags_belong_to_a_version(store):
    first = store.put(BUCKET, "k", b"1")
    store.tag(BUCKET, "k", {"loopml-status": "accepted"}, first.version_id)
    second = store.put(BUCKET, "k", b"2")
    assert store.tags(BUCKET, "k", first.version_id) == {"loopml-status": "accepted"}
    assert store.tags(BUCKET, "k", second.version_id) == {}


def test_store_missing_object_is_not_found(store):
    with pytest.raises(NotFoundError):
        store.get(BUCKET, "nothing-here")


def test_store_current_version_is_the_newest_write(store):
    assert store.current_version(BUCKET, "batch/m/input/f.csv") is None
    first = store.put(BUCKET, "batch/m/input/f.csv", b"1")
    assert store.current_version(BUCKET, "batch/m/input/f.csv") == first.version_id
    second = store.put(BUCKET, "batch/m/input/f.csv", b"2")
    copied = store.copy(BUCKET, "batch/m/input/f.csv", BUCKET, "batch/m/input/f.csv", first.version_id)
    assert store.current_version(BUCKET, "batch/m/input/f.csv") == copied.version_id
    assert copied.version_id not in (first.version_id, second.version_id)
    assert store.current_version(BUCKET, "batch/m/input/f") is None  # a key, not a prefix


def test_s3_current_version_of_a_deleted_key_is_none(moto_env):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    store = S3ObjectStore(s3)
    store.put(BUCKET, "k", b"1")
    s3.delete_object(Bucket=BUCKET, Key="k")  # its current version is now a delete marker
    assert store.current_version(BUCKET, "k") is None
    s3.create_bucket(Bucket="unversioned")
    store.put("unversioned", "k", b"1")
    assert store.current_version("unversioned", "k") == "null"


@pytest.fixture(params=["fake", "dynamodb"])
def table(request, moto_env):
    if request.param == "fake":
        return InMemoryTable()
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName="contract-table",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return DynamoTable("contract-table", client)


def test_table_round_trips_strings_and_integers(table):
    table.transact([Put({"pk": "A", "sk": "1", "name": "x", "count": 3})])
    assert table.get("A", "1") == {"pk": "A", "sk": "1", "name": "x", "count": 3}
    assert table.get("A", "2") is None


def test_table_transaction_is_all_or_nothing(table):
    table.transact([Put({"pk": "A", "sk": "1", "v": 1})])
    with pytest.raises(ConflictError):
        table.transact([Put({"pk": "A", "sk": "2", "v": 1}), Put({"pk": "A", "sk": "1", "v": 2}, if_absent=True)])
    assert table.get("A", "2") is None
    assert table.get("A", "1") == {"pk": "A", "sk": "1", "v": 1}


def test_table_if_equals_guards_against_lost_updates(table):
    table.transact([Put({"pk": "A", "sk": "head", "seq": 1})])
    table.transact([Put({"pk": "A", "sk": "head", "seq": 2}, if_equals={"seq": 1})])
    with pytest.raises(ConflictError):
        table.transact([Put({"pk": "A", "sk": "head", "seq": 3}, if_equals={"seq": 1})])
    assert table.get("A", "head")["seq"] == 2
    with pytest.raises(ConflictError):
        table.transact([Put({"pk": "A", "sk": "missing", "seq": 1}, if_equals={"seq": 0})])


def test_table_transaction_takes_at_most_a_hundred_writes(table):
    with pytest.raises((ValueError, ClientError)):
        table.transact([Put({"pk": "T", "sk": str(i)}) for i in range(101)])
    assert table.query("T") == []


def test_table_deletes_an_item_and_ignores_a_missing_one(table):
    table.transact([Put({"pk": "P", "sk": "a", "v": 1}), Put({"pk": "P", "sk": "b", "v": 2})])
    table.delete("P", "a")
    table.delete("P", "zz")
    assert table.get("P", "a") is None and [i["sk"] for i in table.query("P")] == ["b"]


def test_table_queries_by_prefix_in_order(table):
    table.transact([Put({"pk": "M", "sk": sk}) for sk in ["V#2", "V#1", "ALIAS#c", "V#3"]])
    table.transact([Put({"pk": "other", "sk": "V#1"})])
    assert [i["sk"] for i in table.query("M", "V#")] == ["V#1", "V#2", "V#3"]
    assert [i["sk"] for i in table.query("M", "V#", newest_first=True, limit=1)] == ["V#3"]
    assert [i["sk"] for i in table.query("M")] == ["ALIAS#c", "V#1", "V#2", "V#3"]


def test_table_queries_from_a_sort_key(table):
    table.transact([Put({"pk": "P", "sk": sk}) for sk in ["2026-01-30#a", "2026-02-01#b", "2026-02-01#a", "2026-03"]])
    assert [i["sk"] for i in table.query("P", sk_from="2026-02-01")] == ["2026-02-01#a", "2026-02-01#b", "2026-03"]
    assert [i["sk"] for i in table.query("P", sk_from="2026-02-01", newest_first=True, limit=1)] == ["2026-03"]
    with pytest.raises(ValueError, match="not both"):
        table.query("P", "2026", sk_from="2026-02-01")


def test_table_transaction_deletes_under_a_condition(table):
    table.transact([Put({"pk": "D", "sk": "alias", "revision": 1}), Put({"pk": "D", "sk": "other", "v": 1})])
    with pytest.raises(ConflictError):
        table.transact([Put({"pk": "D", "sk": "other", "v": 2}), Delete("D", "alias", {"revision": 2})])
    assert table.get("D", "alias") is not None and table.get("D", "other")["v"] == 1  # nothing applied
    table.transact([Put({"pk": "D", "sk": "other", "v": 2}), Delete("D", "alias", {"revision": 1})])
    assert table.get("D", "alias") is None and table.get("D", "other")["v"] == 2
    with pytest.raises(ConflictError):  # a conditional delete of a missing item fails, as DynamoDB's does
        table.transact([Delete("D", "alias", {"revision": 1})])


def test_table_check_guards_a_transaction_without_writing(table):
    table.transact([Put({"pk": "C", "sk": "champion", "version": 1, "doc": "x"})])
    with pytest.raises(ConflictError):
        table.transact([Put({"pk": "C", "sk": "challenger", "version": 3}), Check("C", "champion", {"version": 2})])
    assert table.get("C", "challenger") is None
    with pytest.raises(ConflictError):
        table.transact([Put({"pk": "C", "sk": "challenger", "version": 3}), Check("C", "missing", {"version": 1})])
    table.transact([Put({"pk": "C", "sk": "challenger", "version": 3}), Check("C", "champion", {"version": 1})])
    assert table.get("C", "challenger")["version"] == 3
    assert table.get("C", "champion") == {"pk": "C", "sk": "champion", "version": 1, "doc": "x"}  # untouched


def test_table_transaction_touches_each_item_once(table):
    with pytest.raises((ValueError, ClientError)):
        table.transact([Put({"pk": "O", "sk": "a", "v": 1}), Check("O", "a", {"v": 1})])
    assert table.get("O", "a") is None


def test_registry_deployments_on_the_table(table):
    """Deploy, ramp, serve, promote and roll back through the registry on either table."""
    from loopml_core.contract import load_contract
    from loopml_core.models import ModelVersion, ObjectRef
    from loopml_core.registry import Registry

    registry = Registry(table, actor="contract")
    registry.declare_dataset(
        load_contract("name: churn\ntask: classification\ntarget: y\nfeatures: [{name: x, type: float}]\n")
    )
    ref = ObjectRef(bucket="a", key="m", version_id="1")
    for run in ("r1", "r2", "r3"):
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
                metrics={},
                code_version="t",
                promoted=False,
                decision="t",
                created_at="t",
            ),
            promote=run == "r1",
            trigger="upload",
        )
    registry.deploy("churn", 2, "canary", 10)
    registry.deploy("churn", 2, "canary", 40)
    state = registry.serving_state("churn")
    assert (state.champion, state.deployment.version, state.deployment.weight) == (1, 2, 40)
    registry.promote("churn")
    assert registry.serving_state("churn").champion == 2 and registry.deployment("churn") is None
    registry.deploy("churn", 3, "shadow")
    assert registry.rollback("churn").ended.version == 3
    assert registry.serving_state("churn").deployment is None
    assert registry.verify_audit().ok


@pytest.fixture(params=["fake", "stepfunctions"])
def runner(request, moto_env):
    if request.param == "fake":
        return InMemoryPipelineRunner()
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    definition = {"StartAt": "Hold", "States": {"Hold": {"Type": "Pass", "End": True}}}
    arn = sfn.create_state_machine(
        name="contract", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    return StepFunctionsRunner(arn, sfn)  # moto without the interpreter keeps executions RUNNING


def test_runner_start_is_idempotent_per_name(runner):
    payload = {"run": {"model": "churn", "dataset_version": 1}}
    first = runner.start("churn-dv1-upload", payload)
    again = runner.start("churn-dv1-upload", payload)
    assert first.arn == again.arn
    assert [e.name for e in runner.executions()] == ["churn-dv1-upload"]
    assert runner.describe("churn-dv1-upload").input == payload


def test_runner_finds_running_executions_per_model(runner):
    runner.start("churn-a", {"run": {"model": "churn", "dataset_version": 1}})
    runner.start("fraud-a", {"run": {"model": "fraud", "dataset_version": 1}})
    assert [e.name for e in runner.running_for("churn")] == ["churn-a"]
    assert runner.running_for("nobody") == []


@pytest.fixture(params=["fake", "sns"])
def notifier_and_inbox(request, moto_env):
    if request.param == "fake":
        fake = InMemoryNotifier()
        return fake, lambda: [(a.subject, a.message) for a in fake.sent]
    sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def inbox():
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [(json.loads(m["Body"])["Subject"], json.loads(m["Body"])["Message"]) for m in messages]

    return SnsNotifier(topic, sns), inbox


def test_notifier_delivers_subject_and_message(notifier_and_inbox):
    notifier, inbox = notifier_and_inbox
    assert notifier.publish("drift: " + "x" * 200, "details")
    [(subject, message)] = inbox()
    assert subject.startswith("drift: ") and len(subject) == 100  # SNS caps subjects at 100 characters
    assert message == "details"
