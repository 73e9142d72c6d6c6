"""Lineage on demand: finding a request's capture lines by a bounded, newest-first search, walking from the version
that answered to its run, data, contract, code and audit trail, and which version served when."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import pytest

from infra.local.seed import register_model
from loopml_core import lineage
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.table import InMemoryTable
from loopml_core.capture import columnar_capture_lines
from loopml_core.contract import load_contract
from loopml_core.lineage import (
    find_request,
    parse_time,
    scan_capture_batch,
    search_windows,
    serving_at,
    serving_history,
    trace,
)
from loopml_core.models import AuditRecord
from loopml_core.registry import Registry

BUCKET = "artifacts"
NOW = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)  # a Tuesday
CONTRACT = load_contract(
    """
name: churn
task: classification
target: churned
target_values: ["no", "yes"]
features:
  - {name: tenure, type: int}
  - {name: plan, type: category, values: [basic, pro]}
monitoring: {sample_rate: 0.25, retention_days: 7}
"""
)


class CountingStore(InMemoryObjectStore):
    """The in-memory bucket, counting what a search lists and opens."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []
        self.listed: list[str] = []

    def open(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
        self.opened.append(key)
        return super().open(bucket, key, version_id)

    def list_keys(self, bucket: str, prefix: str, start_after: str | None = None) -> list[str]:
        self.listed.append(prefix)
        return super().list_keys(bucket, prefix, start_after)


def line(request_id: str, version: int = 1, records: int = 2, shadow: bool = False, at: str = "") -> bytes:
    [one] = columnar_capture_lines(
        model="churn",
        version=version,
        retention="7d",
        request_id=request_id,
        at=at or "2026-11-24T10:00:00.000000Z",
        features={"tenure": list(range(records)), "plan": ["pro"] * records},
        prediction=["yes"] * records,
        classes=["no", "yes"],
        probabilities=[[0.2, 0.8]] * records,
        shadow=shadow,
    )
    return one


def put_batch(store: InMemoryObjectStore, hour: datetime, minute: int, lines: list[bytes]) -> str:
    key = (
        f"captures/7d/churn/{hour:%Y/%m/%d/%H}/loopml-captures-1-{hour:%Y-%m-%d-%H}-{minute:02d}-00-"
        f"{minute:08d}-0000-0000-0000-000000000000.gz"
    )
    store.put(BUCKET, key, gzip.compress(b"".join(one + b"\n" for one in lines)))
    return key


def filler(count: int, tag: str) -> list[bytes]:
    return [line(f"{tag}-{i:06d}") for i in range(count)]


# -- scanning one batch ---------------------------------------------------------------------------------------------


def test_a_batch_yields_only_the_lines_of_the_request_asked_for():
    # Given a batch where another request's feature value is the request id asked for, and a prefix of it
    decoy = line("other").replace(b'"plan":["pro","pro"]', b'"plan":["req-42","pro"]')
    body = gzip.compress(b"\n".join([*filler(50, "a"), decoy, line("req-42"), line("req-4"), *filler(50, "b")]))
    # When it is scanned for req-42
    found, scanned = scan_capture_batch(io.BytesIO(body), "req-42")
    # Then only the request's own line is returned, and every decompressed byte was scanned
    assert [f["request_id"] for f in found] == ["req-42"]
    assert scanned == len(gzip.decompress(body))


def test_lines_longer_than_a_block_and_cut_by_blocks_are_found_whole(monkeypatch):
    # Given blocks far smaller than the lines, so every line straddles blocks
    monkeypatch.setattr(lineage, "SCAN_BLOCK_BYTES", 64)
    lines = [*filler(5, "x"), line("wide", records=300), line("wide", records=1), *filler(5, "y")]
    body = gzip.compress(b"\n".join(lines))  # and no newline after the last line
    # When scanned
    found, _ = scan_capture_batch(io.BytesIO(body), "wide")
    # Then both lines of the request come back, parsed whole
    assert [f["n"] for f in found] == [300, 1]
    last, _ = scan_capture_batch(io.BytesIO(body), "y-000004")
    assert [f["request_id"] for f in last] == ["y-000004"]


# -- the bounded search ---------------------------------------------------------------------------------------------


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def window(days: int = 7) -> dict[str, tuple[datetime, datetime]]:
    return {"churn": (NOW - timedelta(days=days), NOW)}


def test_the_search_reads_newest_first_and_stops_after_the_batches_holding_the_request(store):
    # Given ten hours of batches; the request answered in one, scored in shadow in the next (newer) one
    hours = [NOW.replace(minute=0) - timedelta(hours=h) for h in range(10)]
    keys = {h: put_batch(store, hour, 5, filler(20, f"h{h}")) for h, hour in enumerate(hours)}
    answered = put_batch(store, hours[4], 40, [line("wanted", version=1), *filler(5, "c")])
    shadowed = put_batch(store, hours[3], 1, [*filler(3, "d"), line("wanted", version=2, shadow=True)])
    # When it is looked for
    search = find_request(store, BUCKET, "wanted", window())
    # Then both lines are found: the answer first, the shadow scoring apart
    assert [(f.version, f.shadow) for f in search.lines] == [(1, False), (2, True)]
    assert search.lines[0].key == answered and search.lines[1].key == shadowed
    # And only the batches newer than the hit, the two holding it and one older were read
    assert store.opened == [keys[0], keys[1], keys[2], keys[3], shadowed, answered, keys[4]]
    assert search.objects_read == 7 and search.bytes_read > 0
    # And only today's prefixes were listed (one per retention class): the hit was today
    assert len(store.listed) == 5 and all("/2026/11/24/" in p for p in store.listed)


def test_once_found_no_older_day_is_listed_unless_the_hit_is_in_the_first_hour(store):
    # Given the request in the only batch of today's noon hour, and batches of other requests days before
    for back in range(1, 4):
        put_batch(store, NOW.replace(minute=0) - timedelta(days=back), 5, filler(2, f"d{back}"))
    put_batch(store, NOW.replace(minute=0), 5, [line("noon")])
    # When it is found
    search = find_request(store, BUCKET, "noon", window())
    # Then nothing older than today was listed or read
    assert search.found and len(store.listed) == 5 and store.opened == [search.lines[0].key]
    # And a request found in the first hour of a day reads on into the last hour of the day before, no further
    store.listed.clear()
    midnight = NOW.replace(hour=0, minute=0)
    late = put_batch(store, midnight - timedelta(hours=1), 58, [line("midnight", version=1)])
    early = put_batch(store, midnight, 1, [line("midnight", version=2, shadow=True)])
    store.opened.clear()
    found = find_request(store, BUCKET, "midnight", {"churn": (NOW - timedelta(days=7), midnight + timedelta(hours=1))})
    assert {f.key for f in found.lines} == {late, early} and len(store.listed) == 10
    assert len(store.opened) == 2  # yesterday's noon batch is more than an hour older than the hit: not read


def test_a_request_not_found_names_the_window_and_sampling(store):
    # Given batches of other requests over two days
    put_batch(store, NOW.replace(minute=0), 5, filler(3, "today"))
    put_batch(store, NOW.replace(minute=0) - timedelta(days=1), 5, filler(3, "yesterday"))
    # When a request that is in none of them is looked for, with the model sampling a quarter of its requests
    search = find_request(store, BUCKET, "missing", window(2), {"churn": 0.25})
    # Then every batch of the window was read, and the answer says where and why it may be missing
    assert not search.found and search.objects_read == 2
    reason = search.not_found_reason()
    assert "missing" in reason and "2 capture batches" in reason and "churn from 2026-11-22T12:30:00+00:00" in reason
    assert "may not have been sampled" in reason and "25%" in reason
    # And three days were listed per retention class, never more
    assert len(store.listed) == 3 * 5


def test_batches_before_the_window_are_neither_listed_nor_read(store):
    # Given the request captured three days ago, and a window of the last day
    put_batch(store, NOW.replace(minute=0) - timedelta(days=3), 5, [line("old")])
    put_batch(store, NOW.replace(minute=0) - timedelta(hours=30), 5, filler(2, "f"))  # yesterday, before the window
    # When it is looked for since a day ago
    search = find_request(store, BUCKET, "old", {"churn": (NOW - timedelta(hours=24), NOW)})
    # Then it is not found, and nothing older than the window's first hour was read
    assert not search.found and store.opened == []
    assert not any("/11/21/" in p for p in store.listed)
    # When the window reaches back far enough
    assert find_request(store, BUCKET, "old", window(4)).found


def test_an_unreadable_batch_is_reported_and_skipped(store):
    hour = NOW.replace(minute=0)
    put_batch(store, hour, 1, [line("there")])
    store.put(BUCKET, f"captures/7d/churn/{hour:%Y/%m/%d/%H}/loopml-captures-1-zz.gz", b"not gzip")
    search = find_request(store, BUCKET, "there", window())
    assert search.found and len(search.unreadable) == 1 and "zz.gz" in search.unreadable[0]


def test_the_default_window_is_the_models_capture_retention():
    registry = Registry(InMemoryTable())
    registry.declare_dataset(CONTRACT)
    windows, rates = search_windows(registry, ["churn", "undeclared"], until=NOW)
    assert windows["churn"] == (NOW - timedelta(days=7), NOW) and rates == {"churn": 0.25}
    assert windows["undeclared"][0] == NOW - timedelta(days=365)


# -- the whole walk, on the in-memory registry ------------------------------------------------------------------------


def test_trace_walks_from_the_request_to_run_data_contract_code_and_audit(store):
    # Given v1 champion, v2 deployed in shadow, and a request v1 answered and v2 scored
    registry = Registry(InMemoryTable(), actor="cli:alice")
    registry.declare_dataset(CONTRACT)
    register_model(registry, store, BUCKET, "churn", b"onnx-1", promote=True, dataset_rows=500)
    register_model(registry, store, BUCKET, "churn", b"onnx-2", promote=False, dataset_rows=800)
    registry.deploy("churn", 2, "shadow", reason="watch v2")
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    put_batch(store, hour, 59, [line("r-1", version=1, at=at), line("r-1", version=2, shadow=True, at=at)])
    registry.promote("churn", reason="v2 is better")
    # When the request is traced
    found = trace(registry, store, BUCKET, "r-1")
    # Then v1 answered and v2 shadowed, each with its own lineage
    assert [(f.version, f.shadow) for f in found.search.lines] == [(1, False), (2, True)]
    first, second = found.lineages[("churn", 1)], found.lineages[("churn", 2)]
    assert first.version is not None and first.version.execution == "run-1" and first.version.code_version == "dev"
    assert first.run is not None and first.run.execution == "run-1" and first.run.status.value == "SUCCEEDED"
    assert first.dataset is not None and first.dataset.version == 1 and first.dataset.rows == 500
    assert second.dataset is not None and second.dataset.version == 2 and second.dataset.rows == 800
    assert first.contract_version == 1 and first.contract_fingerprint == CONTRACT.fingerprint()
    assert first.dataset_registered_by is not None and first.dataset_registered_by.actor == "cli:alice"
    # And v2's audit names its deployment and promotion, with actor and reason; v1's its first promotion
    assert [r.action for r in lineage.promotions(second.audit)] == [
        "model.deployment.started",
        "model.alias.moved",
        "model.deployment.promoted",
    ]
    assert {r.actor for r in second.audit} == {"cli:alice"}
    assert [r.details.get("to") for r in lineage.promotions(first.audit)][:1] == [1]
    # And what served when the request came: v1 champion, v2 in shadow (v2's promotion came after)
    assert first.serving_then is not None and first.serving_then.champion == 1
    assert first.serving_then.challenger == 2 and first.serving_then.mode == "shadow"
    document = found.to_dict()
    assert document["answered"][0]["lineage"]["dataset"]["sha256"] == first.dataset.sha256
    assert document["shadow"][0]["capture"]["version"] == 2 and document["not_found"] is None


def test_records_of_actions_added_later_about_a_version_are_part_of_its_lineage(store):
    # Given a version whose status an approver changed (an action the lineage code does not name)
    registry = Registry(InMemoryTable(), actor="approver")
    registry.declare_dataset(CONTRACT)
    register_model(registry, store, BUCKET, "churn", b"onnx-1", promote=False)
    registry.transition_version("churn", 1, "ARCHIVED", "retired")
    # When its lineage is walked
    walked = lineage.version_lineage(registry, "churn", 1)
    # Then the status change is among the promotions and approvals, with its actor and reason
    [status] = lineage.promotions(walked.audit)
    assert status.action == "model.version.status" and status.actor == "approver"
    assert status.details["reason"] == "retired"


# -- which version served when --------------------------------------------------------------------------------------


def record(seq: int, at: str, action: str, alias: str, **details: object) -> AuditRecord:
    return AuditRecord(
        seq=seq,
        at=at,
        actor=f"user{seq}",
        action=action,
        subject=f"model/churn/alias/{alias}",
        details=details,
        prev_hash="0",
        hash="0",
    )


HISTORY = [
    record(1, "2026-11-10T09:00:00.000000Z", "model.alias.moved", "champion", to=1, reason="first model"),
    record(
        2,
        "2026-11-16T08:00:00.000000Z",
        "model.deployment.started",
        "challenger",
        version=2,
        mode="canary",
        weight=10,
        champion=1,
        reason="try v2",
    ),
    record(
        3,
        "2026-11-17T13:00:00.000000Z",
        "model.deployment.changed",
        "challenger",
        version=2,
        to={"mode": "canary", "weight": 50},
        champion=1,
        reason="ramp",
    ),
    record(4, "2026-11-17T15:00:00.000000Z", "model.alias.moved", "champion", **{"from": 1, "to": 2}, reason="v2 wins"),
    record(
        5,
        "2026-11-17T15:00:00.000100Z",
        "model.deployment.promoted",
        "challenger",
        version=2,
        mode="canary",
        weight=50,
        champion=1,
        reason="v2 wins",
    ),
    record(
        6, "2026-11-20T10:00:00.000000Z", "model.alias.moved", "champion", **{"from": 2, "to": 1}, reason="rollback"
    ),
    AuditRecord(
        seq=7,
        at="2026-11-21T00:00:00Z",
        actor="x",
        action="model.alias.moved",
        subject="model/other/alias/champion",
        details={"to": 9},
        prev_hash="0",
        hash="0",
    ),
]


def test_history_lists_every_champion_move_and_deployment_change_of_the_model():
    changes = serving_history(HISTORY, "churn")
    assert [c.describe() for c in changes] == [
        "champion none -> v1",
        "challenger v2 started: canary 10%",
        "challenger v2 changed: canary 50%",
        "champion v1 -> v2",
        "challenger v2 promoted (canary 50%)",
        "champion v2 -> v1",
    ]
    assert [c.actor for c in changes] == [f"user{i}" for i in range(1, 7)]
    assert changes[-1].reason == "rollback"


@pytest.mark.parametrize(
    ("instant", "champion", "challenger"),
    [
        ("2026-11-01T00:00:00Z", None, None),  # before anything served
        ("2026-11-10T09:00:00Z", 1, None),  # the very instant of the first promotion
        ("2026-11-17T14:05:00Z", 1, (2, "canary", 50)),  # 14:05 last Tuesday: the ramped canary
        ("2026-11-17T12:59:59Z", 1, (2, "canary", 10)),
        ("2026-11-18T00:00:00Z", 2, None),
        ("2026-11-24T12:00:00Z", 1, None),  # after the rollback
    ],
)
def test_the_version_serving_at_an_instant(instant, champion, challenger):
    state = serving_at(serving_history(HISTORY, "churn"), parse_time(instant))
    assert state.champion == champion
    assert (None if state.challenger is None else (state.challenger, state.mode, state.weight)) == challenger


def test_serving_at_names_the_change_that_put_the_champion_there():
    state = serving_at(serving_history(HISTORY, "churn"), parse_time("last tuesday 14:05", NOW))
    assert state.champion_change is not None and state.champion_change.actor == "user1"
    assert "champion v1" in state.describe() and "challenger v2 canary 50%" in state.describe()
    assert "no version" in serving_at([], NOW).describe()


# -- times people type ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-17T14:05", datetime(2026, 11, 17, 14, 5, tzinfo=UTC)),
        ("2026-11-17 14:05:00+01:00", datetime(2026, 11, 17, 13, 5, tzinfo=UTC)),
        ("2026-11-17T14:05:00Z", datetime(2026, 11, 17, 14, 5, tzinfo=UTC)),
        ("2026-11-17", datetime(2026, 11, 17, tzinfo=UTC)),
        ("now", NOW),
        ("90m", NOW - timedelta(minutes=90)),
        ("2h ago", NOW - timedelta(hours=2)),
        ("3d", NOW - timedelta(days=3)),
        ("1w", NOW - timedelta(weeks=1)),
        ("today 09:30", datetime(2026, 11, 24, 9, 30, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 23, tzinfo=UTC)),
        ("last tuesday 14:05", datetime(2026, 11, 17, 14, 5, tzinfo=UTC)),  # today is a Tuesday: a week ago
        ("Tuesday 14:05", datetime(2026, 11, 17, 14, 5, tzinfo=UTC)),
        ("monday", datetime(2026, 11, 23, tzinfo=UTC)),
        ("last wednesday 7:00:30", datetime(2026, 11, 18, 7, 0, 30, tzinfo=UTC)),
    ],
)
def test_times_are_read_in_utc(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["last week", "14:05 tuesday", "soon"])
def test_an_unreadable_time_says_which_forms_are_accepted(text):
    with pytest.raises(ValueError, match="ISO date or time"):
        parse_time(text, NOW)


def test_an_impossible_time_of_day_is_refused():
    with pytest.raises(ValueError, match="not a time of day"):
        parse_time("yesterday 25:00", NOW)
