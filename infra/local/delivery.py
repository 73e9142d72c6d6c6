"""What CloudWatch Logs subscriptions and Amazon Data Firehose do with captured traffic, for the local cloud.

moto keeps log events and delivery streams but forwards every event of a log group to its subscription (the filter
pattern is ignored) and writes each forwarded batch to S3 at once, as one gzipped CloudWatch Logs envelope, under a
fixed prefix. AWS applies the pattern, then Firehose runs the stream's processors (decompression, message
extraction, jq partition keys, a delimiter), buffers each partition, compresses it and names it after its prefix
expression. `FirehoseS3Delivery` does the latter from the stream's own ExtendedS3 configuration, as created from
the declaration, so what lands in the local bucket is laid out, batched and compressed as on AWS.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_PREFIX_EXPRESSION = re.compile(r"!\{(partitionKeyFromQuery|timestamp|firehose):([^}]*)\}")
_JQ_OBJECT = re.compile(r"^\s*\{(.*)\}\s*$")
_JQ_FIELD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*$")
# Java DateTimeFormatter patterns Firehose takes in !{timestamp:...}, as strftime.
_TIME_FIELDS = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def matches_filter(pattern: str, message: str) -> bool:
    """A CloudWatch Logs term pattern: every term (a quoted one as a phrase) appears in the message; empty matches
    everything. JSON and space-delimited patterns are not needed by the declaration and are refused."""
    pattern = pattern.strip()
    if not pattern:
        return True
    if pattern.startswith(("{", "[")):
        raise NotImplementedError(f"the local cloud matches term patterns only, not {pattern!r}")
    terms = re.findall(r'"([^"]*)"|(\S+)', pattern)
    return all((quoted or bare) in message for quoted, bare in terms)


def jq_partition_fields(query: str) -> dict[str, str]:
    """The `{key: .field, ...}` jq object Firehose's inline parsing evaluates, as key -> field."""
    body = _JQ_OBJECT.match(query)
    if body is None:
        raise NotImplementedError(f"the local cloud evaluates jq objects of fields only, not {query!r}")
    fields: dict[str, str] = {}
    for part in body.group(1).split(","):
        pair = _JQ_FIELD.match(part)
        if pair is None:
            raise NotImplementedError(f"the local cloud evaluates jq objects of fields only, not {query!r}")
        fields[pair.group(1)] = pair.group(2)
    return fields


def render_prefix(template: str, keys: dict[str, str], at: float, error_type: str = "") -> str:
    """Evaluate a Firehose S3 prefix expression for a record batch that arrived at `at` (UTC seconds)."""

    def value(found: re.Match[str]) -> str:
        namespace, argument = found.group(1), found.group(2)
        if namespace == "partitionKeyFromQuery":
            return keys[argument]
        if namespace == "firehose":
            return error_type
        pattern = argument
        for java, strftime in _TIME_FIELDS:
            pattern = pattern.replace(java, strftime)
        return time.strftime(pattern, time.gmtime(at))

    return _PREFIX_EXPRESSION.sub(value, template)


def _processors(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    processing = config.get("ProcessingConfiguration") or {}
    if not processing.get("Enabled"):
        return {}
    return {
        p["Type"]: {param["ParameterName"]: param["ParameterValue"] for param in p.get("Parameters", [])}
        for p in processing.get("Processors", [])
    }


@dataclass
class _Buffer:
    opened: float
    records: list[bytes] = field(default_factory=list)
    size: int = 0


class FirehoseS3Delivery:
    """Buffers and writes what CloudWatch Logs sends a Firehose stream with an ExtendedS3 destination.

    A partition's buffer is written when it reaches the stream's size hint, when its interval has passed (checked
    as records arrive), or when `flush` is called: the local cloud flushes before a scheduled check, since locally no
    buffering interval passes between the traffic a demo sends and the check that reads it.
    """

    def __init__(self, write: Callable[[str, str, bytes], None], clock: Callable[[], float] = time.time) -> None:
        self._write = write
        self._clock = clock
        self._lock = threading.Lock()
        self._buffers: dict[tuple[str, tuple[tuple[str, str], ...]], _Buffer] = {}
        self._streams: dict[str, tuple[dict[str, Any], str]] = {}
        self.objects_written = 0

    def handles(self, config: dict[str, Any]) -> bool:
        """True for a stream that decompresses CloudWatch Logs records and extracts their messages."""
        processors = _processors(config)
        return (
            "Decompression" in processors
            and processors.get("CloudWatchLogProcessing", {}).get("DataMessageExtraction", "").lower() == "true"
        )

    def receive(self, stream: str, version: str, config: dict[str, Any], messages: list[str]) -> None:
        processors = _processors(config)
        delimiter = b"\n" if "AppendDelimiterToRecord" in processors else b""
        partitioned = (config.get("DynamicPartitioningConfiguration") or {}).get("Enabled", False)
        fields = jq_partition_fields(processors["MetadataExtraction"]["MetadataExtractionQuery"]) if partitioned else {}
        now = self._clock()
        with self._lock:
            self._streams[stream] = (config, version)
            for message in messages:
                keys: tuple[tuple[str, str], ...] = ()
                if fields:
                    try:
                        document = json.loads(message)
                        keys = tuple((key, str(document[field_name])) for key, field_name in fields.items())
                    except (ValueError, KeyError, TypeError):
                        self._write_error(stream, config, message.encode(), now)
                        continue
                buffer = self._buffers.setdefault((stream, keys), _Buffer(opened=now))
                record = message.encode() + delimiter
                buffer.records.append(record)
                buffer.size += len(record)
            self._deliver(lambda buffer, limit: buffer.size >= limit[0] or now - buffer.opened >= limit[1])

    def flush(self) -> int:
        """Write every buffered partition now; returns the number of objects written."""
        with self._lock:
            before = self.objects_written
            self._deliver(lambda _buffer, _limit: True)
            return self.objects_written - before

    def _deliver(self, due: Callable[[_Buffer, tuple[int, int]], bool]) -> None:
        for (stream, keys), buffer in list(self._buffers.items()):
            config, version = self._streams[stream]
            hints = config.get("BufferingHints") or {}
            limit = (int(hints.get("SizeInMBs", 5)) << 20, int(hints.get("IntervalInSeconds", 300)))
            if not due(buffer, limit):
                continue
            del self._buffers[(stream, keys)]
            prefix = render_prefix(config.get("Prefix", ""), dict(keys), buffer.opened)
            self._put(stream, version, config, prefix, b"".join(buffer.records), buffer.opened)

    def _write_error(self, stream: str, config: dict[str, Any], record: bytes, at: float) -> None:
        prefix = render_prefix(config.get("ErrorOutputPrefix", "errors/"), {}, at, "partitioning-failed")
        _config, version = self._streams[stream]
        self._put(stream, version, config, prefix, record, at)

    def _put(self, stream: str, version: str, config: dict[str, Any], prefix: str, data: bytes, at: float) -> None:
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(at))
        compressed = config.get("CompressionFormat") == "GZIP"
        key = f"{prefix}{stream}-{version}-{stamp}-{uuid.uuid4()}" + (".gz" if compressed else "")
        bucket = str(config["BucketARN"]).split(":::", 1)[-1]
        self._write(bucket, key, gzip.compress(data, compresslevel=6) if compressed else data)
        self.objects_written += 1
