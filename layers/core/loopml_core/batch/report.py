"""The rows at fault in a batch: counted per column and kind of fault, shown by example, merged across chunks.

A worker collects the findings of its chunk with row indexes local to it; the finish step merges the chunks in file
order (adding each chunk's first row) into the report's issues, shaped as the upload quarantine report's
(`loopml_core.validation.report.Issue`): `rows` are 0-based indexes of the input's data records, `lines` the
1-based lines of the same rows in a CSV file (Parquet has none), `row_count` the full count, `values` a few
offending values as read (a number in a column read as numbers shows as the number it is: `-3.0`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopml_core.batch.rows import CHECKS, DISTINCT_KEPT, MAX_ISSUE_ROWS
from loopml_core.contract import DatasetContract

if TYPE_CHECKING:
    import numpy as np

    from loopml_core.validation.columns import Hits
    from loopml_core.validation.report import Issue

EXAMPLES_SHOWN = 5  # offending values quoted in a message


@dataclass
class Finding:
    column: str | None
    kind: str
    count: int = 0
    rows: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    more_values: bool = False

    def add(self, count: int, rows: list[int], lines: list[int], values: list[str], more_values: bool) -> None:
        self.count += count
        room = max(0, MAX_ISSUE_ROWS - len(self.rows))
        self.rows.extend(rows[:room])
        self.lines.extend(lines[:room])
        known = set(self.values)
        self.values.extend(v for v in values if v not in known and len(self.values) <= DISTINCT_KEPT)
        self.more_values = self.more_values or more_values or len(self.values) > DISTINCT_KEPT
        del self.values[DISTINCT_KEPT + 1 :]

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "count": self.count,
            "rows": self.rows,
            "lines": self.lines,
            "values": self.values,
            "more_values": self.more_values,
        }


class Findings:
    """Findings by (column, kind), in the order they were first met."""

    def __init__(self) -> None:
        self.items: dict[tuple[str | None, str], Finding] = {}

    def __bool__(self) -> bool:
        return bool(self.items)

    def _finding(self, column: str | None, kind: str) -> Finding:
        return self.items.setdefault((column, kind), Finding(column, kind))

    def add_hits(
        self, column: str | None, kind: str, hits: Hits, rows: np.ndarray, lines: np.ndarray | None = None
    ) -> None:
        """Hits whose row positions index `rows` (the records they are, in this chunk) and `lines` (their lines)."""
        shown = hits.rows[:MAX_ISSUE_ROWS]
        self._finding(column, kind).add(
            hits.count,
            rows[shown].tolist(),
            lines[shown].tolist() if lines is not None else [],
            list(hits.values),
            hits.more_values,
        )

    def extend(self, other: Findings, row_base: int) -> None:
        """Another part's findings, its rows shifted by `row_base` (the records before it)."""
        for (column, kind), finding in other.items.items():
            rows = [row + row_base for row in finding.rows]
            self._finding(column, kind).add(finding.count, rows, finding.lines, finding.values, finding.more_values)

    def to_json(self) -> list[dict[str, Any]]:
        return [finding.to_json() for finding in self.items.values()]

    @classmethod
    def from_json(cls, items: list[dict[str, Any]]) -> Findings:
        findings = cls()
        for item in items:
            findings._finding(item["column"], item["kind"]).add(
                int(item["count"]), item["rows"], item["lines"], item["values"], bool(item["more_values"])
            )
        return findings

    def issues(self, contract: DatasetContract, header_fields: int) -> list[Issue]:
        """The report's issues, check by check in the validation report's order, columns in the contract's."""
        from loopml_core.validation.report import CHECK_ORDER, Issue

        order = {name: index for index, name in enumerate(contract.feature_names)}
        ranked = sorted(
            self.items.values(),
            key=lambda f: (
                CHECK_ORDER.index(CHECKS[f.kind]),
                order.get(f.column or "", -1),
                list(CHECKS).index(f.kind),
            ),
        )
        return [
            Issue(
                check=CHECKS[finding.kind],
                column=finding.column,
                rows=finding.rows,
                lines=finding.lines,
                row_count=finding.count,
                message=_message(contract, finding, header_fields),
                values=finding.values[:EXAMPLES_SHOWN],
            )
            for finding in ranked
        ]


def _message(contract: DatasetContract, finding: Finding, header_fields: int) -> str:
    if finding.kind == "ragged":
        return (
            f"records without the header's {header_fields} fields, left out of the output (a comma inside a value "
            "must be quoted)"
        )
    if finding.kind == "null":
        return "empty values, but the feature is not nullable"
    feature = contract.feature(finding.column or "")
    texts = {
        "not_number": f"values that are not numbers in {'int' if feature.type == 'int' else 'numeric'} column",
        "fractional": "values that are not whole numbers in int column",
        "non_finite": "non-finite values (inf or nan)",
        "below": f"values below the minimum {feature.min:g}" if feature.min is not None else "",
        "above": f"values above the maximum {feature.max:g}" if feature.max is not None else "",
        "overflow": "values beyond float32, the type the model computes in",
        "outside": f"values not in the contract's list ({_listed(feature.values or ())})",
    }
    return f"{texts[finding.kind]}: {_examples(finding)}"


def _listed(values: tuple[str, ...]) -> str:
    shown = ", ".join(repr(value[:60]) for value in values[:10])
    return shown + (", ..." if len(values) > 10 else "")


def _examples(finding: Finding) -> str:
    shown = ", ".join(repr(value) for value in finding.values[:EXAMPLES_SHOWN])
    extra = len(finding.values) - EXAMPLES_SHOWN
    if finding.more_values:
        return shown + f" and more than {max(extra, 0):,} more distinct"
    return shown + (f" and {extra} more distinct" if extra > 0 else "")
