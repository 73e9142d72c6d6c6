"""Check an upload against its dataset contract in one streamed pass, in bounded memory, naming every problem.

Run by the S3-triggered validation Lambda before a file is versioned, and by `loopml validate` on a local file: the
same code. The object is read as a stream in segments of a few MB (CSV and gzip-compressed CSV) or record batches
(Parquet); each is parsed by Arrow and checked with vectorized kernels on a worker thread, and the per-segment
results are merged in file order: counts per check, example rows with their global row index and file line, the
values to show, and the dataset profile used later for drift. Memory depends on the segment size and the number of
columns, never on the number of rows. Pure: it reads the bytes it is given and touches nothing else.

Conventions, so a report can be read without this file:

* `Issue.rows` are 0-based indexes of data rows (the first row after the header is 0); `Issue.lines` are the
  1-based line numbers of the same rows in the file as an editor shows them (the header is usually line 1; Parquet
  has no lines, so there they are empty). Both hold at most `max_issue_rows` examples; `Issue.row_count` is the full
  number of rows at fault; `Issue.values` holds a few distinct offending values as written, each cut to
  `MAX_VALUE_CHARS`. Issues about the file or a whole column (schema, too few rows, drift) have no rows and a
  `row_count` of 0.
* Cells are compared after stripping surrounding whitespace, and so are header names. A cell that is empty after
  stripping is null. The text `nan` in a numeric column is not null: it is a non-finite number, like `inf`.
* An int feature accepts integral numbers written as floats (`3.0`, `1e3`), because exporters often write them so.
* Nulls: a feature with `nullable: false` (the default) accepts none; a nullable feature accepts up to
  `quality.max_null_fraction` of its rows. The target accepts none: a row without a label cannot be trained on.
* A row with more or fewer fields than the header makes the file unreadable as a table: that is one `parse` issue
  listing every such line, and no other check runs, because the columns of those rows cannot be trusted.
* Every issue rejects the upload: `ok` is true exactly when there are no issues.
"""

from __future__ import annotations

import gc
import gzip
import os
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from loopml_core.contract import DatasetContract
from loopml_core.uploads import SNIFF_BYTES, SUPPORTED, Format, FormatError, check_content, format_of
from loopml_core.validation.columns import arrow_message
from loopml_core.validation.csv_text import Splitter, Unreadable, parse_error
from loopml_core.validation.merge import Run, use_a_returning_allocator
from loopml_core.validation.report import (
    CHECK_ORDER,
    MAX_REPORT_COLUMNS,
    MAX_VALUE_CHARS,
    Check,
    Issue,
    Validated,
    ValidationReport,
    overall_issue,
    report_document,
    shorten,
)
from loopml_core.validation.sources import ByteSource, BytesSource, FileSource, HashingReader, Rewound

PARQUET_BATCH_ROWS = 32_768

__all__ = [
    "CHECK_ORDER",
    "MAX_REPORT_COLUMNS",
    "MAX_VALUE_CHARS",
    "ByteSource",
    "BytesSource",
    "Check",
    "FileSource",
    "Issue",
    "Validated",
    "ValidationReport",
    "report_document",
    "validate",
    "validate_csv",
]


def validate_csv(
    contract: DatasetContract,
    csv_bytes: bytes,
    *,
    previous_profile: dict[str, Any] | None = None,
    max_issue_rows: int = 20,
) -> ValidationReport:
    """Validate CSV bytes held in memory (tests, small files): `validate` on a `BytesSource`."""
    source = BytesSource("upload.csv", csv_bytes)
    return validate(contract, source, previous_profile=previous_profile, max_issue_rows=max_issue_rows).report


def validate(
    contract: DatasetContract,
    source: ByteSource,
    *,
    previous_profile: dict[str, Any] | None = None,
    max_issue_rows: int = 20,
    max_bytes: int | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Validated:
    """Validate `source` against `contract` in one streamed pass; never raises for bad data.

    Every problem becomes an `Issue`. `previous_profile` is the drift profile of the dataset's previous version;
    with it and `quality.max_psi` set, each feature's distribution is compared with that version's (only when every
    feature column is present). A malformed `previous_profile` is the platform's fault, not the upload's, so that
    error propagates. `max_issue_rows` caps the example rows per issue; `max_bytes` refuses larger objects unread.
    `on_progress(bytes_read)` is called as the object streams in (a progress bar for long files).
    """
    started = time.perf_counter()
    collecting = gc.isenabled()
    # Segments make short-lived, acyclic objects by the thousand; cyclic collections of the whole heap meanwhile
    # cost a quarter of the run (measured with py-spy) and free nothing that reference counting does not.
    gc.disable()
    try:
        return _validate(contract, source, previous_profile, max_issue_rows, max_bytes, workers, on_progress, started)
    finally:
        if collecting:
            gc.enable()


def _validate(
    contract: DatasetContract,
    source: ByteSource,
    previous_profile: dict[str, Any] | None,
    max_issue_rows: int,
    max_bytes: int | None,
    workers: int | None,
    on_progress: Callable[[int], None] | None,
    started: float,
) -> Validated:
    use_a_returning_allocator()  # before any Arrow reader exists: readers keep the pool they were made with
    run = Run(contract, max(0, max_issue_rows), previous_profile, workers or min(4, os.cpu_count() or 1))
    run.size = source.size
    try:
        fmt = _check_format(source, max_bytes)
        run.format = fmt
        if fmt is Format.PARQUET:
            _read_parquet(run, source, on_progress)
        else:
            _read_csv(run, source, fmt, on_progress)
    except Unreadable as error:
        run.fatal = error.issue
    except FormatError as error:
        run.fatal = overall_issue("format", str(error))
    return run.finish(time.perf_counter() - started)


def _check_format(source: ByteSource, max_bytes: int | None) -> Format:
    fmt = format_of(source.name)
    if fmt is None:
        raise FormatError(f"unsupported file type: '{shorten(source.name, 100)}'; upload {SUPPORTED}")
    if max_bytes is not None and source.size > max_bytes:
        raise FormatError(
            f"the file is {source.size / 1e9:.2f} GB, more than the configured maximum of {max_bytes / 1e9:.2f} GB "
            "(LOOPML_MAX_UPLOAD_BYTES); split it into several uploads"
        )
    return fmt


def _read_csv(run: Run, source: ByteSource, fmt: Format, on_progress: Callable[[int], None] | None) -> None:
    ahead = getattr(source, "digest_ahead", None)
    with source.stream() as raw:
        hashing = HashingReader(raw, on_progress, hashing=ahead is None)
        head = hashing.read(SNIFF_BYTES)
        check_content(source.name, fmt, head)  # a misnamed file is refused before the rest of it is read
        run.digest, run.read = ahead or hashing.digest, True
        text: Any = Rewound(head, hashing)
        if fmt is Format.CSV_GZ:
            text = gzip.GzipFile(fileobj=cast(BinaryIO, text), mode="rb")
        try:
            splitter = Splitter(text)
            header, run.next_line = splitter.header()
            run.start_csv(header)
            run.check_segments(splitter.segments())
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise parse_error(f"the gzip stream is broken or truncated ({error}); upload the whole file") from None
        finally:
            if ahead is None:
                hashing.drain()  # the digest is of the whole object, also when reading stopped early


def _reporting(batches: Any, handle: Any, on_progress: Callable[[int], None]) -> Any:
    for batch in batches:
        on_progress(handle.tell())
        yield batch


def _hash_whole(run: Run, source: ByteSource, on_progress: Callable[[int], None] | None) -> None:
    with source.stream() as stream:
        reader = HashingReader(stream, on_progress)
        reader.drain()
    run.digest, run.read = reader.digest, True


def _read_parquet(run: Run, source: ByteSource, on_progress: Callable[[int], None] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with source.random_access() as handle:
        check_content(source.name, Format.PARQUET, handle.read(SNIFF_BYTES))
        handle.seek(0)
        # Parquet's footer comes first, so parsing needs random access; the digest still needs every byte in order.
        ahead = getattr(source, "digest_ahead", None)
        if ahead is not None:
            run.digest, run.read = ahead, True
        hasher = threading.Thread(target=_hash_whole, args=(run, source, on_progress), name="sha256", daemon=True)
        if ahead is None:
            hasher.start()
        try:
            try:
                # Without pre-buffering, column chunks are read as they are decoded rather than a row group at once.
                parquet = pq.ParquetFile(handle, pre_buffer=False)
            except (pa.ArrowException, OSError) as error:
                raise parse_error(f"not readable as Parquet: {arrow_message(error)}") from None
            run.start_parquet(parquet.schema_arrow)
            wanted = [name for name in run.plan.arrow_columns if name in parquet.schema_arrow.names]
            batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted or None, use_threads=False)
            if ahead is not None and on_progress is not None:  # no hashing pass reads the file in order to report it
                batches = _reporting(batches, handle, on_progress)
            try:
                run.check_batches(batches)
            except (pa.ArrowException, OSError) as error:
                raise parse_error(f"not readable as Parquet: {arrow_message(error)}") from None
        finally:
            if ahead is None:
                hasher.join()
