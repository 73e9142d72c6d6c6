"""Approval before production: a candidate the contract wants a person to approve waits, and the pipeline with it.

The training pipeline registers such a winner as PENDING_APPROVAL and then waits on a Step Functions task token
(`.waitForTaskToken`, for the contract's `governance.approval_timeout_hours`). Its approval step calls `request`:
the token is recorded with the version and the alert topic is told what waits, where its model card is, and how to
decide. `loopml models approve` / `reject` record the decision (`Registry.approve` / `reject`) and resume the run
with the token. Should nobody decide in time, the step's timeout calls `time_out`, which rejects the version.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from loopml_core.adapters.notifier import Notifier
from loopml_core.cards import card_keys
from loopml_core.clock import iso, utc_now
from loopml_core.models import VersionStatus
from loopml_core.registry import Registry


class Approvals:
    def __init__(self, registry: Registry, notifier: Notifier) -> None:
        self.registry = registry
        self.notifier = notifier

    def request(self, model: str, version: int, *, token: str, execution: str, timeout_s: int) -> dict[str, Any]:
        """Record the token the run waits on and, the first time, alert the approvers. A retried step (a new token)
        replaces the token without alerting again."""
        deadline = iso(utc_now() + timedelta(seconds=timeout_s))
        request, first = self.registry.request_approval(
            model, version, token=token, execution=execution, deadline=deadline
        )
        if first:
            subject = f"LoopML approval needed: {model} v{version}"
            self.notifier.publish(subject, self._message(model, version, deadline))
        return {"model": model, "version": version, "deadline": request.deadline, "alerted": first}

    def _message(self, model: str, version: int, deadline: str) -> str:
        record = self.registry.model_version(model, version)
        markdown, html = card_keys(record)
        metrics = ", ".join(f"{name} {value:.3f}" for name, value in sorted(record.metrics.items()))
        return "\n".join(
            [
                f"v{version} of {model} waits for approval before it may serve (governance.approval: manual).",
                f"Decision of the pipeline: {record.decision}",
                f"Holdout metrics: {metrics}",
                f"Model card: s3://{record.artifact.bucket}/{html} (Markdown: {markdown}),",
                f"  or: loopml models card {model} {version} --html --out card.html",
                "Decide with:",
                f'  loopml models approve {model} {version} --reason "..."',
                f'  loopml models reject {model} {version} --reason "..."',
                f"Undecided at {deadline}, it is rejected.",
            ]
        )

    def time_out(self, model: str, version: int, timeout_s: int) -> dict[str, Any]:
        """The run waited its whole time: reject the version if it is still undecided (a decision that raced the
        timeout stands)."""
        record = self.registry.model_version(model, version)
        if record.status is not VersionStatus.PENDING_APPROVAL:
            return {"model": model, "version": version, "status": str(record.status), "rejected": False}
        hours = timeout_s / 3600
        decision = self.registry.reject(model, version, f"no decision within {hours:g} hours")
        self.notifier.publish(
            f"LoopML approval timed out: {model} v{version}",
            f"Nobody approved v{version} of {model} within {hours:g} hours: it is REJECTED and will not serve. "
            "Train again (`loopml pipeline start`) to get a new candidate.",
        )
        return {"model": model, "version": version, "status": str(decision.version.status), "rejected": True}
