"""`loopml lineage REQUEST_ID` and `loopml models history NAME [--at TIME]`: lineage on demand (docs/lineage.md).

`lineage` is registered on the `loopml` group and `history` under `models`, in `infra.cli.main`. Importing this
module costs click alone: the registry, the object store and the lineage logic load when a command runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from loopml_core.lineage import CapturedLine, Lineage, RequestLineage, ServingChange
    from loopml_core.models import AuditRecord

TIME_HELP = (
    "ISO date or time (UTC unless it names a zone), `now`, a duration ago (90m, 2h, 3d, 1w), or `today`, "
    "`yesterday`, `tuesday`, `last tuesday`, each with an optional time: `last tuesday 14:05`."
)


def _time(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from loopml_core.lineage import parse_time

    try:
        return parse_time(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.command("lineage")
@click.argument("request_id")
@click.option("--model", "models", multiple=True, help="Search this model's captures only (repeatable).")
@click.option(
    "--since",
    callback=_time,
    metavar="TIME",
    help="Search captures from TIME on (default: each model's capture retention). " + TIME_HELP,
)
@click.option("--json", "as_json", is_flag=True, help="Print the captures, the lineage and the search as JSON.")
@click.pass_obj
def lineage(obj: Any, request_id: str, models: tuple[str, ...], since: Any, as_json: bool) -> None:
    """Which model, data and code made the prediction of REQUEST_ID (the API's `request_id` / `X-Request-Id`).

    Finds the request's capture lines in S3, newest batches first, and stops at the first batch that holds it; then
    walks the registry: the model version that answered (a challenger's shadow scoring is shown apart) → its pipeline
    run → the dataset version it trained on (S3 object version, SHA-256, rows, contract version and fingerprint) →
    its code version → who registered, approved, deployed and promoted it (the audit trail), and what served the
    model when the request came. Exit 1 when the request is not found, saying where it was looked for.

    \b
    Examples:
      loopml lineage 5f0c2a4e-0b1d-4c52-9d3e-1b7f8f1c2d3e
      loopml lineage 5f0c2a4e-... --model churn --since 2h
      loopml lineage 5f0c2a4e-... --json | jq '.answered[0].lineage.dataset.sha256'
    """
    from loopml_core.lineage import trace

    backend = obj.backend
    found = trace(
        backend.registry, backend.store, backend.names.artifact_bucket, request_id, models=list(models), since=since
    )
    if as_json:
        _echo_json(found.to_dict())
    else:
        _print_lineage(found)
    if not found.search.found:
        raise SystemExit(1)


def _print_lineage(found: RequestLineage) -> None:
    search = found.search
    cost = (
        f"{search.objects_read} of {search.objects_listed} capture batches read "
        f"({search.bytes_read / 1e6:.1f} MB), {search.listings} listings"
    )
    if not search.found:
        click.echo(f"not found: {search.not_found_reason()}")
        click.echo(f"searched: {cost}")
        return
    click.echo(f"request {search.request_id}  ({cost})")
    for line in search.lines:
        if not line.shadow:
            _print_version(line, found.lineages[(line.model, line.version)])
    shadowed = [line for line in search.lines if line.shadow]
    if shadowed:
        click.echo("\nalso scored in shadow (not returned to the client):")
        for line in shadowed:
            _print_version(line, found.lineages[(line.model, line.version)])
    for problem in search.unreadable:
        click.echo(f"warning: unreadable capture batch {problem}", err=True)


def _print_version(line: CapturedLine, lineage: Lineage) -> None:
    from loopml_core.lineage import promotions

    role = "shadow" if line.shadow else "answered"
    records = f"record {line.first}" if line.n == 1 else f"records {line.first}..{line.first + line.n - 1}"
    click.echo(f"\n{role}: {line.model} v{line.version} at {line.at}, {records}")
    click.echo(f"  captured in   {line.key}")
    if lineage.serving_then is not None:
        click.echo(f"  serving then  {lineage.serving_then.describe(with_time=False)}")
    version = lineage.version
    if version is None:
        for problem in lineage.missing:
            click.echo(f"  missing       {problem}")
        return
    click.echo(f"  version       v{version.version} {version.status.value}, registered {version.created_at}")
    click.echo(f"  decision      {version.decision}")
    run = lineage.run
    run_text = f"{run.status.value}, trigger {run.trigger}, finished {run.finished_at}" if run else "not recorded"
    click.echo(f"  execution     {version.execution} ({run_text})")
    dataset = lineage.dataset
    if dataset is not None:
        click.echo(
            f"  dataset       {dataset.dataset} v{dataset.version}: {dataset.object.uri} "
            f"(version id {dataset.object.version_id}), {dataset.rows:,} rows, {dataset.format}"
        )
        click.echo(f"  sha256        {dataset.sha256}")
        click.echo(f"  uploaded as   {dataset.source_key}")
    fingerprint = lineage.contract_fingerprint or "not recorded"
    click.echo(f"  contract      v{lineage.contract_version} (fingerprint {fingerprint})")
    click.echo(f"  code version  {version.code_version}")
    click.echo(f"  artifact      {version.artifact.uri} (version id {version.artifact.version_id})")
    decided = promotions(lineage.audit)
    click.echo("  approvals, deployments and promotions:" if decided else "  approvals and promotions: none recorded")
    for record in decided:
        click.echo(f"    {record.at}  {record.actor:<20} {_describe_record(record)}")
    for problem in lineage.missing:
        click.echo(f"  missing       {problem}")


def _describe_record(record: AuditRecord) -> str:
    """`champion v1 -> v2 (model.alias.moved): reason` for alias moves, else the action and its reason."""
    details = record.details
    what = record.action
    if "to" in details and "/alias/" in record.subject and not isinstance(details["to"], dict):
        alias = record.subject.rsplit("/", 1)[-1]
        before = f"v{details['from']}" if details.get("from") is not None else "none"
        after = f"v{details['to']}" if details["to"] is not None else "none"
        what = f"{alias} {before} -> {after} ({record.action})"
    elif record.action.startswith("model.deployment.") and details.get("mode"):
        share = details["mode"] + (f" {details['weight']}%" if details.get("weight") is not None else "")
        what = f"{record.action} ({share})"
    reason = details.get("reason")
    return f"{what}: {reason}" if reason else what


@click.command("history")
@click.argument("name")
@click.option("--at", "at", callback=_time, metavar="TIME", help="The version serving at TIME. " + TIME_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the changes (and, with --at, the state then) as JSON.")
@click.pass_obj
def history(obj: Any, name: str, at: Any, as_json: bool) -> None:
    """Which version of model NAME served when: every champion move and challenger deployment, from the audit trail.

    Each change with its time, actor and reason. With --at, the champion at that instant and the challenger then
    deployed (mode and weight), if any.

    \b
    Examples:
      loopml models history churn
      loopml models history churn --at "last tuesday 14:05"
      loopml models history churn --at 2026-11-17T14:05Z --json
    """
    from dataclasses import asdict

    from loopml_core.lineage import serving_at, serving_history

    registry = obj.backend.registry
    changes = serving_history(registry.audit_records(f"model/{name}/alias/"), name)
    if not changes:
        registry.registered_model(name)  # an unknown model says so
    state = serving_at(changes, at) if at is not None else None
    if as_json:
        _echo_json({"model": name, "changes": [asdict(c) for c in changes], "at": state.to_dict() if state else None})
        return
    if state is not None:
        click.echo(state.describe())
        return
    if not changes:
        click.echo(f"{name}: no version has served yet")
        return
    for change in changes:
        click.echo(_change_line(change))


def _change_line(change: ServingChange) -> str:
    reason = f": {change.reason}" if change.reason else ""
    return f"{change.at}  {change.actor:<20} {change.describe()}{reason}"


COMMANDS = (lineage,)
MODELS_COMMANDS = (history,)
