"""Streamed validation: the same report whatever the segment size, every format, bounded reads and bounded reports."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml_core import drift, validation
from loopml_core.contract import load_contract
from loopml_core.validation import BytesSource, ValidationReport, csv_text, report_document, validate

CONTRACT = load_contract(
    """
name: churn
task: classification
target: churned
target_values: ["yes", "no"]
quality: {min_rows: 5, max_null_fraction: 0.25}
features:
  - {name: age, type: int, min: 0, max: 120}
  - {name: income, type: float, min: 0}
  - {name: plan, type: category, values: [basic, pro, team]}
  - {name: note, type: category, values: ["a", "b\\nc", "d,e"], nullable: true}
"""
)


def population(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "age": rng.integers(18, 90, n),
        "income": np.round(rng.uniform(0, 1e5, n), 2),
        "plan": rng.choice(["basic", "pro", "team"], n),
        "note": rng.choice(["a", "b\nc", "d,e"], n),
        "churned": rng.choice(["yes", "no"], n),
    }


def to_csv(columns: dict[str, Any], *, newline: str = "\n", bom: bool = False) -> bytes:
    """Quoted where needed (the `note` column holds newlines and commas inside quotes)."""
    lines = [",".join(columns)]
    for row in zip(*columns.values(), strict=True):
        lines.append(",".join(f'"{v}"' if isinstance(v, str) and ("\n" in v or "," in v) else str(v) for v in row))
    return (b"\xef\xbb\xbf" if bom else b"") + (newline.join(lines) + newline).encode()


def faulty(n: int = 3_000) -> dict[str, Any]:
    columns = {name: values.astype(object) for name, values in population(n).items()}
    columns["age"][[5, 1_400, 2_999]] = "x"
    columns["income"][[7, 2_000]] = -1
    columns["plan"][[0, 1_501]] = "gold"
    columns["churned"][2_500] = ""
    return columns


def findings(report: ValidationReport) -> list[tuple[str, str | None, list[int], list[int], int]]:
    return [(i.check, i.column, i.rows, i.lines, i.row_count) for i in report.issues]


@pytest.fixture
def small_segments(monkeypatch):
    """Segments of a few hundred bytes: every file crosses many boundaries, some inside quoted fields."""

    def use(size: int) -> None:
        monkeypatch.setattr(csv_text, "SEGMENT_BYTES", size)

    return use


# --- the same report whatever the segment size ---------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("size", [97, 1024, 4096])
def test_rows_and_lines_are_global_across_segments(small_segments, newline, size):
    body = to_csv(faulty(), newline=newline, bom=True)
    whole = validate(CONTRACT, BytesSource("a.csv", body)).report
    small_segments(size)
    streamed = validate(CONTRACT, BytesSource("a.csv", body), workers=3).report
    assert findings(streamed) == findings(whole)
    assert streamed.sha256 == whole.sha256 and streamed.rows == whole.rows == 3_000
    # Quoted newlines put rows on later lines than their index says: lines are counted, not assumed.
    age = next(i for i in whole.issues if i.column == "age")
    assert age.rows == [5, 1_400, 2_999]
    assert age.lines[0] == 2 + 5 + sum("\n" in v for v in faulty()["note"][:5])
    assert age.lines[-1] == 2 + 2_999 + sum("\n" in v for v in faulty()["note"][:2_999])


def test_blank_lines_keep_line_numbers_true_across_segments(small_segments):
    columns = population(400)
    columns["note"][:] = "a"
    columns["age"] = columns["age"].astype(object)
    columns["age"][[5, 390]] = "x"
    lines = to_csv(columns).decode().split("\n")
    body = "\n".join(line + ("\n\n   " if i % 50 == 7 else "") for i, line in enumerate(lines)).encode()
    whole = validate(CONTRACT, BytesSource("a.csv", body)).report
    small_segments(256)
    streamed = validate(CONTRACT, BytesSource("a.csv", body)).report
    assert findings(streamed) == findings(whole)
    age = next(i for i in streamed.issues if i.column == "age")
    assert age.rows == [5, 390]
    text = body.decode().split("\n")
    assert [text[line - 1].split(",")[0] for line in age.lines] == ["x", "x"]
    assert age.lines[1] > 392  # two blank lines after every 50th


def test_ragged_rows_are_found_in_every_segment(small_segments):
    text = to_csv(population(2_000)).decode().split("\n")
    for line in (40, 1_000, 1_990):
        text[line] += ",extra"
    small_segments(512)
    issue = validate(CONTRACT, BytesSource("a.csv", "\n".join(text).encode())).report.issues
    assert [(i.check, i.row_count, "1 with fewer" not in i.message) for i in issue] == [("parse", 3, True)]
    assert "3 with more" in issue[0].message


def test_reads_are_bounded_whatever_the_file_size(monkeypatch):
    class Tracking(io.BytesIO):
        largest = 0

        def read(self, size: int | None = -1) -> bytes:
            assert size is not None and size > 0, "the whole object was read at once"
            Tracking.largest = max(Tracking.largest, size)
            return super().read(size)

    class Source(BytesSource):
        def stream(self) -> BinaryIO:
            return Tracking(self.data)

    monkeypatch.setattr(csv_text, "SEGMENT_BYTES", 4096)
    report = validate(CONTRACT, Source("a.csv", to_csv(population(5_000)))).report
    assert report.ok, report.summary()
    assert Tracking.largest <= 4096


def test_each_format_reads_the_object_once():
    opened: list[str] = []

    class Counting(BytesSource):
        def stream(self) -> BinaryIO:
            opened.append("stream")
            return super().stream()

        def random_access(self) -> BinaryIO:
            opened.append("random access")
            return super().random_access()

    body = to_csv(population(2_000))
    sink = io.BytesIO()
    pq.write_table(pa.table({k: [str(v) for v in vs] for k, vs in population(500).items()}), sink)
    for name, data, reads in [
        ("a.csv", body, ["stream"]),
        ("a.csv.gz", gzip.compress(body, mtime=0), ["stream"]),
        ("a.parquet", sink.getvalue(), ["random access", "stream"]),  # footer first; the digest reads in order
        ("a.parquet", body, ["random access"]),  # a misnamed file is refused on its first bytes
    ]:
        opened.clear()
        validate(CONTRACT, Counting(name, data))
        assert opened == reads, name


# --- formats ---------------------------------------------------------------------------------------------------


def test_gzip_and_parquet_give_the_csv_verdicts():
    columns = faulty()
    body = to_csv(columns)
    csv_report = validate(CONTRACT, BytesSource("a.csv", body)).report
    gz_report = validate(CONTRACT, BytesSource("a.csv.gz", gzip.compress(body))).report
    assert findings(gz_report) == findings(csv_report) and gz_report.format == "csv.gz"

    sink = io.BytesIO()
    table = pa.table({name: pa.array([str(v) for v in values]) for name, values in columns.items()})
    pq.write_table(table, sink, row_group_size=700)
    parquet = validate(CONTRACT, BytesSource("a.parquet", sink.getvalue())).report
    assert parquet.format == "parquet" and parquet.rows == 3_000
    # Same checks, same rows; Parquet has no text lines.
    assert [(c, col, rows, n) for c, col, rows, _, n in findings(parquet)] == [
        (c, col, rows, n) for c, col, rows, _, n in findings(csv_report)
    ]
    assert all(issue.lines == [] for issue in parquet.issues)


def test_typed_parquet_is_checked_by_value_and_a_wrong_type_is_named():
    columns = population(500)
    columns["income"][[3, 4]] = [-5.0, np.inf]
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    report = validate(CONTRACT, BytesSource("a.parquet", sink.getvalue())).report
    assert [(i.check, i.column, i.rows) for i in report.issues] == [
        ("ranges", "income", [4]),
        ("ranges", "income", [3]),
    ]

    columns["age"] = pa.array([f"2026-01-0{1 + i % 9}" for i in range(500)], pa.string()).cast(pa.date32())
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    issue = validate(CONTRACT, BytesSource("a.parquet", sink.getvalue())).report.issues[0]
    assert (issue.check, issue.column) == ("schema", "age")
    assert "date32" in issue.message and "numbers" in issue.message


def test_an_int_typed_parquet_target_is_read_as_its_labels():
    contract = load_contract(
        "name: m\ntask: classification\ntarget: y\ntarget_values: ['0', '1']\nquality: {min_rows: 2}\n"
        "features:\n  - {name: x, type: float}\n"
    )
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": [0.1, 0.2, 0.3], "y": [0, 1, 2]}), sink)
    report = validate(contract, BytesSource("a.parquet", sink.getvalue())).report
    assert [(i.check, i.column, i.rows) for i in report.issues] == [("categories", "y", [2])]


@pytest.mark.parametrize(
    ("name", "body", "words"),
    [
        ("a.xlsx", b"PK\x03\x04", "unsupported file type"),
        ("a", b"age\n1\n", "unsupported file type"),
        ("a.csv", gzip.compress(b"age\n1\n", mtime=0), "name it .csv.gz"),
        ("a.csv", b"PAR1....PAR1", "name it .parquet"),
        ("a.csv.gz", b"age,income\n1,2\n", "not gzip-compressed"),
        ("a.parquet", b"age,income\n1,2\n", "not Parquet"),
        ("a.parquet", b"PAR1 not really", "not readable as Parquet"),
        ("a.csv.gz", gzip.compress(to_csv(population(2_000)), mtime=0)[:-300], "truncated"),
        ("a.csv.gz", gzip.compress(bytes(range(256)) * 64, mtime=0), "UTF-8"),
        ("a.csv.gz", gzip.compress(b"\x00\x01\x02\n" * 10, mtime=0), "NUL"),
        ("a.csv", b"", "empty"),
        ("a.csv", b"\n\n  \n", "empty"),
        ("a.csv", b"age;income;plan\n1;2;basic\n", "semicolon"),
    ],
)
def test_each_unreadable_file_gets_one_clear_reason(name, body, words):
    report = validate(CONTRACT, BytesSource(name, body)).report
    assert not report.ok and len(report.issues) == 1
    assert words in report.issues[0].message
    assert report.issues[0].check in {"format", "parse"}


def test_a_header_only_file_is_too_few_rows_not_unreadable():
    report = validate(CONTRACT, BytesSource("a.csv", b"age,income,plan,note,churned\n")).report
    assert report.rows == 0 and [i.check for i in report.issues] == ["quality"]


def test_a_file_over_the_configured_maximum_is_refused_unread():
    class Unreadable(BytesSource):
        def stream(self) -> BinaryIO:
            raise AssertionError("a file over the limit must not be read")

    report = validate(CONTRACT, Unreadable("a.csv", b"x" * 2_000), max_bytes=1_000).report
    assert report.issues[0].check == "format" and "configured maximum" in report.issues[0].message


# --- small reports whatever the data -------------------------------------------------------------------------------


def test_a_ten_megabyte_field_and_a_million_bad_rows_make_a_small_report():
    n = 1_000_000
    columns = population(n)
    columns["plan"] = np.full(n, "gold")
    columns["note"] = columns["note"].astype(object)
    columns["note"][17] = "z" * 10_000_000
    report = validate(CONTRACT, BytesSource("a.csv", to_csv(columns)), max_issue_rows=20).report
    plan = next(i for i in report.issues if i.column == "plan")
    assert plan.row_count == n and len(plan.rows) == len(plan.lines) == 20
    note = next(i for i in report.issues if i.column == "note")
    assert note.row_count == 1 and len(note.values[0]) <= validation.MAX_VALUE_CHARS
    document = report_document(report, source="s3://b/k", source_version_id="v", dataset="churn", seconds=1.0)
    assert len(json.dumps(document)) < 100_000


def test_a_header_of_many_long_names_is_summarised():
    header = ",".join(f"{'c' * 5_000}{i}" for i in range(2_000))
    report = validate(CONTRACT, BytesSource("a.csv", (header + "\n" + ",".join("1" * 2_000) + "\n").encode())).report
    assert len(report.columns) == validation.MAX_REPORT_COLUMNS
    assert len(json.dumps(report.model_dump())) < 1_000_000
    assert any("more unexpected columns" in i.message for i in report.issues)


# --- the profile, built in the same pass ---------------------------------------------------------------------------


def test_the_streamed_profile_matches_one_built_from_all_values(small_segments):
    columns = population(20_000, seed=3)
    columns["income"] = columns["income"].astype(object)
    columns["income"][::40] = ""  # nulls: 2.5%, within the contract's limit for a nullable feature
    contract = CONTRACT.model_copy(
        update={"features": [f.model_copy(update={"nullable": True}) for f in CONTRACT.features]}
    )
    body = to_csv(columns)
    small_segments(8_192)
    profile = validate(contract, BytesSource("a.csv", body)).profile
    assert profile is not None and profile["rows"] == 20_000

    income = np.array([np.nan if v == "" else float(v) for v in columns["income"]])
    exact = drift.build_profile(contract, {**columns, "income": income}, None)
    for name in ("age", "income"):
        streamed, whole = profile["features"][name], exact["features"][name]
        assert streamed["null_fraction"] == pytest.approx(whole["null_fraction"])
        # Edges come from an evenly spaced sample: close to the exact quantiles, and the shares sum to one.
        assert sum(streamed["fractions"]) + streamed["null_fraction"] == pytest.approx(1.0)
        psi = drift.population_stability_index(drift.bucket_fractions(whole), drift.bucket_fractions(streamed))
        assert psi < 0.01
    assert profile["features"]["plan"] == exact["features"]["plan"]  # categories are counted exactly


def test_no_profile_for_a_rejected_file():
    assert validate(CONTRACT, BytesSource("a.csv", to_csv(faulty()))).profile is None
