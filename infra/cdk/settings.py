"""Deployment settings read from CDK context (`cdk.json`, overridable with `cdk -c key=value`)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_logs as logs
from constructs import Node

STAGE = "loopml:stage"
LOG_RETENTION = "loopml:logRetention"
ALERT_EMAIL = "loopml:alertEmail"


@dataclass(frozen=True)
class DeploymentSettings:
    stage: str
    log_retention: logs.RetentionDays
    alert_email: str | None

    @classmethod
    def from_node(cls, node: Node) -> DeploymentSettings:
        return cls(
            stage=str(node.try_get_context(STAGE) or "dev"),
            log_retention=logs.RetentionDays[str(node.try_get_context(LOG_RETENTION) or "ONE_MONTH")],
            alert_email=node.try_get_context(ALERT_EMAIL) or None,
        )
