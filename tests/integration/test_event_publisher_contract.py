"""The EventBridge publisher and its fake take the same events; on moto, a rule on the default bus that matches
LoopML's source delivers exactly what was published (here to an SQS queue, as a user's CI/CD hook would be)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from loopml_core.adapters.events import (
    ALIAS_CHANGE,
    SOURCE,
    VERSION_STATE_CHANGE,
    EventBridgePublisher,
    InMemoryEventPublisher,
    RegistryEvent,
)

EVENTS = [
    RegistryEvent(
        VERSION_STATE_CHANGE, {"model": "churn", "version": n, "action": "model.version.approved", "audit_seq": n}
    )
    for n in range(1, 13)  # more than one PutEvents call takes
] + [RegistryEvent(ALIAS_CHANGE, {"model": "churn", "alias": "champion", "audit_seq": 13})]


@pytest.fixture
def moto_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


@pytest.fixture(params=["fake", "eventbridge"])
def publisher(request, moto_env):
    if request.param == "fake":
        return InMemoryEventPublisher()
    return EventBridgePublisher(client=boto3.client("events", region_name="us-east-1"))


def test_every_event_is_published(publisher):
    publisher.publish(EVENTS)
    if isinstance(publisher, InMemoryEventPublisher):
        assert publisher.published == EVENTS


def test_a_rule_on_the_default_bus_receives_each_event_with_its_detail(moto_env):
    events, sqs = boto3.client("events", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="ci-hook")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="loopml-changes", EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule="loopml-changes", Targets=[{"Id": "queue", "Arn": arn}])
    EventBridgePublisher(client=events).publish(EVENTS)
    received = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        received += [json.loads(m["Body"]) for m in messages]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    assert sorted(e["detail"]["audit_seq"] for e in received) == list(range(1, 14))
    assert {(e["source"], e["detail-type"]) for e in received} == {
        (SOURCE, VERSION_STATE_CHANGE),
        (SOURCE, ALIAS_CHANGE),
    }
