"""The report: issues, their bounds, and the small text helpers that keep it readable and small."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from loopml_core.clock import iso

Check = Literal["format", "parse", "schema", "types", "nulls", "ranges", "categories", "quality", "distribution"]
CHECK_ORDER: tuple[Check, ...] = get_args(Check)

MAX_VALUE_CHARS = 200  # an offending value is quoted at most this long, so a 10 MB field cannot bloat a report
MAX_REPORT_COLUMNS = 1_000  # header names kept in the report
EXAMPLES_SHOWN = 5  # offending distinct values quoted in a message


class Issue(BaseModel):
    """One failing check on one column (or on the whole file when `column` is None)."""

    model_config = ConfigDict(frozen=True)

    check: Check
    column: str | None
    rows: list[int]
    lines: list[int]
    row_count: int
    message: str
    values: list[str] = []

    def describe(self) -> str:
        """A short human form, e.g. `types[age] 2 rows (lines 3, 7): ...`."""
        where = f"{self.check}[{shorten(self.column, 60)}]" if self.column is not None else self.check
        if not self.row_count:
            return f"{where}: {self.message}"
        label, shown = ("line", self.lines) if self.lines else ("row", self.rows)
        listed = ", ".join(str(n) for n in shown)
        more = ", ..." if self.row_count > len(shown) else ""
        noun = "row" if self.row_count == 1 else "rows"
        plural = "" if len(shown) == 1 else "s"
        return f"{where} {self.row_count:,} {noun} ({label}{plural} {listed}{more}): {self.message}"


class ValidationReport(BaseModel):
    """The outcome of validating one file. `columns` is the header as read (stripped, duplicates included, at most
    `MAX_REPORT_COLUMNS` names, each cut to `MAX_VALUE_CHARS`)."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    rows: int
    columns: list[str]
    issues: list[Issue]
    sha256: str
    format: str | None = None
    bytes: int = 0

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


@dataclass(frozen=True)
class Validated:
    """A report, and the profile of the data as validated (for drift; None when the data could not be read)."""

    report: ValidationReport
    profile: dict[str, Any] | None
    seconds: float


def overall_issue(
    check: Check,
    message: str,
    *,
    column: str | None = None,
    rows: Sequence[int] = (),
    lines: Sequence[int] = (),
    count: int = 0,
) -> Issue:
    """An issue about the whole file, or (with `column`) a whole column: no rows unless it lists records."""
    return Issue(check=check, column=column, rows=list(rows), lines=list(lines), row_count=count, message=message)


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report_document(
    report: ValidationReport, *, source: str, source_version_id: str | None, dataset: str | None, seconds: float
) -> dict[str, Any]:
    """The quarantine report (also what `loopml validate --json` prints): the validation report and where from.

    Bounded whatever the data: per issue a count and at most a few example rows and values, each value cut short.
    """
    return {
        "source": source,
        "source_version_id": source_version_id,
        "dataset": dataset,
        **report.model_dump(mode="json"),
        "summary": report.summary(),
        "seconds": round(seconds, 3),
        "checked_at": iso(),
    }
