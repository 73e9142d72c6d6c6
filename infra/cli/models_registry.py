"""`loopml models describe | tag | alias | archive | search`: the registry's vocabulary (MLflow's words).

Registered in `infra.cli.main` under the `models` group. Every change is one registry transaction with its audit
record, written under the caller's name (`$USER` locally, the IAM principal on AWS).
"""

from __future__ import annotations

import json
from typing import Any

import click


def _registry(obj: Any) -> Any:
    return obj.backend.registry


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: give KEY=VALUE", param_hint="TAGS")
        pairs[key] = text
    return pairs


@click.command("describe")
@click.argument("name")
@click.option("--description", default=None, help="Set the model's description (at most 5000 characters).")
@click.option("--json", "as_json", is_flag=True, help="Print the model, its aliases and versions as JSON.")
@click.pass_obj
def describe(obj: Any, name: str, description: str | None, as_json: bool) -> None:
    """Show (or, with --description, set) a registered model: description, tags, aliases and each version's
    status and tags.

    \b
    Examples:
      loopml models describe churn
      loopml models describe churn --description "Who cancels next month; retention offers only"
    """
    registry = _registry(obj)
    model = registry.describe_model(name, description) if description is not None else registry.registered_model(name)
    aliases = registry.aliases(name)
    versions = registry.model_versions(name)
    if as_json:
        _echo_json(
            {
                **model.model_dump(mode="json"),
                "aliases": aliases,
                "versions": [
                    {"version": v.version, "status": v.status, "tags": v.tags, "created_at": v.created_at}
                    for v in versions
                ],
            }
        )
        return
    click.echo(f"{model.name}: {model.description or '(no description)'}")
    click.echo("tags: " + (", ".join(f"{k}={v}" for k, v in sorted(model.tags.items())) or "-"))
    click.echo("aliases: " + (", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "-"))
    for version in versions:
        tags = ", ".join(f"{k}={v}" for k, v in sorted(version.tags.items()))
        click.echo(f"  v{version.version}  {version.status:<16} {version.created_at}  {tags}".rstrip())


@click.command("tag")
@click.argument("name")
@click.argument("tags", nargs=-1)
@click.option("--version", type=click.IntRange(min=1), default=None, help="Tag this version instead of the model.")
@click.option("--delete", "deletions", multiple=True, metavar="KEY", help="Remove this tag (repeatable).")
@click.pass_obj
def tag(obj: Any, name: str, tags: tuple[str, ...], version: int | None, deletions: tuple[str, ...]) -> None:
    """Set tags (KEY=VALUE ...) on a model, or on one of its versions with --version; --delete KEY removes one.

    Each tag is its own audited change. Search by tags with `loopml models search --filter "tag.team = 'risk'"`.

    \b
    Examples:
      loopml models tag churn team=risk owner=ana
      loopml models tag churn --version 3 validated_by=qa
      loopml models tag churn --delete owner
    """
    registry = _registry(obj)
    pairs = _pairs(tags)
    if not pairs and not deletions:
        raise click.UsageError("give KEY=VALUE tags to set, or --delete KEY")
    for key, value in pairs.items():
        if version is None:
            registry.set_model_tag(name, key, value)
        else:
            registry.set_version_tag(name, version, key, value)
    for key in deletions:
        if version is None:
            registry.delete_model_tag(name, key)
        else:
            registry.delete_version_tag(name, version, key)
    subject = name if version is None else f"{name} v{version}"
    current = registry.registered_model(name).tags if version is None else registry.model_version(name, version).tags
    click.echo(f"{subject}: " + (", ".join(f"{k}={v}" for k, v in sorted(current.items())) or "no tags"))


@click.group("alias")
def alias() -> None:
    """User-defined aliases (staging, candidate, ...) naming one READY version each.

    champion and challenger are not set here: they move with promote, deploy and rollback, which keep serving
    consistent.

    \b
    Examples:
      loopml models alias set churn staging 4 --reason "for the QA run"
      loopml models alias delete churn staging
    """


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.pass_obj
def alias_set(obj: Any, name: str, alias_name: str, version: int, reason: str) -> None:
    """Point ALIAS of model NAME at VERSION (which must be READY)."""
    named = _registry(obj).set_alias(name, alias_name, version, reason)
    click.echo(f"{name}: {named.alias} -> v{named.version}")


@alias.command("delete")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.pass_obj
def alias_delete(obj: Any, name: str, alias_name: str, reason: str) -> None:
    """Remove ALIAS of model NAME."""
    version = _registry(obj).delete_alias(name, alias_name, reason)
    click.echo(f"{name}: {alias_name} (was v{version}) deleted")


@click.command("archive")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--reason", required=True, help="Why, for the audit trail.")
@click.option("--restore", is_flag=True, help="Bring an ARCHIVED version back to READY instead.")
@click.pass_obj
def archive(obj: Any, name: str, version: int, reason: str, restore: bool) -> None:
    """Archive a READY version (it keeps its lineage and card, and can serve no more), or --restore one.

    A version an alias names (champion, challenger or any other) cannot be archived: move the alias first.

    \b
    Examples:
      loopml models archive churn 2 --reason "superseded by v4"
      loopml models archive churn 2 --restore --reason "needed for the audit replay"
    """
    from loopml_core.models import VersionStatus

    target = VersionStatus.READY if restore else VersionStatus.ARCHIVED
    moved = _registry(obj).transition_version(name, version, target, reason)
    click.echo(f"{name} v{version} is {moved.status}")


@click.command("approve")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--reason", required=True, help="Why, for the audit trail (recorded with who approved).")
@click.pass_obj
def approve(obj: Any, name: str, version: int, reason: str) -> None:
    """Approve a PENDING_APPROVAL version: it becomes READY and, when its evaluation promoted it and the champion is
    still the one it was judged against, champion, in one transaction with the audit record naming you and why.
    The pipeline run waiting on it resumes.

    \b
    Example:
      loopml models approve churn 3 --reason "card reviewed; fairness within policy"
    """
    decision = _registry(obj).approve(name, version, reason)
    resumed = resume_waiting_run(obj.backend.client("stepfunctions"), decision.request, approved=True, reason=reason)
    click.echo(f"{name}: {decision.note}{resumed}")


@click.command("reject")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--reason", required=True, help="Why, for the audit trail (recorded with who rejected).")
@click.pass_obj
def reject(obj: Any, name: str, version: int, reason: str) -> None:
    """Reject a PENDING_APPROVAL version: it becomes REJECTED and never serves; the waiting pipeline run ends.

    \b
    Example:
      loopml models reject churn 3 --reason "recall on the south region too low"
    """
    decision = _registry(obj).reject(name, version, reason)
    resumed = resume_waiting_run(obj.backend.client("stepfunctions"), decision.request, approved=False, reason=reason)
    click.echo(f"{name}: {decision.note}{resumed}")


def resume_waiting_run(stepfunctions: Any, request: Any, *, approved: bool, reason: str) -> str:
    """Hand the decision to the pipeline run waiting on it (`request`: the registry's ApprovalRequest, or None when
    no run waits). The registry holds the decision either way: a run that stopped waiting (timed out, or stopped by
    hand) is only reported. Returns what to tell the user."""
    if request is None:
        return ""
    from botocore.exceptions import ClientError

    try:
        if approved:
            output = json.dumps({"decision": "approved", "reason": reason})
            stepfunctions.send_task_success(taskToken=request.token, output=output)
        else:
            stepfunctions.send_task_failure(taskToken=request.token, error="LoopML.Rejected", cause=reason[:32768])
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        return f"; its pipeline run {request.execution} had stopped waiting ({code})"
    return f"; pipeline run {request.execution} resumed"


@click.command("search")
@click.option("--filter", "filter_text", default=None, help="e.g. \"tag.team = 'risk' AND name LIKE 'churn%'\".")
@click.option("--max-results", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--page-token", default=None, help="The token a previous page printed, for the next one.")
@click.option("--json", "as_json", is_flag=True, help="Print the page and its next token as JSON.")
@click.pass_obj
def search(obj: Any, filter_text: str | None, max_results: int, page_token: str | None, as_json: bool) -> None:
    """Find registered models by name, description and tags, in name order, a page at a time.

    A filter is clauses joined by AND: name|description|tag.<key> with =, !=, LIKE, NOT LIKE or ILIKE and a value in
    single quotes (% any run of characters, _ one). A model without the tag matches no clause about it.

    \b
    Examples:
      loopml models search --filter "tag.team = 'risk'"
      loopml models search --filter "name LIKE 'churn%' AND tag.stage != 'retired'" --max-results 20
    """
    from loopml_core.model_search import search as search_models

    registry = _registry(obj)
    page = search_models(registry.registered_models(), filter_text, max_results, page_token)
    if as_json:
        _echo_json(
            {"models": [m.model_dump(mode="json") for m in page.models], "next_page_token": page.next_page_token}
        )
        return
    for model in page.models:
        tags = ", ".join(f"{k}={v}" for k, v in sorted(model.tags.items()))
        click.echo(f"{model.name:<24} {tags:<40} {model.description[:60]}".rstrip())
    if not page.models:
        click.echo("no model matches")
    if page.next_page_token:
        click.echo(f"more: --page-token {page.next_page_token}")


COMMANDS = (describe, tag, alias, archive, approve, reject, search)
