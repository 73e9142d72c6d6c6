"""`loopml batch NAME FILE`: score a file with a model's champion on the local cloud or a deployed stack.

The file goes to `batch/<NAME>/input/<file>` in the data bucket, as any client could put it there; the S3 trigger
starts the batch state machine, whose Distributed Map scores the file's chunks in parallel. With `--wait` the command
follows that execution (chunks scored so far) and prints where the output and its report are.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import click

from infra.cli.errors import BackendError
from loopml_core.batch import layout

if TYPE_CHECKING:
    from infra.cli.backend import Backend
    from loopml_core.adapters.object_store import StoredObject

SCORED_BYTES_PER_S = 5e6  # a conservative end-to-end rate, for the default timeout
POLL_S = 0.25


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch stands: its execution's status, and chunks scored of chunks planned (None before the plan)."""

    status: str | None  # None: not started yet (the S3 notification is on its way)
    chunks: int | None
    scored_chunks: int


def upload_batch(
    backend: Backend, path: Path, model: str, id_column: str | None, on_progress: Callable[[int], None] | None = None
) -> StoredObject:
    """Upload `path` to `batch/<model>/input/<file name>` (in parts above 8 MB), tagged with the id column if any:
    tags set by the upload itself, so the plan step, which may run a moment later, always sees them."""
    from infra.cli.backend import UPLOAD_MARKER
    from loopml_core.adapters.object_store import StoredObject

    bucket, key = backend.names.data_bucket, f"{layout.BATCH}{model}/{layout.INPUT}{path.name}"
    marker = uuid.uuid4().hex
    extra: dict[str, Any] = {"Metadata": {UPLOAD_MARKER: marker}}
    if id_column:
        extra["Tagging"] = urlencode({layout.ID_COLUMN_TAG: id_column})
    client = backend.store.client
    client.upload_file(str(path), bucket, key, ExtraArgs=extra, Callback=on_progress)
    # The managed transfer does not return the version it made; the marker finds it even if others upload too.
    head = client.head_object(Bucket=bucket, Key=key)
    if head.get("Metadata", {}).get(UPLOAD_MARKER) != marker:
        for version in client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", []):
            if version["Key"] != key:
                continue
            head = client.head_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
            if head.get("Metadata", {}).get(UPLOAD_MARKER) == marker:
                break
    return StoredObject(bucket, key, head.get("VersionId") or "null")


def progress(backend: Backend, model: str, execution: str) -> BatchProgress:
    """The batch's status and the chunks its workers have finished, read from the work files the steps write."""
    from loopml_core.adapters.pipeline import StepFunctionsRunner
    from loopml_core.errors import NotFoundError

    stepfunctions = backend.client("stepfunctions")
    runner = StepFunctionsRunner(backend.names.batch_state_machine_arn(), stepfunctions)
    try:
        status: str | None = runner.describe(execution).status
    except stepfunctions.exceptions.ExecutionDoesNotExist:
        status = None
    work, bucket = layout.work_prefix(model, execution), backend.names.artifact_bucket
    try:
        chunks: int | None = len(json.loads(backend.store.get(bucket, layout.manifest_key(work))))
    except NotFoundError:
        chunks = None
    scored = 0
    if chunks:
        scored = sum(key.endswith(".json") for key in backend.store.list_keys(bucket, layout.parts_prefix(work)))
    return BatchProgress(status, chunks, scored)


def wait_for_outcome(
    backend: Backend,
    stored: StoredObject,
    model: str,
    timeout: float,
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> dict[str, Any]:
    """Follow the batch of an uploaded object version to its end; returns its report document."""
    execution = layout.execution_name(model, stored.key, stored.version_id)
    deadline = time.monotonic() + timeout
    while True:
        state = progress(backend, model, execution)
        if on_progress is not None:
            on_progress(state)
        if state.status is not None and state.status != "RUNNING":
            break
        if state.status is None and _never_started(backend, stored):
            raise BackendError(
                f"batch {execution} could not be started: batch_start failed after its retries (the alert has the "
                "error); fix the cause and run loopml batch again"
            )
        if time.monotonic() > deadline:
            where = "not started" if state.status is None else "still running"
            raise BackendError(
                f"batch {execution} {where} after {timeout:.0f}s; is the batch trigger deployed? Its report will be "
                f"s3://{stored.bucket}/{_report_key(stored, model)}"
            )
        time.sleep(POLL_S)
    report = _report_of(backend, stored, model, execution)
    if report is None:
        raise BackendError(f"batch {execution} ended {state.status} without a report of this upload")
    return report


def _never_started(backend: Backend, stored: StoredObject) -> bool:
    """Whether the on-failure destination has given the upload the `error` outcome: no execution will come."""
    from loopml_core.errors import NotFoundError

    try:
        tags = backend.store.tags(stored.bucket, stored.key, stored.version_id)
    except NotFoundError:
        return False
    return tags.get(layout.STATUS_TAG) == layout.BatchStatus.ERROR


def _report_of(backend: Backend, stored: StoredObject, model: str, execution: str) -> dict[str, Any] | None:
    """This upload's report: the very version the execution names when it succeeded; otherwise the report under the
    file's name or, when a newer upload of the same name superseded it, under `<stem>.<version id>`, whichever is
    about this object version."""
    from loopml_core.adapters.pipeline import StepFunctionsRunner
    from loopml_core.errors import NotFoundError

    runner = StepFunctionsRunner(backend.names.batch_state_machine_arn(), backend.client("stepfunctions"))
    output = runner.describe(execution).output or {}
    if output.get("report"):
        key = output["report"].removeprefix(f"s3://{stored.bucket}/")
        report: dict[str, Any] = json.loads(backend.store.get(stored.bucket, key, output.get("report_version_id")))
        return report
    batch = layout.batch_input(stored.bucket, stored.key, stored.version_id)
    assert batch is not None
    for stem in (batch.stem, layout.version_stem(batch.stem, stored.version_id)):
        try:
            report = json.loads(backend.store.get(stored.bucket, layout.report_key(model, stem)))
        except NotFoundError:
            continue
        if report.get("source_version_id") == stored.version_id:
            return report
    return None


def _report_key(stored: StoredObject, model: str) -> str:
    batch = layout.batch_input(stored.bucket, stored.key, stored.version_id)
    assert batch is not None
    return layout.report_key(model, batch.stem)


@click.command("batch")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id-column", default=None, help="Keep only this input column beside the predictions (default: all).")
@click.option("--wait/--no-wait", default=False, show_default=True, help="Follow the batch and print its outcome.")
@click.option("--timeout", default=None, type=float, help="Seconds to wait (default: scaled to the file's size).")
@click.pass_obj
def batch(context: Any, name: str, file: Path, id_column: str | None, wait: bool, timeout: float | None) -> None:
    """Score a CSV or Parquet file with model NAME's champion, in parallel chunks.

    The file goes to batch/NAME/input/; the output, in the file's format, lands at batch/NAME/output/<file> with every
    input column (or only --id-column) followed by prediction, one probability_<class> per class (classifiers) and
    model_version. Rows the contract refuses keep their place with empty predictions; the report beside the output,
    <file>.report.json, lists them by row, line, column and value. Exits 0 once scored, 1 when the file is refused
    (no champion, missing columns, unreadable) or the batch failed.

    \b
    Examples:
      loopml batch churn customers.csv --wait
      loopml batch churn customers.parquet --id-column customer_id --wait --timeout 1800
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TransferSpeedColumn

    out, err = Console(), Console(stderr=True)
    backend: Backend = context.backend
    size = file.stat().st_size
    with Progress(
        f"uploading {file.name}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("upload", total=size)
        stored = upload_batch(backend, file, name, id_column, on_progress=lambda sent: bar.advance(task, sent))
    execution = layout.execution_name(name, stored.key, stored.version_id)
    out.print(f"uploaded {stored.uri} (version {stored.version_id}); batch {execution}", soft_wrap=True)
    if not wait:
        where = f"s3://{stored.bucket}/{_report_key(stored, name)}"
        out.print(
            f"its outcome will be in {where} (or <stem>.<version>.report.json if a newer upload of the same name "
            f"supersedes it), and on the upload's {layout.STATUS_TAG} tag",
            soft_wrap=True,
        )
        return
    limit = timeout if timeout is not None else 300 + size / SCORED_BYTES_PER_S
    with Progress("scoring", BarColumn(), MofNCompleteColumn(), "chunks", console=err, transient=True) as bar:
        task = bar.add_task("chunks", total=None)

        def show(state: BatchProgress) -> None:
            bar.update(task, total=state.chunks, completed=state.scored_chunks)

        report = wait_for_outcome(backend, stored, name, limit, on_progress=show)
    _print_outcome(out, report)
    raise SystemExit(0 if report["status"] == layout.BatchStatus.SCORED else 1)


def _print_outcome(out: Any, report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    colour = {"scored": "green", "refused": "red", "failed": "red"}.get(report["status"], "white")
    # Escaped: a summary names columns in brackets (`types[age]`), which rich would read as markup.
    out.print(f"[{colour}]{report['status']}[/]: {escape(report['summary'])}", soft_wrap=True)
    if report.get("output"):
        out.print(f"output: {report['output']}", soft_wrap=True)
    out.print(f"report: {report['report']}", soft_wrap=True)
    if not report["issues"]:
        return
    table = Table(
        "check", "column", "rows", "where", "problem", title="rows and columns at fault", title_justify="left"
    )
    for issue in report["issues"][:20]:
        at = issue["lines"] or issue["rows"]
        where = ", ".join(map(str, at[:5])) + (", ..." if issue["row_count"] > len(at[:5]) else "")
        label = "lines " if issue["lines"] else ("rows " if issue["rows"] else "")
        cells = (
            issue["check"],
            issue["column"] or "(file)",
            f"{issue['row_count']:,}",
            label + where,
            issue["message"],
        )
        table.add_row(*(escape(cell) for cell in cells))
    out.print(table)
