"""Captured traffic: what the predict function emits per request, off the request path.

A request is captured as one compact JSON line (or several, for a request too large for one log event) written to
the function's log stream. A subscription filter on the log group sends the lines that carry `CAPTURE_MARKER` to a
Firehose delivery stream, which batches them, partitions them by retention class, model and hour, compresses them
and writes them to S3 (`infra/declaration.py`, `CAPTURE_DELIVERY`). The request pays for a `json.dumps` and a write to
a pipe; no AWS call is made, nothing waits for delivery.

A line is columnar, like the request's answer: one list per feature, in record order.

    {"loopml_capture": 1, "model": "churn", "version": 3, "retention": "30d", "request_id": "...",
     "at": "2026-11-24T10:00:00.123456Z", "first": 0, "n": 2,
     "features": {"tenure": [3, 40], "plan": ["pro", "basic"]},
     "prediction": ["yes", "no"], "classes": ["no", "yes"], "probabilities": [[0.2, 0.8], [0.9, 0.1]]}

`first` is the index, within the request, of the line's first record: a label names a prediction by request id and
index. Regression lines carry numeric `prediction`s and no `classes` or `probabilities`.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

CAPTURE_PREFIX = "captures/"  # in the artifact bucket: captures/<retention>/<model>/<yyyy>/<mm>/<dd>/<hh>/<object>
CAPTURE_MARKER = "loopml_capture"  # the term the subscription filter matches; the first key of every line
CAPTURE_FORMAT = 1
# CloudWatch Logs truncates an event at 256 KB (with its 26-byte overhead); a longer request is split into lines.
MAX_LINE_BYTES = 200_000


def retention_class(days: int) -> str:
    """The partition (and lifecycle rule) a model's captures live in: `30d` for 30 days."""
    return f"{days}d"


def capture_lines(
    *,
    model: str,
    version: int,
    retention: str,
    request_id: str,
    at: str,
    features: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    classes: Sequence[str] | None,
) -> Iterator[str]:
    """The capture lines of one request: one line unless the request is too large for a log event."""
    total = len(records)
    step = total or 1
    first = 0
    while first < total:
        line = _line(model, version, retention, request_id, at, features, records, outputs, classes, first, step)
        if len(line) > MAX_LINE_BYTES and step > 1:
            step = max(1, step // 2)  # rarely taken: only requests of several hundred wide records
            continue
        yield line
        first += step


def _line(
    model: str,
    version: int,
    retention: str,
    request_id: str,
    at: str,
    features: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    classes: Sequence[str] | None,
    first: int,
    count: int,
) -> str:
    chunk = records[first : first + count]
    answered = outputs[first : first + count]
    document: dict[str, Any] = {
        CAPTURE_MARKER: CAPTURE_FORMAT,
        "model": model,
        "version": version,
        "retention": retention,
        "request_id": request_id,
        "at": at,
        "first": first,
        "n": len(chunk),
        "features": {name: [record.get(name) for record in chunk] for name in features},
    }
    if classes is None:
        document["prediction"] = [output["value"] for output in answered]
    else:
        document["prediction"] = [output["label"] for output in answered]
        document["classes"] = list(classes)
        document["probabilities"] = [[output["probabilities"][c] for c in classes] for output in answered]
    return json.dumps(document, separators=(",", ":"), allow_nan=False)


class CaptureSink(Protocol):
    """Where capture lines go. The log stream in a Lambda; a list in tests."""

    def emit(self, lines: Iterator[str]) -> None: ...


class LogStreamSink:
    """Writes capture lines to the function's log stream (stdout), one line each, for the subscription filter."""

    def __init__(self, write: Callable[[str], Any] | None = None) -> None:
        self._write = write

    def emit(self, lines: Iterator[str]) -> None:
        write = self._write or sys.stdout.write  # looked up per call: the runtime (or a test) may replace stdout
        for line in lines:
            write(line + "\n")


class ListSink:
    """Keeps capture lines in memory: the in-process sink of tests and the CLI's dry runs."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, lines: Iterator[str]) -> None:
        self.lines.extend(lines)

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


def sampled(rate: float, draw: Callable[[], float] = random.random) -> bool:
    """Whether to capture this request, at `rate` (the contract's `monitoring.sample_rate`)."""
    return rate >= 1.0 or draw() < rate
