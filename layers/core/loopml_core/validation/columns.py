"""Per segment or record batch, on a worker thread: parse with Arrow, check each contract column vectorized."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml_core import drift
from loopml_core.arrow_arrays import arrow_indices, bool_mask, dictionary_codes, float_values, valid_mask
from loopml_core.contract import DatasetContract, FeatureType, Task
from loopml_core.validation.csv_text import NEWLINE, NOT_UTF8, Segment, record_layout
from loopml_core.validation.report import MAX_VALUE_CHARS, Issue, overall_issue, shorten

DISTINCT_TRACKED = 1_000  # distinct offending values counted per issue, for "and N more distinct"
_ODD_CELL_SLICE = 4_096  # rows re-cast together when a column holds a cell that is not a plain number
_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to double")
_NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)$"


def arrow_message(error: Exception) -> str:
    return shorten(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__, 300)


@dataclass(frozen=True)
class ColumnPlan:
    name: str
    arrow_name: str
    numeric: bool
    integer: bool = False
    low: float | None = None
    high: float | None = None
    allowed: frozenset[str] | None = None  # None: any non-blank label
    listed: str = ""  # the allowed labels as a message shows them
    what: str = "values"
    null_limit: float = 0.0
    null_why: str = ""


@dataclass(frozen=True)
class Plan:
    columns: tuple[ColumnPlan, ...]
    arrow_names: tuple[str, ...]  # names given to every CSV column (unique, positional)
    previous: dict[str, Any] | None  # previous profile's entries, when the distribution is checked
    # Numeric CSV columns Arrow reads as text, because some cell in them was not a plain number. Arrow converts
    # numbers while it parses (a third cheaper than text then a cast), so every numeric column starts typed and
    # switches to text, for the rest of the file, at its first odd cell. Shared by the worker threads.
    text_columns: set[str] = field(default_factory=set, compare=False)

    @property
    def arrow_columns(self) -> list[str]:
        return [c.arrow_name for c in self.columns]

    @property
    def numeric(self) -> list[ColumnPlan]:
        return [c for c in self.columns if c.numeric]


def column_plan(contract: DatasetContract, name: str, arrow_name: str) -> ColumnPlan:
    if name == contract.target:
        why = "the target must have a value in every row"
        if contract.task is Task.REGRESSION:
            return ColumnPlan(name, arrow_name, True, null_why=why)
        allowed = frozenset(contract.target_values) if contract.target_values is not None else None
        return ColumnPlan(
            name,
            arrow_name,
            False,
            allowed=allowed,
            listed=listed_values(contract.target_values),
            what="classes",
            null_why=why,
        )
    feature = next(f for f in contract.features if f.name == name)
    limit = contract.quality.max_null_fraction if feature.nullable else 0.0
    why = f"quality.max_null_fraction is {limit:g}" if feature.nullable else "the feature is not nullable"
    if feature.type is FeatureType.CATEGORY:
        return ColumnPlan(
            name,
            arrow_name,
            False,
            allowed=frozenset(feature.values or ()),
            listed=listed_values(feature.values),
            null_limit=limit,
            null_why=why,
        )
    return ColumnPlan(
        name,
        arrow_name,
        True,
        integer=feature.type is FeatureType.INT,
        low=feature.min,
        high=feature.max,
        null_limit=limit,
        null_why=why,
    )


def listed_values(values: Sequence[str] | None) -> str:
    values = values or ()
    return ", ".join(repr(shorten(v, 60)) for v in values[:10]) + (", ..." if len(values) > 10 else "")


@dataclass
class Hits:
    """Rows at fault in one part of the file: the full count, the first rows (local), a few distinct values."""

    count: int = 0
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    values: list[str] = field(default_factory=list)
    more_values: bool = False


@dataclass
class Part:
    rows: int = 0  # data rows parsed
    records: int = 0  # records, ragged ones included
    newlines: int = 0
    line_of_row: np.ndarray | None = None  # line offset of each data row, when not simply the row index
    ragged: Hits | None = None
    ragged_lines: np.ndarray | None = None
    expected_fields: int = 0
    ragged_example: tuple[int, int] | None = None  # (line offset, fields) of the first ragged record
    ragged_over: int = 0  # ragged records with more fields than the header (the rest have fewer)
    fatal: Issue | None = None
    fatal_line: int | None = None  # line offset the fatal issue's message names, placed when merged
    findings: dict[tuple[str, str], Hits] = field(default_factory=dict)  # (column, kind) -> hits
    nulls: dict[str, Hits] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)  # label column -> allowed label -> count
    other_labels: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, np.ndarray] = field(default_factory=dict)  # numeric column -> values (NaN: null or invalid)
    observed: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> counts in the previous profile's buckets


def hits_of(mask: np.ndarray, cap: int, shown: Callable[[np.ndarray], list[str]] | None = None) -> Hits:
    rows = np.flatnonzero(mask)
    values: list[str] = []
    more = False
    if shown is not None and len(rows):
        values = shown(rows[: DISTINCT_TRACKED * 4])
        more = len(values) > DISTINCT_TRACKED
        values = values[:DISTINCT_TRACKED]
    return Hits(count=len(rows), rows=rows[:cap], values=values, more_values=more)


def distinct_values(values: Sequence[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(shorten(str(value), MAX_VALUE_CHARS), None)
        if len(seen) > DISTINCT_TRACKED:
            break
    return list(seen)


def check_segment(plan: Plan, cap: int, segment: Segment) -> Part:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    data = memoryview(segment.data)[: segment.end]
    octets = np.frombuffer(segment.data, dtype=np.uint8, count=segment.end)
    part = Part(expected_fields=len(plan.arrow_names), newlines=int(np.count_nonzero(octets == NEWLINE)))
    if segment.data.find(b"\x00", 0, segment.end) >= 0:
        part.fatal = overall_issue("parse", "not a CSV text file: it contains NUL bytes")
        return part
    invalid: list[int] = []

    def on_invalid(row: Any) -> str:
        if row.text.strip():  # a line of only whitespace is blank, not a short row
            invalid.append(row.actual_columns)
        return "skip"

    def read(as_text: set[str]) -> Any:
        invalid.clear()
        types = {c.arrow_name: pa.dictionary(pa.int32(), pa.string()) for c in plan.columns if not c.numeric}
        types.update({c.arrow_name: pa.string() if c.arrow_name in as_text else pa.float64() for c in plan.numeric})
        return pcsv.read_csv(
            pa.py_buffer(data),
            read_options=pcsv.ReadOptions(
                column_names=list(plan.arrow_names), use_threads=False, block_size=max(len(data), 1 << 16) + 1
            ),
            parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                include_columns=plan.arrow_columns or [plan.arrow_names[0]],
                column_types=types,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )

    try:
        while True:
            as_text = set(plan.text_columns)
            try:
                table = read(as_text)
                break
            except pa.ArrowInvalid as error:
                odd = _odd_number_column(str(error), plan, as_text)
                if odd is None:
                    raise
                plan.text_columns.add(odd)
    except pa.ArrowInvalid as error:
        text = str(error)
        if "UTF8" in text or "UTF-8" in text:
            try:
                str(data, "utf-8")
            except UnicodeDecodeError as decoding:
                part.fatal = overall_issue("parse", NOT_UTF8)  # the line is placed when merged in file order
                part.fatal_line = bytes(data[: decoding.start]).count(b"\n")
                return part
        part.fatal = overall_issue("parse", f"not readable as CSV: {arrow_message(error)}")
        return part

    if invalid:
        layout = record_layout(bytes(data))
        bad = np.flatnonzero(layout.fields != part.expected_fields)
        part.records = len(layout.fields)
        part.ragged = Hits(count=len(bad), rows=bad[:cap])
        part.ragged_lines = layout.lines[bad[:cap]]
        part.ragged_example = (int(layout.lines[bad[0]]), int(layout.fields[bad[0]])) if len(bad) else None
        part.ragged_over = int((layout.fields[bad] > part.expected_fields).sum())
        return part

    part.rows = part.records = table.num_rows
    trailing = 0 if segment.end and segment.data[segment.end - 1] == NEWLINE else 1
    if part.newlines + trailing != part.rows:  # blank lines or newlines inside quotes: place rows exactly
        lines = record_layout(bytes(data)).lines
        # Lines that are not records to this layout (old Mac '\r' line ends) leave one line per row.
        part.line_of_row = lines if len(lines) == part.rows else None
    for column in plan.columns:
        check_column(plan, cap, part, column, table.column(column.arrow_name).combine_chunks())
    return part


def _odd_number_column(message: str, plan: Plan, as_text: set[str]) -> str | None:
    """The numeric column (read typed) a conversion error names, which is to be read as text from now on."""
    found = _CONVERSION_ERROR.search(message)
    if found is None:
        return None
    name = f"c{found.group(1)}"
    return name if name not in as_text and name in {c.arrow_name for c in plan.numeric} else None


def check_batch(plan: Plan, cap: int, batch: Any) -> Part:
    part = Part(rows=batch.num_rows, records=batch.num_rows)
    for column in plan.columns:
        check_column(plan, cap, part, column, batch.column(column.arrow_name))
    return part


def check_column(plan: Plan, cap: int, part: Part, column: ColumnPlan, array: Any) -> None:
    entry = plan.previous.get(column.name) if plan.previous is not None else None
    if column.numeric:
        null, values = check_numbers(cap, part, column, array)
        part.numbers[column.name] = values
        if entry is not None:
            part.observed[column.name] = drift.numeric_bucket_counts(entry, values)
    else:
        null, counts = check_labels(cap, part, column, array)
        if entry is not None:
            part.observed[column.name] = label_bucket_counts(entry, counts, int(null.sum()))
    part.nulls[column.name] = hits_of(null, cap)


def parse_numbers(array: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A column's values as float64 (NaN where null or not a number), its null mask, and the mask of cells that are
    not numbers (None: there are none).

    Text is cast whole first, which succeeds for a clean column; only a column with some odd cell is stripped and
    told apart cell by cell. Parquet numbers need no parsing. No Arrow scalar is built: making one from a Python
    value imports pandas where it is installed (130 ms, 40 MB), and the validation layer has none.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type):
        numbers = pc.cast(array, pa.float64())
        return float_values(numbers), ~valid_mask(numbers), None
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        null = ~valid_mask(array)  # booleans, dates...: nothing in them is a number the contract means
        return np.full(len(array), np.nan), null, ~null
    try:
        numbers = pc.cast(array, pa.float64())
        return float_values(numbers), ~valid_mask(numbers), None
    except pa.ArrowInvalid:
        pass
    # Some cell is not a plain number. Odd cells are few, so slices that cast cleanly keep the fast path and only
    # the slices holding one are stripped and told apart cell by cell.
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(array), _ODD_CELL_SLICE):
        piece = array.slice(start, _ODD_CELL_SLICE)
        try:
            numbers = pc.cast(piece, pa.float64())
            parts.append((float_values(numbers), ~valid_mask(numbers), np.zeros(len(piece), dtype=bool)))
            continue
        except pa.ArrowInvalid:
            pass
        trimmed = pc.utf8_trim_whitespace(piece)
        lengths = pc.utf8_length(trimmed)
        blank = ~valid_mask(trimmed) | (
            np.frombuffer(lengths.buffers()[1], np.int32, len(lengths), lengths.offset * 4) == 0
        )
        number_like = bool_mask(pc.match_substring_regex(trimmed, _NUMBER, ignore_case=True)) & ~blank
        values = np.full(len(piece), np.nan)
        if number_like.any():
            cells = trimmed.take(arrow_indices(np.flatnonzero(number_like)))
            values[number_like] = float_values(pc.cast(cells, pa.float64()))
        parts.append((values, blank, ~number_like & ~blank))
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def check_numbers(cap: int, part: Part, column: ColumnPlan, array: Any) -> tuple[np.ndarray, np.ndarray]:
    """Types and ranges of a numeric column; returns its null mask and values (NaN where null or invalid)."""
    import pyarrow as pa

    if pa.types.is_dictionary(array.type):
        array = array.cast(pa.string())
    values, null, not_number = parse_numbers(array)

    def shown(rows: np.ndarray) -> list[str]:
        return distinct_values(array.take(arrow_indices(rows)).to_pylist())

    if not_number is not None and not_number.any():
        part.findings[column.name, "not_number"] = hits_of(not_number, cap, shown)
    else:
        not_number = np.zeros(len(values), dtype=bool)
    finite = np.isfinite(values)
    if column.integer:
        fractional = finite & (values != np.floor(values))
        if fractional.any():
            part.findings[column.name, "fractional"] = hits_of(fractional, cap, shown)
            not_number |= fractional
    non_finite = ~finite & ~null & ~not_number
    if non_finite.any():
        part.findings[column.name, "non_finite"] = hits_of(non_finite, cap, shown)
    if column.low is not None:
        below = finite & (values < column.low)
        if below.any():
            part.findings[column.name, "below"] = hits_of(below, cap, shown)
    if column.high is not None:
        above = finite & (values > column.high)
        if above.any():
            part.findings[column.name, "above"] = hits_of(above, cap, shown)
    invalid = not_number | non_finite
    if invalid.any():
        values = values.copy()  # Arrow's buffer is read-only; only a column with invalid cells needs its own copy
        values[invalid] = np.nan
    return null, values


def check_labels(cap: int, part: Part, column: ColumnPlan, array: Any) -> tuple[np.ndarray, dict[str, int]]:
    """Labels outside the allowed list, checked once per distinct value rather than once per row.

    Returns the null mask and the count of each distinct stripped label, allowed or not.
    """
    words, codes = dictionary_codes(array)
    # One slot per dictionary word plus a last one for null, which code -1 reaches by numpy's negative indexing.
    blank = np.array([w == "" for w in words] + [True])
    allowed = np.array([(w in column.allowed) if column.allowed is not None else w != "" for w in words] + [False])
    null = blank[codes]
    outside = ~null & ~allowed[codes]
    if outside.any():
        distinct, first_seen = np.unique(codes[outside], return_index=True)
        in_order = distinct[np.argsort(first_seen)]
        part.findings[column.name, "outside"] = Hits(
            count=int(outside.sum()),
            rows=np.flatnonzero(outside)[:cap],
            values=distinct_values([words[i] for i in in_order[: DISTINCT_TRACKED + 1]]),
            more_values=len(in_order) > DISTINCT_TRACKED,
        )
    per_word = np.bincount(codes[~null], minlength=len(words))
    counts: dict[str, int] = {}
    for index in np.flatnonzero(per_word):
        counts[words[index]] = counts.get(words[index], 0) + int(per_word[index])
    tally = part.labels.setdefault(column.name, {})
    for word, count in counts.items():
        if column.allowed is None or word in column.allowed:
            tally[word] = tally.get(word, 0) + count
    part.other_labels[column.name] = int(outside.sum())
    return null, counts


def label_bucket_counts(entry: dict[str, Any], counts: dict[str, int], nulls: int) -> np.ndarray:
    """Counts in a category entry's buckets (values..., other, null), as `drift` lays them out."""
    index = {v: i for i, v in enumerate(entry["values"])}
    buckets = np.zeros(len(index) + 2, dtype=np.int64)
    for word, count in counts.items():
        buckets[index.get(word, len(index))] += count
    buckets[-1] = nulls
    return buckets
