"""The records of a CSV segment (bytes that start at a record boundary), vectorized over its bytes.

A newline or comma inside a quoted field sits after an odd number of quote characters (an escaped quote is two, so
parity holds): that is how record ends and delimiters are told apart without a tokenizer, as validation does
(`loopml_core.validation.csv_text`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEWLINE, RETURN, QUOTE, COMMA, SPACE = ord("\n"), ord("\r"), ord('"'), ord(","), ord(" ")


@dataclass(frozen=True)
class Records:
    """Every record of a segment: record `i` is `data[starts[i]:stops[i]]`, line ending included."""

    starts: np.ndarray  # int64 offsets
    stops: np.ndarray  # int64 offsets after the record's line ending (or the segment's end)
    endings: np.ndarray  # int8: bytes of line ending at the record's end (0 at the end of a file, 1 LF, 2 CRLF)
    fields: np.ndarray  # int64: fields outside quotes
    blank: np.ndarray  # bool: nothing but whitespace (not a row; CSV readers skip such lines)
    lines: np.ndarray  # int64: 0-based line of the record's first line, from the segment's first line
    newlines: int  # newlines in the segment, quoted ones included
    quoted_newlines: bool  # some record holds a newline inside quotes

    def __len__(self) -> int:
        return len(self.starts)


def split_records(data: bytes | memoryview) -> Records:
    """The records of `data`, which starts at a record boundary; the last one may lack its line ending."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == NEWLINE)
    delimiters = buffer == COMMA
    quoted = bool(np.any(buffer == QUOTE)) if len(buffer) else False
    if quoted:
        outside = (np.cumsum(buffer == QUOTE, dtype=np.uint8) & 1) == 0  # uint8 wraps at 256 and keeps parity
        ends = newlines[outside[newlines]]
        delimiters &= outside
    else:
        ends = newlines
    stops = (ends + 1).astype(np.int64)
    if len(buffer) and (not len(stops) or stops[-1] < len(buffer)):
        stops = np.append(stops, len(buffer))
    starts = np.concatenate(([0], stops[:-1])).astype(np.int64)
    if not len(starts):
        empty = np.empty(0, np.int64)
        return Records(empty, empty, np.empty(0, np.int8), empty, np.empty(0, bool), empty, 0, False)
    last = stops - 1
    endings = (buffer[last] == NEWLINE).astype(np.int8)
    crlf = (endings == 1) & (last - 1 >= starts)
    crlf[crlf] = buffer[last[crlf] - 1] == RETURN
    endings = endings + crlf.astype(np.int8)
    fields = np.add.reduceat(delimiters.view(np.uint8), starts, dtype=np.int64) + 1
    blank = np.add.reduceat((buffer > SPACE).view(np.uint8), starts, dtype=np.int64) == 0
    lines = np.searchsorted(newlines, starts).astype(np.int64)
    return Records(
        starts=starts,
        stops=stops,
        endings=endings,
        fields=fields,
        blank=blank,
        lines=lines,
        newlines=len(newlines),
        quoted_newlines=len(ends) != len(newlines),
    )


def csv_field(text: str) -> str:
    """One value as a CSV field: quoted (quotes doubled) only when it holds a delimiter, a quote or a line break."""
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text
