"""Batch planning cuts a CSV into byte ranges of whole records (quoted newlines included) and a Parquet file into runs
of whole row groups, from one streamed pass or the footer alone."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml_core.batch import planning
from loopml_core.batch.csv_records import split_records
from loopml_core.batch.planning import UnplannableError, plan_csv, plan_parquet


class Counting(io.BytesIO):
    """A stream that counts what is read from it, and never hands more than it was asked."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.largest_read = max(self.largest_read, len(data))
        return data


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def check_ranges(data: bytes, layout: planning.CsvLayout) -> None:
    """The ranges tile the data after the header, each starts where a record starts, and parsing them one by one
    gives exactly the rows of the whole file, on the lines the ranges say."""
    assert layout.chunks[0].start == layout.data_start
    for before, after in zip(layout.chunks, layout.chunks[1:], strict=False):
        assert before.end == after.start
    assert layout.chunks[-1].end == len(data) == layout.size
    assert [chunk.index for chunk in layout.chunks] == list(range(len(layout.chunks)))
    pieces = []
    for chunk in layout.chunks:
        assert data[chunk.start - 1 : chunk.start] == b"\n"  # right after a record's line end
        assert chunk.first_line == data[: chunk.start].count(b"\n") + 1
        pieces.extend(rows_of(data[chunk.start : chunk.end]))
    everything = rows_of(data)
    header = next(index for index, row in enumerate(everything) if row)  # blank lines may come first
    assert pieces == everything[header + 1 :]


@pytest.fixture(params=[7, 64, 8 << 20], ids=["7-byte-blocks", "64-byte-blocks", "8-MB-blocks"])
def block_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    # Small blocks put record ends, quotes and quoted newlines across block boundaries: the scan carries them over.
    monkeypatch.setattr(planning, "SCAN_BLOCK_BYTES", request.param)
    return int(request.param)


def test_ranges_end_at_line_boundaries_every_n_records(block_bytes: int) -> None:
    data = b"id,x,plan\n" + b"".join(f"{i},{i * 1.5},basic\n".encode() for i in range(1000))
    layout = plan_csv(io.BytesIO(data), chunk_rows=300, chunk_bytes=1 << 30)
    assert layout.header == ["id", "x", "plan"] and layout.header_text == "id,x,plan"
    assert [len(rows_of(data[c.start : c.end])) for c in layout.chunks] == [300, 300, 300, 100]
    check_ranges(data, layout)


def test_quoted_newlines_and_commas_never_split_a_record(block_bytes: int) -> None:
    # Given records whose quoted fields hold commas, escaped quotes and line breaks (LF and CRLF)
    records = [
        f'{i},"note {i}, with a comma","line one\nline two",x\n' if i % 3 else f'{i},"say ""hi""\r\nthere",plain,x\n'
        for i in range(200)
    ]
    data = ("a,b,c,d\n" + "".join(records)).encode()
    # When it is cut every 7 records or every 100 bytes
    for rows, size in ((7, 1 << 30), (1 << 30, 100)):
        layout = plan_csv(io.BytesIO(data), chunk_rows=rows, chunk_bytes=size)
        # Then each range holds whole records only, and the ranges give back every row on its own line
        check_ranges(data, layout)
        if size == 100:
            assert all(c.end - c.start >= 100 for c in layout.chunks[:-1])
        else:
            assert [len(rows_of(data[c.start : c.end])) for c in layout.chunks[:-1]] == [7] * (len(layout.chunks) - 1)


def test_the_header_is_found_after_a_bom_and_blank_lines_and_crlf_is_kept(block_bytes: int) -> None:
    data = "\ufeff\r\n\r\n name , plan \r\n".encode() + b"".join(f"n{i},basic\r\n".encode() for i in range(50))
    layout = plan_csv(io.BytesIO(data), chunk_rows=20, chunk_bytes=1 << 30)
    assert layout.header == ["name", "plan"] and layout.header_text == " name , plan "
    assert layout.chunks[0].first_line == 4
    check_ranges(data, layout)


def test_a_last_record_without_a_line_end_is_in_the_last_range() -> None:
    data = b"a,b\n1,2\n3,4\n5,6"
    layout = plan_csv(io.BytesIO(data), chunk_rows=2, chunk_bytes=1 << 30)
    assert [(c.start, c.end) for c in layout.chunks] == [(4, 12), (12, 15)]
    check_ranges(data, layout)


def test_a_header_without_rows_plans_no_chunk() -> None:
    layout = plan_csv(io.BytesIO(b"a,b\n"), chunk_rows=10, chunk_bytes=10)
    assert layout.chunks == [] and layout.data_start == layout.size == 4


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b"\n \n\n", "only blank lines"),
        (b'a,b\n1,"open\n2,3\n', "ends inside a quoted field: a quote opened on line 2 or after it is never closed"),
        (b"a,\xff\n1,2\n", "the header is not UTF-8"),
    ],
)
def test_files_that_cannot_be_cut_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(UnplannableError, match=reason):
        plan_csv(io.BytesIO(data), chunk_rows=10, chunk_bytes=10)


def test_the_scan_reads_in_bounded_blocks() -> None:
    # A 30 MB file is read in blocks of the scan's size, never whole.
    row = b"12345,67.89,basic,north,no\n"
    data = b"a,b,c,d,e\n" + row * (30_000_000 // len(row))
    stream = Counting(data)
    layout = plan_csv(stream, chunk_rows=200_000, chunk_bytes=1 << 30)
    assert stream.largest_read == planning.SCAN_BLOCK_BYTES < len(data) // 3
    assert len(layout.chunks) == -(-(len(data) // len(row)) // 200_000)


def test_segment_records_tell_quoted_newlines_blank_lines_and_line_ends_apart() -> None:
    data = b'1,"a\nb",x\r\n\n   \n2,c,y\n3,d'
    records = split_records(data)
    assert [bytes(data[s:e]) for s, e in zip(records.starts, records.stops, strict=True)] == [
        b'1,"a\nb",x\r\n',
        b"\n",
        b"   \n",
        b"2,c,y\n",
        b"3,d",
    ]
    assert records.endings.tolist() == [2, 1, 1, 1, 0]
    assert records.fields.tolist() == [3, 1, 1, 3, 2]
    assert records.blank.tolist() == [False, True, True, False, False]
    assert records.lines.tolist() == [0, 2, 3, 4, 5]
    assert records.quoted_newlines and records.newlines == 5


def test_parquet_chunks_are_runs_of_whole_row_groups(tmp_path: Path) -> None:
    # Given a Parquet file of ten row groups of 100 rows
    table = pa.table({"x": list(range(1000))})
    pq.write_table(table, tmp_path / "f.parquet", row_group_size=100)
    metadata = pq.ParquetFile(tmp_path / "f.parquet").metadata
    # When chunks close at 250 rows, or at the size of two row groups
    by_rows = plan_parquet(metadata, chunk_rows=250, chunk_bytes=1 << 30)
    two_groups = metadata.row_group(0).total_byte_size + metadata.row_group(1).total_byte_size
    by_bytes = plan_parquet(metadata, chunk_rows=1 << 30, chunk_bytes=two_groups)
    # Then each chunk is whole row groups in order, every group in exactly one chunk, with its row count known
    assert [c.row_groups for c in by_rows] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    assert [c.rows for c in by_rows] == [300, 300, 300, 100]
    assert [c.row_groups for c in by_bytes] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert [planning.Chunk.from_json(c.to_json()) for c in by_rows] == by_rows
