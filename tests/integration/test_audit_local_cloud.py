"""The deployed functions checkpoint the audit chain: on the local cloud, the real handlers (with the environment and
the audit bucket the declaration gives them) commit and checkpoint, and `loopml audit verify` finds a tail removed
behind a rewritten head."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from infra.cli.backend import Backend, upload_and_wait
from infra.cli.main import cli
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.registry import AUDIT_HEAD_SK, AUDIT_PK, Registry

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time


@pytest.fixture(scope="module")
def anchor(cloud) -> S3AuditAnchor:
    return S3AuditAnchor(cloud.names.audit_bucket, S3ObjectStore(cloud.client("s3")))


@pytest.fixture(scope="module")
def table(cloud) -> DynamoTable:
    return DynamoTable(cloud.names.registry_table, cloud.client("dynamodb"))


@pytest.fixture
def cli_backend(cloud, monkeypatch) -> None:
    backend = Backend("us-east-1", None, None, None, cloud.names)
    monkeypatch.setattr(Backend, "resolve", classmethod(lambda cls, *args, **kwargs: backend))


def _head(table: DynamoTable) -> tuple[int, str]:
    head = table.get(AUDIT_PK, AUDIT_HEAD_SK)
    assert head is not None
    return int(head["seq"]), str(head["hash"])


def test_functions_that_write_the_registry_checkpoint_each_commit(cloud, anchor, table, store):
    # validate_upload, through the bucket notification: an undeclared dataset's upload is quarantined and recorded.
    tags = upload_and_wait(store, cloud.names.data_bucket, "incoming/fraud/x.csv", b"a,b\n1,2\n")
    assert tags["loopml-status"] == "quarantined"
    seq, digest = _head(table)
    assert [(c.seq, c.hash) for c in anchor.checkpoints(seq, seq)] == [(seq, digest)]
    # record_failure, the pipeline's Catch target (its registry comes from the shared pipeline wiring).
    cloud.invoke(
        "record_failure",
        {"run": {"model": "churn", "dataset_version": 1}, "execution": "exec-1", "error": {"Error": "Boom"}},
    )
    seq_after, digest_after = _head(table)
    assert seq_after == seq + 1
    assert [(c.seq, c.hash) for c in anchor.checkpoints(seq + 1)] == [(seq_after, digest_after)]
    assert "audit checkpoint" not in cloud.log_path.read_text()  # no checkpoint failed
    verification = Registry(table, anchor=anchor).verify_audit()
    assert verification.ok and verification.warnings == [] and verification.anchored_to == seq_after


def test_audit_verify_names_a_tail_removed_behind_a_rewritten_head(cloud, anchor, table, cli_backend):
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    last, _ = _head(table)
    taken = anchor.checkpoints(last, last)[0].at
    # By hand, as someone with dynamodb:DeleteItem/PutItem on the table would: drop the last record, re-point HEAD.
    table.delete(AUDIT_PK, f"E#{last:012d}")
    previous = json.loads(str(table.get(AUDIT_PK, f"E#{last - 1:012d}")["doc"]))  # type: ignore[index]
    table.put_unconditionally({"pk": AUDIT_PK, "sk": AUDIT_HEAD_SK, "seq": last - 1, "hash": previous["hash"]})
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == [
        f"  - record {last} was removed: the chain ends at {last - 1} but checkpoint {last} exists (taken at {taken})"
    ]
