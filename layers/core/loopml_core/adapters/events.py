"""Registry events on EventBridge's default bus, so users can hook CI/CD to model changes.

Two detail types, source `loopml`: `LoopML Model Version State Change` (a version registered, approved, rejected,
archived, waiting for approval) and `LoopML Alias Change` (champion, challenger or a user alias moved, set or
removed). Each detail names the model, the version(s), the actor, the reason and the audit record's sequence number,
which is also the event's identity: a consumer that sees one twice (delivery is at least once) can drop it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SOURCE = "loopml"
VERSION_STATE_CHANGE = "LoopML Model Version State Change"
ALIAS_CHANGE = "LoopML Alias Change"
DEFAULT_BUS = "default"
EVENT_BUS_ENV = "LOOPML_EVENT_BUS"  # set for the functions granted to publish registry events (infra/declaration.py)
MAX_ENTRIES_PER_CALL = 10  # PutEvents takes at most ten entries


@dataclass(frozen=True)
class RegistryEvent:
    detail_type: str
    detail: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.detail["audit_seq"])


class EventPublisher(ABC):
    @abstractmethod
    def publish(self, events: Sequence[RegistryEvent]) -> None:
        """Put every event on the bus, or raise (none is known to be lost: the registry keeps what failed)."""


class EventBridgePublisher(EventPublisher):
    """`client`, or `make_client` called at the first publish (no AWS client is made for a change that sends no
    event), or boto3's default client."""

    def __init__(
        self, bus: str = DEFAULT_BUS, client: Any | None = None, make_client: Callable[[], Any] | None = None
    ) -> None:
        self.bus = bus
        self._client = client
        self._make_client = make_client

    @classmethod
    def from_env(cls) -> EventBridgePublisher | None:
        """The publisher of a function granted to publish registry events (its environment names the bus)."""
        import os

        bus = os.environ.get(EVENT_BUS_ENV)
        return cls(bus) if bus else None

    @property
    def client(self) -> Any:
        if self._client is None:
            if self._make_client is not None:
                self._client = self._make_client()
            else:
                import boto3

                self._client = boto3.client("events")
        return self._client

    def publish(self, events: Sequence[RegistryEvent]) -> None:
        for start in range(0, len(events), MAX_ENTRIES_PER_CALL):
            batch = events[start : start + MAX_ENTRIES_PER_CALL]
            entries = [
                {
                    "Source": SOURCE,
                    "DetailType": event.detail_type,
                    "Detail": json.dumps(event.detail, sort_keys=True),
                    "EventBusName": self.bus,
                }
                for event in batch
            ]
            reply = self.client.put_events(Entries=entries)
            if reply.get("FailedEntryCount"):
                failed = [e for e in reply.get("Entries", []) if e.get("ErrorCode")]
                raise RuntimeError(f"EventBridge refused {len(failed)} of {len(batch)} events: {failed[:3]}")


class InMemoryEventPublisher(EventPublisher):
    """Keeps what was published; `fail` makes the next publish raise, as an unreachable bus would."""

    def __init__(self) -> None:
        self.published: list[RegistryEvent] = []
        self.fail = False

    def publish(self, events: Sequence[RegistryEvent]) -> None:
        if self.fail:
            raise RuntimeError("EventBridge is unreachable")
        self.published.extend(events)
