"""Captured traffic: what the predict function emits per request, off the request path.

A request is captured as one compact JSON line (or several, for a request too large for one log event) written to
the function's log stream. A subscription filter on the log group sends the lines that carry `CAPTURE_MARKER` to a
Firehose delivery stream, which batches them, partitions them by retention class, model and hour, compresses them
and writes them to S3 (`infra/declaration.py`, `CAPTURE_DELIVERY`). The request pays for an `orjson.dumps` and a write
to a pipe; no AWS call is made, nothing waits for delivery.

A line is columnar: one list per feature, in record order, written straight from the columns the request was
validated into (`columnar_capture_lines`).

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import orjson

CAPTURE_PREFIX = "captures/"  # in the artifact bucket: captures/<retention>/<model>/<yyyy>/<mm>/<dd>/<hh>/<object>
CAPTURE_MARKER = "loopml_capture"  # the term the subscription filter matches; the first key of every line
CAPTURE_FORMAT = 1
# CloudWatch Logs truncates an event at 256 KB (with its 26-byte overhead); a longer request is split into lines.
MAX_LINE_BYTES = 200_000
WIDEST_NUMBER = 26  # characters of the longest number JSON writes, with its comma: a request this wide surely fits
SIZE_SAMPLE = 32  # records written first to size a request that may not fit in one line
LINE_FILL = 0.9  # of MAX_LINE_BYTES a line is sized for, leaving room for records wider than the sample


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
    """The capture lines of one request given record by record (records and serving-shaped outputs)."""
    columns = {name: [record.get(name) for record in records] for name in features}
    if classes is None:
        lines = columnar_capture_lines(
            model=model,
            version=version,
            retention=retention,
            request_id=request_id,
            at=at,
            features=columns,
            prediction=[output["value"] for output in outputs],
        )
    else:
        lines = columnar_capture_lines(
            model=model,
            version=version,
            retention=retention,
            request_id=request_id,
            at=at,
            features=columns,
            prediction=[output["label"] for output in outputs],
            classes=classes,
            probabilities=[[output["probabilities"][c] for c in classes] for output in outputs],
        )
    return (line.decode() for line in lines)


def columnar_capture_lines(
    *,
    model: str,
    version: int,
    retention: str,
    request_id: str,
    at: str,
    features: Mapping[str, Sequence[Any]],
    prediction: Sequence[Any],
    classes: Sequence[str] | None = None,
    probabilities: Sequence[Sequence[float]] | None = None,
    shadow: bool = False,
) -> Iterator[bytes]:
    """The capture lines of one request, as UTF-8 JSON: one line unless the request is too large for a log event.

    `features` holds each feature's values in record order, `prediction` the labels (or values) and `probabilities`
    one row per record in `classes` order (classifiers only). `shadow` marks a challenger's scoring of a request
    another version answered: monitoring counts such lines per version but never as served traffic.
    """
    total = len(prediction)
    step = total
    if total * (len(features) + len(classes or ()) + 1) * WIDEST_NUMBER > MAX_LINE_BYTES:
        # Perhaps too large for one line: size a sample of records rather than writing the whole request only to
        # find it must be cut.
        sample = min(total, SIZE_SAMPLE)
        width = len(
            _line(
                model,
                version,
                retention,
                request_id,
                at,
                features,
                prediction,
                classes,
                probabilities,
                0,
                sample,
                shadow,
            )
        )
        step = max(1, min(total, int(MAX_LINE_BYTES * LINE_FILL * sample / width)))
    first = 0
    while first < total:
        line = _line(
            model, version, retention, request_id, at, features, prediction, classes, probabilities, first, step, shadow
        )
        if len(line) > MAX_LINE_BYTES and step > 1:
            step = max(1, step // 2)  # rarely taken: records much wider than the sample
            continue
        yield line
        first += step


def _line(
    model: str,
    version: int,
    retention: str,
    request_id: str,
    at: str,
    features: Mapping[str, Sequence[Any]],
    prediction: Sequence[Any],
    classes: Sequence[str] | None,
    probabilities: Sequence[Sequence[float]] | None,
    first: int,
    count: int,
    shadow: bool = False,
) -> bytes:
    whole = first == 0 and count >= len(prediction)
    window = slice(first, first + count)
    document: dict[str, Any] = {
        CAPTURE_MARKER: CAPTURE_FORMAT,
        "model": model,
        "version": version,
        "retention": retention,
        "request_id": request_id,
        "at": at,
        "first": first,
        "n": len(prediction) if whole else len(prediction[window]),
        "features": dict(features) if whole else {name: values[window] for name, values in features.items()},
        "prediction": prediction if whole else prediction[window],
    }
    if classes is not None:
        document["classes"] = list(classes)
        document["probabilities"] = (probabilities if whole else probabilities[window]) if probabilities else []
    if shadow:
        document["shadow"] = True
    # orjson writes the validated columns (tuples) as arrays; it would write a NaN as null, but none gets this far.
    return orjson.dumps(document)


class CaptureSink(Protocol):
    """Where capture lines go. The log stream in a Lambda; a list in tests."""

    def emit(self, lines: Iterable[str | bytes]) -> None: ...


class LogStreamSink:
    """Writes capture lines to the function's log stream (stdout), one line each, for the subscription filter.

    A line given as bytes (as `columnar_capture_lines` makes them) goes to stdout's binary buffer as it is: through
    the text layer a 300 KB line would be decoded, copied and encoded again, 0.2 ms of a 1000-record request.
    """

    def __init__(self, write: Callable[[str], Any] | None = None) -> None:
        self._write = write

    def emit(self, lines: Iterable[str | bytes]) -> None:
        if self._write is not None:
            for line in lines:
                self._write((line.decode() if isinstance(line, bytes) else line) + "\n")
            return
        stream = sys.stdout  # looked up per call: the runtime (or a test) may replace stdout
        binary = getattr(stream, "buffer", None)
        for line in lines:
            if isinstance(line, bytes) and binary is not None:
                stream.flush()  # what was printed before this line goes first
                binary.write(line + b"\n")
                binary.flush()  # now, not when the next invocation prints: a frozen sandbox would keep it
            else:
                stream.write((line.decode() if isinstance(line, bytes) else line) + "\n")


class ListSink:
    """Keeps capture lines in memory: the in-process sink of tests and the CLI's dry runs."""

    def __init__(self) -> None:
        self.lines: list[str | bytes] = []

    def emit(self, lines: Iterable[str | bytes]) -> None:
        self.lines.extend(lines)

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


def sampled(rate: float, draw: Callable[[], float] = random.random) -> bool:
    """Whether to capture this request, at `rate` (the contract's `monitoring.sample_rate`)."""
    return rate >= 1.0 or draw() < rate
