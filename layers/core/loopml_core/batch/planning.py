"""Cutting a file into chunks that workers score independently, without ever holding the file.

CSV: one streamed pass finds the header and cuts byte ranges at record boundaries (newlines outside quotes, so a
quoted field may hold newlines), every `chunk_rows` records or `chunk_bytes` bytes, whichever comes first. Each
range also carries the file line it starts on, so a worker names the lines of the rows it reports.

Parquet: only the footer is read; chunks are runs of whole row groups (a row group is the smallest unit a reader can
fetch on its own), closed once they reach `chunk_rows` rows or `chunk_bytes` bytes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from loopml_core.batch.csv_records import NEWLINE, QUOTE
from loopml_core.validation.csv_text import MAX_RECORD_BYTES, record_end

SCAN_BLOCK_BYTES = 8 << 20
BOM = "\ufeff".encode()  # read per step of the scan: a few numpy passes over it, then it is dropped


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class UnplannableError(ValueError):
    """The file cannot be cut into chunks; the message says why and what to do."""


@dataclass(frozen=True)
class Chunk:
    """A part of the file one worker scores: a byte range (CSV) or a run of row groups (Parquet)."""

    index: int
    start: int = 0  # CSV: first byte (a record's first byte)
    end: int = 0  # CSV: the byte after its last record
    first_line: int | None = None  # CSV: file line (1-based) the range starts on
    row_groups: tuple[int, ...] = ()  # Parquet
    rows: int | None = None  # Parquet: rows in those row groups (known from the footer)

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"index": self.index}
        if self.row_groups:
            item.update(row_groups=list(self.row_groups), rows=self.rows)
        else:
            item.update(start=self.start, end=self.end, first_line=self.first_line)
        return item

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Chunk:
        return cls(
            index=int(item["index"]),
            start=int(item.get("start", 0)),
            end=int(item.get("end", 0)),
            first_line=item.get("first_line"),
            row_groups=tuple(item.get("row_groups", ())),
            rows=item.get("rows"),
        )


@dataclass
class CsvLayout:
    header: list[str]  # names as read (stripped)
    header_text: str  # the header record as written, without its line ending and byte-order mark
    data_start: int  # byte after the header's line ending
    chunks: list[Chunk] = field(default_factory=list)
    size: int = 0


def plan_csv(
    stream: Readable, *, chunk_rows: int, chunk_bytes: int, on_progress: Callable[[int], None] | None = None
) -> CsvLayout:
    """Read `stream` once and cut it into ranges of whole records; raises `UnplannableError` for a file that cannot
    be split (empty, not UTF-8 in its header, or ending inside a quoted field)."""
    if chunk_rows < 1 or chunk_bytes < 1:
        raise ValueError("chunk_rows and chunk_bytes must be positive")
    scanner = _Scanner(stream, on_progress)
    layout = scanner.header()
    scanner.cut(layout, chunk_rows, chunk_bytes)
    return layout


class _Scanner:
    def __init__(self, stream: Readable, on_progress: Callable[[int], None] | None) -> None:
        self._stream = stream
        self._on_progress = on_progress
        self._buffer = b""  # read but not yet scanned
        self._offset = 0  # file offset of self._buffer[0]
        self._newlines = 0  # newlines before self._offset
        self._eof = False

    def _read(self) -> bytes:
        block = self._stream.read(SCAN_BLOCK_BYTES)
        if not block:
            self._eof = True
        elif self._on_progress is not None:
            self._on_progress(len(block))
        return block or b""

    def header(self) -> CsvLayout:
        self._buffer = self._read()
        if self._buffer.startswith(BOM):
            self._consume(len(BOM))
        blank_lines = 0
        while True:
            end = record_end(self._buffer, 0)
            while end < 0 and not self._eof:
                if len(self._buffer) >= MAX_RECORD_BYTES:
                    raise UnplannableError(f"the header runs over {MAX_RECORD_BYTES >> 20} MB without a line end")
                self._buffer += self._read()
                end = record_end(self._buffer, 0)
            if not self._buffer:
                what = "holds only blank lines" if blank_lines else "is empty"
                raise UnplannableError(f"the file {what}: a CSV file needs a header row")
            record = self._buffer[: end + 1] if end >= 0 else self._buffer
            self._consume(len(record))
            if record.strip():
                break
            blank_lines += 1
        if b"\x00" in record:
            raise UnplannableError("not a CSV text file: its header contains NUL bytes")
        try:
            text = record.decode("utf-8")
        except UnicodeDecodeError:
            raise UnplannableError("the header is not UTF-8 text; save the file as UTF-8 CSV") from None
        text = text.rstrip("\r\n")
        names = next(csv.reader([text]), [])
        return CsvLayout(header=[name.strip() for name in names], header_text=text, data_start=self._offset)

    def _consume(self, count: int) -> None:
        consumed = self._buffer[:count]
        self._newlines += consumed.count(b"\n")
        self._offset += count
        self._buffer = self._buffer[count:]

    def cut(self, layout: CsvLayout, chunk_rows: int, chunk_bytes: int) -> None:
        """Cut the rest of the stream into chunks, each ending right after a record's newline."""
        chunk_start, chunk_first_line, records = self._offset, self._newlines + 1, 0
        inside_quotes = False
        while True:
            block = self._buffer or self._read()
            self._buffer = b""
            if not block:
                break
            octets = np.frombuffer(block, dtype=np.uint8)
            newlines = np.flatnonzero(octets == NEWLINE)
            if b'"' in block:
                parity = (np.cumsum(octets == QUOTE, dtype=np.uint8) & 1).astype(bool) ^ inside_quotes
                ends = newlines[~parity[newlines]]
                inside_quotes = bool(parity[-1])
            else:
                ends = newlines if not inside_quotes else newlines[:0]
            ends = ends.astype(np.int64) + self._offset  # file offsets of the newlines that end a record
            taken = 0
            while taken < len(ends):
                by_rows = taken + chunk_rows - records - 1
                by_bytes = taken + int(np.searchsorted(ends[taken:], chunk_start + chunk_bytes - 1))
                cut_at = min(by_rows, by_bytes)
                if cut_at >= len(ends):
                    break
                end = int(ends[cut_at]) + 1
                layout.chunks.append(Chunk(len(layout.chunks), chunk_start, end, chunk_first_line))
                chunk_first_line = 1 + self._newlines + int(np.searchsorted(newlines + self._offset, end))
                chunk_start, records, taken = end, 0, cut_at + 1
            records += len(ends) - taken
            self._newlines += len(newlines)
            self._offset += len(block)
        layout.size = self._offset
        if inside_quotes:
            raise UnplannableError(
                f"the file ends inside a quoted field: a quote opened on line {chunk_first_line} or after it is "
                "never closed"
            )
        if chunk_start < self._offset:
            layout.chunks.append(Chunk(len(layout.chunks), chunk_start, self._offset, chunk_first_line))


def plan_parquet(metadata: Any, *, chunk_rows: int, chunk_bytes: int) -> list[Chunk]:
    """Runs of whole row groups from a Parquet footer (`pyarrow.parquet.FileMetaData`)."""
    chunks: list[Chunk] = []
    groups: list[int] = []
    rows = size = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        groups.append(index)
        rows += group.num_rows
        size += group.total_byte_size
        if rows >= chunk_rows or size >= chunk_bytes:
            chunks.append(Chunk(len(chunks), row_groups=tuple(groups), rows=rows))
            groups, rows, size = [], 0, 0
    if groups:
        chunks.append(Chunk(len(chunks), row_groups=tuple(groups), rows=rows))
    return chunks
