"""Writing one object as a stream, in bounded memory: S3 multipart uploads, with server-side part copies.

A writer buffers what it is given and sends it in parts of `PART_BYTES`; `append_object` adds another object's whole
content, copied by S3 itself (UploadPartCopy) when S3's rules allow it (every part but the last at least 5 MiB),
otherwise streamed through. Nothing is visible until `close`, which completes the upload (or makes one PUT for an
object smaller than a part). Like `ObjectStore`, nothing here deletes: an upload never completed is aborted by the
buckets' lifecycle rule.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from typing import Any

from loopml_core.adapters.object_store import InMemoryObjectStore, StoredObject

PART_BYTES = 8 << 20  # what boto3's transfer manager and `aws s3 cp` send per part
MIN_PART_BYTES = 5 << 20  # S3's minimum for every part but the last
COPY_READ_BYTES = 8 << 20


class ObjectWriter(io.RawIOBase, ABC):
    """A writable stream that becomes one object when closed (`stored` names it then)."""

    def __init__(self) -> None:
        super().__init__()
        self._stored: StoredObject | None = None

    def writable(self) -> bool:
        return True

    @abstractmethod
    def write(self, data: Any) -> int:
        """Append bytes (any buffer)."""

    @abstractmethod
    def append_object(self, bucket: str, key: str, version_id: str | None = None) -> None:
        """Append the whole content of another object."""

    @abstractmethod
    def _complete(self) -> StoredObject:
        """Make the object from what was written."""

    def close(self) -> None:
        if not self.closed:
            self._stored = self._complete()
        super().close()

    @property
    def stored(self) -> StoredObject:
        if self._stored is None:
            raise RuntimeError("the object exists once its writer is closed")
        return self._stored


class ObjectWriters(ABC):
    @abstractmethod
    def open(self, bucket: str, key: str, content_type: str = "application/octet-stream") -> ObjectWriter:
        """A writer of a new version of `key`."""


class S3ObjectWriters(ObjectWriters):
    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def open(self, bucket: str, key: str, content_type: str = "application/octet-stream") -> ObjectWriter:
        return _S3Writer(self.client, bucket, key, content_type)


class _S3Writer(ObjectWriter):
    def __init__(self, client: Any, bucket: str, key: str, content_type: str) -> None:
        super().__init__()
        self._client, self._bucket, self._key, self._content_type = client, bucket, key, content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        if len(self._buffer) >= PART_BYTES:
            self._send_buffer()
        return len(view)

    def _start(self) -> str:
        if self._upload_id is None:
            reply = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type, ChecksumAlgorithm="CRC32"
            )
            self._upload_id = str(reply["UploadId"])
        return self._upload_id

    def _send_buffer(self) -> None:
        number = len(self._parts) + 1
        reply = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._start(),
            PartNumber=number,
            Body=bytes(self._buffer),
            ChecksumAlgorithm="CRC32",
        )
        self._parts.append({"PartNumber": number, "ETag": reply["ETag"], "ChecksumCRC32": reply["ChecksumCRC32"]})
        self._buffer = bytearray()

    def append_object(self, bucket: str, key: str, version_id: str | None = None) -> None:
        source: dict[str, str] = {"Bucket": bucket, "Key": key}
        if version_id and version_id != "null":
            source["VersionId"] = version_id
        size = int(self._client.head_object(**source)["ContentLength"])
        if len(self._buffer) >= MIN_PART_BYTES:
            self._send_buffer()
        if not self._buffer and size >= MIN_PART_BYTES:
            number = len(self._parts) + 1
            reply = self._client.upload_part_copy(
                Bucket=self._bucket, Key=self._key, UploadId=self._start(), PartNumber=number, CopySource=source
            )
            copied = reply["CopyPartResult"]
            part = {"PartNumber": number, "ETag": copied["ETag"]}
            if copied.get("ChecksumCRC32"):
                part["ChecksumCRC32"] = copied["ChecksumCRC32"]
            self._parts.append(part)
            return
        body = self._client.get_object(**source)["Body"]
        try:
            while block := body.read(COPY_READ_BYTES):
                self.write(block)
        finally:
            body.close()

    def _complete(self) -> StoredObject:
        if self._upload_id is None:
            reply = self._client.put_object(
                Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), ContentType=self._content_type
            )
        else:
            if self._buffer:
                self._send_buffer()
            reply = self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        self._buffer = bytearray()
        return StoredObject(self._bucket, self._key, reply.get("VersionId") or "null")


class InMemoryObjectWriters(ObjectWriters):
    """Writes into an `InMemoryObjectStore`."""

    def __init__(self, store: InMemoryObjectStore) -> None:
        self.store = store

    def open(self, bucket: str, key: str, content_type: str = "application/octet-stream") -> ObjectWriter:
        return _InMemoryWriter(self.store, bucket, key, content_type)


class _InMemoryWriter(ObjectWriter):
    def __init__(self, store: InMemoryObjectStore, bucket: str, key: str, content_type: str) -> None:
        super().__init__()
        self._store, self._bucket, self._key, self._content_type = store, bucket, key, content_type
        self._buffer = io.BytesIO()

    def write(self, data: Any) -> int:
        return self._buffer.write(data)

    def append_object(self, bucket: str, key: str, version_id: str | None = None) -> None:
        self._buffer.write(self._store.get(bucket, key, version_id))

    def _complete(self) -> StoredObject:
        return self._store.put(self._bucket, self._key, self._buffer.getvalue(), self._content_type)
