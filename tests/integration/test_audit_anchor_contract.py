"""The audit anchor's contract, run against the in-memory fake and the S3 anchor on moto alike; then what only the S3
anchor promises: every checkpoint version locked as declared, in a bucket provisioned as the local cloud does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra import declaration as decl
from infra.local.cloud import provision_audit_bucket
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.audit_anchor import (
    CHECKPOINT_PREFIX,
    AuditAnchor,
    Checkpoint,
    InMemoryAuditAnchor,
    S3AuditAnchor,
    checkpoint_key,
    parse_checkpoint_key,
)

BUCKET = decl.Names("123456789012", "us-east-1").audit_bucket
H1, H2, H3 = "a" * 64, "b" * 64, "c" * 64
AT = "2026-11-24T17:00:00.000000Z"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        provision_audit_bucket(client, BUCKET)
        yield client


@pytest.fixture(params=["fake", "s3"])
def anchor(request) -> AuditAnchor:
    if request.param == "fake":
        return InMemoryAuditAnchor()
    return S3AuditAnchor(BUCKET, S3ObjectStore(request.getfixturevalue("s3")))


def test_no_checkpoint_yet(anchor):
    assert anchor.checkpoints() == []
    assert anchor.checkpoints(1, 5000) == []


def test_checkpoints_come_back_in_sequence_order_with_what_they_say(anchor):
    anchor.checkpoint(7, H2, AT)
    anchor.checkpoint(3, H1, AT)
    anchor.checkpoint(12, H3, "2026-11-24T18:00:00.000000Z")
    assert anchor.checkpoints() == [
        Checkpoint(3, H1, AT),
        Checkpoint(7, H2, AT),
        Checkpoint(12, H3, "2026-11-24T18:00:00.000000Z"),
    ]


def test_a_range_is_inclusive_and_may_be_open_ended(anchor):
    for seq in (1, 2, 3, 4, 5):
        anchor.checkpoint(seq, H1, AT)
    assert [c.seq for c in anchor.checkpoints(2, 4)] == [2, 3, 4]
    assert [c.seq for c in anchor.checkpoints(4)] == [4, 5]
    assert anchor.checkpoints(6) == []


def test_ranges_across_thousands_of_sequence_numbers(anchor):
    seqs = [1, 999, 1000, 1001, 1999, 2000, 2500, 10_000]
    for seq in seqs:
        anchor.checkpoint(seq, H1, AT)
    assert [c.seq for c in anchor.checkpoints(999, 2000)] == [999, 1000, 1001, 1999, 2000]
    assert [c.seq for c in anchor.checkpoints(1, 10_000)] == seqs  # wider than a few prefixes: one listing
    assert [c.seq for c in anchor.checkpoints(1000, 2499)] == [1000, 1001, 1999, 2000]
    assert [c.seq for c in anchor.checkpoints(2001, 10**11)] == [2500, 10_000]
    assert [c.seq for c in anchor.checkpoints(1001)] == [1001, 1999, 2000, 2500, 10_000]


def test_writing_the_same_checkpoint_again_is_harmless(anchor):
    anchor.checkpoint(4, H1, AT)
    anchor.checkpoint(4, H1, AT)
    assert anchor.checkpoints() == [Checkpoint(4, H1, AT)]


def test_another_hash_for_a_sequence_number_adds_a_checkpoint_and_replaces_none(anchor):
    """A forger with write access can add a checkpoint vouching for a rewritten record, but not remove the first."""
    anchor.checkpoint(4, H2, AT)
    anchor.checkpoint(4, H1, "2026-11-25T00:00:00.000000Z")
    assert anchor.checkpoints(4, 4) == [Checkpoint(4, H1, "2026-11-25T00:00:00.000000Z"), Checkpoint(4, H2, AT)]


def test_keys_name_everything_a_checkpoint_says():
    checkpoint = Checkpoint(42, H1, AT)
    key = checkpoint_key(checkpoint)
    assert key == f"{CHECKPOINT_PREFIX}000000000042/{H1}/{AT}.json"
    assert parse_checkpoint_key(key) == checkpoint
    for stray in (f"{CHECKPOINT_PREFIX}notes.txt", f"{CHECKPOINT_PREFIX}42/{H1}/{AT}.json", "elsewhere/x.json"):
        assert parse_checkpoint_key(stray) is None


# --- the S3 anchor: Object Lock as declared ---------------------------------------------------------------------


def test_every_checkpoint_version_is_locked_as_declared(s3):
    S3AuditAnchor(BUCKET, S3ObjectStore(s3)).checkpoint(1, H1, AT)
    key = checkpoint_key(Checkpoint(1, H1, AT))
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ObjectLockMode"] == decl.AUDIT_LOCK.mode.value
    expected_until = datetime.now(UTC) + timedelta(days=decl.AUDIT_LOCK.retention_days)
    assert abs(head["ObjectLockRetainUntilDate"] - expected_until) < timedelta(hours=1)
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"


def test_a_locked_checkpoint_version_cannot_be_deleted(s3):
    S3AuditAnchor(BUCKET, S3ObjectStore(s3)).checkpoint(1, H1, AT)
    key = checkpoint_key(Checkpoint(1, H1, AT))
    version = s3.head_object(Bucket=BUCKET, Key=key)["VersionId"]
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403  # AccessDenied
    assert s3.get_object(Bucket=BUCKET, Key=key, VersionId=version)["Body"].read()


def test_an_overwritten_checkpoint_object_keeps_its_first_version(s3):
    anchor = S3AuditAnchor(BUCKET, S3ObjectStore(s3))
    anchor.checkpoint(1, H1, AT)
    key = checkpoint_key(Checkpoint(1, H1, AT))
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"forged": true}')
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert len(versions) == 2
    assert anchor.checkpoints() == [Checkpoint(1, H1, AT)]  # what a checkpoint says is its key, not its body


def test_objects_that_are_not_checkpoints_are_ignored(s3):
    anchor = S3AuditAnchor(BUCKET, S3ObjectStore(s3))
    s3.put_object(Bucket=BUCKET, Key=f"{CHECKPOINT_PREFIX}README.txt", Body=b"hand-written")
    anchor.checkpoint(2, H1, AT)
    assert anchor.checkpoints() == [Checkpoint(2, H1, AT)]


def test_the_anchor_a_function_gets_is_the_one_its_environment_names():
    spec = decl.FUNCTIONS["register_model"]
    environment = decl.function_environment(decl.Names("123456789012", "us-east-1"), spec)
    assert S3AuditAnchor.from_env(environment).bucket == BUCKET
    predict = decl.function_environment(decl.Names("123456789012", "us-east-1"), decl.FUNCTIONS["predict"])
    assert S3AuditAnchor.if_granted(predict) is None
    with pytest.raises(RuntimeError, match="audit_checkpoints"):
        S3AuditAnchor.from_env(predict)
