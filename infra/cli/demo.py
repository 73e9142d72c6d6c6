"""`loopml demo`: the whole closed loop on the local cloud, narrated.

Every stage goes through the same paths as on AWS: an S3 put triggers validation through the bucket notification,
Step Functions runs the deployed definition, predictions travel over HTTPS through the API's Lambda proxy event,
and the drift check runs from its schedule's event.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from infra import declaration as decl
from infra.cli.backend import cli_actor, http_json, upload_and_wait
from infra.cli.models_registry import resume_waiting_run
from infra.demo import data
from infra.keys import LOCAL_KEY_NAME
from infra.local.api_gateway import ApiServer
from infra.local.cloud import LocalCloud
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.pipeline import Execution
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.cards import card_keys
from loopml_core.contract import Approval, load_contract
from loopml_core.registry import Registry

CONTRACT = Path(__file__).resolve().parent.parent / "demo" / "churn.yaml"


class DemoFailure(Exception):
    """A stage did not produce what the loop promises."""


class Narrator:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.timings: list[tuple[str, float]] = []
        self._number = 0

    @contextmanager
    def stage(self, title: str) -> Iterator[None]:
        self._number += 1
        self.console.rule(f"[bold cyan]{self._number}. {title}")
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        self.timings.append((title, elapsed))
        self.console.print(f"[dim]   ({elapsed:.1f}s)[/dim]")

    def say(self, text: str) -> None:
        self.console.print(f"   {text}")

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise DemoFailure(message)


def _wait(cloud: LocalCloud, console: Console, name: str) -> Execution:
    with console.status(f"   Step Functions is running [bold]{name}[/bold] (train → evaluate → register)…"):
        return cloud.wait_for_execution(name, timeout=240)


def _approve(cloud: LocalCloud, console: Console, say: Narrator, approver: Registry, execution: str, why: str) -> int:
    """Wait for the run to hold its winner for approval, then approve it as `loopml models approve` does (the
    registry's decision, then the run resumed by its task token) and wait for the run to end. Returns the version."""
    deadline = time.monotonic() + 240
    with console.status(f"   Step Functions is running [bold]{execution}[/bold] (train → evaluate → register)…"):
        alerted: list[str] = []
        while True:
            alerted += [a["Subject"] for a in cloud.alerts() if "approval needed" in a["Subject"]]
            waiting = [v for v in approver.model_versions("churn") if v.execution == execution]
            if waiting and alerted and approver.approval_request("churn", waiting[0].version) is not None:
                break
            ended = cloud.pipeline().describe(execution)
            say.check(ended.status == "RUNNING", f"run {execution} ended {ended.status} without waiting for approval")
            if time.monotonic() > deadline:
                raise DemoFailure(f"run {execution} registered nothing waiting for approval")
            time.sleep(0.1)
    version = waiting[0]
    _, card_html = card_keys(version)
    say.say(
        f"v{version.version} [yellow]waits for approval[/] (governance.approval: manual): {version.decision}; "
        f"SNS alert [yellow]{alerted[0]}[/] with its card s3://{version.artifact.bucket}/{card_html}"
    )
    decision = approver.approve("churn", version.version, why)
    resumed = resume_waiting_run(cloud.client("stepfunctions"), decision.request, approved=True, reason=why)
    say.say(f'{approver.actor} ran [bold]loopml models approve churn {version.version} --reason "{why}"[/]:')
    say.say(f"{decision.note}{resumed}")
    status = _wait(cloud, console, execution)
    say.check(status.status == "SUCCEEDED", f"pipeline {execution} ended {status.status}")
    return version.version


def alias_ttl_seconds() -> float:
    spec = decl.FUNCTIONS[decl.API.function]
    return float(dict(spec.environment).get("LOOPML_ALIAS_TTL_SECONDS", "5"))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    return table


def run_demo(console: Console | None = None, rows: int = 2000) -> dict[str, Any]:  # noqa: PLR0915 - one story
    """Run the loop; returns what happened (for tests and the closing summary). Raises DemoFailure."""
    console = console or Console(file=sys.stdout)
    say = Narrator(console)
    started = time.perf_counter()
    summary: dict[str, Any] = {}
    with LocalCloud() as cloud:
        anchor = S3AuditAnchor(cloud.names.audit_bucket, S3ObjectStore(cloud.client("s3")))
        registry = Registry(
            DynamoTable(cloud.names.registry_table, cloud.client("dynamodb")), actor="demo", anchor=anchor
        )
        store = S3ObjectStore(cloud.client("s3"))
        bucket = cloud.names.data_bucket

        def upload(name: str, body: bytes) -> dict[str, str]:
            # The bucket notification runs validation, which tags the upload with its outcome.
            return upload_and_wait(store, bucket, f"incoming/churn/{name}", body)

        with say.stage("Local cloud up: the CDK app's declaration, provisioned on moto"):
            info = cloud.info()
            say.say(f"data bucket [bold]{info['data_bucket']}[/], registry table [bold]{info['registry_table']}[/]")
            say.say(f"state machine [bold]{info['state_machine_arn']}[/]")
            say.say(f"{len(info['functions'])} functions: {', '.join(info['functions'].values())}")

        with say.stage("Declare the dataset contract"):
            contract = load_contract(CONTRACT.read_text())
            # In this demo a person signs off every model before it serves (the contract's governance section).
            manual = contract.governance.model_copy(update={"approval": Approval.MANUAL})
            contract = contract.model_copy(update={"governance": manual})
            dataset, _ = registry.declare_dataset(contract)
            say.say(
                f"dataset [bold]{contract.name}[/]: {len(contract.features)} features, target "
                f"'{contract.target}', contract v{dataset.contract_version}, retrain on {contract.retrain_on}, "
                "approval: manual"
            )
        # The approver's registry: what `loopml models approve` opens, with the caller's name in the audit trail.
        approver = Registry(
            DynamoTable(cloud.names.registry_table, cloud.client("dynamodb")), actor=cli_actor(None), anchor=anchor
        )

        with say.stage("A clean upload lands in S3 → validated, versioned, pipeline started"):
            tags = upload("2026-01.csv", data.to_csv(data.customers(rows, seed=1)))
            say.check(tags.get("loopml-status") == "accepted", f"clean upload was not accepted: {tags}")
            version = registry.latest_dataset_version("churn")
            assert version is not None
            say.say(
                f"accepted as dataset v{version.version}: {version.rows} rows, sha256 {version.sha256[:12]}…, "
                f"S3 version {version.object.version_id[:12]}…"
            )
            execution = cloud.pipeline_executions()[0]
            _approve(cloud, console, say, approver, execution, "first model: card and holdout reviewed")
            v1 = registry.champion_version("churn")
            say.say(
                f"model [bold]churn v{v1.version}[/] is champion — holdout accuracy "
                f"{v1.metrics['accuracy']:.3f}, ONNX parity: {v1.parity.get('message', 'ok')}"
            )
            summary["v1_metrics"] = v1.metrics
            _, card_html = card_keys(v1)
            say.check(store.size(v1.artifact.bucket, card_html) > 0, "the pipeline stored no model card")
            say.say(
                f"its model card: s3://{v1.artifact.bucket}/{card_html} "
                f"([bold]loopml models card churn {v1.version} --html --out card.html[/])"
            )

        server = ApiServer(cloud, port=0, tls=True).start()
        ca = str(server.cert_path)
        # Every request carries an API key, as on AWS: the local cloud's default key (`loopml keys` makes others).
        key_header = {"Content-Type": "application/json", decl.API.api_key_header: server.gateway.default_key or ""}

        def predict(records: list[dict[str, Any]]) -> tuple[int, dict[str, str], Any]:
            return http_json("POST", f"{server.url}/v1/models/churn/predict", {"records": records}, ca, key_header)

        try:
            with say.stage(f"Predictions over HTTPS ({server.url})"):
                sample = data.requests_for(data.customers(3, seed=5))
                status_code, _, body = http_json(
                    "POST", f"{server.url}/v1/models/churn/predict", {"records": sample}, ca
                )
                say.check(status_code == 403, f"a request without an API key returned {status_code}")
                say.say(f"without an API key: {status_code} {body['message']}; with the {LOCAL_KEY_NAME} key:")
                status_code, headers, body = predict(sample)
                say.check(status_code == 200, f"predict returned {status_code}: {body}")
                say.say(f"200, X-Model-Version: {headers.get('X-Model-Version')}")
                console.print(
                    _table(
                        "   predictions",
                        ["record", "label", "P(yes)"],
                        [
                            [json.dumps(r), p["label"], f"{p['probabilities']['yes']:.3f}"]
                            for r, p in zip(sample, body["predictions"], strict=True)
                        ],
                    )
                )
                bad = [{**sample[0], "plan": "gold"}, {k: v for k, v in sample[1].items() if k != "region"}]
                status_code, _, body = predict(bad)
                say.check(status_code == 422, f"bad request returned {status_code}")
                say.say(f"a bad request gets {status_code}: {body['error']}")
                for detail in body["details"]:
                    say.say(f"   record {detail['record']}, field '{detail['field']}': {detail['message']}")

            with say.stage("A malformed upload is quarantined with a report, never deleted"):
                tags = upload("broken.csv", data.malformed_csv())
                say.check(tags.get("loopml-status") == "quarantined", f"malformed upload not quarantined: {tags}")
                report_key = next(k for k in store.list_keys(bucket, "quarantine/churn/") if k.endswith(".report.json"))
                report = json.loads(store.get(bucket, report_key))
                console.print(
                    _table(
                        f"   s3://{bucket}/{report_key}",
                        ["check", "column", "rows", "why"],
                        [[i["check"], i.get("column") or "-", _rows(i), i["message"][:80]] for i in report["issues"]],
                    )
                )
                summary["quarantine_issues"] = len(report["issues"])

            with say.stage("The same file again under another name: a duplicate, nothing trained twice"):
                tags = upload("2026-01-copy.csv", data.to_csv(data.customers(rows, seed=1)))
                say.check(tags.get("loopml-status") == "duplicate", f"repeated upload not a duplicate: {tags}")
                say.say(f"duplicate of dataset v{tags.get('loopml-duplicate-of')}: no new version, no training run")

            with say.stage("Newer labelled data arrives (prices rose): versioned, waiting for the drift check"):
                tags = upload("2026-06.csv", data.to_csv(data.customers(rows, seed=2, shifted=True)))
                say.check(tags.get("loopml-status") == "accepted", f"newer upload was not accepted: {tags}")
                latest = registry.latest_dataset_version("churn")
                assert latest is not None
                say.say(f"accepted as dataset v{latest.version}; no retrain yet (contract retrain_on: drift)")

            with say.stage("Drifted live traffic hits the API"):
                customers = data.customers(400, seed=3, shifted=True)
                shifted = data.requests_for(customers)
                labelled: list[list[Any]] = []
                for start in range(0, len(shifted), 100):
                    code, _, answer = predict(shifted[start : start + 100])
                    say.check(code == 200, f"predict returned {code}")
                    labelled += [
                        [answer["request_id"], p["index"], customers[start + p["index"]]["churned"]]
                        for p in answer["predictions"]
                    ]
                say.say(f"{len(shifted)} predictions served and captured for monitoring (each names its request_id)")

            with say.stage("Ground truth arrives: labels joined with the predictions they name"):
                lines = ["request_id,index,churned", *(",".join(str(v) for v in row) for row in labelled)]
                tags = upload_and_wait(store, bucket, "labels/churn/2026-06-outcomes.csv", "\n".join(lines).encode())
                say.check(tags.get("loopml-status") == "accepted", f"label file not accepted: {tags}")
                [labels] = [u for u in registry.uploads("churn") if u.source_key.startswith("labels/")]
                say.say(labels.summary)

            with say.stage("The drift schedule fires: PSI, KS and chi² against the baseline → alert → retrain"):
                result = cloud.fire_schedule()["checks"][0]
                say.check(result["status"] == "drift", f"drift check found no drift: {result}")
                console.print(
                    _table(
                        f"   {result['rows']} captured rows against the training baseline",
                        ["column", "PSI", "test", "statistic", "p-value", ""],
                        [
                            [
                                name,
                                f"{column['psi']:.3f}",
                                column["test"],
                                f"{column['statistic']:.3f}",
                                f"{column['p_value']:.2g}",
                                "[red]drift[/]" if column["drifted"] else "",
                            ]
                            for name, column in [*result["features"].items(), ("prediction", result["prediction"])]
                        ],
                    )
                )
                say.say(f"report: {result['report']}")
                summary["drift_report"] = result["report"]
                performance: dict[str, Any] = result["performance"] or {}
                judged: dict[str, Any] = performance.get("latest") or {}
                say.check(bool(judged), f"no live performance: {performance}")
                say.say(
                    f"live {performance['metric']} of v{judged['version']} on {judged['window']}: "
                    f"[bold]{judged['value']:.3f}[/] over {judged['labels']} labels (holdout "
                    f"{performance['holdout']:.3f}; alert below {performance['limit']:.3f})"
                    + (" [red]dropped[/]" if performance["dropped"] else "")
                )
                summary["live_performance"] = {performance["metric"]: judged["value"]}
                alerts = cloud.alerts()
                say.check(bool(alerts), "no alert was published")
                say.say(f"SNS alert: [yellow]{alerts[0].get('Subject')}[/]")
                say.say(result["action"])
                _approve(
                    cloud, console, say, approver, result["retraining"]["execution"], "beats v1 on the drifted data"
                )
                v2 = registry.model_versions("churn")[-1]
                say.say(
                    f"v{v2.version} evaluated against v{v1.version} on the same holdout (dataset "
                    f"v{v2.dataset_version}): {v2.decision}"
                )
                say.check(v2.promoted, f"v{v2.version} was not promoted: {v2.decision}")
                summary["v2_metrics"], summary["v1_on_new_holdout"] = v2.metrics, v2.champion_metrics

            with say.stage("Serving the new champion"):
                # A warm container reads the alias at most every LOOPML_ALIAS_TTL_SECONDS: no registry read per
                # request, and the promotion reaches it within that bound.
                promoted_at, bound = time.perf_counter(), alias_ttl_seconds() + 1.0
                while True:
                    status_code, headers, body = predict(shifted[:2])
                    served = headers.get("X-Model-Version")
                    if served == str(v2.version) or time.perf_counter() - promoted_at > bound:
                        break
                    time.sleep(0.1)
                say.check(served == str(v2.version), f"the API still serves v{served} {bound:.0f}s after the promotion")
                say.say(
                    f"X-Model-Version: {served} after {time.perf_counter() - promoted_at:.1f}s (bound "
                    f"{bound - 1.0:.0f}s) — predictions {[p['label'] for p in body['predictions']]}"
                )
        finally:
            server.stop()

        with say.stage("The audit trail, verified"):
            records = registry.audit_records()
            console.print(
                _table(
                    "   audit trail",
                    ["#", "action", "subject", "hash"],
                    [[r.seq, r.action, r.subject, r.hash[:12] + "…"] for r in records],
                )
            )
            verification = registry.verify_audit()
            say.check(verification.ok, f"audit chain broken: {verification.problems}")
            say.say(f"[green]chain intact[/]: {verification.checked} records, each linked to the one before it")
            summary["audit_records"] = verification.checked

    total = time.perf_counter() - started
    summary["seconds"] = round(total, 1)
    summary["timings"] = {title: round(seconds, 2) for title, seconds in say.timings}
    console.print(
        Panel.fit(
            f"[bold green]The loop closed[/] in {total:.1f}s: v1 trained, approved → served → drift detected → "
            f"v2 trained, beat v1 on the same holdout, approved and took over.\nFunction logs: {cloud.log_path}",
            title="LoopML demo",
        )
    )
    return summary


def _rows(issue: dict[str, Any]) -> str:
    lines = issue.get("lines") or issue.get("rows") or []
    shown = ", ".join(str(n) for n in lines[:5])
    extra = issue.get("row_count", len(lines)) - min(len(lines), 5)
    return (shown + (f" +{extra} more" if extra > 0 else "")) or "-"


def main(console_factory: Callable[[], Console] | None = None) -> int:
    console = console_factory() if console_factory else Console(file=sys.stdout)
    try:
        run_demo(console)
    except DemoFailure as failure:
        console.print(f"[bold red]demo failed:[/] {failure}")
        return 1
    return 0
