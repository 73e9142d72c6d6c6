"""The `loopml` command line: the demo, the local cloud, and everyday operations on a local or deployed LoopML.

Commands other than `demo` and `local up` talk to the local cloud when `loopml local up` is running, otherwise to the
LoopML stack deployed in the AWS account of your environment (or to `--endpoint-url`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import click

from infra.cli.batch import batch as batch_command
from infra.cli.cards import card as models_card
from infra.cli.errors import BackendError
from infra.cli.keys import keys as keys_group
from infra.cli.lineage import COMMANDS as LINEAGE_COMMANDS
from infra.cli.lineage import MODELS_COMMANDS as LINEAGE_MODELS_COMMANDS
from infra.cli.models_registry import COMMANDS as MODELS_REGISTRY_COMMANDS
from loopml_core.contract import load_contract

if TYPE_CHECKING:
    from rich.console import Console

    from infra.cli.backend import Backend
    from loopml_core.models import Deployment
from loopml_core.errors import LoopMLError


@cache
def terminal(*, stderr: bool = False) -> Console:
    """The rich console, made on first use: `loopml validate --json` never prints through one, and rich takes 20 ms
    to import. It resolves sys.stdout at each write, so click's test runner captures it. On stderr go spinners and
    progress bars, kept out of what a pipe or --json reads."""
    from rich.console import Console

    return Console(stderr=stderr)


class Context:
    def __init__(self, endpoint_url: str | None, api_url: str | None, api_key: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.api_url = api_url
        self.api_key = api_key
        self._backend: Backend | None = None  # the AWS SDK and the registry load only for commands that use them

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from infra.cli.backend import Backend

            self._backend = Backend.resolve(self.endpoint_url, self.api_url, self.api_key)
        return self._backend


pass_context = click.make_pass_decorator(Context)
contract_option = click.option(
    "--contract",
    "contract_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Dataset contract, YAML or JSON.",
)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    terminal().print(table)


class LoopMLGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            if not _expected(error):
                raise
            # Expected failures (nothing running, unknown model, bad contract file) get one clear line, not a trace.
            click.secho(f"error: {error}", fg="red", err=True)
            raise SystemExit(2) from error


def _expected(error: Exception) -> bool:
    expected: list[type[Exception]] = [BackendError, LoopMLError, ValueError, OSError]
    # botocore is imported only by commands that talk to AWS; `loopml validate` starts faster without it.
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None:
        expected += [botocore.BotoCoreError, botocore.ClientError]
    return isinstance(error, tuple(expected))


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
@click.option(
    "--api-key",
    envvar="LOOPML_API_KEY",
    help="API key sent in the x-api-key header (default: the local cloud's own key; required on AWS).",
)
@click.pass_context
def cli(ctx: click.Context, endpoint_url: str | None, api_url: str | None, api_key: str | None) -> None:
    """LoopML: validate data, train, register, serve and monitor models — on AWS or on your laptop.

    \b
    Start here:
      loopml demo                 the whole closed loop, locally, in about a minute
      loopml local up             a local cloud for real clients (AWS CLI, curl)
      loopml validate FILE --contract C.yaml   check a file before uploading it
    """
    ctx.obj = Context(endpoint_url, api_url, api_key)


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


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@contract_option
@click.option("--json", "as_json", is_flag=True, help="Print the report document the quarantine would hold.")
@click.option("--max-issue-rows", default=20, show_default=True, help="Example rows listed per issue.")
def validate(file: Path, contract_file: Path, as_json: bool, max_issue_rows: int) -> None:
    """Validate a local CSV, gzip-compressed CSV or Parquet file against a contract, as an upload would be.

    The very code the validation Lambda runs: the file is streamed in segments, checked in parallel and in bounded
    memory (any size), and every problem is reported with its rows, file lines and values. The format comes from the
    name: .csv, .csv.gz or .parquet. Exits 0 when the file is valid, 1 when it is not, 2 on a usage error.

    \b
    Examples:
      loopml validate customers.csv --contract churn.yaml
      loopml validate customers.parquet --contract churn.yaml --json | jq '.issues[] | .message'
    """
    from loopml_core import digest

    # Hashed on another core while the validation's libraries load (started by the entry point when it could).
    ahead = digest.ahead_for(file) or digest.DigestAhead(file)

    from loopml_core.validation import FileSource, report_document
    from loopml_core.validation import validate as validate_file

    contract = load_contract(contract_file.read_text())
    source = FileSource(file, digest_ahead=ahead)
    if as_json:
        validated = validate_file(contract, source, max_issue_rows=max_issue_rows)
    else:
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(f"validating {file.name}", *columns, console=terminal(stderr=True), transient=True) as bar:
            task = bar.add_task("validate", total=source.size)
            validated = validate_file(
                contract,
                source,
                max_issue_rows=max_issue_rows,
                on_progress=lambda done: bar.update(task, completed=done),
            )
    report = validated.report
    if as_json:
        document = report_document(
            report, source=str(file), source_version_id=None, dataset=contract.name, seconds=validated.seconds
        )
        click.echo(json.dumps(document, indent=2))
        raise SystemExit(0 if report.ok else 1)
    rate = f"{report.rows / validated.seconds:,.0f} rows/s" if validated.seconds else ""
    if report.ok:
        terminal().print(f"[green]valid[/]: {report.rows:,} rows, {report.format}, {validated.seconds:.2f}s ({rate})")
        terminal().print(f"sha256 {report.sha256}")
        return
    noun = "issue" if len(report.issues) == 1 else "issues"
    terminal().print(f"[red]invalid[/]: {len(report.issues)} {noun} in {report.rows:,} rows ({validated.seconds:.2f}s)")
    _issue_table(report.model_dump(mode="json")["issues"])
    raise SystemExit(1)


def _issue_table(issues: list[dict[str, Any]]) -> None:
    rows = []
    for issue in issues:
        at = issue["lines"] or issue["rows"]
        where = ", ".join(map(str, at[:5])) + (", ..." if issue["row_count"] > len(at[:5]) else "")
        label = "lines " if issue["lines"] else ("rows " if issue["rows"] else "")
        rows.append(
            [issue["check"], issue["column"] or "(file)", f"{issue['row_count']:,}", label + where, issue["message"]]
        )
    _table(["check", "column", "rows", "where", "problem"], rows)


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
    """Run the local cloud until Ctrl-C (or SIGTERM).

    Serves an AWS-compatible endpoint (S3, DynamoDB, Step Functions, Lambda, SNS…) and the inference API, runs the
    real handlers in-process and fires the drift schedule. Resource names match a deployment. The API needs an
    API key, as on AWS: a default one is made at start, printed, and kept in .loopml/local.json ("api_key").

    \b
    Example:
      loopml local up &
      loopml datasets create --contract infra/demo/churn.yaml
      aws --endpoint-url http://127.0.0.1:4566 s3 cp data.csv \\
          s3://loopml-data-123456789012-us-east-1/incoming/churn/data.csv
      curl --cacert .loopml/tls/api-cert.pem -H "x-api-key: $KEY" https://127.0.0.1:8443/health
    """
    from infra.local.server import serve

    serve(port=port, api_port=api_port, tls=not plain_http, drift_every=drift_every, console=terminal())


@local.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (endpoints and resource names).")
def local_info(as_json: bool) -> None:
    """Show the running local cloud's endpoints and resource names.

    \b
    Example:
      loopml local info --json | jq -r .api_url
    """
    from infra.cli.backend import read_local_info

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
@contract_option
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
    terminal().print(
        f"dataset [bold]{contract.name}[/] {verb}: contract v{dataset.contract_version}; upload to "
        f"s3://{backend.names.data_bucket}/incoming/{contract.name}/<file> (.csv, .csv.gz or .parquet)"
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
    """Show a dataset's versions (rows, format, hash, S3 version) and what became of every upload.

    \b
    Example:
      loopml datasets show churn
    """
    registry = ctx.backend.registry
    registry.dataset(name)
    _table(
        ["version", "rows", "format", "sha256", "object", "s3 version", "created"],
        [
            [v.version, f"{v.rows:,}", v.format, v.sha256[:12], v.object.uri, v.object.version_id[:12], v.created_at]
            for v in registry.dataset_versions(name)
        ],
        title=f"dataset {name}",
    )
    _table(
        ["upload", "s3 version", "outcome", "version", "at", "summary"],
        [
            [
                PurePosixPath(u.source_key).name,
                (u.source_version_id or "")[:12],
                _outcome_markup(u.status),
                f"v{u.dataset_version}" if u.dataset_version else "",
                u.at,
                u.summary if len(u.summary) <= 120 else u.summary[:119] + "…",
            ]
            for u in registry.uploads(name)
        ],
        title=f"uploads to incoming/{name}/",
    )


def _outcome_markup(status: str) -> str:
    colour = {"accepted": "green", "duplicate": "yellow", "quarantined": "red", "error": "red"}.get(status, "white")
    return f"[{colour}]{status}[/]"


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="Dataset the file belongs to.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the validation outcome.")
@click.option("--timeout", default=None, type=float, help="Seconds to wait (default: scaled to the file's size).")
@pass_context
def upload(ctx: Context, file: Path, dataset: str, wait: bool, timeout: float | None) -> None:
    """Upload a CSV, .csv.gz or Parquet file to incoming/<dataset>/ and report what validation decided.

    Large files go up in parts, as `aws s3 cp` sends them. The outcome is one of: accepted (a new dataset version,
    and a training run when the contract says so), duplicate (the same content as an existing version: nothing new),
    quarantined (the report names every problem) or error (validation failed; the alert topic was told).
    Exits 0 when accepted or duplicate, 1 otherwise. Check a file first, without uploading: `loopml validate`.

    \b
    Example:
      loopml upload customers.csv.gz --dataset churn
    """
    backend = ctx.backend
    key = f"incoming/{dataset}/{file.name}"
    if not wait:
        stored = backend.upload_file(file, key)
        terminal().print(f"uploaded {stored.uri} (version {stored.version_id})")
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from infra.cli.backend import wait_for_outcome

    size = file.stat().st_size
    with Progress(
        f"uploading {file.name}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=terminal(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("upload", total=size)
        stored = backend.upload_file(file, key, on_progress=lambda sent: bar.advance(task, sent))
    limit = timeout if timeout is not None else 120 + size / 20e6  # validation streams well over 20 MB/s
    with terminal(stderr=True).status(f"validating {stored.uri} (version {stored.version_id[:12]})…"):
        outcome = wait_for_outcome(backend, stored, timeout=limit)
    where = f"{dataset} v{outcome.dataset_version}"
    if outcome.status == "accepted":
        run = (
            f"; training run {outcome.execution} started" if outcome.execution else "; no training (retrain_on: drift)"
        )
        terminal().print(f"[green]accepted[/]: {where}, {outcome.rows:,} rows, {outcome.format}{run}")
        return
    if outcome.status == "duplicate":
        terminal().print(f"[yellow]duplicate[/] of {where}: {outcome.summary}")
        return
    if outcome.status == "error":
        terminal().print(f"[red]error[/]: {outcome.summary}")
        raise SystemExit(1)
    terminal().print(f"[red]quarantined[/]: {outcome.quarantined}\nreport: {outcome.report}")
    if outcome.report:
        bucket, report_key = outcome.report.removeprefix("s3://").split("/", 1)
        _issue_table(json.loads(backend.store.get(bucket, report_key))["issues"])
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
    backend = ctx.backend
    executions = [e for e in backend.pipeline.executions() if model is None or e.model == model][:limit]
    failures = {
        run.execution: run
        for name in {e.model for e in executions if e.status == "FAILED" and e.model}
        for run in backend.registry.runs(name)
        if run.status == "FAILED"
    }

    def result(execution: Any) -> str:
        if execution.output:
            promoted = "promoted" if execution.output.get("promoted") else "kept champion"
            return f"v{execution.output.get('version')} {promoted}"
        failure = failures.get(execution.name)
        if failure is not None:
            return f"{failure.error}: {_reason(failure.cause)}"
        return ""

    _table(
        ["execution", "model", "status", "started", "result"],
        [[e.name, e.model, e.status, f"{e.started_at:%Y-%m-%d %H:%M:%S}", result(e)] for e in executions],
    )


def _reason(cause: str | None) -> str:
    """The readable part of a Step Functions failure cause (Lambda's errorMessage when it is one)."""
    if not cause:
        return "no cause recorded"
    try:
        parsed = json.loads(cause)
    except ValueError:  # the registry keeps the first 2000 characters, which may cut the JSON short
        import re

        found = re.search(r'"errorMessage"\s*:\s*"((?:[^"\\]|\\.)*)"', cause)
        return json.loads(f'"{found.group(1)}"') if found else cause
    return str(parsed.get("errorMessage", cause)) if isinstance(parsed, dict) else cause


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
    from loopml_core.logic.runs import start_training

    decision = start_training(
        backend.pipeline,
        model=model,
        dataset_version=dataset_version,
        trigger="manual",
        reason="started from the CLI",
        skip_if_running=True,
    )
    name = decision.execution.name if decision.execution else "-"
    terminal().print(f"{'started' if decision.started else 'not started'}: {name} ({decision.reason})")


# -- models ------------------------------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """Registered models, their versions and champion, and progressive delivery of a new version.

    \b
    A new version reaches traffic in steps (docs/delivery.md):
      loopml models deploy churn --version 3 --canary 10   v3 answers 10% of clients, the champion the rest
      loopml models compare churn                          live metrics per variant, with intervals and a verdict
      loopml models promote churn                          v3 becomes champion and the deployment ends
      loopml models rollback churn                         or: v3 gets no traffic from now on
    """


def _deployment_cell(deployment: Deployment | None) -> str:
    if deployment is None:
        return "-"
    share = "shadow" if deployment.weight is None else f"{deployment.mode.value} {deployment.weight}%"
    return f"v{deployment.version} {share}"


@models.command("list")
@pass_context
def models_list(ctx: Context) -> None:
    """List registered models with their champion and the challenger being deployed, if any.

    \b
    Example:
      loopml models list
    """
    registry = ctx.backend.registry
    rows = []
    for name in registry.models():
        champion = registry.champion(name)
        versions = registry.model_versions(name)
        rows.append(
            [
                name,
                len(versions),
                f"v{champion.version}" if champion else "-",
                champion.since if champion else "",
                _deployment_cell(registry.deployment(name)),
            ]
        )
    _table(["model", "versions", "champion", "since", "challenger"], rows)


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print every version, the champion and the deployment as JSON.")
@pass_context
def models_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show a model's versions: metrics, data, decision, which one is champion, and the deployment in progress.

    \b
    Example:
      loopml models show churn
    """
    registry = ctx.backend.registry
    versions = registry.model_versions(name)
    if not versions:
        raise BackendError(f"model '{name}' has no versions")
    champion = registry.champion(name)
    deployment = registry.deployment(name)
    if as_json:
        _print_json(
            {
                "champion": champion.version if champion else None,
                "deployment": deployment.model_dump(mode="json") if deployment else None,
                "versions": [v.model_dump(mode="json") for v in versions],
            }
        )
        return

    def role(version: int) -> str:
        if champion and champion.version == version:
            return "champion"
        if deployment and deployment.version == version:
            return f"challenger ({_deployment_cell(deployment).split(' ', 1)[1]})"
        return ""

    _table(
        ["version", "", "dataset", "metrics", "decision"],
        [
            [
                f"v{v.version}",
                role(v.version) or ("" if v.status == "READY" else v.status.value),  # READY goes without saying
                f"v{v.dataset_version}",
                ", ".join(f"{k} {val:.3f}" for k, val in v.metrics.items()),
                v.decision,
            ]
            for v in versions
        ],
        title=f"model {name}",
    )
    if deployment is not None:
        reason = f": {deployment.reason}" if deployment.reason else ""
        terminal().print(
            f"deployment: v{deployment.version} beside champion v{champion.version if champion else '-'}, "
            f"{deployment.describe()}; since {deployment.since} by {deployment.by}{reason}"
        )


@models.command("deploy")
@click.argument("name")
@click.option("--version", "version", type=int, required=True, help="The version to deploy beside the champion.")
@click.option(
    "--canary",
    type=click.IntRange(1, 99),
    metavar="PCT",
    help="Canary: the challenger answers PCT% of clients, each client always the same version.",
)
@click.option(
    "--shadow",
    is_flag=True,
    help="Shadow: the champion answers every request; the challenger scores the same records off the response path.",
)
@click.option(
    "--ab",
    type=click.IntRange(1, 99),
    metavar="PCT",
    is_flag=False,
    flag_value=50,
    help="A/B test: a fixed split, PCT% of clients to the challenger (50 when given alone).",
)
@click.option("--reason", default="", help="Why, for the audit trail.")
@pass_context
def models_deploy(
    ctx: Context, name: str, version: int, canary: int | None, shadow: bool, ab: int | None, reason: str
) -> None:
    """Deploy a version as the challenger beside the champion, or change the share of a deployment in progress.

    Give exactly one mode. A client sending the `X-LoopML-Key` header is answered by the same version on every
    request while the share stays the same; raising the share only moves clients from the champion to the
    challenger. Every answer says its version in `X-Model-Version`. Warm containers pick the change up within
    LOOPML_ALIAS_TTL_SECONDS (5 s). One deployment at a time: promote or roll back before deploying another version.

    \b
    Examples:
      loopml models deploy churn --version 3 --canary 10 --reason "new features"
      loopml models deploy churn --version 3 --canary 50      ramp the same canary up
      loopml models deploy churn --version 3 --shadow
      loopml models deploy churn --version 3 --ab             a 50/50 A/B test (--ab 20 for 20%)
    """
    chosen = [mode for mode, given in (("canary", canary), ("shadow", shadow or None), ("ab", ab)) if given]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --canary PCT, --shadow or --ab [PCT]")
    mode = chosen[0]
    weight = {"canary": canary, "shadow": None, "ab": ab}[mode]
    registry = ctx.backend.registry
    deployment, changed = registry.deploy(name, version, mode, weight, reason=reason or "deployed from the CLI")
    champion = registry.champion(name)
    verb = "deployed" if changed else "already deployed (unchanged)"
    terminal().print(
        f"{name}: v{deployment.version} {verb} beside champion v{champion.version if champion else '-'}: "
        f"{deployment.describe()}"
    )
    terminal().print(
        f"  next: `loopml models compare {name}` once labels arrive, then `loopml models promote {name}` "
        f"or `loopml models rollback {name}`"
    )


@models.command("promote")
@click.argument("name")
@click.option("--reason", default="", help="Why, for the audit trail.")
@pass_context
def models_promote(ctx: Context, name: str, reason: str) -> None:
    """Make the challenger of the deployment in progress the champion; the deployment ends.

    The champion alias moves and the challenger alias goes in one transaction, with their audit records; warm
    containers answer with the new champion within LOOPML_ALIAS_TTL_SECONDS (5 s).

    \b
    Example:
      loopml models promote churn --reason "better F1 on 4,000 labels"
    """
    champion, ended = ctx.backend.registry.promote(name, reason=reason or "promoted from the CLI")
    terminal().print(
        f"{name}: v{champion.version} is champion now; its {ended.mode.value} deployment ended (it began {ended.since})"
    )


@models.command("rollback")
@click.argument("name")
@click.argument("version", type=int, required=False)
@click.option("--to", "to", type=int, default=None, help="Same as VERSION (the older spelling).")
@click.option("--reason", default="", help="Why, for the audit trail.")
@pass_context
def models_rollback(ctx: Context, name: str, version: int | None, to: int | None, reason: str) -> None:
    """Roll back at once: end the deployment in progress, or point the champion at an earlier version.

    Without VERSION, the challenger gets no more traffic and the champion is untouched (a deployment must be in
    progress). With VERSION, the champion alias points at it again and any deployment ends in the same transaction,
    so one known version answers everything. Warm containers follow within LOOPML_ALIAS_TTL_SECONDS (5 s).

    \b
    Examples:
      loopml models rollback churn          stop the canary, shadow or A/B test now
      loopml models rollback churn 1        v1 is champion again (also: --to 1)
    """
    if version is not None and to is not None and version != to:
        raise click.UsageError(f"VERSION {version} and --to {to} disagree: give one")
    target = version if version is not None else to
    done = ctx.backend.registry.rollback(name, target, reason=reason or "rollback from the CLI")
    ended = f"; the {done.ended.mode.value} of v{done.ended.version} ended" if done.ended else ""
    if done.moved:
        terminal().print(f"champion of {name} is now v{done.champion.version}{ended}")
    else:
        terminal().print(
            f"{name}: the {done.ended.mode.value if done.ended else ''} deployment of "
            f"v{done.ended.version if done.ended else '-'} ended; champion v{done.champion.version} answers all traffic"
        )


@models.command("compare")
@click.argument("name")
@click.option(
    "--version",
    "version",
    type=int,
    default=None,
    help="Compare this version with the champion (default: the challenger of the deployment in progress).",
)
@click.option(
    "--since",
    default=None,
    metavar="DATE",
    help="Count labelled predictions from this day (default: the day the deployment began; else all).",
)
@click.option("--confidence", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@pass_context
def models_compare(
    ctx: Context, name: str, version: int | None, since: str | None, confidence: float, as_json: bool
) -> None:
    """Compare the challenger with the champion on live labels: metrics per variant with confidence intervals, the
    difference in the contract's metric, and a verdict.

    Uses the labelled predictions of each version (upload labels to labels/<model>/, docs/monitoring.md) from the
    day the deployment began. The verdict is "challenger better", "champion better" or "no significant difference
    yet" with an estimate of the labels still needed; it waits for monitoring.performance.min_labels labels per
    variant. Intervals: Wilson (accuracy), bootstrap of the counts (F1, ROC AUC), normal (MAE, RMSE): see
    docs/delivery.md. Exits 0 whatever the verdict.

    \b
    Examples:
      loopml models compare churn
      loopml models compare churn --json | jq -r .summary
      loopml models compare churn --version 2 --since 2026-03-01
    """
    from loopml_core.comparison import compare, counts_since

    registry = ctx.backend.registry
    contract = registry.contract(name)
    state = registry.serving_state(name)
    deployment = state.deployment
    if version is None:
        if deployment is None:
            raise click.UsageError(
                f"'{name}' has no deployment in progress: give --version V to compare V with the champion"
            )
        version = deployment.version
    registry.model_version(name, version)
    if version == state.champion:
        raise click.UsageError(f"v{version} is the champion: compare another version with it")
    if since is None:
        since = deployment.since if deployment is not None and deployment.version == version else ""
    settings = contract.monitoring.performance
    result = compare(
        champion_version=state.champion,
        champion_counts=counts_since(registry.performance(name, state.champion, since), since),
        challenger_version=version,
        challenger_counts=counts_since(registry.performance(name, version, since), since),
        metric=contract.performance_metric,
        confidence=confidence,
        min_labels=settings.min_labels,
    )
    if as_json:
        _print_json({"model": name, "since": since[:10] or None, **result.to_json()})
        return
    order = ("accuracy", "f1_macro", "roc_auc", "rmse", "mae")
    present = {*result.champion.metrics, *result.challenger.metrics}
    names = [m for m in order if m in present]

    def cell(estimate: Any, signed: bool = False) -> str:
        if estimate is None:
            return "-"
        form = "+.3f" if signed else ".3f"
        text = format(estimate.value, form)
        return text if estimate.low is None else f"{text} [{estimate.low:{form}}, {estimate.high:{form}}]"

    champion_side, challenger_side = result.champion, result.challenger
    window = f" since {since[:10]}" if since else ""
    _table(
        [
            "metric",
            f"champion v{champion_side.version}",
            f"challenger v{challenger_side.version}",
            "challenger - champion",
        ],
        [
            ["labels", f"{champion_side.labels:,}", f"{challenger_side.labels:,}", ""],
            *(
                [
                    f"{m} *" if m == result.metric else m,
                    cell(champion_side.metrics.get(m)),
                    cell(challenger_side.metrics.get(m)),
                    cell(result.differences.get(m), signed=True),
                ]
                for m in names
            ),
        ],
        title=f"{name}: live metrics{window} ({confidence:.0%} intervals)",
    )
    better = "higher" if result.higher_is_better else "lower"
    terminal().print(f"* judged on {result.metric} ({better} is better)")
    colour = {"challenger better": "green", "champion better": "red"}.get(result.verdict, "yellow")
    terminal().print(f"verdict: [bold {colour}]{result.summary}[/]")
    for note in result.notes:
        terminal().print(f"  {note}")


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
@click.option(
    "--client-key",
    default=None,
    metavar="KEY",
    help="Routing key (X-LoopML-Key): during a canary or A/B test the same key always gets the same version.",
)
@pass_context
def predict(ctx: Context, name: str, records_file: Any, pairs: tuple[str, ...], client_key: str | None) -> None:
    """Get predictions from a model through the inference API (the champion, or a challenger during a deployment).

    Prints the answer, and on stderr which version answered it.

    \b
    Examples:
      loopml predict churn --records requests.json
      loopml predict churn --record tenure_months=3 --record monthly_charges=70 \\
          --record support_calls=4 --record plan=pro --record region=north
      loopml predict churn --records requests.json --client-key customer-42
    """
    if records_file is not None:
        loaded = json.load(records_file)
        records = loaded["records"] if isinstance(loaded, dict) else loaded
    elif pairs:
        records = [dict(_parse_pair(pair) for pair in pairs)]
    else:
        raise click.UsageError("give --records FILE or --record FEATURE=VALUE")
    routing_headers = {"X-LoopML-Key": client_key} if client_key else None
    status, headers, body = ctx.backend.http(
        "POST", f"/v1/models/{name}/predict", {"records": records}, routing_headers
    )
    _print_json(body)
    if status >= 400:
        raise SystemExit(1)
    answered = {k.lower(): v for k, v in headers.items()}
    if "x-model-version" in answered:
        variant = answered.get("x-loopml-variant", "champion")
        terminal(stderr=True).print(f"[dim]answered by {name} v{answered['x-model-version']} ({variant})[/]")


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
    """Monitoring: drift of live traffic against the training baseline, its reports, and retraining."""


@drift.command("check")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the structured result (what the report is made from).")
@pass_context
def drift_check(ctx: Context, name: str, as_json: bool) -> None:
    """Run the monitoring check for one model now (the schedule runs it hourly for every model).

    Counts the traffic captured since the last check against the champion's training baseline and judges each
    feature and the prediction: PSI, plus a KS test (numbers) or chi-squared test (categories), with the
    contract's `monitoring.drift` thresholds. On drift it alerts (once per drift episode), writes an HTML report
    and restarts training within the contract's `retraining` limits; every decision is in the audit trail.
    Exits 0 whatever it finds; with --json, `status` says what it found.

    \b
    Examples:
      loopml drift check churn
      loopml drift check churn --json | jq '.features | map_values(.psi)'
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
    checks = reply["checks"]
    if as_json:
        _print_json(checks[0] if len(checks) == 1 else checks)
        return
    for check in checks:
        colour = {"drift": "red", "ok": "green"}.get(check["status"], "yellow")
        window = check.get("window") or {}
        terminal().print(
            f"{check['model']} v{check.get('version') or '-'}: [bold {colour}]{check['status']}[/] on "
            f"{check['rows']} captured rows ({window.get('objects', 0)} batches; needs {check.get('min_rows', 0)})"
        )
        columns = [*check.get("features", {}).items()]
        if check.get("prediction"):
            columns.append(("(prediction)", check["prediction"]))
        if columns:
            _table(
                ["column", "PSI", "test", "statistic", "p-value", "drift"],
                [
                    [
                        name,
                        f"{c['psi']:.3f}",
                        c["test"],
                        f"{c['statistic']:.3f}",
                        f"{c['p_value']:.2g}",
                        "yes" if c["drifted"] else "",
                    ]
                    for name, c in columns
                ],
            )
        for line in filter(None, [check.get("action"), *(check.get("notes") or [])]):
            terminal().print(f"  {line}")
        if check.get("report"):
            terminal().print(f"  report: {check['report']}  (loopml drift report {check['model']} --open)")


@drift.command("report")
@click.argument("name")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Where to save the HTML page.")
@click.option("--open", "open_it", is_flag=True, help="Open the page in the default browser.")
@pass_context
def drift_report(ctx: Context, name: str, out: Path | None, open_it: bool) -> None:
    """Fetch the latest monitoring report of a model: one self-contained HTML page, readable offline.

    Per feature and for the prediction it plots the training baseline against the checked window, with the
    statistics and the verdict; live performance appears once labels have been uploaded. It holds summaries
    only, never a captured row.

    \b
    Examples:
      loopml drift report churn --open
      loopml drift report churn --out churn-drift.html
    """
    backend = ctx.backend
    keys = backend.store.list_keys(backend.names.artifact_bucket, f"reports/{name}/")
    if not keys:
        raise click.ClickException(f"no report for '{name}' yet: run `loopml drift check {name}` first")
    key = keys[-1]  # the names sort by the time of the check
    target = out or Path(f"{name}-{PurePosixPath(key).stem}.html")
    target.write_bytes(backend.store.get(backend.names.artifact_bucket, key))
    terminal().print(f"s3://{backend.names.artifact_bucket}/{key} -> {target}")
    if open_it:
        import webbrowser

        webbrowser.open(target.resolve().as_uri())


@cli.group()
def alerts() -> None:
    """Where LoopML's alerts go: drift, performance drops, failed uploads, alarms."""


@alerts.command("subscribe")
@click.argument("endpoint")
@pass_context
def alerts_subscribe(ctx: Context, endpoint: str) -> None:
    """Send the alert topic's messages to an e-mail address or an HTTPS endpoint (e.g. a chat webhook).

    An e-mail address receives a confirmation message first: alerts flow once the link in it is followed. At
    deploy time, `cdk deploy -c alertEmail=you@example.com` subscribes an address with the stack.

    \b
    Examples:
      loopml alerts subscribe oncall@example.com
      loopml alerts subscribe https://hooks.example.com/loopml
    """
    if endpoint.startswith("https://"):
        protocol = "https"
    elif "@" in endpoint and " " not in endpoint and not endpoint.startswith(("http:", "https:")):
        protocol = "email"
    else:
        raise click.BadParameter("give an e-mail address or an https:// URL", param_hint="ENDPOINT")
    backend = ctx.backend
    reply = backend.client("sns").subscribe(
        TopicArn=backend.names.alert_topic_arn(), Protocol=protocol, Endpoint=endpoint, ReturnSubscriptionArn=True
    )
    terminal().print(f"subscribed {endpoint} ({protocol}): {reply['SubscriptionArn']}")
    if protocol == "email":
        terminal().print("confirm with the link in the message AWS sends; alerts flow after that")


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
@click.option(
    "--json", "as_json", is_flag=True, help="Print the verification as JSON (ok, checked, problems, warnings)."
)
@pass_context
def audit_verify(ctx: Context, as_json: bool) -> None:
    """Check the audit trail; exit 1 if it was tampered with, 0 otherwise.

    Recomputes the hash chain in the registry table (an edited, inserted or deleted record breaks it) and compares
    it with the checkpoints of its head kept in the audit bucket under S3 Object Lock: a record that differs from
    its checkpoint, or a chain that ends before the newest checkpoint (the last records deleted and the head item
    rewritten to match), is named. Each problem is printed on its own line. Records newer than the newest
    checkpoint are only a warning (a checkpoint failed, or is being written): exit 0.

    \b
    Example:
      loopml audit verify && echo intact
      loopml audit verify --json | jq .problems
    """
    from rich.markup import escape as rich_escape

    verification = ctx.backend.registry.verify_audit()
    if as_json:
        _print_json(dataclasses.asdict(verification))
        if not verification.ok:
            raise SystemExit(1)
        return
    out = terminal()
    for warning in verification.warnings:  # one line each, however narrow the terminal: grep-able, diff-able
        out.print(f"[yellow]warning[/]: {rich_escape(warning)}", soft_wrap=True)
    if verification.ok:
        anchored = f", anchored up to record {verification.anchored_to}" if verification.anchored_to else ""
        out.print(f"[green]audit trail intact[/]: {verification.checked} records{anchored}")
        return
    out.print(f"[red]audit trail BROKEN[/] ({verification.checked} records checked):")
    for problem in verification.problems:
        out.print(f"  - {problem}", soft_wrap=True, markup=False)
    raise SystemExit(1)


cli.add_command(keys_group)
cli.add_command(batch_command)
models.add_command(models_card)
for _command in (*MODELS_REGISTRY_COMMANDS, *LINEAGE_MODELS_COMMANDS):
    models.add_command(_command)
for _command in LINEAGE_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="loopml")
