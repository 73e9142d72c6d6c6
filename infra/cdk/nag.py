"""cdk-nag acknowledgments: every one names the finding it accepts and says why."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledges `rule_id` (e.g. `AwsSolutions-IAM5[Resource::*]`) on `construct` and everything below it."""
    if len(reason.split()) < 5:
        raise ValueError(f"acknowledging {rule_id} needs a real reason, got {reason!r}")
    Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def finding_resource(scope: IConstruct, value: str) -> str:
    """A resource as cdk-nag writes it in a finding id: `Ref`s rendered as `<AWS::Region>`-style placeholders and
    attributes as `<LogicalId.Attribute>`."""
    resolved = Stack.of(scope).resolve(value)
    if isinstance(resolved, str):
        return resolved

    def placeholder(part: dict[str, Any]) -> str:
        if "Ref" in part:
            return f"<{part['Ref']}>"
        logical_id, attribute = part["Fn::GetAtt"]
        return f"<{logical_id}.{attribute}>"

    _separator, parts = resolved["Fn::Join"]
    return "".join(part if isinstance(part, str) else placeholder(part) for part in parts)
