"""What validation reads: a name that declares the format, a size, and the bytes as a stream or by ranges."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from loopml_core.digest import DigestAhead
from loopml_core.validation import csv_text


class ByteSource(Protocol):
    """An object to validate: its name (which declares its format), its size, and its bytes."""

    @property
    def name(self) -> str:
        """The file name, whose suffix declares the format."""
        ...

    @property
    def size(self) -> int:
        """Bytes in all."""
        ...

    def stream(self) -> BinaryIO:
        """The bytes from the start, read sequentially."""
        ...

    def random_access(self) -> BinaryIO:
        """A seekable view, for Parquet's footer-first layout."""
        ...


@dataclass(frozen=True)
class BytesSource:
    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def stream(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def random_access(self) -> BinaryIO:
        return io.BytesIO(self.data)


@dataclass(frozen=True)
class FileSource:
    path: Path
    digest_ahead: DigestAhead | None = None  # the file's SHA-256 being computed meanwhile: no need to hash the stream

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def stream(self) -> BinaryIO:
        return self.path.open("rb")

    def random_access(self) -> BinaryIO:
        return self.path.open("rb")


class HashingReader:
    """Reads a stream sequentially, hashing every byte that passes, so the SHA-256 costs no second read."""

    def __init__(
        self, stream: BinaryIO, on_progress: Callable[[int], None] | None = None, *, hashing: bool = True
    ) -> None:
        self._stream = stream
        self._on_progress = on_progress
        self._hashing = hashing
        self.digest = hashlib.sha256()
        self.consumed = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if self._hashing:
            self.digest.update(data)
        self.consumed += len(data)
        if self._on_progress is not None:
            self._on_progress(self.consumed)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(csv_text.SEGMENT_BYTES):
            pass


class Rewound:
    """A stream whose first bytes were read to tell its format: they are read again first, so nothing is fetched
    twice (on S3, a second GET)."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size is None or size < 0:
            head, self._head = self._head, b""
            return head + self._stream.read()
        head, self._head = self._head[:size], self._head[size:]
        return head + self._stream.read(size - len(head)) if size > len(head) else head

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:
        """Reading stops; the stream beneath belongs to whoever opened it."""
