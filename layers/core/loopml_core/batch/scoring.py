"""Scoring one chunk of a batch file in bounded memory: read, check, predict, write, a segment at a time.

CSV: the chunk's byte range is read in segments of a few MB cut at record boundaries; each segment's records are
located with numpy, the feature columns parsed by Arrow, checked (`rows`), scored with onnxruntime, and written as
the input's own record text (byte for byte) followed by the prediction columns, so every input column is kept as
written. Parquet: the chunk's row groups are read a record batch at a time and written as record batches with the
prediction columns appended. Memory depends on the segment or batch size and the number of columns, never on the
number of rows. Rows the contract refuses stay in the output, with empty prediction columns.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

import numpy as np

from loopml_core.batch.arrow_build import (
    binary_view,
    joined_bytes,
    labels_array,
    numeric_array,
    string_scalar,
)
from loopml_core.batch.csv_records import csv_field, split_records
from loopml_core.batch.layout import MODEL_VERSION, PREDICTION, PROBABILITY_PREFIX, prediction_columns
from loopml_core.batch.planning import Chunk
from loopml_core.batch.report import Findings
from loopml_core.batch.rows import MAX_ISSUE_ROWS, check_rows
from loopml_core.contract import DatasetContract
from loopml_core.serving import OnnxModel
from loopml_core.validation.columns import hits_of
from loopml_core.validation.csv_text import Splitter, Unreadable

PREDICT_ROWS = 65_536  # rows per onnxruntime run: large enough to amortise the call, small enough to stay flat
PARQUET_BATCH_ROWS = 65_536
PROBABILITY_DECIMALS = 6  # as the API rounds them
_SLICE_END = 2**31 - 1


class Sink(Protocol):
    """Where a chunk's part goes: a stream of bytes (an `ObjectWriter`, or a file in tests and benchmarks)."""

    def write(self, data: Any, /) -> int | None: ...


class ChunkDataError(ValueError):
    """A chunk cannot be read as rows of the file's header; nothing of the file is output."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass
class Predicted:
    """Model outputs for every row of a segment; meaningless where `valid` is False."""

    valid: np.ndarray
    codes: np.ndarray | None = None  # classifier: index of the label in the classes
    probabilities: np.ndarray | None = None  # classifier: [rows, classes]
    values: np.ndarray | None = None  # regressor


class Predictor:
    """The pinned model version, run on the valid rows of a segment in slices of `PREDICT_ROWS`."""

    def __init__(self, model: OnnxModel, version: int) -> None:
        self.model = model
        self.version = version
        self.classes = model.classes
        self.columns = prediction_columns(self.classes)
        self._csv_labels = [csv_field(label) for label in self.classes or ()]

    def predict(self, feeds: dict[str, np.ndarray], valid: np.ndarray) -> Predicted:
        rows = len(valid)
        predicted = Predicted(valid)
        if self.classes is not None:
            predicted.codes = np.zeros(rows, np.int32)
            predicted.probabilities = np.zeros((rows, len(self.classes)), np.float32)
        else:
            predicted.values = np.zeros(rows, np.float32)
        chosen = np.flatnonzero(valid)
        every = len(chosen) == rows
        for start in range(0, len(chosen), PREDICT_ROWS):
            where: Any = slice(start, start + PREDICT_ROWS) if every else chosen[start : start + PREDICT_ROWS]
            outputs = self.model.run({name: feed[where].reshape(-1, 1) for name, feed in feeds.items()})
            if predicted.codes is not None and predicted.probabilities is not None:
                predicted.codes[where] = self._codes(outputs[0].reshape(-1))
                predicted.probabilities[where] = outputs[1]
            elif predicted.values is not None:
                predicted.values[where] = outputs[0].reshape(-1)
        return predicted

    def _codes(self, labels: np.ndarray) -> np.ndarray:
        """Each label's index in the classes: one vectorized comparison per class (a handful, usually)."""
        codes = np.full(len(labels), -1, np.int32)
        for code, label in enumerate(self.classes or ()):
            codes[labels == label] = code
        if (codes < 0).any():  # a label the metadata does not list: the model and its metadata disagree
            unknown = sorted({str(x) for x in labels[codes < 0][:10]})
            raise ValueError(f"the model predicted labels its metadata does not list: {unknown}")
        return codes

    def fields(self) -> list[Any]:
        """The prediction columns' Arrow fields (Parquet output)."""
        import pyarrow as pa

        if self.classes is None:
            return [pa.field(PREDICTION, pa.float64()), pa.field(MODEL_VERSION, pa.int64())]
        probabilities = [pa.field(f"{PROBABILITY_PREFIX}{label}", pa.float64()) for label in self.classes]
        return [pa.field(PREDICTION, pa.string()), *probabilities, pa.field(MODEL_VERSION, pa.int64())]

    def arrays(self, predicted: Predicted) -> list[Any]:
        """The prediction columns as typed Arrow arrays, null where a row was not scored (Parquet output)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        valid = predicted.valid
        version = numeric_array(np.full(len(valid), self.version, np.int64), valid)
        if predicted.values is not None:
            # The shortest decimal that round-trips to the float32 the model computed, as the API answers it.
            as_text = pc.cast(numeric_array(predicted.values, valid), pa.string())
            return [pc.cast(as_text, pa.float64()), version]
        assert predicted.codes is not None and predicted.probabilities is not None and self.classes is not None
        labels = labels_array(predicted.codes, valid, self.classes)
        return [labels, *self._probabilities(predicted), version]

    def _probabilities(self, predicted: Predicted) -> list[Any]:
        assert predicted.probabilities is not None
        rounded = np.round(predicted.probabilities.astype(np.float64), PROBABILITY_DECIMALS)
        return [numeric_array(np.ascontiguousarray(rounded[:, j]), predicted.valid) for j in range(rounded.shape[1])]

    def csv_text(self, predicted: Predicted) -> Any:
        """Per row, the prediction columns as CSV fields joined by commas (empty fields where not scored)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        valid = predicted.valid
        version = pc.cast(numeric_array(np.full(len(valid), self.version, np.int64), valid), pa.string())
        if predicted.values is not None:
            fields = [pc.cast(numeric_array(predicted.values, valid), pa.string()), version]
        else:
            assert predicted.codes is not None
            labels = labels_array(predicted.codes, valid, self._csv_labels)
            fields = [labels, *(pc.cast(p, pa.string()) for p in self._probabilities(predicted)), version]
        comma = string_scalar(",")
        joined = pc.binary_join_element_wise(*fields, comma, null_handling="replace", null_replacement="")
        return joined.cast(pa.binary())


@dataclass
class ChunkTally:
    """What scoring a chunk produced, besides its part."""

    columns: list[str]
    records: int = 0
    output_rows: int = 0
    scored: int = 0
    findings: Findings = field(default_factory=Findings)
    fatal: Any = None  # an Issue
    seconds: float = 0.0


@dataclass(frozen=True)
class CsvJob:
    contract: DatasetContract
    header: list[str]
    header_text: str
    id_column: str | None = None


class _Window(io.RawIOBase):
    """The bytes [start, end) of a seekable stream."""

    def __init__(self, handle: BinaryIO, start: int, end: int) -> None:
        handle.seek(start)
        self._handle = handle
        self._left = max(0, end - start)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._left if size is None or size < 0 else min(size, self._left)
        data = self._handle.read(wanted) if wanted else b""
        self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def score_csv_chunk(job: CsvJob, chunk: Chunk, source: BinaryIO, predictor: Predictor, sink: Sink) -> ChunkTally:
    """Score the byte range of `chunk` in `source` (seekable) and write its rows to `sink`; the first chunk writes
    the header too. A chunk that cannot be read as rows of the header gets a `fatal` issue instead."""
    started = time.perf_counter()
    scorer = _CsvScorer(job, predictor, sink)
    if chunk.index == 0:
        sink.write(scorer.header_line())
    line = chunk.first_line or 1
    try:
        for segment in Splitter(_Window(source, chunk.start, chunk.end)).segments():
            line = scorer.score(memoryview(segment.data)[: segment.end], line)
    except Unreadable as error:
        scorer.tally.fatal = _fatal(str(error), line)
    except ChunkDataError as error:
        scorer.tally.fatal = _fatal(str(error), error.line)
    scorer.tally.seconds = time.perf_counter() - started
    return scorer.tally


def _fatal(message: str, line: int | None) -> Any:
    from loopml_core.validation.report import overall_issue

    where = f"at line {line}: " if line is not None else ""
    return overall_issue("parse", f"{where}{message}", lines=[line] if line is not None else [])


class _CsvScorer:
    def __init__(self, job: CsvJob, predictor: Predictor, sink: Sink) -> None:
        self.job = job
        self.predictor = predictor
        self.sink = sink
        positions: dict[str, int] = {}
        for position, name in enumerate(job.header):
            positions.setdefault(name, position)
        self.width = len(job.header)
        self.arrow_names = [f"c{i}" for i in range(self.width)]
        self.features = {f.name: f"c{positions[f.name]}" for f in job.contract.features}
        self.numeric = {self.features[f.name] for f in job.contract.features if f.is_numeric}
        self.id_arrow = f"c{positions[job.id_column]}" if job.id_column else None
        kept = [job.id_column] if job.id_column else job.header
        self.tally = ChunkTally(columns=[*kept, *predictor.columns])
        self._typed = True  # numeric columns parsed as numbers until a segment holds a cell that is not one

    def header_line(self) -> bytes:
        lead = csv_field(self.job.id_column) if self.job.id_column else self.job.header_text
        return (",".join([lead, *(csv_field(c) for c in self.predictor.columns)]) + "\n").encode()

    def score(self, data: memoryview, first_line: int) -> int:
        """Score one segment that starts on file line `first_line`; returns the line after it."""
        records = split_records(data)
        next_line = first_line + records.newlines
        nonblank = ~records.blank
        record_index = np.cumsum(nonblank) - 1 + self.tally.records
        lines = records.lines + first_line
        good = nonblank & (records.fields == self.width)
        ragged = nonblank & ~good
        findings = self.tally.findings
        if ragged.any():
            findings.add_hits(None, "ragged", hits_of(ragged, MAX_ISSUE_ROWS), record_index, lines)
        self.tally.records += int(nonblank.sum())
        positions = np.flatnonzero(good)
        if not len(positions):
            return next_line
        table = self._parse(data, records, positions, first_line)
        columns = {name: table.column(arrow).combine_chunks() for name, arrow in self.features.items()}
        checked = check_rows(self.job.contract, columns, len(positions))
        for (column, kind), hits in checked.faults.items():
            findings.add_hits(column, kind, hits, record_index[positions], lines[positions])
        valid = ~checked.invalid
        predicted = self.predictor.predict(checked.feeds, valid)
        lead = self._escaped_ids(table.column(self.id_arrow)) if self.id_arrow else self._records(data, records, good)
        self._write(lead, self.predictor.csv_text(predicted))
        self.tally.output_rows += len(positions)
        self.tally.scored += int(valid.sum())
        return next_line

    def _parse(self, data: memoryview, records: Any, positions: np.ndarray, first_line: int) -> Any:
        import pyarrow as pa

        if len(positions) == len(records):
            text: Any = data
        else:  # blank lines or records of the wrong width: only the rows go to Arrow, so its rows are ours
            pieces = [bytes(data[records.starts[i] : records.stops[i]]) for i in positions.tolist()]
            if records.endings[positions[-1]] == 0:
                pieces.append(b"\n")
            text = b"".join(pieces)
        try:
            table = self._read(text, records.quoted_newlines)
        except pa.ArrowInvalid as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            line = first_line + int(records.lines[positions[0]])
            if "UTF8" in message or "UTF-8" in message:
                message = "not UTF-8 text; save the file as UTF-8 CSV"
                try:
                    str(data, "utf-8")
                except UnicodeDecodeError as decoding:
                    line = first_line + bytes(data[: decoding.start]).count(b"\n")
            raise ChunkDataError(f"not readable as CSV: {message[:300]}", line) from None
        if table.num_rows != len(positions):
            raise ChunkDataError(
                f"{table.num_rows:,} rows read where the lines hold {len(positions):,} records: a file with bare "
                "carriage returns (old Mac line ends) cannot be scored; save it with LF or CRLF line ends",
                first_line + int(records.lines[positions[0]]),
            )
        return table

    def _read(self, text: Any, quoted_newlines: bool) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        def read(typed: bool) -> Any:
            types = {arrow: pa.dictionary(pa.int32(), pa.string()) for arrow in self.features.values()}
            types.update({arrow: pa.float64() if typed else pa.string() for arrow in self.numeric})
            wanted = list(dict.fromkeys([*self.features.values(), *([self.id_arrow] if self.id_arrow else [])]))
            if self.id_arrow:
                types[self.id_arrow] = pa.string()
            return pcsv.read_csv(
                pa.py_buffer(text),
                read_options=pcsv.ReadOptions(
                    column_names=self.arrow_names, use_threads=False, block_size=max(len(text), 1 << 16) + 1
                ),
                parse_options=pcsv.ParseOptions(newlines_in_values=quoted_newlines),
                convert_options=pcsv.ConvertOptions(
                    include_columns=wanted,
                    column_types=types,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                    null_values=[""],
                ),
            )

        if self._typed:
            try:
                return read(typed=True)
            except pa.ArrowInvalid as error:
                if "conversion error" not in str(error):
                    raise
                # A cell that is not a plain number: text from now on, which the checks tell apart cell by cell.
                self._typed = False
        return read(typed=False)

    def _records(self, data: memoryview, records: Any, good: np.ndarray) -> Any:
        """Each row's record as written, without its line ending."""
        import pyarrow.compute as pc

        from loopml_core.arrow_arrays import arrow_mask

        text = binary_view(data, np.append(records.starts, records.stops[-1]))
        endings = records.endings
        if not good.all():
            positions = np.flatnonzero(good)
            text = text.take(numeric_array(positions.astype(np.int64)))
            endings = endings[positions]
        kinds = np.unique(endings)
        stripped = {
            int(n): pc.binary_replace_slice(text, start=-int(n), stop=_SLICE_END, replacement="") if n else text
            for n in kinds
        }
        if len(kinds) == 1:
            return stripped[int(kinds[0])]
        result = stripped[int(kinds[0])]
        for n in kinds[1:]:
            result = pc.if_else(arrow_mask(endings == n), stripped[int(n)], result)
        return result

    def _escaped_ids(self, column: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        ids = column.combine_chunks()
        needs = pc.match_substring_regex(ids, r'[,"\r\n]|^\s|\s$')
        doubled = pc.replace_substring(ids, pattern='"', replacement='""')
        quote = string_scalar('"')
        quoted = pc.binary_join_element_wise(quote, doubled, quote, string_scalar(""))
        escaped = pc.fill_null(pc.if_else(needs, quoted, ids), string_scalar(""))
        return escaped.cast(pa.binary())

    def _write(self, lead: Any, predictions: Any) -> None:
        import pyarrow.compute as pc

        newline = string_scalar("\n").cast(_binary())
        rows = pc.binary_join_element_wise(lead, predictions, string_scalar(",").cast(_binary()))
        lines = pc.binary_join_element_wise(rows, string_scalar("").cast(_binary()), newline)
        self.sink.write(joined_bytes(lines))


def _binary() -> Any:
    import pyarrow as pa

    return pa.binary()


@dataclass(frozen=True)
class ParquetJob:
    contract: DatasetContract
    id_column: str | None = None


def score_parquet_chunk(
    job: ParquetJob, chunk: Chunk, source: BinaryIO, predictor: Predictor, sink: Sink
) -> ChunkTally:
    """Score the row groups of `chunk` in `source` (seekable Parquet) and write them, with the prediction columns,
    as a Parquet file to `sink`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    try:
        return _score_parquet(job, chunk, pq.ParquetFile(source, pre_buffer=False), predictor, sink, started)
    except (pa.ArrowException, OSError) as error:
        # Arrow reports a damaged page as a bare OSError; an error of the stream it reads through (a network timeout
        # is an OSError subclass) is raised as it is, for the step's retries.
        if not isinstance(error, pa.ArrowException) and type(error) is not OSError:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        rows = f"row groups {chunk.row_groups[0]}-{chunk.row_groups[-1]}" if chunk.row_groups else "the file"
        tally = ChunkTally(columns=[], fatal=_fatal(f"{rows} not readable as Parquet: {message[:300]}", None))
        tally.seconds = time.perf_counter() - started
        return tally


def _score_parquet(
    job: ParquetJob, chunk: Chunk, parquet: Any, predictor: Predictor, sink: Sink, started: float
) -> ChunkTally:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet.schema_arrow
    names: Sequence[str] = schema.names
    if job.id_column:
        read = list(dict.fromkeys([job.id_column, *job.contract.feature_names]))
        kept = [0]
    else:
        read = None
        kept = list(range(len(names)))
    positions = {name: (read or list(names)).index(name) for name in job.contract.feature_names}
    kept_fields = [schema.field(names.index(job.id_column))] if job.id_column else list(schema)
    output_schema = pa.schema([*kept_fields, *predictor.fields()])
    tally = ChunkTally(columns=output_schema.names)
    with pq.ParquetWriter(sink, output_schema) as writer:
        batches = parquet.iter_batches(
            batch_size=PARQUET_BATCH_ROWS, row_groups=list(chunk.row_groups), columns=read, use_threads=False
        )
        for batch in batches:
            rows = batch.num_rows
            columns = {name: batch.column(position) for name, position in positions.items()}
            checked = check_rows(job.contract, columns, rows)
            record_index = np.arange(tally.records, tally.records + rows)
            for (column, kind), hits in checked.faults.items():
                tally.findings.add_hits(column, kind, hits, record_index)
            valid = ~checked.invalid
            predicted = predictor.predict(checked.feeds, valid)
            arrays = [batch.column(i) for i in kept] + predictor.arrays(predicted)
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=output_schema))
            tally.records += rows
            tally.output_rows += rows
            tally.scored += int(valid.sum())
    tally.seconds = time.perf_counter() - started
    return tally
