"""`loopml keys`: API keys for the inference API, each with its own rate, burst and quota (an API Gateway usage plan).

Registered in `infra.cli.main`; talks to the local cloud when `loopml local up` runs, otherwise to the deployed API.
Importing it costs click alone: the declaration and the adapter load when a `keys` command runs, so the CLI starts
as fast as before for every other command.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from infra.keys import ApiKey, Usage

KEY_HEADER = "x-api-key"  # infra.declaration's API.api_key_header (checked by the tests)


def _console() -> Console:
    from rich.console import Console

    # Made per command: it writes to the sys.stdout of the moment (click's runner captures it). Into a pipe or a
    # file, rich would wrap the key table at 80 columns; it gets room for one key per line instead.
    return Console() if sys.stdout.isatty() else Console(width=160)


def _limits_text(key: ApiKey) -> str:
    from infra.keys import NO_LIMIT, format_quota

    rate = "-" if key.limits.rate_per_s == NO_LIMIT else f"{key.limits.rate_per_s:g}/s"
    burst = "-" if key.limits.burst == NO_LIMIT else str(key.limits.burst)
    return f"rate {rate}, burst {burst}, quota {format_quota(key.limits)}"


def _key_document(key: ApiKey, usage: Usage | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": key.name,
        "id": key.id,
        "enabled": key.enabled,
        "rate_per_s": key.limits.rate_per_s,
        "burst": key.limits.burst,
        "quota": key.limits.quota,
        "quota_period": key.limits.quota_period,
        "usage_plan_id": key.plan_id,
        "created_at": key.created_at.isoformat() if key.created_at else None,
    }
    if key.value is not None:
        document["value"] = key.value
    if usage is not None:
        document |= {
            "used": usage.used,
            "remaining": usage.remaining,
            "period_start": usage.period_start.isoformat(),
            "resets_at": usage.resets_at.isoformat(),
        }
    return document


class _Quota(click.ParamType):
    name = "N/day|week|month"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, str]:
        if isinstance(value, tuple):
            return value
        from infra.keys import parse_quota

        try:
            return parse_quota(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


def _checked_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from infra.keys import validate_name

    try:
        return validate_name(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


@click.group()
def keys() -> None:
    """API keys of the inference API: one per client, each with its own rate, burst and quota.

    Every request to the API carries a key in the x-api-key header (besides IAM signing on AWS). Each key has its
    own API Gateway usage plan: over its rate or burst the API answers 429 Too Many Requests, over its quota 429
    Limit Exceeded until the period resets, and without a valid key 403 Forbidden. The local cloud enforces the
    same keys and limits, so a client tested locally behaves the same on AWS.

    \b
    Examples:
      loopml keys create acme --rate 10 --burst 20 --quota 10000/day
      loopml keys list
      loopml keys revoke acme
    """


@keys.command("create")
@click.argument("name", callback=_checked_name)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Steady requests per second.  [default: the API's declared default, 50]",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=None,
    help="Most requests at once (the token bucket's size; the rate refills it).  [default: declared, 100]",
)
@click.option(
    "--quota",
    type=_Quota(),
    default=None,
    help="Requests per UTC day, week (from Monday) or calendar month, e.g. 10000/day.  [default: declared, "
    "1000000/day]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key, its value and limits as JSON.")
@click.pass_obj
def create(
    obj: Any, name: str, rate: float | None, burst: int | None, quota: tuple[int, str] | None, as_json: bool
) -> None:
    """Create an API key NAME with its own usage plan, and print its value once.

    The value is what the client sends in the x-api-key header. It is shown only now: store it (a secret
    manager, or LOOPML_API_KEY for the CLI). A client that loses it gets a new key and the old one is revoked.
    A limit not given is the API's declared default (infra/declaration.py, API.default_key_limits).

    \b
    Examples:
      loopml keys create acme --rate 10 --burst 20 --quota 10000/day
      export LOOPML_API_KEY=$(loopml keys create ci --quota 500/day --json | jq -r .value)
    """
    from infra import declaration as decl
    from infra.keys import validate_limits

    defaults = decl.API.default_key_limits
    limit, period = quota or (defaults.quota, defaults.quota_period)
    limits = decl.KeyLimits(
        rate_per_s=defaults.rate_per_s if rate is None else rate,
        burst=defaults.burst if burst is None else burst,
        quota=limit,
        quota_period=period,
    )
    try:
        validate_limits(limits)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    key = obj.backend.keys.create(name, limits)
    if as_json:
        click.echo(json.dumps(_key_document(key), indent=2))
        return
    console = _console()
    console.print(f"created key [bold]{key.name}[/] (id {key.id}): {_limits_text(key)}")
    console.print(f"{KEY_HEADER}: [bold]{key.value}[/]", soft_wrap=True, highlight=False)
    console.print(
        "[yellow]This value is shown once and will not be shown again:[/] store it now. Clients send it in the "
        f"{KEY_HEADER} header; the CLI reads it from LOOPML_API_KEY or --api-key."
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys, their limits and usage as JSON.")
@click.pass_obj
def list_keys(obj: Any, as_json: bool) -> None:
    """List the API's keys: enabled or not, their limits, and what each used of its quota this period.

    Usage comes from API Gateway on AWS (it may lag by a few minutes) and, locally, from what the running local
    gateway counted.

    \b
    Examples:
      loopml keys list
      loopml keys list --json | jq '.[] | select(.remaining == 0) | .name'
    """
    backend = obj.backend
    now = datetime.now(UTC)
    found = [(key, backend.key_usage(key, now)) for key in backend.keys.list()]
    if as_json:
        click.echo(json.dumps([_key_document(key, usage) for key, usage in found], indent=2))
        return
    from rich.table import Table

    from infra.keys import NO_LIMIT, format_quota

    table = Table("name", "id", "enabled", "rate/s", "burst", "quota", "used", "remaining", "resets (UTC)")
    for key, usage in found:
        table.add_row(
            key.name,
            key.id,
            "yes" if key.enabled else "[red]no[/]",
            "-" if key.limits.rate_per_s == NO_LIMIT else f"{key.limits.rate_per_s:g}",
            "-" if key.limits.burst == NO_LIMIT else str(key.limits.burst),
            format_quota(key.limits),
            "-" if usage is None else f"{usage.used:,}",
            "-" if usage is None or usage.remaining is None else f"{usage.remaining:,}",
            "-" if usage is None else f"{usage.resets_at:%Y-%m-%d %H:%M}",
        )
    console = _console()
    console.print(table)
    if not found:
        console.print("no keys: create one with `loopml keys create NAME`")


@keys.command("revoke")
@click.argument("name_or_id")
@click.pass_obj
def revoke(obj: Any, name_or_id: str) -> None:
    """Revoke an API key by name or id: the key and its usage plan are deleted.

    Requests with it get 403 Forbidden from then on (on AWS within seconds; locally within 2 s). Deleting rather
    than disabling means it can never be switched back on by mistake, and its name can be used again.

    \b
    Examples:
      loopml keys revoke acme
      loopml keys revoke 3x8kq2v7ab
    """
    key = obj.backend.keys.revoke(name_or_id)
    _console().print(f"revoked key [bold]{key.name}[/] (id {key.id}); its usage plan is deleted")
