"""Object storage (S3): versioned puts, reads by version, copies and tags. Nothing here deletes."""

from __future__ import annotations

import hashlib
import io
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from typing import Any, BinaryIO, cast

from loopml_core.errors import NotFoundError


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    version_id: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class ObjectStore(ABC):
    """The S3 operations LoopML needs."""

    @abstractmethod
    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        """Store `body` under `key`; returns the new version (buckets are versioned)."""

    @abstractmethod
    def get(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        """Read an object (a specific version when given). Raises NotFoundError."""

    @abstractmethod
    def size(self, bucket: str, key: str, version_id: str | None = None) -> int:
        """The object's size in bytes. Raises NotFoundError."""

    @abstractmethod
    def current_version(self, bucket: str, key: str) -> str | None:
        """The version id a read of `key` without a version returns now ("null" in an unversioned bucket), or None
        when there is none (never written, or deleted: its current version is a delete marker)."""

    @abstractmethod
    def open(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
        """The object's bytes as a stream read from the start, never held whole. Raises NotFoundError."""

    @abstractmethod
    def open_random_access(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
        """A seekable view of the object that fetches only the byte ranges read (Parquet reads its footer first)."""

    @abstractmethod
    def copy(
        self, bucket: str, key: str, dest_bucket: str, dest_key: str, version_id: str | None = None
    ) -> StoredObject:
        """Copy an object (a specific version when given); the source stays where it is."""

    @abstractmethod
    def list_keys(self, bucket: str, prefix: str, start_after: str | None = None) -> list[str]:
        """Keys under `prefix` in lexicographic order, after `start_after` when given."""

    @abstractmethod
    def tag(self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None) -> None:
        """Replace the object's tags."""

    @abstractmethod
    def tags(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        """The object's tags."""


def aws_client(service_name: str) -> Any:
    """A botocore client of this process's one session, made quickly: for a function whose first request waits for it.

    botocore's own loader lists every service directory it ships (over 400) to check that the one asked for exists,
    and parses the models with `json` into OrderedDicts; this session's loader checks only the services asked for
    here and parses with orjson. The models are the runtime's own, so nothing ties them to one botocore version. An
    S3 and a DynamoDB client take ~25 ms instead of ~60 on python3.12 (docs/serving.md). No boto3: it would only add
    s3transfer's imports.
    """
    session = _aws_session()
    session.get_component("data_loader").services.add(service_name)
    return session.create_client(service_name)


@cache
def _aws_session() -> Any:
    import gzip
    import os

    import botocore.loaders
    import botocore.session
    import orjson

    class OrjsonModelFiles(botocore.loaders.JSONFileLoader):
        """botocore's model files (`.json`, `.json.gz`), parsed by orjson into plain dicts (which keep order too)."""

        def load_file(self, file_path: str) -> Any:
            for suffix in (".json", ".json.gz"):
                try:
                    with open(file_path + suffix, "rb") as file:
                        data = file.read()
                except FileNotFoundError:
                    continue
                return orjson.loads(gzip.decompress(data) if suffix == ".json.gz" else data)
            return None

    class AskedServicesLoader(botocore.loaders.Loader):
        """botocore's loader, with the services it knows limited to those `aws_client` was asked for."""

        def __init__(self, extra_search_paths: list[str]) -> None:
            super().__init__(extra_search_paths=extra_search_paths, file_loader=OrjsonModelFiles())
            self.services: set[str] = set()

        def list_available_services(self, type_name: str) -> list[str]:
            return sorted(name for name in self.services if self._ships(name, type_name))

        def _ships(self, service_name: str, type_name: str) -> bool:
            for location in self.search_paths:
                directory = os.path.join(location, service_name)
                if os.path.isdir(directory) and any(
                    self.file_loader.exists(os.path.join(directory, api_version, type_name))
                    for api_version in os.listdir(directory)
                ):
                    return True
            return False

    session = botocore.session.get_session()
    data_path = session.get_config_variable("data_path")  # AWS_DATA_PATH, honoured as botocore's loader does
    extra = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else []
    session.register_component("data_loader", AskedServicesLoader(extra))
    return session


class S3ObjectStore(ObjectStore):
    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        reply = self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        return StoredObject(bucket, key, reply.get("VersionId") or "null")

    def get(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        with self.open(bucket, key, version_id) as body:
            return body.read()

    def _get_object(self, bucket: str, key: str, version_id: str | None, **extra: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, **extra}
        if version_id and version_id != "null":
            kwargs["VersionId"] = version_id
        try:
            reply: dict[str, Any] = self.client.get_object(**kwargs)
        except self.client.exceptions.NoSuchKey as error:
            raise NotFoundError(f"s3://{bucket}/{key} does not exist") from error
        except self.client.exceptions.ClientError as error:
            if error.response["Error"]["Code"] in {"NoSuchVersion", "InvalidArgument", "404"}:
                raise NotFoundError(f"s3://{bucket}/{key} version {version_id} does not exist") from error
            raise
        return reply

    def size(self, bucket: str, key: str, version_id: str | None = None) -> int:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id and version_id != "null":
            kwargs["VersionId"] = version_id
        try:
            return int(self.client.head_object(**kwargs)["ContentLength"])
        except self.client.exceptions.ClientError as error:
            if error.response["Error"]["Code"] in {"NoSuchKey", "NoSuchVersion", "404", "400"}:
                raise NotFoundError(f"s3://{bucket}/{key} version {version_id} does not exist") from error
            raise

    def current_version(self, bucket: str, key: str) -> str | None:
        try:
            reply = self.client.head_object(Bucket=bucket, Key=key)
        except self.client.exceptions.ClientError as error:
            # A HEAD has no body: a missing key, or one whose current version is a delete marker, is a bare 404.
            if error.response["Error"]["Code"] in {"NoSuchKey", "404"}:
                return None
            raise
        return str(reply.get("VersionId") or "null")

    def open(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
        return cast(BinaryIO, _Body(self._get_object(bucket, key, version_id)["Body"]))

    def open_random_access(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
        size = self.size(bucket, key, version_id)

        def fetch(start: int, end: int) -> bytes:
            reply = self._get_object(bucket, key, version_id, Range=f"bytes={start}-{end - 1}")
            data: bytes = reply["Body"].read()
            return data

        return io.BufferedReader(_RangeReader(size, fetch), buffer_size=RANGE_READ_BYTES)

    def copy(
        self, bucket: str, key: str, dest_bucket: str, dest_key: str, version_id: str | None = None
    ) -> StoredObject:
        source: dict[str, str] = {"Bucket": bucket, "Key": key}
        if version_id and version_id != "null":
            source["VersionId"] = version_id
        try:
            reply = self.client.copy_object(Bucket=dest_bucket, Key=dest_key, CopySource=source)
        except self.client.exceptions.ClientError as error:
            if error.response["Error"]["Code"] in {"NoSuchKey", "NoSuchVersion", "404"}:
                raise NotFoundError(f"s3://{bucket}/{key} does not exist") from error
            raise
        return StoredObject(dest_bucket, dest_key, reply.get("VersionId") or "null")

    def list_keys(self, bucket: str, prefix: str, start_after: str | None = None) -> list[str]:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def tag(self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None) -> None:
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Tagging": {"TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]},
        }
        if version_id and version_id != "null":
            kwargs["VersionId"] = version_id
        self.client.put_object_tagging(**kwargs)

    def tags(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id and version_id != "null":
            kwargs["VersionId"] = version_id
        return {t["Key"]: t["Value"] for t in self.client.get_object_tagging(**kwargs)["TagSet"]}


class _Body(io.RawIOBase):
    """botocore's streaming body, closed when done. Its own `with` yields the raw network stream, which would skip
    the length and checksum checks its `read` makes, so reads always go through the body."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._body.read(None if size is None or size < 0 else size)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


# A ranged GET fetches at least this much. Parquet reads its footer in small pieces (one request serves them) and each
# column chunk in one read, often about a megabyte: a larger minimum would fetch bytes that are never used.
RANGE_READ_BYTES = 1 << 20


class _RangeReader(io.RawIOBase):
    """A seekable, read-only file over ranged reads (`fetch(start, end)` returns bytes [start, end))."""

    def __init__(self, size: int, fetch: Any) -> None:
        self._size = size
        self._fetch = fetch
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        end = min(self._size, self._position + len(buffer))
        if end <= self._position:
            return 0
        data = self._fetch(self._position, end)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


class InMemoryObjectStore(ObjectStore):
    """Keeps every version of every object, like a versioned bucket."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
        self._tags: dict[tuple[str, str, str], dict[str, str]] = {}
        self._counter = itertools.count(1)

    def _version(self, bucket: str, key: str, version_id: str | None) -> tuple[str, bytes]:
        versions = self._versions.get((bucket, key))
        if not versions:
            raise NotFoundError(f"s3://{bucket}/{key} does not exist")
        if version_id is None:
            return versions[-1]
        for vid, body in versions:
            if vid == version_id:
                return vid, body
        raise NotFoundError(f"s3://{bucket}/{key} version {version_id} does not exist")

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        version_id = hashlib.sha256(f"{next(self._counter)}".encode()).hexdigest()[:32]
        self._versions.setdefault((bucket, key), []).append((version_id, bytes(body)))
        return StoredObject(bucket, key, version_id)

    def get(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        return self._version(bucket, key, version_id)[1]

    def size(self, bucket: str, key: str, version_id: str | None = None) -> int:
        return len(self._version(bucket, key, version_id)[1])

    def current_version(self, bucket: str, key: str) -> str | None:
        versions = self._versions.get((bucket, key))
        return versions[-1][0] if versions else None

    def open(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
        return io.BytesIO(self._version(bucket, key, version_id)[1])

    def open_random_access(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
        return io.BytesIO(self._version(bucket, key, version_id)[1])

    def copy(
        self, bucket: str, key: str, dest_bucket: str, dest_key: str, version_id: str | None = None
    ) -> StoredObject:
        return self.put(dest_bucket, dest_key, self._version(bucket, key, version_id)[1])

    def list_keys(self, bucket: str, prefix: str, start_after: str | None = None) -> list[str]:
        keys = sorted(k for (b, k) in self._versions if b == bucket and k.startswith(prefix))
        return [k for k in keys if start_after is None or k > start_after]

    def tag(self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None) -> None:
        vid = self._version(bucket, key, version_id)[0]
        self._tags[(bucket, key, vid)] = dict(tags)

    def tags(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        vid = self._version(bucket, key, version_id)[0]
        return dict(self._tags.get((bucket, key, vid), {}))
