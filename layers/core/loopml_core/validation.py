"""Check an uploaded CSV against its dataset contract and report every problem, naming the rows and columns at fault.

Run by the S3-triggered validation Lambda before a file is versioned. Pure: it parses the bytes it is given and
touches nothing else, so the same bytes and contract always give the same report.

Conventions, so a report can be read without this file:

* `Issue.rows` are 0-based indexes of data rows (the first row after the header is 0); `Issue.lines` are the
  1-based line numbers of the same rows in the file as an editor shows them (the header is usually line 1). Both
  hold at most `max_issue_rows` examples; `Issue.row_count` is the full number of rows at fault. Issues about the
  file or a whole column (schema, too few rows, drift) have no rows and a `row_count` of 0.
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

import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from loopml_core.contract import DatasetContract, Feature, FeatureType, Task

Check = Literal["parse", "schema", "types", "nulls", "ranges", "categories", "quality", "distribution"]
CHECK_ORDER: tuple[Check, ...] = get_args(Check)

_EXAMPLES = 5  # offending distinct values quoted in a message
# PSI is computed on an evenly spaced sample: the drift API takes row dicts, and building a million of them would
# cost more than the rest of validation together, while 50k rows estimate the binned distribution just as well.
_DRIFT_SAMPLE = 50_000
_NAN_WORDS = frozenset({"nan", "+nan", "-nan"})
_NEWLINE, _QUOTE, _COMMA = ord("\n"), ord('"'), ord(",")
_SPACE = ord(" ")  # bytes up to here (tab, CR, LF, space, control characters) count as blank
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


class Issue(BaseModel):
    """One failing check on one column (or on the whole file when `column` is None)."""

    model_config = ConfigDict(frozen=True)

    check: Check
    column: str | None
    rows: list[int]
    lines: list[int]
    row_count: int
    message: str

    def describe(self) -> str:
        """A short human form, e.g. `types[age] 2 rows (lines 3, 7): ...`."""
        where = f"{self.check}[{self.column}]" if self.column is not None else self.check
        if not self.row_count:
            return f"{where}: {self.message}"
        shown = ", ".join(str(n) for n in self.lines)
        more = ", ..." if self.row_count > len(self.lines) else ""
        noun = "row" if self.row_count == 1 else "rows"
        label = "line" if len(self.lines) == 1 else "lines"
        return f"{where} {self.row_count} {noun} ({label} {shown}{more}): {self.message}"


class ValidationReport(BaseModel):
    """The outcome of validating one file. `columns` is the header as read (stripped), duplicates included."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    rows: int
    columns: list[str]
    issues: list[Issue]
    sha256: str

    def summary(self, max_issues: int = 5) -> str:
        """One human line: the verdict, the size, and the first few issues."""
        size = f"{self.rows:,} rows, {len(self.columns)} columns"
        if not self.columns:
            size = "an unreadable file"
        if self.ok:
            return f"valid: {size}, sha256 {self.sha256[:12]}"
        shown = "; ".join(issue.describe() for issue in self.issues[:max_issues])
        more = f"; and {len(self.issues) - max_issues} more" if len(self.issues) > max_issues else ""
        noun = "issue" if len(self.issues) == 1 else "issues"
        return f"rejected: {len(self.issues)} {noun} in {size}: {shown}{more}"

    def by_check(self, check: Check) -> list[Issue]:
        """The issues of one check, in report order."""
        return [issue for issue in self.issues if issue.check == check]


def validate_csv(
    contract: DatasetContract,
    csv_bytes: bytes,
    *,
    previous_profile: dict[str, Any] | None = None,
    max_issue_rows: int = 20,
) -> ValidationReport:
    """Validate `csv_bytes` against `contract`; never raises for bad data, every problem becomes an `Issue`.

    `previous_profile` is the drift profile of the dataset's previous version; with it and `quality.max_psi` set,
    each feature's distribution is compared with that version's (on an evenly spaced sample of at most 50k rows,
    and only when every feature column is present). A malformed `previous_profile` is the platform's fault, not the
    upload's, so the drift module's error propagates. `max_issue_rows` caps the example rows per issue.
    """
    digest = hashlib.sha256(csv_bytes).hexdigest()
    cap = max(0, max_issue_rows)
    table = _read(contract, csv_bytes, cap)
    if isinstance(table, Issue):
        return ValidationReport(ok=False, rows=0, columns=[], issues=[table], sha256=digest)

    ctx = _Context(lines=table.lines, cap=cap)
    _check_schema(ctx, contract, table.header)
    typed: dict[str, np.ndarray] = {}
    for feature in contract.features:
        if feature.name in table.positions:
            typed[feature.name] = _check_feature(ctx, contract, feature, table.column(feature.name))
    classes = None
    if contract.target in table.positions:
        _, classes = _check_target(ctx, contract, table.column(contract.target))
    _check_quality(ctx, contract, table.n, classes)
    if previous_profile is not None and contract.quality.max_psi is not None and len(typed) == len(contract.features):
        _check_distribution(ctx, contract, typed, previous_profile, contract.quality.max_psi)

    rank = {check: i for i, check in enumerate(CHECK_ORDER)}
    issues = sorted(ctx.issues, key=lambda issue: rank[issue.check])  # stable: column order kept within a check
    return ValidationReport(ok=not issues, rows=table.n, columns=table.header, issues=issues, sha256=digest)


def typed_frame(contract: DatasetContract, csv_bytes: bytes) -> pd.DataFrame:
    """The contract's features and target as typed columns: numbers as float64, categories and classes as str.

    Cells that are null or fail their type become NaN (numbers) or None (strings); validate first to know which.
    Raises ValueError when the file cannot be read as a table or lacks a contract column.
    """
    table = _read(contract, csv_bytes, 0)
    if isinstance(table, Issue):
        raise ValueError(table.message)
    names = [*contract.feature_names, contract.target]
    missing = [name for name in names if name not in table.positions]
    if missing:
        raise ValueError(f"missing columns: {', '.join(missing)}")
    silent = _Context(lines=table.lines, cap=0)
    data: dict[str, Any] = {}
    for feature in contract.features:
        data[feature.name] = _check_feature(silent, contract, feature, table.column(feature.name))
    data[contract.target], _ = _check_target(silent, contract, table.column(contract.target))
    return pd.DataFrame(data, columns=names)


# --- reading ---------------------------------------------------------------------------------------------------


@dataclass
class _Table:
    header: list[str]
    positions: dict[str, int]  # first header position of each name: the column that is checked
    frame: pd.DataFrame  # data rows of the contract's columns only, keyed by header position
    lines: np.ndarray  # file line number of each data row

    @property
    def n(self) -> int:
        return len(self.lines)

    def column(self, name: str) -> pd.Series:
        return self.frame[self.positions[name]]


@dataclass
class _Layout:
    """Where each non-blank record of the file starts, found from the bytes alone."""

    lines: np.ndarray  # line number of each non-blank record, header included
    fields: np.ndarray  # number of fields in each


def _parse_issue(message: str, rows: Sequence[int] = (), lines: Sequence[int] = (), count: int = 0) -> Issue:
    return Issue(check="parse", column=None, rows=list(rows), lines=list(lines), row_count=count, message=message)


def _read(contract: DatasetContract, csv_bytes: bytes, cap: int) -> _Table | Issue:
    if not csv_bytes.strip():
        return _parse_issue("the file is empty")
    try:
        csv_bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        line = csv_bytes.count(b"\n", 0, error.start) + 1
        return _parse_issue(
            f"not UTF-8 text: byte {error.start} (line {line}) is not valid UTF-8; save the file as UTF-8 CSV"
        )
    if b"\x00" in csv_bytes:
        return _parse_issue("not a CSV text file: it contains NUL bytes")
    first_line = next((line for line in io.BytesIO(csv_bytes) if line.strip()), b"").decode("utf-8-sig")
    if "," not in first_line:
        hint = next((word for sep, word in _OTHER_DELIMITERS.items() if sep in first_line), None)
        if hint:
            return _parse_issue(
                f"the header has no comma and looks {hint}-separated; LoopML reads comma-separated values"
            )

    text_options: dict[str, Any] = {"encoding": "utf-8-sig", "keep_default_na": False, "skip_blank_lines": True}
    layout = _layout(csv_bytes)
    try:
        first = pd.read_csv(io.BytesIO(csv_bytes), header=None, nrows=1, dtype=str, na_filter=False, **text_options)
        header = [str(name).strip() for name in first.iloc[0]]
        positions = _first_positions(header)
        wanted = sorted({positions[name] for name in [*contract.feature_names, contract.target] if name in positions})
        # Numbers are typed by pandas' C parser; a column it cannot type stays text and takes the slower exact path.
        # Categories are read as text: pandas' own category dtype would turn '01' and '1.0' into the number 1.
        categorical = [f.name for f in contract.features if f.type is FeatureType.CATEGORY]
        if contract.task is Task.CLASSIFICATION:
            categorical.append(contract.target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)  # ragged rows: reported from the layout below
            frame = pd.read_csv(
                io.BytesIO(csv_bytes),
                header=0,
                names=list(range(len(header))),
                usecols=wanted or [0],
                index_col=False,
                dtype={positions[name]: str for name in categorical if name in positions},
                na_values=[""],
                low_memory=False,  # one dtype per column, not one per chunk
                **text_options,
            )
    except pd.errors.EmptyDataError:
        return _parse_issue("the file has no header row")
    except Exception as error:  # whatever pandas cannot read is a parse failure, never a crash of the validator
        return _ragged(layout, cap) or _parse_issue(f"not readable as CSV: {_pandas_message(error)}")

    n = len(frame)
    if len(layout.lines) == n + 1:
        ragged = _ragged(layout, cap)
        if ragged is not None:
            return ragged
        lines = layout.lines[1:]
    elif b'"' in csv_bytes and len(naive := _layout(csv_bytes, quotes=False).lines) == n + 1:
        # A stray quote inside an unquoted value is literal to pandas but breaks the quote parity.
        lines = naive[1:]
    else:
        # The bytes and pandas still disagree on the records (e.g. old Mac '\r' line ends): one line per row.
        lines = np.arange(n, dtype=np.int64) + 2
    return _Table(header=header, positions=positions, frame=frame, lines=lines)


def _layout(data: bytes, *, quotes: bool = True) -> _Layout:
    """Line number and field count of each non-blank record, vectorized over the bytes.

    A newline or comma inside a quoted field sits after an odd number of quote characters (an escaped quote is
    two of them, so parity holds), which is how record ends and delimiters are told apart without a tokenizer.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == _NEWLINE)
    delimiters = buffer == _COMMA
    if quotes and b'"' in data:
        # uint8 wraps at 256, which keeps the parity: a cumulative count a quarter of the int64 size.
        outside = (np.cumsum(buffer == _QUOTE, dtype=np.uint8) & 1) == 0
        ends = newlines[outside[newlines]]
        delimiters &= outside
    else:
        ends = newlines
    starts = np.concatenate(([0], ends + 1))
    if starts[-1] >= len(buffer):
        starts = starts[:-1]
    fields = np.add.reduceat(delimiters, starts, dtype=np.int64) + 1
    lines = np.searchsorted(newlines, starts) + 1
    # Only a record that starts with whitespace can be blank, which is rare enough to count bytes only then.
    keep = buffer[starts] > _SPACE
    if not keep.all():
        keep = np.add.reduceat(buffer > _SPACE, starts, dtype=np.int64) > 0
    return _Layout(lines=lines[keep], fields=fields[keep])


def _ragged(layout: _Layout, cap: int) -> Issue | None:
    if not len(layout.fields):
        return None
    expected = layout.fields[0]
    bad = np.flatnonzero(layout.fields[1:] != expected)
    if not len(bad):
        return None
    counts = layout.fields[1:][bad]
    over, under = int((counts > expected).sum()), int((counts < expected).sum())
    parts = " and ".join(p for p in (f"{over} with more" if over else "", f"{under} with fewer" if under else "") if p)
    first = bad[0]
    message = (
        f"{_plural(len(bad), 'row')} without the header's {expected} fields ({parts}); "
        f"e.g. line {layout.lines[first + 1]} has {layout.fields[first + 1]}. A comma inside a value must be "
        "quoted"
    )
    return _parse_issue(message, bad[:cap].tolist(), layout.lines[1:][bad[:cap]].tolist(), len(bad))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _pandas_message(error: Exception) -> str:
    text = str(error).strip().replace("Error tokenizing data. C error: ", "")
    return text or type(error).__name__


# --- checks ----------------------------------------------------------------------------------------------------


@dataclass
class _Context:
    lines: np.ndarray
    cap: int
    issues: list[Issue] = field(default_factory=list)

    def add(self, check: Check, column: str | None, message: str, mask: np.ndarray | None = None) -> None:
        rows = np.flatnonzero(mask) if mask is not None else np.empty(0, dtype=np.int64)
        shown = rows[: self.cap]
        self.issues.append(
            Issue(
                check=check,
                column=column,
                rows=shown.tolist(),
                lines=self.lines[shown].tolist(),
                row_count=len(rows),
                message=message,
            )
        )


def _first_positions(header: list[str]) -> dict[str, int]:
    positions: dict[str, int] = {}
    for position, name in enumerate(header):
        positions.setdefault(name, position)
    return positions


def _check_schema(ctx: _Context, contract: DatasetContract, header: list[str]) -> None:
    positions = _first_positions(header)
    for name, first in positions.items():
        where = [i + 1 for i, other in enumerate(header) if other == name]
        if len(where) > 1:
            shown = f"'{name}'" if name else "an unnamed column"
            ctx.add(
                "schema",
                name,
                f"{shown} appears {len(where)} times in the header (positions "
                f"{', '.join(map(str, where))}); only position {first + 1} is checked",
            )

    expected = [*contract.feature_names, contract.target]
    folded = {name.casefold(): name for name in header}
    for name in expected:
        if name not in positions:
            what = "target column" if name == contract.target else "feature column"
            near = folded.get(name.casefold())
            hint = f"; the file has '{near}' (names are case-sensitive)" if near else ""
            ctx.add("schema", name, f"{what} '{name}' is missing from the header{hint}")
    declared = set(expected)
    for position, name in enumerate(header):
        if name not in declared and positions[name] == position:
            label = f"column '{name}'" if name else f"unnamed column at position {position + 1}"
            ctx.add("schema", name, f"unexpected {label}: the contract does not declare it; declare it or drop it")


def _null_limit(feature: Feature, contract: DatasetContract) -> float:
    return contract.quality.max_null_fraction if feature.nullable else 0.0


def _examples(bad: pd.Series | np.ndarray) -> str:
    """The first few distinct offending values, in order of appearance, as the file wrote them (numbers normalised)."""
    distinct = pd.unique(bad)
    shown = ", ".join(repr(_show(value)) for value in distinct[:_EXAMPLES])
    return shown + (f" and {len(distinct) - _EXAMPLES} more distinct" if len(distinct) > _EXAMPLES else "")


def _show(value: Any) -> str:
    return np.format_float_positional(value, trim="-") if isinstance(value, float) else str(value)


def _check_nulls(ctx: _Context, name: str, null: np.ndarray, limit: float, why: str) -> None:
    count = int(null.sum())
    if not count:
        return
    fraction = count / len(null)
    if fraction > limit:
        ctx.add("nulls", name, f"{_plural(count, 'empty value')} ({fraction:.1%} of rows) but {why}", null)


def _check_numbers(
    ctx: _Context,
    name: str,
    series: pd.Series,
    *,
    integer: bool,
    low: float | None = None,
    high: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Types and ranges of a numeric column; returns its null mask and its values (NaN where null or invalid)."""
    cells: pd.Series | None = None
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        # pandas typed every cell; NaN can only be an empty cell, since the text 'nan' would have kept it text.
        values = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        null = np.isnan(values)
        not_number = np.zeros(len(values), dtype=bool)
    else:
        # to_numeric skips surrounding whitespace itself, so only the cells it rejects are stripped and looked at.
        cells = series.astype("str")
        values = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        unparsed = np.flatnonzero(np.isnan(values))
        odd = cells.iloc[unparsed].str.strip()
        empty = (odd.isna() | odd.eq("")).to_numpy(dtype=bool)
        word = odd.str.lower().isin(_NAN_WORDS).to_numpy(dtype=bool)
        null, not_number = np.zeros(len(values), dtype=bool), np.zeros(len(values), dtype=bool)
        null[unparsed[empty]] = True
        not_number[unparsed[~empty & ~word]] = True  # 'nan' is a number, just not a finite one

    def examples(mask: np.ndarray) -> str:
        return _examples(cells[mask].str.strip() if cells is not None else values[mask])

    finite = np.isfinite(values)
    kind = "int" if integer else "numeric"
    if not_number.any():
        ctx.add("types", name, f"values that are not numbers in {kind} column: {examples(not_number)}", not_number)
    if integer:
        fractional = finite & (values != np.floor(values))
        if fractional.any():
            ctx.add(
                "types", name, f"values that are not whole numbers in int column: {examples(fractional)}", fractional
            )
            not_number = not_number | fractional
    non_finite = ~finite & ~null & ~not_number
    if non_finite.any():
        ctx.add("ranges", name, f"non-finite values (inf or nan): {examples(non_finite)}", non_finite)
    if low is not None:
        below = finite & (values < low)
        if below.any():
            ctx.add("ranges", name, f"values below the minimum {low:g}: {examples(below)}", below)
    if high is not None:
        above = finite & (values > high)
        if above.any():
            ctx.add("ranges", name, f"values above the maximum {high:g}: {examples(above)}", above)
    values[not_number | non_finite] = np.nan
    return null, values


@dataclass
class _Labels:
    null: np.ndarray
    values: np.ndarray  # object array of stripped labels, None where null or not allowed
    classes: list[str]  # distinct allowed labels present


def _check_members(ctx: _Context, name: str, series: pd.Series, *, allowed: Sequence[str] | None, what: str) -> _Labels:
    """Values outside `allowed` (None: anything goes), checked once per distinct value rather than once per row."""
    codes, distinct = pd.factorize(series.astype("str"))
    # A trailing "" label gives NaN's code -1 a label of its own: numpy reads index -1 as the last one.
    labels = np.append(pd.Index(distinct).str.strip().to_numpy(dtype=object), "")
    blank = labels == ""
    allowed_label = pd.Index(labels).isin(allowed) if allowed is not None else ~blank
    null = blank[codes]
    outside = ~null & ~allowed_label[codes]
    values = labels[codes]
    if outside.any():
        listed = ", ".join(repr(v) for v in (allowed or ())[:10]) + (", ..." if len(allowed or ()) > 10 else "")
        message = f"{what} not in the contract's list ({listed}): {_examples(values[outside])}"
        ctx.add("categories", name, message, outside)
    valid = ~null & ~outside
    classes = [str(label) for label in pd.unique(labels[np.unique(codes[valid])])]
    values[~valid] = None
    return _Labels(null=null, values=values, classes=classes)


def _check_feature(ctx: _Context, contract: DatasetContract, feature: Feature, series: pd.Series) -> np.ndarray:
    if feature.type is FeatureType.CATEGORY:
        labels = _check_members(ctx, feature.name, series, allowed=feature.values or (), what="values")
        null, values = labels.null, labels.values
    else:
        integer = feature.type is FeatureType.INT
        null, values = _check_numbers(ctx, feature.name, series, integer=integer, low=feature.min, high=feature.max)
    limit = _null_limit(feature, contract)
    why = f"quality.max_null_fraction is {limit:g}" if feature.nullable else "the feature is not nullable"
    _check_nulls(ctx, feature.name, null, limit, why)
    return values


def _check_target(ctx: _Context, contract: DatasetContract, series: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    """Checks the target; returns its values and, for classification, the distinct valid classes."""
    if contract.task is Task.REGRESSION:
        null, values = _check_numbers(ctx, contract.target, series, integer=False)
        classes = None
    else:
        labels = _check_members(ctx, contract.target, series, allowed=contract.target_values, what="classes")
        null, values, classes = labels.null, labels.values, labels.classes
    _check_nulls(ctx, contract.target, null, 0.0, "the target must have a value in every row")
    return values, classes


def _check_quality(ctx: _Context, contract: DatasetContract, n: int, classes: list[str] | None) -> None:
    if n < contract.quality.min_rows:
        ctx.add("quality", None, f"{_plural(n, 'data row')}, fewer than quality.min_rows {contract.quality.min_rows}")
    if classes is not None and len(classes) == 1:
        ctx.add(
            "quality",
            contract.target,
            f"the target has a single class ({classes[0]!r}); a classifier needs at least two",
        )


def _check_distribution(
    ctx: _Context, contract: DatasetContract, typed: dict[str, np.ndarray], previous: dict[str, Any], max_psi: float
) -> None:
    from loopml_core import drift

    n = len(ctx.lines)
    if not n:
        return
    take = np.unique(np.linspace(0, n - 1, min(n, _DRIFT_SAMPLE)).astype(np.int64))
    sample = pd.DataFrame({name: values[take] for name, values in typed.items()})
    # Records carry None, not NaN, for a missing value, which is what a row from the serving API would hold.
    records = sample.astype(object).where(sample.notna(), None).to_dict("records")
    result = drift.compare(previous, records, threshold=max_psi)
    drifted = set(result.drifted)
    for name in contract.feature_names:
        if name in drifted:
            psi = result.per_feature.get(name, float("nan"))
            ctx.add(
                "distribution",
                name,
                f"distribution shifted from the previous version: PSI {psi:.3f} > quality.max_psi {max_psi:g}",
            )
