"""`loopml keys` on the in-memory keys, quota parsing and periods, and the local gateway's key check and limits
(token bucket, quota per period) with a clock the tests move: no network, no sleeping."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import click
import pytest
from click.testing import CliRunner

from infra.cli.keys import keys
from infra.cli.main import LoopMLGroup
from infra.declaration import API, KeyLimits
from infra.keys import InMemoryKeys, parse_quota, quota_window, usage_from_record, usage_record
from infra.local.api_gateway import MISS_RELOAD_SECONDS, KeyEnforcer

# 2026-03-04 is a Wednesday.
WEDNESDAY_NOON = datetime(2026, 3, 4, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Backend:
    """What `loopml keys` needs of the CLI's backend, over the in-memory keys."""

    def __init__(self) -> None:
        self.keys = InMemoryKeys()

    def key_usage(self, key, now):
        return self.keys.usage(key, now)


class Context:
    def __init__(self) -> None:
        self.backend = Backend()


@pytest.fixture
def cli():
    group = LoopMLGroup(name="loopml")
    group.add_command(keys)
    return group


def run(cli, obj, *args):
    return CliRunner().invoke(cli, list(args), obj=obj)


# --- quotas and periods ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10000/day", (10000, "DAY")), ("5_000/week", (5000, "WEEK")), ("1,000,000/Month", (1_000_000, "MONTH"))],
)
def test_quotas_parse_per_day_week_and_month(text, expected):
    assert parse_quota(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [("10000", "N/day"), ("ten/day", "whole number"), ("10/year", "day, week or month"), ("0/day", "at least 1")],
)
def test_a_bad_quota_says_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        parse_quota(text)


def test_quota_periods_are_utc_days_weeks_from_monday_and_calendar_months():
    now = datetime(2026, 3, 4, 23, 59, 59, tzinfo=UTC)  # a Wednesday
    assert quota_window("DAY", now) == (datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC))
    assert quota_window("WEEK", now) == (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC))
    assert quota_window("MONTH", now) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert quota_window("MONTH", datetime(2026, 12, 31, tzinfo=UTC))[1] == datetime(2027, 1, 1, tzinfo=UTC)


def test_usage_counted_in_an_earlier_period_does_not_count_now():
    key = InMemoryKeys().create("a", KeyLimits(1, 1, 10, "DAY"))
    yesterday = datetime(2026, 3, 3, tzinfo=UTC)
    today = datetime(2026, 3, 4, 8, tzinfo=UTC)
    assert usage_from_record(usage_record(7, yesterday), key, today).used == 0
    usage = usage_from_record(usage_record(7, datetime(2026, 3, 4, tzinfo=UTC)), key, today)
    assert (usage.used, usage.remaining, usage.resets_at) == (7, 3, datetime(2026, 3, 5, tzinfo=UTC))


# --- the CLI -----------------------------------------------------------------------------------------------------


def test_create_prints_the_value_once_with_its_limits(cli):
    context = Context()
    created = run(cli, context, "keys", "create", "acme", "--rate", "10", "--burst", "20", "--quota", "10000/day")
    assert created.exit_code == 0, created.output
    [key] = context.backend.keys.list(include_values=True)
    assert key.limits == KeyLimits(rate_per_s=10, burst=20, quota=10_000, quota_period="DAY")
    assert key.value in created.output and "will not be shown again" in created.output
    assert "x-api-key" in created.output
    listed = run(cli, context, "keys", "list")
    assert listed.exit_code == 0 and "acme" in listed.output and key.value not in listed.output


def test_create_defaults_to_the_declared_limits_and_prints_json(cli):
    context = Context()
    created = run(cli, context, "keys", "create", "ci", "--json")
    document = json.loads(created.output)
    defaults = API.default_key_limits
    assert (document["rate_per_s"], document["burst"], document["quota"], document["quota_period"]) == (
        defaults.rate_per_s,
        defaults.burst,
        defaults.quota,
        defaults.quota_period,
    )
    assert document["value"] == context.backend.keys.get("ci", include_value=True).value


def test_list_shows_limits_and_what_each_key_used_this_period(cli):
    context = Context()
    store = context.backend.keys
    key = store.create("acme", KeyLimits(5, 10, 100, "WEEK"))
    store.used[(key.id, quota_window("WEEK", datetime.now(UTC))[0])] = 40
    [document] = json.loads(run(cli, context, "keys", "list", "--json").output)
    assert (document["name"], document["enabled"], document["used"], document["remaining"]) == ("acme", True, 40, 60)
    assert "value" not in document
    table = run(cli, context, "keys", "list").output
    assert "100/week" in table and "60" in table


def test_revoke_by_name_or_id(cli):
    context = Context()
    store = context.backend.keys
    store.create("a", KeyLimits(1, 1, 1))
    b = store.create("b", KeyLimits(1, 1, 1))
    assert run(cli, context, "keys", "revoke", "a").exit_code == 0
    revoked = run(cli, context, "keys", "revoke", b.id)
    assert revoked.exit_code == 0 and "revoked key b" in revoked.output
    assert store.list() == []


def test_mistakes_get_one_clear_line(cli):
    context = Context()
    assert run(cli, context, "keys", "create", "a").exit_code == 0
    again = run(cli, context, "keys", "create", "a")
    assert again.exit_code == 2 and "already has a key named 'a'" in again.output
    unknown = run(cli, context, "keys", "revoke", "nobody")
    assert unknown.exit_code == 2 and "no key named or with id 'nobody'" in unknown.output
    bad_quota = run(cli, context, "keys", "create", "b", "--quota", "10/year")
    assert bad_quota.exit_code == 2 and "day, week or month" in bad_quota.output
    bad_name = run(cli, context, "keys", "create", "no spaces")
    assert bad_name.exit_code == 2 and "letters, digits" in bad_name.output
    assert run(cli, context, "keys", "create", "c", "--rate", "0").exit_code == 2
    assert run(cli, context, "keys", "create", "c", "--burst", "0").exit_code == 2


def test_the_help_states_the_declared_defaults_and_header():
    from infra.cli.keys import KEY_HEADER

    defaults = API.default_key_limits
    options = {param.name: param.help or "" for param in keys.commands["create"].params}
    assert f"declared default, {defaults.rate_per_s:g}]" in options["rate"]
    assert f"declared, {defaults.burst}]" in options["burst"]
    assert f"declared, {defaults.quota}/{defaults.quota_period.lower()}]" in options["quota"]
    assert API.api_key_header == KEY_HEADER


def test_help_has_examples():
    for command in (keys, *keys.commands.values()):
        assert isinstance(command, click.Command)
        assert "Example" in (command.help or ""), command.name


# --- the local gateway's enforcement -----------------------------------------------------------------------------


def enforcer_with(limits: KeyLimits, clock: Clock) -> tuple[KeyEnforcer, str, InMemoryKeys]:
    store = InMemoryKeys()
    key = store.create("client", limits)
    assert key.value is not None
    return KeyEnforcer(store, clock=clock), key.value, store


def test_no_key_or_an_unknown_one_is_forbidden():
    enforcer, _, _ = enforcer_with(KeyLimits(10, 10, 100), Clock(WEDNESDAY_NOON))
    for value in (None, "", "not-a-key"):
        key, refused = enforcer.admit(value)
        assert key is None and refused == (403, {"Content-Type": "application/json"}, b'{"message":"Forbidden"}')


def test_burst_then_rate_with_retry_after():
    clock = Clock(WEDNESDAY_NOON)
    enforcer, value, _ = enforcer_with(KeyLimits(rate_per_s=2, burst=3, quota=1000), clock)
    assert all(enforcer.admit(value)[1] is None for _ in range(3))  # the burst
    _, refused = enforcer.admit(value)
    assert refused is not None
    status, headers, body = refused
    assert (status, json.loads(body)) == (429, {"message": "Too Many Requests"})
    assert headers["Retry-After"] == "1"  # one token comes back in 0.5 s; Retry-After counts whole seconds
    clock.now += 0.5
    assert enforcer.admit(value)[1] is None  # the steady rate: one every 0.5 s
    assert enforcer.admit(value)[1] is not None
    clock.now += 10
    assert sum(enforcer.admit(value)[1] is None for _ in range(10)) == 3  # the bucket refills to its burst only


def test_slow_rate_retry_after_is_the_wait_for_one_token():
    clock = Clock(WEDNESDAY_NOON)
    enforcer, value, _ = enforcer_with(KeyLimits(rate_per_s=0.1, burst=1, quota=1000), clock)
    assert enforcer.admit(value)[1] is None
    refused = enforcer.admit(value)[1]
    assert refused is not None and refused[1]["Retry-After"] == "10"


@pytest.mark.parametrize(
    ("period", "resets_in_s"),
    [("DAY", 12 * 3600), ("WEEK", 4 * 86400 + 12 * 3600), ("MONTH", 27 * 86400 + 12 * 3600)],
)
def test_quota_exceeded_until_the_period_resets(period, resets_in_s):
    clock = Clock(WEDNESDAY_NOON)
    enforcer, value, _ = enforcer_with(KeyLimits(rate_per_s=1000, burst=1000, quota=3, quota_period=period), clock)
    assert all(enforcer.admit(value)[1] is None for _ in range(3))
    refused = enforcer.admit(value)[1]
    assert refused is not None
    status, headers, body = refused
    assert (status, json.loads(body)) == (429, {"message": "Limit Exceeded"})
    assert int(headers["Retry-After"]) == resets_in_s
    clock.now += resets_in_s - 1  # a second before the reset: still over
    assert enforcer.admit(value)[1] is not None
    clock.now += 1
    assert all(enforcer.admit(value)[1] is None for _ in range(3))
    assert enforcer.admit(value)[1] is not None


def test_refused_requests_count_against_nothing():
    clock = Clock(WEDNESDAY_NOON)
    enforcer, value, _ = enforcer_with(KeyLimits(rate_per_s=1, burst=1, quota=2), clock)
    assert enforcer.admit(value)[1] is None
    for _ in range(5):
        assert json.loads(enforcer.admit(value)[1][2])["message"] == "Too Many Requests"  # type: ignore[index]
    clock.now += 1
    assert enforcer.admit(value)[1] is None  # the second of the quota: throttled requests did not use it
    [record] = enforcer.usage().values()
    assert record["used"] == 2


def test_a_new_key_works_at_once_and_a_revoked_one_stops_within_the_cache_bound():
    clock = Clock(WEDNESDAY_NOON)
    enforcer, value, store = enforcer_with(KeyLimits(10, 10, 100), clock)
    assert enforcer.admit(value)[1] is None
    clock.now += 0.2
    fresh = store.create("fresh", KeyLimits(10, 10, 100))
    assert enforcer.admit(fresh.value)[1] is None  # an unknown key reads the keys again
    store.revoke("client")
    assert enforcer.admit(value)[1] is None  # cached for a moment...
    clock.now += enforcer.cache_seconds
    assert enforcer.admit(value)[1] is not None  # ...no longer than the bound
    assert enforcer.admit(value)[1][0] == 403  # type: ignore[index]


def test_a_flood_of_unknown_keys_does_not_read_the_keys_each_time():
    class CountingKeys(InMemoryKeys):
        reads = 0

        def list(self, *, include_values=False):
            CountingKeys.reads += 1
            return super().list(include_values=include_values)

    clock = Clock(WEDNESDAY_NOON)
    store = CountingKeys()
    enforcer = KeyEnforcer(store, clock=clock)
    for attempt in range(1000):
        assert enforcer.admit(f"guess-{attempt}")[1] is not None
    assert CountingKeys.reads == 1  # time stands still: one read for the lot
    clock.now += MISS_RELOAD_SECONDS + 0.01
    assert enforcer.admit("another-guess")[1] is not None
    assert CountingKeys.reads == 2


def test_each_key_has_its_own_limits():
    clock = Clock(WEDNESDAY_NOON)
    enforcer, first, store = enforcer_with(KeyLimits(rate_per_s=1, burst=1, quota=100), clock)
    second = store.create("other", KeyLimits(rate_per_s=1, burst=5, quota=100)).value
    assert enforcer.admit(first)[1] is None and enforcer.admit(first)[1] is not None
    assert sum(enforcer.admit(second)[1] is None for _ in range(10)) == 5


def test_concurrent_requests_never_exceed_the_burst():
    clock = Clock(WEDNESDAY_NOON)  # time stands still: only the burst may pass
    enforcer, value, _ = enforcer_with(KeyLimits(rate_per_s=1, burst=50, quota=10_000), clock)
    admitted: list[bool] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(25):
            ok = enforcer.admit(value)[1] is None
            with lock:
                admitted.append(ok)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 200 and sum(admitted) == 50


def test_the_deployed_api_needs_a_key_and_the_cli_says_where_to_put_it():
    from infra.cli.backend import Backend
    from infra.cli.errors import BackendError
    from infra.declaration import Names

    deployed = Backend(
        "eu-west-1", None, "https://abc.execute-api.eu-west-1.amazonaws.com/v1", None, Names("1", "eu-west-1")
    )
    with pytest.raises(BackendError, match="LOOPML_API_KEY"):
        deployed.http("GET", "/health")


# --- routes: ANY, and the most specific resource first -----------------------------------------------------------


def test_a_specific_method_wins_over_any_on_the_same_path():
    from infra.declaration import Route
    from infra.local.api_gateway import _route_pattern, match_route

    routes = [
        (route, _route_pattern(route.path))
        for route in (
            Route("ANY", "/v1/models/{name}"),
            Route("GET", "/v1/models/{name}"),
            Route("ANY", "/v1/openapi.json"),
            Route("GET", "/v1/models/special"),
        )
    ]
    assert match_route("GET", "/v1/models/churn", routes) == (Route("GET", "/v1/models/{name}"), {"name": "churn"})
    assert match_route("DELETE", "/v1/models/churn", routes) == (Route("ANY", "/v1/models/{name}"), {"name": "churn"})
    assert match_route("GET", "/v1/openapi.json", routes) == (Route("ANY", "/v1/openapi.json"), {})
    # A literal segment beats a parameter, and then only that resource's methods count, as API Gateway picks them.
    assert match_route("GET", "/v1/models/special", routes) == (Route("GET", "/v1/models/special"), {})
    assert match_route("POST", "/v1/models/special", routes) is None
    assert match_route("GET", "/v1/other", routes) is None
