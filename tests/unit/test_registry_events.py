"""Model version and alias changes become EventBridge events: written to the outbox in the change's own transaction,
published after it, and delivered later when the bus was unreachable; other changes send none."""

from __future__ import annotations

import pytest
from test_approvals import _version

from loopml_core.adapters.events import ALIAS_CHANGE, VERSION_STATE_CHANGE, InMemoryEventPublisher
from loopml_core.adapters.table import InMemoryTable
from loopml_core.contract import load_contract
from loopml_core.models import VersionStatus
from loopml_core.registry import Registry


@pytest.fixture
def bus() -> InMemoryEventPublisher:
    return InMemoryEventPublisher()


@pytest.fixture
def registry(bus) -> Registry:
    registry = Registry(InMemoryTable(), actor="ana", events=bus)
    registry.declare_dataset(
        load_contract("name: churn\ntask: classification\ntarget: y\nfeatures: [{name: a, type: int}]")
    )
    return registry


def test_a_registration_that_promotes_sends_a_version_and_an_alias_event(registry, bus):
    registry.register_model_version("churn", "run-1", _version("run-1", VersionStatus.READY), promote=True, trigger="t")
    registered, moved = bus.published
    assert (registered.detail_type, registered.detail["model"], registered.detail["version"]) == (
        VERSION_STATE_CHANGE,
        "churn",
        1,
    )
    assert registered.detail["action"] == "model.version.registered" and registered.detail["actor"] == "ana"
    assert (moved.detail_type, moved.detail["alias"], moved.detail["details"]["to"]) == (ALIAS_CHANGE, "champion", 1)
    assert [e.detail["audit_seq"] for e in bus.published] == [r.seq for r in registry.audit_records()[-2:]]
    assert registry.pending_events() == []  # published: nothing waits in the outbox


def test_approval_archive_deploy_and_user_aliases_each_send_their_event(registry, bus):
    registry.register_model_version("churn", "run-1", _version("run-1", VersionStatus.READY), promote=True, trigger="t")
    registry.register_model_version(
        "churn",
        "run-2",
        _version("run-2", VersionStatus.PENDING_APPROVAL, champion_version=1),
        promote=False,
        trigger="t",
    )
    registry.approve("churn", 2, "ok")
    registry.set_alias("churn", "staging", 1)
    registry.set_model_tag("churn", "team", "risk")  # not a version or alias change: no event
    actions = [(e.detail_type, e.detail["action"]) for e in bus.published[2:]]
    assert actions == [
        (VERSION_STATE_CHANGE, "model.version.registered"),
        (VERSION_STATE_CHANGE, "model.version.approved"),
        (ALIAS_CHANGE, "model.alias.moved"),
        (ALIAS_CHANGE, "model.alias.set"),
    ]


def test_events_the_bus_refused_wait_in_the_outbox_and_are_delivered_later(registry, bus):
    bus.fail = True
    version, _ = registry.register_model_version(
        "churn", "run-1", _version("run-1", VersionStatus.READY), promote=True, trigger="t"
    )
    assert registry.champion("churn").version == version.version  # the change stands
    assert [e.detail["action"] for e in registry.pending_events()] == ["model.version.registered", "model.alias.moved"]
    bus.fail = False
    assert registry.deliver_events() == 2 and registry.pending_events() == []
    assert [e.detail["action"] for e in bus.published] == ["model.version.registered", "model.alias.moved"]
    assert registry.deliver_events() == 0


def test_a_registry_without_a_bus_writes_no_outbox():
    registry = Registry(InMemoryTable(), actor="ana")
    registry.declare_dataset(
        load_contract("name: churn\ntask: classification\ntarget: y\nfeatures: [{name: a, type: int}]")
    )
    registry.register_model_version("churn", "run-1", _version("run-1", VersionStatus.READY), promote=True, trigger="t")
    assert registry.pending_events() == []
