"""Alerts (SNS)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Alert:
    subject: str
    message: str


class Notifier(ABC):
    @abstractmethod
    def publish(self, subject: str, message: str) -> str:
        """Send an alert; returns the message id."""


class SnsNotifier(Notifier):
    def __init__(self, topic_arn: str, client: Any | None = None) -> None:
        self.topic_arn = topic_arn
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sns")
        return self._client

    def publish(self, subject: str, message: str) -> str:
        # SNS caps subjects at 100 characters
        reply = self.client.publish(TopicArn=self.topic_arn, Subject=subject[:100], Message=message)
        return str(reply["MessageId"])


class InMemoryNotifier(Notifier):
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def publish(self, subject: str, message: str) -> str:
        self.sent.append(Alert(subject[:100], message))
        return f"fake-{len(self.sent)}"
