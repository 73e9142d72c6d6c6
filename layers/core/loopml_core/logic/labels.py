"""A label file landed in `labels/<model>/<file>.csv`: check it, join it with the predictions it names, count.

A label file has the columns `request_id`, `index` (a prediction's position in its request, as the API answered)
and the contract's target. A file with a problem (a missing column, an empty id, an index that is not a whole
number, a label the contract does not allow, the same prediction labelled twice) is quarantined beside a report that
names the rows and columns at fault, like an upload. A good file is joined with the capture batches of the last
`monitoring.performance.lookback_days` days, and the labelled predictions are summarised per model version and
day as performance counts (loopml_core.performance), recorded with the file's outcome and audit record in one
transaction. Every file is read as a stream; captures a block at a time; nothing is held per row in Python.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, BinaryIO, cast

import numpy as np

from loopml_core.adapters.object_store import ObjectStore
from loopml_core.arrow_arrays import arrow_indices, arrow_mask, float_values, valid_mask
from loopml_core.capture import CAPTURE_PREFIX, retention_class
from loopml_core.capture_reader import capture_batches
from loopml_core.clock import iso, utc_now
from loopml_core.contract import RETENTION_DAYS, DatasetContract, Task
from loopml_core.errors import NotFoundError
from loopml_core.logic.ingest import Upload, cut, problem_document, quarantine, tag_outcome
from loopml_core.models import UploadOutcome, UploadStatus
from loopml_core.performance import PerformanceCounts, classification_counts, regression_counts
from loopml_core.registry import UNDECLARED, Registry
from loopml_core.uploads import LABELS, PENDING_LABELS, dataset_of
from loopml_core.validation.report import MAX_VALUE_CHARS, Issue, overall_issue, shorten
from loopml_core.validation.sources import HashingReader, Rewound

KEYS = ("request_id", "index")
BLOCK_BYTES = 4 << 20
MAX_HEADER_BYTES = 1 << 20
MAX_EXAMPLES = 20
_WHOLE_NUMBER = r"^\s*\d{1,18}\s*$"  # RE2, evaluated by Arrow


@dataclass
class _Problems:
    """Rows at fault per (check, column): the full count, the first few rows and values."""

    found: dict[tuple[str, str, str], tuple[int, list[int], list[str]]] = field(default_factory=dict)

    def add(self, check: str, column: str, message: str, mask: np.ndarray, base: int, values: Any) -> None:
        rows = np.flatnonzero(mask)
        if not rows.size:
            return
        count, examples, shown = self.found.get((check, column, message), (0, [], []))
        room = MAX_EXAMPLES - len(examples)
        if room > 0:
            chosen = rows[:room]
            examples = [*examples, *(int(r) + base for r in chosen)]
            picked = values.take(arrow_indices(chosen)).to_pylist()
            shown = [*shown, *(shorten(str(v), MAX_VALUE_CHARS) for v in picked if str(v) not in shown)][:10]
        self.found[(check, column, message)] = (count + int(rows.size), examples, shown)

    def issues(self) -> list[Issue]:
        return [
            Issue(
                check=cast(Any, check),
                column=column,
                rows=examples,
                lines=[row + 2 for row in examples],  # the header is line 1
                row_count=count,
                message=message,
                values=shown,
            )
            for (check, column, message), (count, examples, shown) in self.found.items()
        ]


def _header(text: Any) -> tuple[list[str], Any]:
    """The header's column names, stripped, and the stream positioned after it (nothing is read twice)."""
    buffered = b""
    while b"\n" not in buffered and len(buffered) < MAX_HEADER_BYTES:
        block = text.read(64 << 10)
        if not block:
            break
        buffered += block
    line, _, remainder = buffered.partition(b"\n")
    names = next(csv.reader([line.decode("utf-8-sig").rstrip("\r")]), [])
    return [n.strip() for n in names], Rewound(remainder, text)


@dataclass
class LabelsRead:
    table: Any  # request_id, index, label
    rows: int
    sha256: str
    issues: list[Issue]


def read_labels(contract: DatasetContract, stream: BinaryIO, name: str) -> LabelsRead:
    """Parse and check a label file block by block; the valid rows come back as one compact Arrow table."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    hashing = HashingReader(stream)
    text: Any = gzip.GzipFile(fileobj=cast(BinaryIO, hashing), mode="rb") if name.endswith(".gz") else hashing
    target = contract.target
    problems = _Problems()

    def refused(check: Any, message: str) -> LabelsRead:
        hashing.drain()
        return LabelsRead(None, 0, hashing.digest.hexdigest(), [overall_issue(check, message)])

    try:
        header, rest = _header(text)
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as error:
        return refused("parse", f"not readable as CSV: {error}")
    missing = [column for column in (*KEYS, target) if column not in header]
    if missing:
        message = f"a label file needs the columns request_id, index and {target!r}; missing: {', '.join(missing)}"
        return refused("schema", message)
    if len(set(header)) != len(header):
        return refused("schema", f"the header names a column twice: {', '.join(header)}")
    try:
        reader = pcsv.open_csv(
            pa.PythonFile(rest, mode="r"),
            # The header's names, stripped: `request_id, index, churned` is written by hand often enough.
            read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False, column_names=header),
            convert_options=pcsv.ConvertOptions(
                include_columns=[*KEYS, target],
                column_types={c: pa.string() for c in (*KEYS, target)},
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, OSError, EOFError) as error:
        return refused("parse", f"not readable as CSV: {error}")
    kept: list[Any] = []
    rows = 0
    try:
        for batch in reader:
            valid = _check_batch(contract, batch, rows, problems)
            if valid is not None:
                kept.append(valid)
            rows += batch.num_rows
    except (pa.ArrowInvalid, OSError, EOFError, gzip.BadGzipFile) as error:
        hashing.drain()
        digest = hashing.digest.hexdigest()
        return LabelsRead(None, rows, digest, [overall_issue("parse", f"not readable as CSV: {error}")])
    hashing.drain()
    table = pa.concat_tables(kept) if kept else None
    digest = hashing.digest.hexdigest()
    issues = problems.issues()
    if table is not None and not issues:
        repeated = table.group_by(list(KEYS)).aggregate([("label", "count")]).filter(pc.field("label_count") > 1)
        if repeated.num_rows:
            issues.append(
                overall_issue(
                    "quality",
                    f"{repeated.num_rows} predictions are labelled more than once: label each (request_id, index) once",
                    column="index",
                    count=repeated.num_rows,
                )
            )
    if rows == 0 and not issues:
        issues.append(overall_issue("quality", "the label file has no rows"))
    return LabelsRead(table, rows, digest, issues)


def _check_batch(contract: DatasetContract, batch: Any, base: int, problems: _Problems) -> Any:
    """Record a block's faulty rows in `problems`; return its valid rows as (request_id, index, label), or None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    target = contract.target
    ids = pc.utf8_trim_whitespace(batch.column("request_id"))
    indexes, labels = batch.column("index"), pc.utf8_trim_whitespace(batch.column(target))
    no_id = ~valid_mask(ids) | (np.asarray(pc.utf8_length(ids.fill_null(""))) == 0)
    problems.add("nulls", "request_id", "every label needs the request_id the API answered", no_id, base, ids)
    whole = np.asarray(pc.match_substring_regex(indexes.fill_null(""), _WHOLE_NUMBER))
    problems.add(
        "types", "index", "index is the prediction's position in its request: 0, 1, 2...", ~whole, base, indexes
    )
    no_label = ~valid_mask(labels) | (np.asarray(pc.utf8_length(labels.fill_null(""))) == 0)
    problems.add("nulls", target, "every row needs its true label", no_label, base, labels)
    bad_label = np.zeros(batch.num_rows, dtype=bool)
    if contract.task is Task.CLASSIFICATION and contract.target_values:
        allowed = pa.array(list(contract.target_values), pa.string())
        bad_label = ~np.asarray(pc.is_in(labels, value_set=allowed).fill_null(False)) & ~no_label
        listed = ", ".join(repr(v) for v in contract.target_values)[:200]
        problems.add("categories", target, f"not one of the classes: {listed}", bad_label, base, labels)
    elif contract.task is Task.REGRESSION:
        try:
            finite = np.isfinite(float_values(pc.cast(labels.fill_null("nan"), pa.float64())))
        except pa.ArrowInvalid:  # some cell is not a number: tell them apart, still column-wise
            text = labels.fill_null("")
            number = np.asarray(pc.match_substring_regex(text, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"))
            parsed = np.full(batch.num_rows, np.nan)
            if number.any():
                parsed[number] = float_values(pc.cast(text.filter(arrow_mask(number)), pa.float64()))
            finite = np.isfinite(parsed)
        bad_label = ~finite & ~no_label
        problems.add("types", target, "the target must be a finite number", bad_label, base, labels)
    good = ~(no_id | ~whole | no_label | bad_label)
    if not good.any():
        return None
    chosen = arrow_mask(good)
    return pa.table(
        {
            "request_id": ids.filter(chosen),
            "index": pc.cast(pc.utf8_trim_whitespace(indexes.filter(chosen)), pa.int64()),
            "label": labels.filter(chosen),
        }
    )


@dataclass
class Joined:
    """Labelled predictions found, counted per (model version, day of the prediction)."""

    counts: dict[tuple[int, str], PerformanceCounts] = field(default_factory=dict)
    batches: int = 0
    unmatched: Any = None  # labels no captured prediction answered yet

    @property
    def matched(self) -> int:
        return sum(c.rows for c in self.counts.values())


def explode(batch: Any) -> Any:
    """One row per prediction of a capture batch: request_id, index, version, day, prediction (and probabilities)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    prediction = batch.column("prediction")
    parents = np.asarray(pc.list_parent_indices(prediction))
    offsets = np.asarray(prediction.offsets)
    position = np.arange(parents.size) - (offsets[parents] - offsets[0])
    first = np.asarray(batch.column("first").fill_null(0))
    take = arrow_indices(parents)
    columns = {
        "request_id": batch.column("request_id").take(take),
        "index": arrow_indices(first[parents] + position),
        "version": batch.column("version").take(take),
        "day": pc.utf8_slice_codeunits(batch.column("at"), 0, 10).take(take),
        "prediction": pc.list_flatten(prediction),
    }
    if "probabilities" in batch.schema.names:
        columns["probabilities"] = pc.list_flatten(batch.column("probabilities"))
        columns["classes"] = batch.column("classes").take(take)
    return pa.table(columns)


def join_labels(predictions: Any, labels: Any) -> Any:
    """The predictions `labels` names, each with its label. Acero joins flat columns only: join the keys and the
    row numbers, then take the list columns (probabilities, classes) by row."""
    import pyarrow as pa

    flat = ["request_id", "index", "version", "day", "prediction"]
    keys = predictions.select(flat).append_column("row", pa.array(np.arange(predictions.num_rows, dtype=np.int64)))
    matched = keys.join(labels, keys=list(KEYS), join_type="inner")
    rows = matched.column("row").combine_chunks()
    for name in ("probabilities", "classes"):
        if name in predictions.column_names:
            matched = matched.append_column(name, predictions.column(name).take(rows))
    return matched.drop_columns(["row"])


def _unique_keys(table: Any) -> Any:
    """`table` with one row per (request_id, index, version): a batch Firehose delivered twice must not count twice,
    while a request a challenger scored in shadow counts once for each version that predicted it."""
    import pyarrow.compute as pc

    if table.num_rows < 2:
        return table
    keys = [("request_id", "ascending"), ("index", "ascending"), ("version", "ascending")]
    ordered = table.take(pc.sort_indices(table, sort_keys=keys))
    ids = ordered.column("request_id").combine_chunks()
    indexes, versions = np.asarray(ordered.column("index")), np.asarray(ordered.column("version"))
    same_id = np.asarray(pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1)).fill_null(False))
    repeated = np.concatenate([[False], same_id & (indexes[1:] == indexes[:-1]) & (versions[1:] == versions[:-1])])
    return ordered.filter(arrow_mask(~repeated)) if repeated.any() else ordered


def count_joined(contract: DatasetContract, matched: Any) -> dict[tuple[int, str], PerformanceCounts]:
    """Performance counts of labelled predictions, per (model version, day), vectorized per group."""
    import pyarrow as pa
    import pyarrow.compute as pc

    counts: dict[tuple[int, str], PerformanceCounts] = {}
    pairs = matched.group_by(["version", "day"]).aggregate([])  # the distinct (version, day) pairs: a handful
    groups = sorted(zip(pairs.column("version").to_pylist(), pairs.column("day").to_pylist(), strict=True))
    for version, day in groups:
        chosen = matched.filter(
            pc.and_(pc.equal(matched.column("version"), version), pc.equal(matched.column("day"), day))
        )
        truth = chosen.column("label").combine_chunks()
        if contract.task is Task.CLASSIFICATION:
            classes = chosen.column("classes")[0].as_py()
            if not classes:  # a line without its class list cannot be scored
                continue
            value_set = pa.array(classes, pa.string())
            truth_index = np.asarray(pc.index_in(truth, value_set=value_set).fill_null(-1))
            predicted = chosen.column("prediction").combine_chunks()
            predicted_index = np.asarray(pc.index_in(predicted, value_set=value_set).fill_null(-1))
            probabilities = float_values(pc.list_flatten(chosen.column("probabilities").combine_chunks()))
            probabilities = probabilities.reshape(-1, len(classes))
            usable = (truth_index >= 0) & (predicted_index >= 0)
            if usable.any():
                counts[(version, day)] = classification_counts(
                    tuple(classes), truth_index[usable], predicted_index[usable], probabilities[usable]
                )
        else:
            truth_values = float_values(pc.cast(truth, pa.float64()))
            predicted_values = float_values(pc.cast(chosen.column("prediction").combine_chunks(), pa.float64()))
            usable = np.isfinite(truth_values) & np.isfinite(predicted_values)
            if usable.any():
                counts[(version, day)] = regression_counts(truth_values[usable], predicted_values[usable])
    return counts


def pending_key(model: str, source: str) -> str:
    return f"{PENDING_LABELS}{model}/{hashlib.sha256(source.encode()).hexdigest()[:24]}.parquet"


def _parquet(table: Any, source: str, expires: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata({"source": source, "expires": expires}), sink)
    return bytes(sink.getvalue().to_pybytes())


@dataclass
class PendingLabels:
    """Labels of one file still waiting for their predictions' captures, and what this check matched of them."""

    key: str
    source: str
    expires: str
    table: Any  # request_id, index, label
    matched: list[Any] = field(default_factory=list)

    @classmethod
    def load(cls, store: ObjectStore, bucket: str, key: str) -> PendingLabels:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(pa.BufferReader(store.get(bucket, key)))
        metadata = table.schema.metadata or {}
        return cls(key, metadata[b"source"].decode(), metadata[b"expires"].decode(), table.replace_schema_metadata())

    def join(self, batch: Any, model: str) -> None:
        """Match a capture batch (of any width) against these labels."""
        import pyarrow.compute as pc

        if not self.table.num_rows:
            return
        named = pc.is_in(batch.column("request_id"), value_set=pc.unique(self.table.column("request_id")))
        lines = batch.filter(pc.and_(named, pc.equal(batch.column("model"), model)))
        if lines.num_rows:
            found = join_labels(explode(lines), self.table)
            if found.num_rows:
                self.matched.append(found)

    def counts(self, contract: DatasetContract) -> dict[tuple[int, str], PerformanceCounts]:
        import pyarrow as pa

        if not self.matched:
            return {}
        return count_joined(contract, _unique_keys(pa.concat_tables(self.matched).combine_chunks()))

    def remaining(self) -> Any:
        """The labels still unmatched after this check."""
        import pyarrow as pa

        if not self.matched:
            return self.table
        found = pa.concat_tables(self.matched).select(list(KEYS))
        return self.table.join(found, keys=list(KEYS), join_type="left anti")

    def save(self, store: ObjectStore, bucket: str) -> None:
        store.put(bucket, self.key, _parquet(self.remaining(), self.source, self.expires), "application/x-parquet")


def pending_for(store: ObjectStore, bucket: str, model: str, now: datetime) -> list[PendingLabels]:
    """The model's label files with labels still waiting for their captures; expired and emptied ones are skipped."""
    waiting = []
    for key in store.list_keys(bucket, f"{PENDING_LABELS}{model}/"):
        pending = PendingLabels.load(store, bucket, key)
        if pending.table.num_rows and pending.expires > iso(now):
            waiting.append(pending)
    return waiting


class LabelIngest:
    def __init__(self, store: ObjectStore, registry: Registry, artifact_bucket: str, clock: Any = utc_now) -> None:
        self.store = store
        self.registry = registry
        self.artifact_bucket = artifact_bucket
        self.clock = clock

    def ingest(self, upload: Upload) -> UploadOutcome:
        """The label file's one outcome; a redelivered event gets the outcome recorded the first time."""
        model = dataset_of(upload.key)
        prior = self.registry.upload(model or UNDECLARED, upload.source_id)
        if prior is not None:
            tag_outcome(self.store, upload, prior)
            return prior
        if model is None:
            where = f"label files go to {LABELS}<model>/<file>.csv, not {upload.key}"
            document = problem_document(upload, None, "location", where)
            return quarantine(self.store, self.registry, upload, None, document)
        try:
            contract = self.registry.contract(model)
        except NotFoundError as error:
            document = problem_document(upload, model, "dataset", str(error))
            return quarantine(self.store, self.registry, upload, model, document)
        name = PurePosixPath(upload.key).name
        if not name.endswith((".csv", ".csv.gz")):
            message = f"label files are CSV (.csv or .csv.gz), not '{shorten(name, 100)}'"
            document = problem_document(upload, model, "format", message)
            return quarantine(self.store, self.registry, upload, model, document)
        with self.store.open(upload.bucket, upload.key, upload.version_id) as stream:
            read = read_labels(contract, stream, name)
        if read.issues or read.table is None:
            return quarantine(self.store, self.registry, upload, model, self._report(upload, model, read))
        joined = self._join(contract, read.table)
        outcome = UploadOutcome(
            dataset=model,
            source_key=upload.key,
            source_version_id=upload.version_id,
            status=UploadStatus.ACCEPTED,
            summary=cut(self._summary(read, joined, contract)),
            sha256=read.sha256,
            format="labels",
            rows=read.rows,
            at=iso(),
        )
        recorded = self.registry.record_labels(outcome, joined.counts)
        if joined.unmatched is not None and joined.unmatched.num_rows:
            # Predictions served minutes ago may still be in Firehose's buffer: each check matches these again.
            expires = iso(self.clock() + timedelta(days=contract.monitoring.performance.lookback_days))
            body = _parquet(joined.unmatched, outcome.source_id, expires)
            self.store.put(self.artifact_bucket, pending_key(model, outcome.source_id), body, "application/x-parquet")
        tag_outcome(self.store, upload, recorded)
        return recorded

    def _join(self, contract: DatasetContract, labels: Any) -> Joined:
        import pyarrow as pa
        import pyarrow.compute as pc

        request_ids = pc.unique(labels.column("request_id").combine_chunks())
        joined, pieces = Joined(), []
        for key in self._recent_batches(contract):
            with self.store.open(self.artifact_bucket, key) as stream:
                for whole in capture_batches(contract, stream, features=False):
                    # Only lines of this model naming a labelled request are exploded and joined.
                    named = pc.is_in(whole.column("request_id"), value_set=request_ids)
                    batch = whole.filter(pc.and_(named, pc.equal(whole.column("model"), contract.name)))
                    if not batch.num_rows:
                        continue
                    matched = join_labels(explode(batch), labels)
                    if matched.num_rows:
                        pieces.append(matched)  # at most one row per label (and a few re-delivered ones)
            joined.batches += 1
        if pieces:
            found = _unique_keys(pa.concat_tables(pieces).combine_chunks())
            joined.counts = count_joined(contract, found)
            joined.unmatched = labels.join(found.select(list(KEYS)), keys=list(KEYS), join_type="left anti")
        else:
            joined.unmatched = labels
        return joined

    def _recent_batches(self, contract: DatasetContract) -> Iterator[str]:
        """Capture batches of the model from the last `lookback_days` days, newest day first."""
        now: datetime = self.clock()
        for back in range(contract.monitoring.performance.lookback_days + 1):
            day = now - timedelta(days=back)
            for days in RETENTION_DAYS:
                prefix = f"{CAPTURE_PREFIX}{retention_class(days)}/{contract.name}/{day:%Y/%m/%d}/"
                yield from self.store.list_keys(self.artifact_bucket, prefix)

    @staticmethod
    def _summary(read: LabelsRead, joined: Joined, contract: DatasetContract) -> str:
        unmatched = read.rows - joined.matched
        per = ", ".join(f"v{v} {d}: {c.rows}" for (v, d), c in sorted(joined.counts.items()))
        lookback = contract.monitoring.performance.lookback_days
        tail = (
            f"; {unmatched:,} name no prediction captured yet: each hourly check looks for theirs for {lookback} "
            "days (captures reach S3 within minutes; predictions not sampled, or older, never match)"
            if unmatched
            else ""
        )
        return f"{read.rows:,} labels, {joined.matched:,} joined with captured predictions ({per or 'none'}){tail}"

    @staticmethod
    def _report(upload: Upload, model: str, read: LabelsRead) -> dict[str, Any]:
        issues = [issue.model_dump() for issue in read.issues]
        described = "; ".join(issue.describe() for issue in read.issues[:5])
        return {
            "source": f"s3://{upload.bucket}/{upload.key}",
            "source_version_id": upload.version_id,
            "dataset": model,
            "ok": False,
            "rows": read.rows,
            "columns": ["request_id", "index"],
            "issues": issues,
            "sha256": read.sha256,
            "format": "labels",
            "summary": f"rejected: {described}",
            "checked_at": iso(),
        }
