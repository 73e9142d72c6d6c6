"""Reading a synthesized CloudFormation template: intrinsic functions flattened into comparable strings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import App

from infra.cdk.stack import LoopMLStack
from infra.declaration import Names

# The declared names as they appear in the template once `flatten` has rendered CloudFormation's pseudo parameters.
NAMES = Names("${AWS::AccountId}", "${AWS::Region}")


def flatten(value: Any) -> str:
    """A template value as one readable string: `Ref X` -> `${X}`, `GetAtt X.Arn` -> `${X.Arn}`, joins joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return "${" + argument + "}"
        if function == "Fn::GetAtt":
            return "${" + ".".join(argument) + "}"
        if function == "Fn::Join":
            separator, parts = argument
            return str(separator).join(flatten(part) for part in parts)
    raise ValueError(f"cannot flatten {value!r}")


def arn(service: str, resource: str, *, regional: bool = True) -> str:
    location = "${AWS::Region}:${AWS::AccountId}" if regional else ":"
    return f"arn:${{AWS::Partition}}:{service}:{location}:{resource}"


@dataclass
class Template:
    body: dict[str, Any]

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.body["Resources"]
        return resources

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == resource_type}

    def props(self, logical_id: str) -> dict[str, Any]:
        properties: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return properties

    def one(self, resource_type: str, **properties: Any) -> str:
        """The logical id of the only resource of this type whose (flattened) properties have these values."""
        found = [
            lid
            for lid, resource in self.of_type(resource_type).items()
            if all(_matches(resource.get("Properties", {}).get(key), value) for key, value in properties.items())
        ]
        assert len(found) == 1, f"{resource_type} with {properties}: {found}"
        return found[0]


def _matches(actual: Any, expected: Any) -> bool:
    try:
        return flatten(actual) == expected
    except ValueError:
        return bool(actual == expected)


@dataclass
class Synthesized:
    app: App
    stack: LoopMLStack
    template: Template
    template_path: str
