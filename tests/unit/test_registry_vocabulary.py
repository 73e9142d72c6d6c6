"""The registry speaks MLflow's language: registered models with a description and tags, versions with tags and a
status lifecycle, user-defined aliases, and a filtered, paginated search. Every change is one transaction with its
audit record; only a READY version may serve or carry an alias."""

from __future__ import annotations

import pytest

from infra.local.seed import version_builder
from loopml_core.adapters.table import InMemoryTable
from loopml_core.contract import load_contract
from loopml_core.errors import NotFoundError
from loopml_core.model_search import FilterError, parse_filter, search
from loopml_core.models import RegisteredModel, VersionStatus
from loopml_core.registry import Registry

CONTRACT = """
name: {name}
task: classification
target: churned
features:
  - {{name: tenure_months, type: int, min: 0}}
"""


def _version(execution: str, model: str, status: VersionStatus = VersionStatus.READY):
    return version_builder(model, execution, status=status)


@pytest.fixture
def registry() -> Registry:
    """churn with v1 champion, v2 READY and v3 waiting for approval; fraud with v1 champion."""
    registry = Registry(InMemoryTable(), actor="ana")
    for name in ("churn", "fraud"):
        registry.declare_dataset(load_contract(CONTRACT.format(name=name)))
    registry.register_model_version("churn", "run-1", _version("run-1", "churn"), promote=True, trigger="upload")
    registry.register_model_version("churn", "run-2", _version("run-2", "churn"), promote=False, trigger="upload")
    pending = _version("run-3", "churn", VersionStatus.PENDING_APPROVAL)
    registry.register_model_version("churn", "run-3", pending, promote=False, trigger="upload")
    registry.register_model_version("fraud", "run-1", _version("run-1", "fraud"), promote=True, trigger="upload")
    return registry


def _last_audit(registry: Registry):
    return registry.audit_records()[-1]


def test_a_model_is_described_and_tagged_each_change_with_its_audit_record(registry):
    before = len(registry.audit_records())
    registry.describe_model("churn", "Who cancels next month")
    registry.set_model_tag("churn", "team", "risk")
    registry.set_model_tag("churn", "cost center", "42")
    registry.delete_model_tag("churn", "cost center")
    model = registry.registered_model("churn")
    assert (model.description, model.tags) == ("Who cancels next month", {"team": "risk"})
    assert model.created_at == "2026-01-01T00:00:00Z" and model.updated_at is not None
    actions = [(r.action, r.subject, r.actor) for r in registry.audit_records()[before:]]
    assert actions == [
        ("model.described", "model/churn", "ana"),
        ("model.tag.set", "model/churn", "ana"),
        ("model.tag.set", "model/churn", "ana"),
        ("model.tag.deleted", "model/churn", "ana"),
    ]
    assert registry.verify_audit().ok
    with pytest.raises(NotFoundError, match="no tag 'owner'"):
        registry.delete_model_tag("churn", "owner")
    with pytest.raises(NotFoundError, match="no model 'nope'"):
        registry.set_model_tag("nope", "team", "risk")
    with pytest.raises(ValueError, match="tag key"):
        registry.set_model_tag("churn", "bad\nkey", "x")


def test_a_version_is_tagged(registry):
    registry.set_version_tag("churn", 2, "validated_by", "qa")
    assert registry.model_version("churn", 2).tags == {"validated_by": "qa"}
    assert (_last_audit(registry).action, _last_audit(registry).subject) == ("model.version.tag.set", "model/churn/v2")
    registry.delete_version_tag("churn", 2, "validated_by")
    assert registry.model_version("churn", 2).tags == {}
    with pytest.raises(NotFoundError):
        registry.set_version_tag("churn", 9, "a", "b")


def test_the_lifecycle_allows_only_its_transitions_with_a_reason_in_the_audit(registry):
    archived = registry.transition_version("churn", 2, "ARCHIVED", "superseded")
    assert archived.status is VersionStatus.ARCHIVED and registry.model_version("churn", 2).status == "ARCHIVED"
    record = _last_audit(registry)
    assert (record.action, record.details) == (
        "model.version.status",
        {"from": "READY", "to": "ARCHIVED", "reason": "superseded"},
    )
    registry.transition_version("churn", 2, VersionStatus.READY, "needed again")
    registry.transition_version("churn", 3, VersionStatus.REJECTED, "worse on the segment that matters")
    with pytest.raises(ValueError, match="REJECTED; it can become none: it is final"):
        registry.transition_version("churn", 3, VersionStatus.READY, "changed my mind")
    with pytest.raises(ValueError, match="it can become ARCHIVED, not PENDING_APPROVAL"):
        registry.transition_version("churn", 2, VersionStatus.PENDING_APPROVAL, "")


def test_a_version_that_is_not_ready_never_serves(registry):
    with pytest.raises(ValueError, match="PENDING_APPROVAL: only a READY version may serve"):
        registry.deploy("churn", 3, "canary", 10)
    with pytest.raises(ValueError, match="only a READY version may serve"):
        registry.rollback("churn", 3)
    with pytest.raises(ValueError, match="only a READY version can have an alias"):
        registry.set_alias("churn", "staging", 3)
    assert registry.champion("churn").version == 1 and registry.deployment("churn") is None


def test_a_version_an_alias_names_cannot_be_archived(registry):
    with pytest.raises(ValueError, match="named by champion"):
        registry.transition_version("churn", 1, VersionStatus.ARCHIVED, "")
    registry.set_alias("churn", "staging", 2)
    with pytest.raises(ValueError, match="named by staging"):
        registry.transition_version("churn", 2, VersionStatus.ARCHIVED, "")


def test_user_aliases_are_set_moved_and_deleted_beside_the_champion(registry):
    registry.set_alias("churn", "staging", 2, "for the QA run")
    assert registry.aliases("churn") == {"champion": 1, "staging": 2}
    record = _last_audit(registry)
    assert (record.action, record.subject, record.details) == (
        "model.alias.set",
        "model/churn/alias/staging",
        {"from": None, "to": 2, "reason": "for the QA run"},
    )
    count = len(registry.audit_records())
    registry.set_alias("churn", "staging", 2)  # where it is already: nothing changes, nothing audited
    assert len(registry.audit_records()) == count
    registry.set_alias("churn", "staging", 1)
    assert registry.aliases("churn")["staging"] == 1 and _last_audit(registry).details["from"] == 2
    assert registry.delete_alias("churn", "staging") == 1
    assert registry.aliases("churn") == {"champion": 1}
    assert registry.serving_state("churn").champion == 1  # serving reads champion and challenger only
    with pytest.raises(ValueError, match="use `loopml models promote`"):
        registry.set_alias("churn", "champion", 2)
    with pytest.raises(ValueError, match="lower-case letter"):
        registry.set_alias("churn", "Staging!", 2)
    with pytest.raises(NotFoundError, match="no alias 'staging'"):
        registry.delete_alias("churn", "staging")
    assert registry.verify_audit().ok


def test_search_filters_by_name_description_and_tags_and_pages_in_name_order(registry):
    registry.set_model_tag("churn", "team", "risk")
    registry.set_model_tag("fraud", "team", "risk-ops")
    registry.describe_model("fraud", "Card fraud, scored per transaction")
    models = registry.registered_models()
    assert [m.name for m in search(models, "tag.team = 'risk'").models] == ["churn"]
    assert [m.name for m in search(models, "tag.team LIKE 'risk%'").models] == ["churn", "fraud"]
    assert [m.name for m in search(models, "tag.team != 'risk'").models] == ["fraud"]
    assert [m.name for m in search(models, "description ILIKE '%FRAUD%' and name = 'fraud'").models] == ["fraud"]
    assert [m.name for m in search(models, "tag.owner = 'x'").models] == []  # no such tag: no match, != included
    first = search(models, None, max_results=1)
    assert [m.name for m in first.models] == ["churn"] and first.next_page_token
    second = search(models, None, max_results=1, page_token=first.next_page_token)
    assert [m.name for m in second.models] == ["fraud"] and second.next_page_token is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tag.team = 'risk'", [("tag", "team", "=", "risk")]),
        ("tag.\"cost center\" = '4''2'", [("tag", "cost center", "=", "4'2")]),
        ("name not like 'a%' AND tag.x != ''", [("name", None, "NOT LIKE", "a%"), ("tag", "x", "!=", "")]),
    ],
)
def test_filters_read_mlflows_words(text, expected):
    assert [(c.field, c.tag, c.op, c.value) for c in parse_filter(text)] == expected


@pytest.mark.parametrize("text", ["team = 'risk'", "tag.team = risk", "tag.team > '1'", "name = 'a' OR name = 'b'"])
def test_a_filter_it_cannot_read_names_the_part(text):
    with pytest.raises(FilterError, match="cannot read"):
        parse_filter(text)


def test_like_matches_whole_values_with_percent_and_underscore():
    models = [RegisteredModel(name=n) for n in ("churn", "churn-v2", "xchurn")]
    assert [m.name for m in search(models, "name LIKE 'churn%'").models] == ["churn", "churn-v2"]
    assert [m.name for m in search(models, "name LIKE '_churn'").models] == ["xchurn"]
    with pytest.raises(FilterError, match="page token"):
        search(models, None, page_token="@@@")


def test_an_alias_never_lands_on_a_version_archived_while_it_was_being_set(registry):
    from loopml_core.errors import ConflictError

    other = Registry(registry.table, actor="bob")
    table_get = registry.table.get

    def archive_after_the_read(pk, sk):  # type: ignore[no-untyped-def]
        item = table_get(pk, sk)
        if sk == "V#00000002" and item is not None and '"status":"READY"' in str(item["doc"]):
            registry.table.get = table_get  # once
            other.transition_version("churn", 2, VersionStatus.ARCHIVED, "retired meanwhile")
        return item

    registry.table.get = archive_after_the_read
    with pytest.raises(ConflictError):
        registry.set_alias("churn", "staging", 2)
    assert "staging" not in registry.aliases("churn")
