"""API keys of the inference API, each with its own usage plan: rate, burst and a quota per day, week or month.

Keys are made at run time, never in the template: `loopml keys create` calls API Gateway's API, which creates the
key and a usage plan named after it, attached to the API's stage, so every key carries its own limits. The same
adapter runs against moto in the local cloud, where the local gateway reads the keys and limits back to enforce them
as API Gateway does (`infra.local.api_gateway`). Only the CLI and the local gateway use keys; no function does, so
this lives under infra/, not in the core layer.

`revoke` deletes the key, then its plan. Deleting (rather than disabling) means a revoked key can never be switched
back on by mistake, its name is free again, and its plan stops counting against the account's usage plans (300 per
region by default). A key attached by hand to a plan shared with other keys keeps that plan.
"""

from __future__ import annotations

import math
import re
import secrets
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from infra import declaration as decl
from infra.declaration import KeyLimits
from loopml_core.errors import ConflictError, NotFoundError

QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LOCAL_KEY_NAME = f"{decl.PREFIX}-local"  # the key the local cloud provisions and the CLI uses by default locally
NO_LIMIT = 0  # a plan without a throttle or a quota: its rate, burst or quota reads 0
USAGE_FILE = "api-key-usage.json"  # in the local cloud's state directory: what its gateway counted per key


def plan_name(key_name: str, api_name: str = decl.API.name) -> str:
    """The usage plan that carries one key's limits is named after the key."""
    return f"{api_name}-key-{key_name}"


def validate_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(
            f"key name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def validate_limits(limits: KeyLimits) -> KeyLimits:
    if not limits.rate_per_s > 0 or not math.isfinite(limits.rate_per_s):
        raise ValueError(f"rate {limits.rate_per_s}: a key's rate is a positive number of requests per second")
    if limits.burst < 1:
        raise ValueError(f"burst {limits.burst}: a key's burst is at least 1 request")
    if limits.quota < 1:
        raise ValueError(f"quota {limits.quota}: a key's quota is at least 1 request per period")
    if limits.quota_period not in QUOTA_PERIODS:
        raise ValueError(f"quota period {limits.quota_period!r}: one of day, week or month")
    return limits


def parse_quota(text: str) -> tuple[int, str]:
    """`10000/day`, `5000/week` or `100000/month` -> (limit, API Gateway's period)."""
    count, sep, period = text.strip().partition("/")
    if not sep:
        raise ValueError(f"quota {text!r}: write it as N/day, N/week or N/month, e.g. 10000/day")
    try:
        limit = int(count.replace("_", "").replace(",", ""))
    except ValueError:
        raise ValueError(f"quota {text!r}: {count!r} is not a whole number of requests") from None
    unit = period.strip().upper()
    if unit not in QUOTA_PERIODS:
        raise ValueError(f"quota {text!r}: the period is day, week or month, not {period!r}")
    if limit < 1:
        raise ValueError(f"quota {text!r}: at least 1 request per {period}")
    return limit, unit


def format_quota(limits: KeyLimits) -> str:
    return "-" if limits.quota == NO_LIMIT else f"{limits.quota:,}/{limits.quota_period.lower()}"


def quota_window(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The quota period holding `now`, as API Gateway counts it, in UTC: [start, end)."""
    now = now.astimezone(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period == "DAY":
        return day, day + timedelta(days=1)
    if period == "WEEK":  # weeks start on Monday
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "MONTH":
        start = day.replace(day=1)
        following = (start + timedelta(days=32)).replace(day=1)
        return start, following
    raise ValueError(f"quota period {period!r}: one of {', '.join(QUOTA_PERIODS)}")


@dataclass(frozen=True)
class ApiKey:
    """An API key that may call the API, with the limits of its usage plan. `value` is the secret the client sends
    in the `x-api-key` header: present only when it was asked for (on create, and for the local gateway)."""

    id: str
    name: str
    enabled: bool
    limits: KeyLimits
    plan_id: str
    created_at: datetime | None = None
    value: str | None = None


@dataclass(frozen=True)
class Usage:
    """Requests a key made in its current quota period, and what is left of its quota."""

    used: int
    remaining: int | None  # None: the plan sets no quota
    period_start: datetime
    resets_at: datetime


class ApiKeys(ABC):
    """The API keys of the inference API's stage and their limits."""

    @abstractmethod
    def create(self, name: str, limits: KeyLimits) -> ApiKey:
        """Create an enabled key with its own usage plan holding `limits`; the result carries the key's value.
        Raises ConflictError when the API already has a key of that name."""

    @abstractmethod
    def list(self, *, include_values: bool = False) -> list[ApiKey]:
        """Every key that can call the API's stage (it is in a usage plan attached to it), by name."""

    @abstractmethod
    def revoke(self, name_or_id: str) -> ApiKey:
        """Delete the key and its own usage plan; requests with it are refused from then on. NotFoundError if the
        API has no such key."""

    @abstractmethod
    def usage(self, key: ApiKey, now: datetime) -> Usage | None:
        """The key's usage in its current quota period, or None where the API does not report it."""

    def get(self, name_or_id: str, *, include_value: bool = False) -> ApiKey:
        """One key by name or id."""
        for key in self.list(include_values=include_value):
            if name_or_id in (key.name, key.id):
                return key
        raise NotFoundError(f"the API has no key named or with id {name_or_id!r}: see `loopml keys list`")


class InMemoryKeys(ApiKeys):
    """An in-memory fake of API Gateway's keys and usage plans. `used` holds requests counted per key id and
    quota period start, as API Gateway would report them."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self.used: dict[tuple[str, datetime], int] = {}

    def create(self, name: str, limits: KeyLimits) -> ApiKey:
        validate_name(name)
        validate_limits(limits)
        if any(key.name == name for key in self._keys.values()):
            raise ConflictError(f"the API already has a key named {name!r}; revoke it first or pick another name")
        key = ApiKey(
            id=_random_id(),
            name=name,
            enabled=True,
            limits=limits,
            plan_id=_random_id(),
            created_at=datetime.now(UTC),
            value=_random_value(),
        )
        self._keys[key.id] = key
        return key

    def list(self, *, include_values: bool = False) -> list[ApiKey]:
        keys = sorted(self._keys.values(), key=lambda key: key.name)
        return keys if include_values else [replace(key, value=None) for key in keys]

    def revoke(self, name_or_id: str) -> ApiKey:
        key = self.get(name_or_id)
        del self._keys[key.id]
        return key

    def usage(self, key: ApiKey, now: datetime) -> Usage | None:
        start, end = quota_window(key.limits.quota_period, now)
        used = self.used.get((key.id, start), 0)
        remaining = None if key.limits.quota == NO_LIMIT else max(0, key.limits.quota - used)
        return Usage(used, remaining, start, end)


class ApiGatewayKeys(ApiKeys):
    """API keys through API Gateway's API: on AWS, and on moto in the local cloud.

    The API is found by its declared name unless `api_id` is given; the client is created on first use unless
    injected.
    """

    def __init__(
        self,
        client: Any | None = None,
        *,
        api_name: str = decl.API.name,
        stage: str = decl.API.stage,
        api_id: str | None = None,
    ) -> None:
        self._client = client
        self.api_name = api_name
        self.stage = stage
        self._api_id = api_id

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("apigateway")
        return self._client

    @property
    def api_id(self) -> str:
        if self._api_id is None:
            apis = self._all("get_rest_apis")
            found = [api["id"] for api in apis if api.get("name") == self.api_name]
            if not found:
                raise NotFoundError(f"no REST API named {self.api_name!r}: is the stack deployed in this region?")
            self._api_id = found[0]
        return self._api_id

    def _all(self, operation: str, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self.client.get_paginator(operation).paginate(**kwargs):
            items += page.get("items", [])
        return items

    def _plans(self) -> list[dict[str, Any]]:
        """The usage plans attached to the API's stage."""
        stage = {"apiId": self.api_id, "stage": self.stage}
        return [
            plan
            for plan in self._all("get_usage_plans")
            if any({"apiId": s.get("apiId"), "stage": s.get("stage")} == stage for s in plan.get("apiStages", []))
        ]

    def create(self, name: str, limits: KeyLimits) -> ApiKey:
        validate_name(name)
        validate_limits(limits)
        if any(key.name == name for key in self.list()):
            raise ConflictError(f"the API already has a key named {name!r}; revoke it first or pick another name")
        api_id = self.api_id
        created = self.client.create_api_key(
            name=name, description=f"LoopML inference API key {name}", enabled=True, generateDistinctId=True
        )
        try:
            plan = self.client.create_usage_plan(
                name=plan_name(name, self.api_name),
                description=f"Limits of the API key {name}",
                apiStages=[{"apiId": api_id, "stage": self.stage}],
                throttle={"rateLimit": limits.rate_per_s, "burstLimit": limits.burst},
                quota={"limit": limits.quota, "period": limits.quota_period},
            )
            try:
                self.client.create_usage_plan_key(usagePlanId=plan["id"], keyId=created["id"], keyType="API_KEY")
            except Exception:
                self._delete_plan(plan["id"])
                raise
        except Exception:
            self.client.delete_api_key(apiKey=created["id"])  # no key is left behind without its limits
            raise
        return ApiKey(
            id=created["id"],
            name=name,
            enabled=True,
            limits=limits,
            plan_id=plan["id"],
            created_at=_utc(created.get("createdDate")),
            value=created["value"],
        )

    def list(self, *, include_values: bool = False) -> list[ApiKey]:
        plans = self._plans()
        if not plans:
            return []
        # A key deleted elsewhere may linger among a plan's keys for a moment: only keys that exist are listed.
        keys = {key["id"]: key for key in self._all("get_api_keys", includeValues=include_values)}
        found: dict[str, ApiKey] = {}
        for plan in plans:
            limits = _limits_of(plan)
            for member in self._all("get_usage_plan_keys", usagePlanId=plan["id"]):
                key = keys.get(member["id"])
                if key is None or member.get("type", "API_KEY") != "API_KEY" or key["id"] in found:
                    continue
                found[key["id"]] = ApiKey(
                    id=key["id"],
                    name=key.get("name") or key["id"],
                    enabled=bool(key.get("enabled")),
                    limits=limits,
                    plan_id=plan["id"],
                    created_at=_utc(key.get("createdDate")),
                    value=key.get("value") if include_values else None,
                )
        return sorted(found.values(), key=lambda key: (key.name, key.id))

    def revoke(self, name_or_id: str) -> ApiKey:
        key = self.get(name_or_id)
        # The key first: from here on no request with it is accepted, even if removing its plan fails.
        self.client.delete_api_key(apiKey=key.id)
        plan = self.client.get_usage_plan(usagePlanId=key.plan_id)
        others = [m for m in self._all("get_usage_plan_keys", usagePlanId=key.plan_id) if m["id"] != key.id]
        if plan.get("name") == plan_name(key.name, self.api_name) and not others:
            self._delete_plan(key.plan_id)
        return key

    def _delete_plan(self, plan_id: str) -> None:
        # API Gateway deletes a usage plan only once no API stage is attached to it.
        plan = self.client.get_usage_plan(usagePlanId=plan_id)
        stages = [f"{s['apiId']}:{s['stage']}" for s in plan.get("apiStages", [])]
        if stages:
            self.client.update_usage_plan(
                usagePlanId=plan_id,
                patchOperations=[{"op": "remove", "path": "/apiStages", "value": stage} for stage in stages],
            )
        self.client.delete_usage_plan(usagePlanId=plan_id)

    def usage(self, key: ApiKey, now: datetime) -> Usage | None:
        from botocore.exceptions import ClientError

        start, end = quota_window(key.limits.quota_period, now)
        try:
            reply = self.client.get_usage(
                usagePlanId=key.plan_id,
                keyId=key.id,
                startDate=start.date().isoformat(),
                endDate=now.astimezone(UTC).date().isoformat(),
            )
        except ClientError as error:
            if "not yet implemented" in str(error).lower():  # moto has no GetUsage
                return None
            raise
        days: list[list[int]] = (reply.get("items") or {}).get(key.id) or []
        used = sum(day[0] for day in days)
        if key.limits.quota == NO_LIMIT:
            return Usage(used, None, start, end)
        remaining = days[-1][1] if days else key.limits.quota
        return Usage(used, remaining, start, end)


def _limits_of(plan: dict[str, Any]) -> KeyLimits:
    throttle, quota = plan.get("throttle") or {}, plan.get("quota") or {}
    return KeyLimits(
        rate_per_s=float(throttle.get("rateLimit") or NO_LIMIT),
        burst=int(throttle.get("burstLimit") or NO_LIMIT),
        quota=int(quota.get("limit") or NO_LIMIT),
        quota_period=str(quota.get("period") or "DAY"),
    )


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return None


def _random_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))


def _random_value() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


def usage_record(used: int, period_start: datetime) -> dict[str, Any]:
    """One key's entry in the local gateway's usage file (USAGE_FILE)."""
    return {"used": used, "period_start": period_start.isoformat()}


def usage_from_record(record: dict[str, Any] | None, key: ApiKey, now: datetime) -> Usage:
    """A key's usage from the local gateway's record of it: nothing counted in an earlier period counts now."""
    start, end = quota_window(key.limits.quota_period, now)
    counted = record is not None and datetime.fromisoformat(record["period_start"]) == start
    used = int(record["used"]) if counted and record is not None else 0
    remaining = None if key.limits.quota == NO_LIMIT else max(0, key.limits.quota - used)
    return Usage(used, remaining, start, end)
