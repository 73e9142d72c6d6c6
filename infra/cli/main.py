"""The `loopml` command line: the demo, the local cloud, and everyday operations on a local or deployed LoopML.

Commands other than `demo` and `local up` talk to the local cloud when `loopml local up` is running, otherwise to the
LoopML stack deployed in the AWS account of your environment (or to `--endpoint-url`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from infra.cli.backend import Backend, BackendError, read_local_info, upload_and_wait
from loopml_core.contract import load_contract
from loopml_core.errors import LoopMLError
from loopml_core.logic.runs import start_training

console = Console()  # resolves sys.stdout at each write, so click's test runner captures it


class Context:
    def __init__(self, endpoint_url: str | None, api_url: str | None) -> None:
        self.endpoint_url = endpoint_url
        self.api_url = api_url
        self._backend: Backend | None = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = Backend.resolve(self.endpoint_url, self.api_url)
        return self._backend


pass_context = click.make_pass_decorator(Context)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    console.print(table)


class LoopMLGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (BackendError, LoopMLError, ValueError, OSError, BotoCoreError, ClientError) as error:
            # Expected failures (nothing running, unknown model, bad contract file) get one clear line, not a trace.
            click.secho(f"error: {error}", fg="red", err=True)
            raise SystemExit(2) from error


@click.group(cls=LoopMLGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--endpoint-url",
    envvar="LOOPML_ENDPOINT_URL",
    help="AWS API endpoint (default: the running local cloud, else AWS).",
)
@click.option(
    "--api-url",
    envvar="LOOPML_API_URL",
    help="Inference API base URL (default: local cloud or the stack's ApiUrl output).",
)
@click.pass_context
def cli(ctx: click.Context, endpoint_url: str | None, api_url: str | None) -> None:
    """LoopML: validate data, train, register, serve and monitor models — on AWS or on your laptop.

    \b
    Start here:
      loopml demo                 the whole closed loop, locally, in about a minute
      loopml local up             a local cloud for real clients (AWS CLI, curl)
    """
    ctx.obj = Context(endpoint_url, api_url)


@cli.command()
def demo() -> None:
    """Run the whole closed loop on a throwaway local cloud, narrated.

    Declares a dataset, uploads clean data (validated, versioned, trained, promoted), serves predictions over HTTPS,
    quarantines a malformed upload, sends drifted traffic, fires the drift check (alert + retrain), promotes v2 only
    if it beats v1 on the same holdout, and verifies the audit trail. No AWS account needed.

    \b
    Example:
      loopml demo
    """
    from infra.cli.demo import main as run

    raise SystemExit(run())


# -- local -------------------------------------------------------------------------------------------------------


@cli.group()
def local() -> None:
    """Run LoopML's local cloud (moto) and inspect it."""


@local.command("up")
@click.option("--port", default=4566, show_default=True, help="Port of the AWS-compatible endpoint.")
@click.option("--api-port", default=8443, show_default=True, help="Port of the inference REST API.")
@click.option("--http", "plain_http", is_flag=True, help="Serve the API over plain HTTP instead of HTTPS.")
@click.option(
    "--drift-every",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Fire the drift schedule this often (default: the declared rate).",
)
def local_up(port: int, api_port: int, plain_http: bool, drift_every: float | None) -> None:
    """Run the local cloud until Ctrl-C.

    Serves an AWS-compatible endpoint (S3, DynamoDB, Step Functions, Lambda, SNS…) and the inference API, runs the
    real handlers in-process and fires the drift schedule. Resource names match a deployment.

    \b
    Example:
      loopml local up &
      loopml datasets create --contract infra/demo/churn.yaml
      aws --endpoint-url http://127.0.0.1:4566 s3 cp data.csv \\
          s3://loopml-data-123456789012-us-east-1/incoming/churn/data.csv
      curl --cacert .loopml/tls/api-cert.pem https://127.0.0.1:8443/health
    """
    from infra.local.server import serve

    serve(port=port, api_port=api_port, tls=not plain_http, drift_every=drift_every, console=console)


@local.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (endpoints and resource names).")
def local_info(as_json: bool) -> None:
    """Show the running local cloud's endpoints and resource names.

    \b
    Example:
      loopml local info --json | jq -r .api_url
    """
    info = read_local_info()
    if info is None:
        raise BackendError("no local cloud is running; start one with `loopml local up`")
    if as_json:
        _print_json(info)
        return
    _table(["what", "value"], [[k, v] for k, v in info.items() if not isinstance(v, dict)], title="local cloud")


# -- datasets ----------------------------------------------------------------------------------------------------


@cli.group()
def datasets() -> None:
    """Declare datasets and inspect their versions."""


@datasets.command("create")
@click.option(
    "--contract",
    "contract_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Dataset contract, YAML or JSON.",
)
@pass_context
def datasets_create(ctx: Context, contract_file: Path) -> None:
    """Declare a dataset from its contract (or a new version of its contract).

    The contract names the dataset (also the model's name), the task, the target, each feature's type and range, and
    quality rules. Uploads to incoming/<name>/ are validated against it.

    \b
    Example:
      loopml datasets create --contract infra/demo/churn.yaml
    """
    contract = load_contract(contract_file.read_text())
    backend = ctx.backend
    dataset, changed = backend.registry.declare_dataset(contract)
    backend.store.put(
        backend.names.data_bucket,
        f"contracts/{contract.name}/v{dataset.contract_version}.json",
        json.dumps(dataset.contract, indent=2).encode(),
        "application/json",
    )
    verb = "declared" if changed else "unchanged"
    console.print(
        f"dataset [bold]{contract.name}[/] {verb}: contract v{dataset.contract_version}; upload to "
        f"s3://{backend.names.data_bucket}/incoming/{contract.name}/<file>.csv"
    )


@datasets.command("list")
@pass_context
def datasets_list(ctx: Context) -> None:
    """List datasets with their latest version."""
    registry = ctx.backend.registry
    _table(
        ["dataset", "task", "contract", "versions"],
        [[d.name, d.contract["task"], f"v{d.contract_version}", d.latest_version] for d in registry.datasets()],
    )


@datasets.command("show")
@click.argument("name")
@pass_context
def datasets_show(ctx: Context, name: str) -> None:
    """Show a dataset's versions (rows, hash, S3 version)."""
    registry = ctx.backend.registry
    registry.dataset(name)
    _table(
        ["version", "rows", "sha256", "object", "s3 version", "created"],
        [
            [v.version, v.rows, v.sha256[:12], v.object.uri, v.object.version_id[:12], v.created_at]
            for v in registry.dataset_versions(name)
        ],
        title=f"dataset {name}",
    )


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="Dataset the file belongs to.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the validation outcome.")
@pass_context
def upload(ctx: Context, file: Path, dataset: str, wait: bool) -> None:
    """Upload a CSV to incoming/<dataset>/ and report what validation decided.

    Exits 1 when the upload was quarantined, and prints where the report is.

    \b
    Example:
      loopml upload customers.csv --dataset churn
    """
    backend = ctx.backend
    key = f"incoming/{dataset}/{file.name}"
    if not wait:
        stored = backend.store.put(backend.names.data_bucket, key, file.read_bytes(), "text/csv")
        console.print(f"uploaded {stored.uri} (version {stored.version_id})")
        return
    with console.status(f"uploading {file.name} and waiting for validation…"):
        tags = upload_and_wait(backend.store, backend.names.data_bucket, key, file.read_bytes())
    if tags["loopml-status"] == "accepted":
        console.print(f"[green]accepted[/]: {dataset} v{tags.get('loopml-dataset-version')}")
        return
    reports = [
        k
        for k in backend.store.list_keys(backend.names.data_bucket, f"quarantine/{dataset}/")
        if k.endswith(f"{tags['version_id'][:16]}-{file.name}.report.json")
    ]
    console.print(f"[red]quarantined[/]: report at s3://{backend.names.data_bucket}/{reports[0] if reports else '?'}")
    if reports:
        report = json.loads(backend.store.get(backend.names.data_bucket, reports[0]))
        for issue in report["issues"]:
            console.print(f"  - {issue.get('column') or '(file)'}: {issue['message']}")
    raise SystemExit(1)


# -- pipeline ----------------------------------------------------------------------------------------------------


@cli.group()
def pipeline() -> None:
    """Training pipeline runs."""


@pipeline.command("status")
@click.option("--model", default=None, help="Only runs of this model.")
@click.option("--limit", default=20, show_default=True)
@pass_context
def pipeline_status(ctx: Context, model: str | None, limit: int) -> None:
    """Recent executions of the training pipeline and their outcomes.

    \b
    Example:
      loopml pipeline status --model churn
    """
    executions = [e for e in ctx.backend.pipeline.executions() if model is None or e.model == model][:limit]
    _table(
        ["execution", "model", "status", "started", "result"],
        [
            [
                e.name,
                e.model,
                e.status,
                f"{e.started_at:%Y-%m-%d %H:%M:%S}",
                (
                    f"v{e.output.get('version')} {'promoted' if e.output.get('promoted') else 'kept champion'}"
                    if e.output
                    else ""
                ),
            ]
            for e in executions
        ],
    )


@pipeline.command("start")
@click.argument("model")
@click.option("--dataset-version", type=int, default=None, help="Default: the latest version.")
@pass_context
def pipeline_start(ctx: Context, model: str, dataset_version: int | None) -> None:
    """Start a training run by hand.

    \b
    Example:
      loopml pipeline start churn
    """
    backend = ctx.backend
    if dataset_version is None:
        latest = backend.registry.latest_dataset_version(model)
        if latest is None:
            raise BackendError(f"dataset '{model}' has no versions yet; upload data first")
        dataset_version = latest.version
    decision = start_training(
        backend.pipeline,
        model=model,
        dataset_version=dataset_version,
        trigger="manual",
        reason="started from the CLI",
        skip_if_running=True,
    )
    name = decision.execution.name if decision.execution else "-"
    console.print(f"{'started' if decision.started else 'not started'}: {name} ({decision.reason})")


# -- models ------------------------------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """Registered models, versions and the champion alias."""


@models.command("list")
@pass_context
def models_list(ctx: Context) -> None:
    """List registered models with their champion."""
    registry = ctx.backend.registry
    rows = []
    for name in registry.models():
        champion = registry.champion(name)
        versions = registry.model_versions(name)
        rows.append(
            [name, len(versions), f"v{champion.version}" if champion else "-", champion.since if champion else ""]
        )
    _table(["model", "versions", "champion", "since"], rows)


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print every version as JSON.")
@pass_context
def models_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show a model's versions: metrics, data, decision, and which one is champion.

    \b
    Example:
      loopml models show churn
    """
    registry = ctx.backend.registry
    versions = registry.model_versions(name)
    if not versions:
        raise BackendError(f"model '{name}' has no versions")
    champion = registry.champion(name)
    if as_json:
        _print_json(
            {
                "champion": champion.version if champion else None,
                "versions": [v.model_dump(mode="json") for v in versions],
            }
        )
        return
    _table(
        ["version", "", "dataset", "metrics", "decision"],
        [
            [
                f"v{v.version}",
                "champion" if champion and champion.version == v.version else "",
                f"v{v.dataset_version}",
                ", ".join(f"{k} {val:.3f}" for k, val in v.metrics.items()),
                v.decision,
            ]
            for v in versions
        ],
        title=f"model {name}",
    )


@models.command("rollback")
@click.argument("name")
@click.option("--to", "version", type=int, required=True, help="Version to make champion again.")
@pass_context
def models_rollback(ctx: Context, name: str, version: int) -> None:
    """Point the champion alias back at an earlier version (takes effect on the next request).

    \b
    Example:
      loopml models rollback churn --to 1
    """
    champion = ctx.backend.registry.set_champion(name, version, reason="rollback from the CLI")
    console.print(f"champion of {name} is now v{champion.version}")


@cli.command()
@click.argument("name")
@click.option(
    "--records",
    "records_file",
    type=click.File("r"),
    default=None,
    help='JSON file with {"records": [...]} or a list of records ("-" for stdin).',
)
@click.option(
    "--record",
    "pairs",
    multiple=True,
    metavar="FEATURE=VALUE",
    help="One record given inline, e.g. --record plan=pro --record tenure_months=3.",
)
@pass_context
def predict(ctx: Context, name: str, records_file: Any, pairs: tuple[str, ...]) -> None:
    """Get predictions from a model's champion through the inference API.

    \b
    Examples:
      loopml predict churn --records requests.json
      loopml predict churn --record tenure_months=3 --record monthly_charges=70 \\
          --record support_calls=4 --record plan=pro --record region=north
    """
    if records_file is not None:
        loaded = json.load(records_file)
        records = loaded["records"] if isinstance(loaded, dict) else loaded
    elif pairs:
        records = [dict(_parse_pair(pair) for pair in pairs)]
    else:
        raise click.UsageError("give --records FILE or --record FEATURE=VALUE")
    status, _headers, body = ctx.backend.http("POST", f"/v1/models/{name}/predict", {"records": records})
    _print_json(body)
    if status >= 400:
        raise SystemExit(1)


def _parse_pair(pair: str) -> tuple[str, Any]:
    key, sep, raw = pair.partition("=")
    if not sep:
        raise click.BadParameter(f"'{pair}' is not FEATURE=VALUE")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


# -- drift and audit ---------------------------------------------------------------------------------------------


@cli.group()
def drift() -> None:
    """Drift monitoring."""


@drift.command("check")
@click.argument("name")
@pass_context
def drift_check(ctx: Context, name: str) -> None:
    """Run the drift check for one model now (the schedule runs it for all models).

    Compares inputs and predictions captured since the last check with the champion's training baseline (PSI per
    feature). On drift it alerts, records it in the audit trail and restarts the pipeline unless a run is going.

    \b
    Example:
      loopml drift check churn
    """
    reply = ctx.backend.invoke(
        "drift_check",
        {
            "version": "0",
            "id": "cli",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ctx.backend.names.account,
            "time": "1970-01-01T00:00:00Z",
            "region": ctx.backend.region,
            "resources": [],
            "detail": {"model": name},
        },
    )
    for check in reply["checks"]:
        console.print(f"{check['model']}: [bold]{check['status']}[/] on {check['rows']} rows {check['action']}")
        if check["per_feature"]:
            _table(["feature", "PSI"], [[k, f"{v:.3f}"] for k, v in check["per_feature"].items()])


@cli.group()
def audit() -> None:
    """The tamper-evident audit trail."""


@audit.command("list")
@click.option("--subject", default="", help="Only records whose subject starts with this, e.g. model/churn.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_list(ctx: Context, subject: str, as_json: bool) -> None:
    """List audit records, oldest first."""
    records = ctx.backend.registry.audit_records(subject)
    if as_json:
        _print_json([r.model_dump() for r in records])
        return
    _table(["#", "at", "actor", "action", "subject"], [[r.seq, r.at, r.actor, r.action, r.subject] for r in records])


@audit.command("verify")
@pass_context
def audit_verify(ctx: Context) -> None:
    """Recompute the hash chain; exits 1 if any record was edited, inserted or deleted.

    \b
    Example:
      loopml audit verify && echo intact
    """
    verification = ctx.backend.registry.verify_audit()
    if verification.ok:
        console.print(f"[green]audit trail intact[/]: {verification.checked} records")
        return
    console.print(f"[red]audit trail BROKEN[/] ({verification.checked} records checked):")
    for problem in verification.problems:
        console.print(f"  - {problem}")
    raise SystemExit(1)


def main() -> None:
    cli(prog_name="loopml")
