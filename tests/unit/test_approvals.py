"""Approval before production: with `governance.approval: manual` a winning candidate is registered waiting, records
the task token its run waits on and alerts once; an approval makes it READY (and champion, when the champion is
still the one it beat) with the approver and reason audited; a rejection or a timeout makes it REJECTED."""

from __future__ import annotations

import pytest
from test_cards_register import CONTRACT, pipeline

from infra.local.seed import version_builder
from loopml_core.adapters.notifier import InMemoryNotifier
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.table import InMemoryTable
from loopml_core.contract import Approval, load_contract
from loopml_core.logic.approvals import Approvals
from loopml_core.models import VersionStatus
from loopml_core.registry import Registry

MANUAL = CONTRACT.model_copy(
    update={
        "governance": CONTRACT.governance.model_copy(update={"approval": Approval.MANUAL, "approval_timeout_hours": 2})
    }
)


def _version(execution: str, status: VersionStatus, promoted: bool = True, champion_version: int | None = None):
    return version_builder("churn", execution, status=status, promoted=promoted, champion_version=champion_version)


@pytest.fixture
def registry() -> Registry:
    registry = Registry(InMemoryTable(), actor="cli:arn:aws:sts::1:assumed-role/Approver/ana")
    registry.declare_dataset(
        load_contract("name: churn\ntask: classification\ntarget: y\nfeatures: [{name: a, type: int}]")
    )
    return registry


def _register(registry: Registry, execution: str, **kwargs):  # type: ignore[no-untyped-def]
    version, _ = registry.register_model_version(
        "churn", execution, _version(execution, VersionStatus.PENDING_APPROVAL, **kwargs), promote=False, trigger="t"
    )
    return version


def test_a_manual_contract_registers_the_winner_waiting_and_the_champion_unchanged():
    steps, run = pipeline(InMemoryObjectStore())
    steps.registry.declare_dataset(MANUAL)
    candidate = steps.train(run, "run-1")
    registered = steps.register(run, candidate, steps.evaluate(candidate))
    assert registered["status"] == "PENDING_APPROVAL" and registered["approval_timeout_s"] == 7200
    assert registered["promoted"] and "waits for approval" in registered["decision"]
    assert steps.registry.champion("churn") is None  # nothing serves before the approval


def test_the_first_request_alerts_once_and_a_retried_step_only_replaces_the_token(registry):
    _register(registry, "run-1")
    notifier = InMemoryNotifier()
    approvals = Approvals(registry, notifier)
    first = approvals.request("churn", 1, token="token-1", execution="run-1", timeout_s=3600)
    again = approvals.request("churn", 1, token="token-2", execution="run-1", timeout_s=3600)
    assert first["alerted"] and not again["alerted"]
    [alert] = notifier.sent
    assert alert.subject == "LoopML approval needed: churn v1"
    assert 'loopml models approve churn 1 --reason "..."' in alert.message and "card.html" in alert.message
    assert registry.approval_request("churn", 1).token == "token-2"
    assert [r.action for r in registry.audit_records()].count("model.version.approval.requested") == 1


def test_an_approval_makes_the_first_model_ready_and_champion_naming_the_approver(registry):
    _register(registry, "run-1")
    registry.request_approval("churn", 1, token="t", execution="run-1", deadline="2026-01-08T00:00:00Z")
    decision = registry.approve("churn", 1, "card reviewed")
    assert decision.champion and decision.version.status is VersionStatus.READY and decision.request.token == "t"
    assert registry.champion("churn").version == 1 and registry.approval_request("churn", 1) is None
    approved, moved = registry.audit_records()[-2:]
    assert (approved.action, approved.actor, approved.details["reason"]) == (
        "model.version.approved",
        "cli:arn:aws:sts::1:assumed-role/Approver/ana",
        "card reviewed",
    )
    assert (moved.action, moved.details["to"]) == ("model.alias.moved", 1)
    with pytest.raises(ValueError, match="READY: only a PENDING_APPROVAL version is decided on"):
        registry.reject("churn", 1, "too late")


def test_an_approval_after_the_champion_moved_leaves_the_candidate_beside_it(registry):
    registry.register_model_version("churn", "run-1", _version("run-1", VersionStatus.READY), promote=True, trigger="t")
    _register(registry, "run-2", champion_version=1)  # judged against v1
    registry.register_model_version(
        "churn", "run-3", _version("run-3", VersionStatus.READY), promote=False, trigger="t"
    )
    registry.rollback("churn", 3)  # the champion moved meanwhile
    decision = registry.approve("churn", 2, "ok")
    assert decision.version.status is VersionStatus.READY and not decision.champion
    assert "judged against v1 and the champion is v3 now" in decision.note
    assert registry.champion("churn").version == 3


def test_a_rejection_is_final_and_a_timeout_rejects_only_an_undecided_version(registry):
    _register(registry, "run-1")
    _register(registry, "run-2")
    notifier = InMemoryNotifier()
    approvals = Approvals(registry, notifier)
    assert registry.reject("churn", 1, "recall too low").version.status is VersionStatus.REJECTED
    assert approvals.time_out("churn", 1, 7200) == {
        "model": "churn",
        "version": 1,
        "status": "REJECTED",
        "rejected": False,
    }
    timed_out = approvals.time_out("churn", 2, 7200)
    assert timed_out["rejected"] and registry.model_version("churn", 2).status is VersionStatus.REJECTED
    assert registry.audit_records()[-1].details["reason"] == "no decision within 2 hours"
    assert [a.subject for a in notifier.sent] == ["LoopML approval timed out: churn v2"]
    with pytest.raises(ValueError, match="only a READY version may serve"):
        registry.rollback("churn", 2)
