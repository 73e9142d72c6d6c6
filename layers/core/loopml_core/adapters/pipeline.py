"""Starting and inspecting training pipeline runs (Step Functions)."""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Execution:
    name: str
    arn: str
    status: str  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    input: dict[str, Any]
    output: dict[str, Any] | None
    started_at: datetime

    @property
    def model(self) -> str | None:
        run = self.input.get("run") or {}
        return run.get("model")


class PipelineRunner(ABC):
    @abstractmethod
    def start(self, name: str, payload: dict[str, Any]) -> Execution:
        """Start an execution named `name`. Starting the same name with the same input again returns the first one."""

    @abstractmethod
    def executions(self, status: str | None = None) -> list[Execution]:
        """Executions, newest first, optionally only those with `status`."""

    @abstractmethod
    def describe(self, name: str) -> Execution:
        """One execution by name."""

    def running_for(self, model: str) -> list[Execution]:
        return [e for e in self.executions("RUNNING") if e.model == model]


class StepFunctionsRunner(PipelineRunner):
    def __init__(self, state_machine_arn: str, client: Any | None = None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("stepfunctions")
        return self._client

    def _execution_arn(self, name: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def start(self, name: str, payload: dict[str, Any]) -> Execution:
        # A redelivered event: the execution it asked for already exists.
        with contextlib.suppress(self.client.exceptions.ExecutionAlreadyExists):
            self.client.start_execution(stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload))
        return self.describe(name)

    def describe(self, name: str) -> Execution:
        reply = self.client.describe_execution(executionArn=self._execution_arn(name))
        return Execution(
            name=reply["name"],
            arn=reply["executionArn"],
            status=reply["status"],
            input=json.loads(reply.get("input") or "{}"),
            output=json.loads(reply["output"]) if reply.get("output") else None,
            started_at=reply["startDate"],
        )

    def executions(self, status: str | None = None) -> list[Execution]:
        kwargs: dict[str, Any] = {"stateMachineArn": self.state_machine_arn}
        if status:
            kwargs["statusFilter"] = status
        names = [
            item["name"]
            for page in self.client.get_paginator("list_executions").paginate(**kwargs)
            for item in page["executions"]
        ]
        executions = [self.describe(name) for name in names]
        return sorted(executions, key=lambda e: e.started_at, reverse=True)


class InMemoryPipelineRunner(PipelineRunner):
    """Records starts; tests move executions along with `finish`."""

    def __init__(self, state_machine_arn: str = "arn:aws:states:us-east-1:123456789012:stateMachine:fake") -> None:
        self.state_machine_arn = state_machine_arn
        self._executions: dict[str, Execution] = {}

    def start(self, name: str, payload: dict[str, Any]) -> Execution:
        if name not in self._executions:
            arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
            self._executions[name] = Execution(
                name, arn, "RUNNING", json.loads(json.dumps(payload)), None, datetime.now(UTC)
            )
        return self._executions[name]

    def finish(self, name: str, status: str = "SUCCEEDED", output: dict[str, Any] | None = None) -> None:
        current = self._executions[name]
        self._executions[name] = Execution(current.name, current.arn, status, current.input, output, current.started_at)

    def describe(self, name: str) -> Execution:
        return self._executions[name]

    def executions(self, status: str | None = None) -> list[Execution]:
        chosen = [e for e in self._executions.values() if status is None or e.status == status]
        return sorted(chosen, key=lambda e: e.started_at, reverse=True)
