"""Merging the parts in file order, and the report, the profile and the distribution check at the end."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml_core import drift
from loopml_core.contract import DatasetContract, Feature, Task
from loopml_core.uploads import Format
from loopml_core.validation.columns import (
    DISTINCT_TRACKED,
    Hits,
    Part,
    Plan,
    check_batch,
    check_segment,
    column_plan,
)
from loopml_core.validation.csv_text import NOT_UTF8, Segment
from loopml_core.validation.report import (
    CHECK_ORDER,
    EXAMPLES_SHOWN,
    MAX_REPORT_COLUMNS,
    MAX_VALUE_CHARS,
    Check,
    Issue,
    Validated,
    ValidationReport,
    overall_issue,
    plural,
    shorten,
)

MAX_HEADER_NAMES = 50  # header names listed in one schema issue
MAX_CLASSES = 1_000  # distinct target classes tracked; more is a quality issue, not unbounded memory
PROFILE_SAMPLE = 50_000  # numeric values kept per feature (evenly spaced) to place the profile's bin edges


@dataclass
class Merged:
    count: int = 0
    rows: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    more_values: bool = False


class Run:
    """One validation: the plan, the merged results, and the report at the end."""

    def __init__(self, contract: DatasetContract, cap: int, previous: dict[str, Any] | None, workers: int) -> None:
        self.contract = contract
        self.cap = cap
        self.previous = previous
        self.workers = workers
        self.format: Format | None = None
        self.digest = hashlib.sha256()
        self.read = False  # whether the digest covers the object
        self.size = 0
        self.header: list[str] = []
        self.schema_issues: list[Issue] = []
        self.plan = Plan((), (), None)
        self.fatal: Issue | None = None
        self.rows = 0
        self.records = 0
        self.next_line = 1  # file line number of the next part's first line
        self.has_lines = True
        self.ragged = Merged()
        self.ragged_example: tuple[int, int] | None = None
        self.ragged_over = 0
        self.expected_fields = 0
        self.findings: dict[tuple[str, str], Merged] = {}
        self.nulls: dict[str, Merged] = {}
        self.labels: dict[str, dict[str, int]] = {}
        self.other_labels: dict[str, int] = {}
        self.samples: dict[str, list[np.ndarray]] = {}
        self.sample_stride = 1
        self.observed: dict[str, np.ndarray] = {}

    # -- set-up from the header or the Parquet schema

    def start_csv(self, header: list[str]) -> None:
        self.header = header
        positions = first_positions(header)
        arrow_names = tuple(f"c{i}" for i in range(len(header)))
        self.schema_issues = schema_issues(self.contract, header)
        self._plan_columns({name: arrow_names[positions[name]] for name in self._wanted() if name in positions})
        self.plan = Plan(self.plan.columns, arrow_names, self.plan.previous)

    def start_parquet(self, schema: Any) -> None:
        import pyarrow as pa

        self.has_lines = False
        self.header = list(schema.names)
        self.schema_issues = schema_issues(self.contract, self.header)
        usable: dict[str, str] = {}
        for name in self._wanted():
            if name not in schema.names:
                continue
            kind = schema.field(name).type
            numeric_feature = name != self.contract.target and self._feature(name).is_numeric
            numeric = numeric_feature or (name == self.contract.target and self.contract.task is Task.REGRESSION)
            text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)
            number = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
            if (numeric and not (number or text)) or (not numeric and not (text or pa.types.is_integer(kind))):
                wanted = "numbers (int or float)" if numeric else "text (string) or integer labels"
                message = f"column '{name}' has Parquet type {kind}, but the contract needs {wanted}"
                self.schema_issues.append(overall_issue("schema", message, column=name))
                continue
            usable[name] = name
        self._plan_columns(usable)

    def _wanted(self) -> list[str]:
        return [*self.contract.feature_names, self.contract.target]

    def _feature(self, name: str) -> Feature:
        return next(f for f in self.contract.features if f.name == name)

    def _plan_columns(self, arrow_names: dict[str, str]) -> None:
        columns = tuple(
            column_plan(self.contract, name, arrow_names[name]) for name in self._wanted() if name in arrow_names
        )
        previous = None
        checked = self.previous is not None and self.contract.quality.max_psi is not None
        if checked and all(f.name in arrow_names for f in self.contract.features):
            assert self.previous is not None
            previous = {name: self.previous["features"][name] for name in self.contract.feature_names}
        self.plan = Plan(columns, (), previous)

    # -- parallel checking, merged in order

    def check_segments(self, segments: Iterator[Segment]) -> None:
        self._pipeline(segments, lambda segment: check_segment(self.plan, self.cap, segment))

    def check_batches(self, batches: Iterator[Any]) -> None:
        self._pipeline(batches, lambda batch: check_batch(self.plan, self.cap, batch))

    def _pipeline(self, items: Iterator[Any], check: Callable[[Any], Part]) -> None:
        pending: list[Future[Part]] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="validate") as pool:
            for item in items:
                pending.append(pool.submit(check, item))
                del item  # the worker holds the only reference, so the segment goes as soon as it is checked
                while len(pending) > self.workers:
                    self._merge(pending.pop(0).result())
                    if self.fatal is not None:
                        return
            for future in pending:
                self._merge(future.result())
                if self.fatal is not None:
                    return

    def _merge(self, part: Part) -> None:
        first_line = self.next_line
        self.next_line += part.newlines
        if part.fatal is not None:
            self.fatal = part.fatal
            if part.fatal_line is not None:
                self.fatal = part.fatal.model_copy(
                    update={"message": NOT_UTF8.format(line=first_line + part.fatal_line)}
                )
            return
        if part.ragged is not None or self.ragged.count:
            self._merge_ragged(part, first_line)
        if not self.ragged.count:
            base_row = self.rows
            for key, hits in part.findings.items():
                self._merge_hits(self.findings.setdefault(key, Merged()), hits, base_row, part, first_line)
            for name, hits in part.nulls.items():
                self._merge_hits(self.nulls.setdefault(name, Merged()), hits, base_row, part, first_line)
            for name, tally in part.labels.items():
                merged = self.labels.setdefault(name, {})
                for word, count in tally.items():
                    if word in merged or len(merged) < MAX_CLASSES:
                        merged[word] = merged.get(word, 0) + count
            for name, count in part.other_labels.items():
                self.other_labels[name] = self.other_labels.get(name, 0) + count
            for name, counts in part.observed.items():
                self.observed[name] = self.observed[name] + counts if name in self.observed else counts
            self._sample(part.numbers, base_row)
        self.rows += part.rows
        self.records += part.records

    def _merge_ragged(self, part: Part, first_line: int) -> None:
        if part.ragged is None:  # a clean part after a ragged one: only its records count
            return
        self.expected_fields = part.expected_fields
        if self.ragged_example is None and part.ragged_example is not None:
            self.ragged_example = (first_line + part.ragged_example[0], part.ragged_example[1])
        merged = self.ragged
        room = max(0, self.cap - len(merged.rows))
        merged.rows.extend((part.ragged.rows[:room] + self.records).tolist())
        assert part.ragged_lines is not None
        merged.lines.extend((part.ragged_lines[:room] + first_line).tolist())
        merged.count += part.ragged.count
        self.ragged_over += part.ragged_over

    def _merge_hits(self, merged: Merged, hits: Hits, base_row: int, part: Part, first_line: int) -> None:
        merged.count += hits.count
        room = max(0, self.cap - len(merged.rows))
        if room and len(hits.rows):
            local = hits.rows[:room]
            merged.rows.extend((local + base_row).tolist())
            if self.has_lines:
                offsets = part.line_of_row[local] if part.line_of_row is not None else local
                merged.lines.extend((offsets + first_line).tolist())
        if len(merged.values) <= DISTINCT_TRACKED:
            known = set(merged.values)
            merged.values.extend(v for v in hits.values if v not in known)
        merged.more_values = merged.more_values or hits.more_values or len(merged.values) > DISTINCT_TRACKED
        del merged.values[DISTINCT_TRACKED + 1 :]

    def _sample(self, numbers: dict[str, np.ndarray], base_row: int) -> None:
        """Keep every `sample_stride`-th row's values (global index), doubling the stride to stay bounded."""
        for name, values in numbers.items():
            start = (-base_row) % self.sample_stride
            self.samples.setdefault(name, []).append(values[start :: self.sample_stride].copy())
        kept = max((sum(len(a) for a in arrays) for arrays in self.samples.values()), default=0)
        while kept > 2 * PROFILE_SAMPLE:
            # Rows kept so far sit at multiples of the stride; halving keeps those at multiples of twice it.
            for name, arrays in self.samples.items():
                whole = np.concatenate(arrays)
                self.samples[name] = [whole[::2].copy()]
            self.sample_stride *= 2
            kept = max(sum(len(a) for a in arrays) for arrays in self.samples.values())

    # -- the report

    def finish(self, seconds: float) -> Validated:
        fmt = str(self.format) if self.format is not None else None
        columns = [shorten(name, MAX_VALUE_CHARS) for name in self.header[:MAX_REPORT_COLUMNS]]
        if self.fatal is None and self.ragged.count:
            self.fatal = self._ragged_issue()
        sha256 = self.digest.hexdigest() if self.read else ""  # a file refused for its name or size is not read
        if self.fatal is not None:
            report = ValidationReport(
                ok=False, rows=0, columns=[], issues=[self.fatal], sha256=sha256, format=fmt, bytes=self.size
            )
            return Validated(report, None, seconds)
        issues = [*self.schema_issues, *self._column_issues(), *self._quality_issues(), *self._distribution_issues()]
        rank = {check: i for i, check in enumerate(CHECK_ORDER)}
        issues.sort(key=lambda issue: rank[issue.check])  # stable: column order kept within a check
        report = ValidationReport(
            ok=not issues, rows=self.rows, columns=columns, issues=issues, sha256=sha256, format=fmt, bytes=self.size
        )
        return Validated(report, self._profile() if report.ok else None, seconds)

    def _ragged_issue(self) -> Issue:
        merged = self.ragged
        example = ""
        if self.ragged_example is not None:
            example = f"e.g. line {self.ragged_example[0]} has {self.ragged_example[1]}. "
        over, under = self.ragged_over, merged.count - self.ragged_over
        parts = " and ".join(
            p for p in (f"{over:,} with more" if over else "", f"{under:,} with fewer" if under else "") if p
        )
        message = (
            f"{plural(merged.count, 'row')} without the header's {self.expected_fields} fields ({parts}); {example}"
            "A comma inside a value must be quoted"
        )
        return overall_issue("parse", message, rows=merged.rows, lines=merged.lines, count=merged.count)

    def _issue(self, check: Check, column: str, message: str, merged: Merged) -> Issue:
        return Issue(
            check=check,
            column=column,
            rows=merged.rows,
            lines=merged.lines,
            row_count=merged.count,
            message=message,
            values=merged.values[:EXAMPLES_SHOWN],
        )

    def _column_issues(self) -> Iterator[Issue]:
        for column in self.plan.columns:
            name = column.name
            kind = "int" if column.integer else "numeric"
            messages: list[tuple[str, Check, str]] = [
                ("not_number", "types", f"values that are not numbers in {kind} column"),
                ("fractional", "types", "values that are not whole numbers in int column"),
                ("non_finite", "ranges", "non-finite values (inf or nan)"),
                ("below", "ranges", f"values below the minimum {column.low:g}" if column.low is not None else ""),
                ("above", "ranges", f"values above the maximum {column.high:g}" if column.high is not None else ""),
                ("outside", "categories", f"{column.what} not in the contract's list ({column.listed})"),
            ]
            for key, check, text in messages:
                merged = self.findings.get((name, key))
                if merged is not None and merged.count:
                    yield self._issue(check, name, f"{text}: {examples_text(merged)}", merged)
            nulls = self.nulls.get(name)
            if nulls is not None and nulls.count and self.rows:
                fraction = nulls.count / self.rows
                if fraction > column.null_limit:
                    message = f"{plural(nulls.count, 'empty value')} ({fraction:.1%} of rows) but {column.null_why}"
                    yield self._issue("nulls", name, message, nulls)

    def _quality_issues(self) -> Iterator[Issue]:
        quality = self.contract.quality
        if self.rows < quality.min_rows:
            yield overall_issue(
                "quality", f"{plural(self.rows, 'data row')}, fewer than quality.min_rows {quality.min_rows}"
            )
        target = self.contract.target
        if self.contract.task is Task.CLASSIFICATION and target in {c.name for c in self.plan.columns}:
            classes = self.labels.get(target, {})
            if len(classes) == 1:
                (only,) = classes
                message = f"the target has a single class ({shorten(only, 60)!r}); a classifier needs at least two"
                yield overall_issue("quality", message, column=target)
            elif len(classes) >= MAX_CLASSES:
                message = f"the target has more than {MAX_CLASSES:,} distinct classes; is the task regression?"
                yield overall_issue("quality", message, column=target)

    def _distribution_issues(self) -> Iterator[Issue]:
        max_psi = self.contract.quality.max_psi
        if self.plan.previous is None or max_psi is None or not self.rows:
            return
        for name, entry in self.plan.previous.items():
            counts = self.observed.get(name)
            if counts is None:
                continue
            psi = drift.population_stability_index(drift.bucket_fractions(entry), counts / self.rows)
            if psi > max_psi:
                message = f"distribution shifted from the previous version: PSI {psi:.3f} > quality.max_psi {max_psi:g}"
                yield overall_issue("distribution", message, column=name)

    def _profile(self) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        for feature in self.contract.features:
            nulls = self.nulls.get(feature.name, Merged()).count
            if feature.is_numeric:
                arrays = self.samples.get(feature.name, [])
                sample = np.concatenate(arrays) if arrays else np.empty(0)
                columns[feature.name] = drift.numeric_entry(sample, null_fraction=nulls / max(self.rows, 1))
            else:
                counts = self.labels.get(feature.name, {})
                columns[feature.name] = drift.category_entry(
                    feature.values or (),
                    counts,
                    other=self.other_labels.get(feature.name, 0),
                    nulls=nulls,
                    rows=self.rows,
                )
        return drift.profile_from_entries(self.contract, self.rows, columns)


def first_positions(header: list[str]) -> dict[str, int]:
    positions: dict[str, int] = {}
    for position, name in enumerate(header):
        positions.setdefault(name, position)
    return positions


def schema_issues(contract: DatasetContract, header: list[str]) -> list[Issue]:
    issues: list[Issue] = []

    def add(column: str | None, message: str) -> None:
        issues.append(overall_issue("schema", message, column=column))

    positions = first_positions(header)
    where: dict[str, list[int]] = {}
    for position, name in enumerate(header):
        where.setdefault(name, []).append(position + 1)
    repeated = [(name, at) for name, at in where.items() if len(at) > 1]
    for name, at in repeated[:MAX_HEADER_NAMES]:
        shown = f"'{shorten(name, 60)}'" if name else "an unnamed column"
        places = ", ".join(map(str, at[:10])) + (", ..." if len(at) > 10 else "")
        add(
            name,
            f"{shown} appears {len(at)} times in the header (positions {places}); only position {at[0]} is checked",
        )
    expected = [*contract.feature_names, contract.target]
    folded = {name.casefold(): name for name in header}
    for name in expected:
        if name not in positions:
            what = "target column" if name == contract.target else "feature column"
            near = folded.get(name.casefold())
            hint = f"; the file has '{shorten(near, 60)}' (names are case-sensitive)" if near else ""
            add(name, f"{what} '{name}' is missing from the header{hint}")
    declared = set(expected)
    unexpected = [(p, name) for p, name in enumerate(header) if name not in declared and positions[name] == p]
    for position, name in unexpected[:MAX_HEADER_NAMES]:
        label = f"column '{shorten(name, 60)}'" if name else f"unnamed column at position {position + 1}"
        add(
            shorten(name, MAX_VALUE_CHARS),
            f"unexpected {label}: the contract does not declare it; declare it or drop it",
        )
    if len(unexpected) > MAX_HEADER_NAMES:
        add(None, f"and {len(unexpected) - MAX_HEADER_NAMES:,} more unexpected columns")
    return issues


def examples_text(merged: Merged) -> str:
    """The first few distinct offending values, in order of appearance, as the file wrote them."""
    shown = ", ".join(repr(value) for value in merged.values[:EXAMPLES_SHOWN])
    extra = len(merged.values) - EXAMPLES_SHOWN
    if merged.more_values:
        return shown + f" and more than {max(extra, 0):,} more distinct"
    return shown + (f" and {extra} more distinct" if extra > 0 else "")


_ALLOCATOR_LOCK = threading.Lock()
_allocator_chosen = False


def use_a_returning_allocator() -> None:
    """jemalloc returns freed segments to the system after a short decay, which keeps the process's peak memory flat
    from one segment to the next; with no decay at all every segment faults its pages in anew (3x the system time)."""
    global _allocator_chosen  # noqa: PLW0603 - a process-wide, once-only choice, as Arrow's pool is
    with _ALLOCATOR_LOCK:
        if _allocator_chosen:
            return
        _allocator_chosen = True
        import pyarrow as pa

        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
            pa.jemalloc_set_decay_ms(1_000)
        except (NotImplementedError, pa.ArrowException):  # a build without jemalloc: keep its default
            pass
