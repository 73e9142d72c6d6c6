"""Tampering with the audit trail, on moto: the registry table and the audit bucket as the local cloud provisions them
(the bucket under Object Lock), the registry checkpointing every commit. Each tamper is done by hand, as someone with
write access to the table (and, for the forged checkpoint, `s3:PutObject` on the bucket) would, and must be named by
`verify_audit` and by `loopml audit verify`."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from infra import declaration as decl
from infra.cli.backend import Backend
from infra.cli.main import cli
from infra.local.cloud import provision_audit_bucket
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.registry import AUDIT_HEAD_SK, AUDIT_PK, Event, Registry, audit_hash

NAMES = decl.Names("123456789012", "us-east-1")


@dataclass
class World:
    registry: Registry
    table: DynamoTable
    anchor: S3AuditAnchor
    s3: object

    def commit(self, *subjects: str) -> int:
        """One commit with a record per subject; returns the new head's sequence number."""
        records = self.registry._commit([], [Event("test.event", subject) for subject in subjects])
        return records[-1].seq

    def record(self, seq: int) -> dict:
        item = self.table.get(AUDIT_PK, f"E#{seq:012d}")
        assert item is not None
        return json.loads(str(item["doc"]))

    def truncate(self, keep: int) -> None:
        """Delete every record after `keep`, leaving the HEAD item as it was."""
        for item in self.table.query(AUDIT_PK, "E#"):
            if int(json.loads(str(item["doc"]))["seq"]) > keep:
                self.table.delete(AUDIT_PK, str(item["sk"]))

    def rewrite_head(self, seq: int) -> None:
        """Point the HEAD item at record `seq`, as a careful forger would after truncating."""
        self.table.put_unconditionally(
            {"pk": AUDIT_PK, "sk": AUDIT_HEAD_SK, "seq": seq, "hash": self.record(seq)["hash"]}
        )

    def overwrite(self, seq: int, /, **changes: object) -> dict:
        item = self.table.get(AUDIT_PK, f"E#{seq:012d}")
        assert item is not None
        doc = {**json.loads(str(item["doc"])), **changes}
        self.table.put_unconditionally({**item, "doc": json.dumps(doc, sort_keys=True, separators=(",", ":"))})
        return doc


def _create_registry_table(name: str) -> None:
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def world(monkeypatch) -> Iterator[World]:
    """Six commits (records 1..8: the third commit writes three records) on the table the CLI's backend opens."""
    with mock_aws():
        _create_registry_table(NAMES.registry_table)
        s3 = boto3.client("s3", region_name="us-east-1")
        provision_audit_bucket(s3, NAMES.audit_bucket)
        backend = Backend("us-east-1", None, None, None, NAMES)
        monkeypatch.setattr(Backend, "resolve", classmethod(lambda cls, *args, **kwargs: backend))
        registry = backend.registry  # the CLI's own registry: the table and the S3 anchor it verifies with
        assert isinstance(registry.table, DynamoTable) and isinstance(registry.anchor, S3AuditAnchor)
        world = World(registry, registry.table, registry.anchor, s3)
        for subjects in (["a"], ["b"], ["c", "d", "e"], ["f"], ["g"], ["h"]):
            world.commit(*subjects)
        yield world


def verify_cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["audit", "verify", *args])


def test_an_untouched_trail_is_intact_and_anchored_to_its_last_record(world):
    verification = world.registry.verify_audit()
    assert verification.ok and verification.checked == 8
    assert verification.problems == [] and verification.warnings == []
    assert verification.anchored_to == 8
    assert [c.seq for c in world.anchor.checkpoints()] == [1, 2, 5, 6, 7, 8]  # one per commit: its head
    result = verify_cli()
    assert result.exit_code == 0, result.output
    assert "audit trail intact: 8 records, anchored up to record 8" in result.output


def test_an_edited_record_is_named(world):
    world.overwrite(4, actor="mallory")
    problems = world.registry.verify_audit().problems
    assert problems == ["record 4 was altered: its content does not match its hash"]
    result = verify_cli()
    assert result.exit_code == 1
    assert "  - record 4 was altered: its content does not match its hash" in result.output


def test_a_checkpointed_record_rewritten_with_its_chain_recomputed_is_named(world):
    """A forger who edits record 6 and recomputes every hash after it (and the head) keeps the chain consistent:
    only the checkpoints of records 6, 7 and 8 taken at the time tell."""
    prev = world.record(5)["hash"]
    for seq in (6, 7, 8):
        doc = {**world.record(seq), "prev_hash": prev}
        if seq == 6:
            doc["details"] = {"forged": True}
        doc["hash"] = audit_hash(doc)
        world.overwrite(seq, **doc)
        prev = doc["hash"]
    world.rewrite_head(8)
    checkpoints = {c.seq: c for c in world.anchor.checkpoints()}
    problems = world.registry.verify_audit().problems
    assert problems == [f"record {n} differs from checkpoint {n} taken at {checkpoints[n].at}" for n in (6, 7, 8)]


def test_a_deleted_record_is_named(world):
    world.table.delete(AUDIT_PK, f"E#{6:012d}")
    taken = world.anchor.checkpoints(6, 6)[0].at
    problems = world.registry.verify_audit().problems
    assert "record 6 is missing (found 7 next)" in problems
    assert f"record 6 is missing but checkpoint 6 taken at {taken} anchors it" in problems
    assert "record 7 does not link to the record before it" in problems


def test_a_truncated_tail_is_named(world):
    world.truncate(keep=5)
    newest = world.anchor.checkpoints()[-1]
    problems = world.registry.verify_audit().problems
    assert problems == [
        "the chain ends at record 5 but the head says 8: records were removed",
        f"records 6..8 were removed: the chain ends at 5 but checkpoint 8 exists (taken at {newest.at})",
    ]


def test_a_truncated_tail_with_its_head_rewritten_is_named(world):
    world.truncate(keep=5)
    world.rewrite_head(5)
    # The hole this closes: the table alone is consistent again.
    assert Registry(world.table).verify_audit().ok
    newest = world.anchor.checkpoints()[-1]
    verification = world.registry.verify_audit()
    assert not verification.ok
    assert verification.problems == [
        f"records 6..8 were removed: the chain ends at 5 but checkpoint 8 exists (taken at {newest.at})"
    ]
    result = verify_cli()
    assert result.exit_code == 1
    assert f"  - records 6..8 were removed: the chain ends at 5 but checkpoint 8 exists (taken at {newest.at})" in (
        result.output
    )


def test_truncation_rewritten_head_and_a_forged_new_history_with_forged_checkpoints_is_named(world):
    """Someone with table writes and s3:PutObject truncates to 5, rewrites the head, appends a history of their own
    (checkpointed by an anchor of their own) and even overwrites the original checkpoint objects: the original
    checkpoints of 6..8 are still there, and still disagree."""
    originals = {c.seq: c for c in world.anchor.checkpoints()}
    world.truncate(keep=5)
    world.rewrite_head(5)
    forger = Registry(world.table, actor="loopml", anchor=S3AuditAnchor(NAMES.audit_bucket, S3ObjectStore(world.s3)))
    for subject in ("x", "y", "z", "w"):  # records 6..9, each checkpointed: a longer chain than the real one
        forger._commit([], [Event("test.event", subject)])
    for seq in (6, 7, 8):  # and new versions over the original checkpoint objects
        key = next(k for k in S3ObjectStore(world.s3).list_keys(NAMES.audit_bucket, f"audit/checkpoints/{seq:012d}/"))
        world.s3.put_object(Bucket=NAMES.audit_bucket, Key=key, Body=b'{"forged": true}')
    verification = world.registry.verify_audit()
    assert not verification.ok
    assert verification.problems == [
        f"record {n} differs from checkpoint {n} taken at {originals[n].at}" for n in (6, 7, 8)
    ]
    result = verify_cli("--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["problems"] == verification.problems


def test_a_failed_checkpoint_fails_no_commit_and_is_a_warning_not_tampering(world, caplog):
    unreachable = S3AuditAnchor("loopml-audit-no-such-bucket", S3ObjectStore(world.s3))
    registry = Registry(world.table, actor="test", anchor=unreachable)
    with caplog.at_level(logging.ERROR, logger="loopml_core.registry"):
        records = registry._commit([], [Event("test.event", "i"), Event("test.event", "j")])
    assert [r.seq for r in records] == [9, 10]
    assert world.record(10)["subject"] == "j"  # committed
    assert "audit checkpoint of record 10 failed" in caplog.text
    verification = world.registry.verify_audit()
    assert verification.ok and verification.problems == []
    assert verification.warnings == [
        "records 9..10 are not yet anchored (the newest checkpoint is record 8): a checkpoint failed, or is being "
        "written"
    ]
    result = verify_cli()
    assert result.exit_code == 0
    assert "warning: records 9..10 are not yet anchored" in result.output
    # The next commit that checkpoints anchors them too: its head's hash vouches for the chain before it.
    world.commit("k")
    verification = world.registry.verify_audit()
    assert verification.ok and verification.warnings == [] and verification.anchored_to == 11


def test_a_trail_without_any_checkpoint_is_unanchored_not_broken(world):
    registry = Registry(world.table, anchor=S3AuditAnchor("elsewhere", S3ObjectStore(world.s3)))
    world.s3.create_bucket(Bucket="elsewhere")
    verification = registry.verify_audit()
    assert verification.ok
    assert verification.warnings == [
        "records 1..8 are not yet anchored (there is no checkpoint yet): a checkpoint failed, or is being written"
    ]


def test_records_appended_while_verifying_are_not_taken_for_removed_ones(world):
    """A commit that lands between reading the chain and reading the checkpoints after it: its checkpoint is
    beyond the chain read, but its record is in the table."""
    anchor = world.anchor
    read_beyond = anchor.checkpoints

    def checkpoints_after_a_commit(from_seq=1, to_seq=None):  # type: ignore[no-untyped-def]
        if to_seq is None:
            world.commit("meanwhile")
        return read_beyond(from_seq, to_seq)

    anchor.checkpoints = checkpoints_after_a_commit  # type: ignore[method-assign]
    verification = world.registry.verify_audit()
    assert verification.ok and verification.problems == [] and verification.checked == 8
    assert world.record(9)["subject"] == "meanwhile"  # the commit did land while verifying, beyond what was read


def test_checkpoints_that_cannot_be_read_never_pass_for_intact(world):
    registry = Registry(world.table, anchor=S3AuditAnchor("loopml-audit-deleted", S3ObjectStore(world.s3)))
    verification = registry.verify_audit()
    assert not verification.ok and verification.warnings == []
    assert len(verification.problems) == 1
    assert verification.problems[0].startswith(
        "the audit checkpoints could not be read, so the chain was not compared with them: "
    )
    assert "NoSuchBucket" in verification.problems[0]
