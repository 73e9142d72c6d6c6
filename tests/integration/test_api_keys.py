"""API keys and their usage plans on the local cloud: one contract for the API Gateway adapter (on moto) and the
in-memory fake, the CLI creating, listing and revoking keys, and the local gateway enforcing them as API Gateway does
(403 without a valid key, 429 with Retry-After over a rate, burst or quota). A clock the tests move stands in for
waiting."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from infra import declaration as decl
from infra.cli.backend import Backend, http_json
from infra.cli.keys import keys as keys_group
from infra.cli.main import LoopMLGroup
from infra.declaration import KeyLimits
from infra.keys import LOCAL_KEY_NAME, USAGE_FILE, ApiGatewayKeys, ApiKeys, InMemoryKeys, plan_name
from infra.local.api_gateway import KEY_CACHE_SECONDS, ApiGateway, ApiServer
from infra.local.rest_api import local_api_key
from infra.local.runner import REGION
from loopml_core.errors import ConflictError, NotFoundError

pytestmark = pytest.mark.xdist_group("local-cloud")
MONDAY_9AM = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- one contract, two implementations -------------------------------------------------------------------------------


@pytest.fixture(params=["fake", "apigateway"])
def api_keys(request, cloud) -> ApiKeys:
    if request.param == "fake":
        return InMemoryKeys()
    return ApiGatewayKeys(cloud.client("apigateway"))  # the declared REST API the local cloud provisioned


def test_contract_create_returns_the_value_and_lists_the_limits(api_keys):
    name = unique("acme")
    limits = KeyLimits(rate_per_s=2.5, burst=5, quota=10_000, quota_period="WEEK")
    created = api_keys.create(name, limits)
    assert created.value and len(created.value) >= 20 and created.enabled and created.limits == limits
    listed = {key.name: key for key in api_keys.list()}
    assert listed[name].id == created.id and listed[name].limits == limits and listed[name].value is None
    assert api_keys.get(name, include_value=True).value == created.value
    assert api_keys.get(created.id).name == name


def test_contract_each_key_has_its_own_limits(api_keys):
    first, second = unique("a"), unique("b")
    api_keys.create(first, KeyLimits(1, 1, 10, "DAY"))
    api_keys.create(second, KeyLimits(100, 200, 5000, "MONTH"))
    listed = {key.name: key for key in api_keys.list()}
    assert listed[first].limits == KeyLimits(1, 1, 10, "DAY")
    assert listed[second].limits == KeyLimits(100, 200, 5000, "MONTH")
    assert listed[first].plan_id != listed[second].plan_id


def test_contract_revoke_removes_the_key(api_keys):
    name = unique("gone")
    created = api_keys.create(name, KeyLimits(1, 1, 1))
    revoked = api_keys.revoke(name)
    assert revoked.id == created.id
    assert name not in {key.name for key in api_keys.list()}
    with pytest.raises(NotFoundError):
        api_keys.revoke(name)
    again = api_keys.create(name, KeyLimits(1, 1, 1))  # the name is free again
    assert again.id != created.id


def test_contract_names_are_unique_and_checked(api_keys):
    name = unique("dup")
    api_keys.create(name, KeyLimits(1, 1, 1))
    with pytest.raises(ConflictError):
        api_keys.create(name, KeyLimits(1, 1, 1))
    with pytest.raises(ValueError, match="letters, digits"):
        api_keys.create("has space", KeyLimits(1, 1, 1))
    with pytest.raises(ValueError, match="quota period"):
        api_keys.create(unique("p"), KeyLimits(1, 1, 1, "YEAR"))


def test_revoke_deletes_the_key_and_its_own_plan_on_api_gateway(cloud):
    client = cloud.client("apigateway")
    adapter = ApiGatewayKeys(client)
    name = unique("plan")
    created = adapter.create(name, KeyLimits(3, 6, 900, "DAY"))
    plan = client.get_usage_plan(usagePlanId=created.plan_id)
    assert plan["name"] == plan_name(name)
    assert plan["apiStages"] == [{"apiId": adapter.api_id, "stage": decl.API.stage}]
    assert plan["throttle"] == {"rateLimit": 3, "burstLimit": 6} and plan["quota"] == {"limit": 900, "period": "DAY"}
    adapter.revoke(created.id)
    assert created.plan_id not in {p["id"] for p in client.get_usage_plans()["items"]}
    assert created.id not in {k["id"] for k in client.get_api_keys()["items"]}


def test_the_api_gateway_adapter_reports_no_usage_where_the_api_has_none(cloud):
    adapter = ApiGatewayKeys(cloud.client("apigateway"))
    key = adapter.get(LOCAL_KEY_NAME)
    assert adapter.usage(key, datetime.now(UTC)) is None  # moto has no GetUsage; the local gateway counts instead


# --- the REST API on moto, as the template declares it ---------------------------------------------------------------


def test_the_local_rest_api_requires_keys_from_the_header_on_every_method(cloud):
    client = cloud.client("apigateway")
    adapter = ApiGatewayKeys(client)
    assert client.get_rest_api(restApiId=adapter.api_id)["apiKeySource"] == "HEADER"
    methods = [
        client.get_method(restApiId=adapter.api_id, resourceId=resource["id"], httpMethod=method)
        for resource in client.get_resources(restApiId=adapter.api_id)["items"]
        for method in resource.get("resourceMethods", {})
    ]
    assert len(methods) == len(decl.API.routes)
    assert all(method["apiKeyRequired"] is True for method in methods)


def test_the_local_cloud_has_a_default_key_with_the_declared_limits(cloud):
    key = ApiGatewayKeys(cloud.client("apigateway")).get(LOCAL_KEY_NAME, include_value=True)
    assert key.enabled and key.limits == decl.API.default_key_limits
    assert key.value == local_api_key(cloud.client("apigateway"))


# --- the local gateway -----------------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_9AM)


@pytest.fixture
def api(cloud, clock) -> ApiGateway:
    return ApiGateway(cloud, clock=clock)


def call(api: ApiGateway, key: str | None, path: str = "/health") -> tuple[int, dict[str, str], dict]:
    headers = {"Content-Type": "application/json"} | ({"x-api-key": key} if key is not None else {})
    status, reply_headers, body = api.handle("GET", path, headers, b"")
    return status, reply_headers, json.loads(body)


def test_in_process_callers_send_the_default_key(api):
    assert api.request("GET", "/health") == (200, {"Content-Type": "application/json"}, {"status": "ok"})


def test_a_request_without_a_valid_key_is_forbidden(api):
    assert call(api, None)[::2] == (403, {"message": "Forbidden"})
    assert call(api, "not-a-key-of-this-api-at-all")[::2] == (403, {"message": "Forbidden"})
    # An unknown route is refused before any key is looked at, as API Gateway does.
    assert call(api, None, "/v1/nothing")[::2] == (403, {"message": "Missing Authentication Token"})


def test_the_key_header_name_is_case_insensitive(api):
    status, _, _ = api.handle("GET", "/health", {"X-API-Key": api.default_key or ""}, b"")
    assert status == 200


def test_the_proxy_event_names_the_key_as_api_gateway_does(api, cloud, monkeypatch):
    seen = []
    invoke = cloud.invoke_proxied

    def recording(function_key, event):
        seen.append(event)
        return invoke(function_key, event)

    monkeypatch.setattr(cloud, "invoke_proxied", recording)
    key = ApiGatewayKeys(cloud.client("apigateway")).get(LOCAL_KEY_NAME, include_value=True)
    assert call(api, key.value)[0] == 200
    identity = seen[-1]["requestContext"]["identity"]
    assert (identity["apiKey"], identity["apiKeyId"]) == (key.value, key.id)


def test_burst_exceeded_gets_429_with_retry_after(api, cloud, clock):
    adapter = ApiGatewayKeys(cloud.client("apigateway"))
    key = adapter.create(unique("burst"), KeyLimits(rate_per_s=1, burst=2, quota=100))
    assert [call(api, key.value)[0] for _ in range(2)] == [200, 200]
    status, headers, body = call(api, key.value)
    assert (status, body, headers["Retry-After"]) == (429, {"message": "Too Many Requests"}, "1")
    clock.now += 1
    assert call(api, key.value)[0] == 200


def test_quota_exceeded_gets_429_until_the_period_resets(api, cloud, clock):
    key = ApiGatewayKeys(cloud.client("apigateway")).create(
        unique("quota"), KeyLimits(rate_per_s=100, burst=100, quota=3, quota_period="DAY")
    )
    assert [call(api, key.value)[0] for _ in range(3)] == [200, 200, 200]
    status, headers, body = call(api, key.value)
    assert (status, body) == (429, {"message": "Limit Exceeded"})
    assert int(headers["Retry-After"]) == 15 * 3600  # 09:00 to midnight UTC
    clock.now += 15 * 3600 - 1
    assert call(api, key.value)[0] == 429
    clock.now += 1
    assert call(api, key.value)[0] == 200


# --- the CLI on the local cloud, and the gateway seeing what it does -------------------------------------------------


@pytest.fixture
def cli_obj(cloud):
    class Context:
        backend = Backend(REGION, None, None, None, cloud.names, local_state=cloud.state_dir)

    return Context()


def loopml(obj, *args: str):
    group = LoopMLGroup(name="loopml")
    group.add_command(keys_group)
    return CliRunner().invoke(group, ["keys", *args], obj=obj)


def test_keys_created_listed_and_revoked_with_the_cli_are_enforced(api, cli_obj, clock, cloud):
    name = unique("client")
    created = loopml(cli_obj, "create", name, "--rate", "5", "--burst", "10", "--quota", "1000/day", "--json")
    assert created.exit_code == 0, created.output
    value = json.loads(created.output)["value"]
    assert call(api, value)[0] == 200  # works at once: an unknown key makes the gateway read the keys again
    assert call(api, value)[0] == 200

    api.enforcer.flush_usage()  # what the running gateway writes for `keys list` at most a second later
    assert (cloud.state_dir / USAGE_FILE).exists()
    listed = {k["name"]: k for k in json.loads(loopml(cli_obj, "list", "--json").output)}
    assert (listed[name]["rate_per_s"], listed[name]["burst"], listed[name]["quota"]) == (5, 10, 1000)
    assert "value" not in listed[name]
    assert api.enforcer.usage()[listed[name]["id"]]["used"] == 2  # on the test's clock (the CLI reads by today's)

    revoked = loopml(cli_obj, "revoke", name)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    clock.now += KEY_CACHE_SECONDS
    assert call(api, value)[::2] == (403, {"message": "Forbidden"})
    assert name not in {k["name"] for k in json.loads(loopml(cli_obj, "list", "--json").output)}


def test_keys_list_shows_what_the_local_gateway_counted(cloud, cli_obj):
    api = ApiGateway(cloud)  # the real clock: the CLI reads today's counts
    name = unique("counted")
    value = json.loads(loopml(cli_obj, "create", name, "--quota", "50/day", "--json").output)["value"]
    for _ in range(3):
        assert call(api, value)[0] == 200
    api.enforcer.flush_usage()
    listed = {k["name"]: k for k in json.loads(loopml(cli_obj, "list", "--json").output)}
    assert (listed[name]["used"], listed[name]["remaining"]) == (3, 47)


def test_over_http_a_429_carries_retry_after_on_the_wire(cloud):
    adapter = ApiGatewayKeys(cloud.client("apigateway"))
    key = adapter.create(unique("wire"), KeyLimits(rate_per_s=0.5, burst=1, quota=100))
    server = ApiServer(cloud, port=0, tls=False).start()
    try:
        headers = {"Content-Type": "application/json", "x-api-key": key.value or ""}
        assert http_json("GET", f"{server.url}/health", headers=headers)[0] == 200
        status, reply_headers, body = http_json("GET", f"{server.url}/health", headers=headers)
        assert (status, body, reply_headers["Retry-After"]) == (429, {"message": "Too Many Requests"}, "2")
        status, _, body = http_json("GET", f"{server.url}/health")
        assert (status, body) == (403, {"message": "Forbidden"})
    finally:
        server.stop()
