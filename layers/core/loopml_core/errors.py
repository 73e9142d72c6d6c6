"""Errors the logic raises. The API maps them to HTTP codes in one place (functions/predict)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class LoopMLError(Exception):
    """Base class for errors LoopML raises on purpose."""


class NotFoundError(LoopMLError):
    """A dataset, model, version or alias that does not exist."""


class ConflictError(LoopMLError):
    """A conditional write lost a race or would overwrite something immutable."""


@dataclass
class FieldProblem:
    field: str | None
    message: str
    record: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record, "field": self.field, "message": self.message}


@dataclass
class InvalidRequestError(LoopMLError):
    """A request that does not match what the API accepts; `details` names each field at fault and why."""

    message: str
    details: list[FieldProblem] = field(default_factory=list)
    status_code: int = 422

    def __str__(self) -> str:
        return self.message


class DatasetTooLargeError(LoopMLError):
    """A dataset version needs more memory to train than the training function has; the message says what to do."""
