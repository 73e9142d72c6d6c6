"""Contract validation of uploaded CSVs: every problem reported, with the rows, lines and columns at fault."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml_core.contract import DatasetContract, load_contract
from loopml_core.validation import BytesSource, Issue, ValidationReport, validate, validate_csv

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
  - {name: score, type: float, nullable: true}
"""
)

REGRESSION = load_contract(
    """
name: prices
task: regression
target: price
quality: {min_rows: 2}
features:
  - {name: rooms, type: int, min: 1}
"""
)

HEADER = ["age", "income", "plan", "score", "churned"]
CLEAN = [
    ["34", "52000.5", "basic", "0.1", "yes"],
    ["45", "61000", "pro", "", "no"],
    ["23", "0", "team", "0.7", "no"],
    ["67", "12000", "basic", "0.2", "yes"],
    ["51", "80000", "pro", "0.9", "no"],
    ["29", "43000", "team", "0.4", "yes"],
]


def csv(rows: list[list[str]], header: list[str] | None = None, newline: str = "\n") -> bytes:
    lines = [",".join(header if header is not None else HEADER)] + [",".join(row) for row in rows]
    return (newline.join(lines) + newline).encode()


def only(report: ValidationReport, check: str, column: str | None) -> Issue:
    found = [i for i in report.issues if i.check == check and i.column == column]
    assert len(found) == 1, f"expected one {check}[{column}] issue, got {report.issues}"
    return found[0]


def keys(report: ValidationReport) -> set[tuple[str, str | None]]:
    return {(i.check, i.column) for i in report.issues}


def with_cell(row: int, column: str, value: str) -> list[list[str]]:
    rows = [list(r) for r in CLEAN]
    rows[row][HEADER.index(column)] = value
    return rows


# --- the happy path ----------------------------------------------------------------------------------------------


def test_clean_file_passes() -> None:
    body = csv(CLEAN)
    report = validate_csv(CONTRACT, body)
    assert report.ok, report.summary()
    assert report.issues == []
    assert report.rows == len(CLEAN)
    assert report.columns == HEADER
    assert report.sha256 == hashlib.sha256(body).hexdigest()
    assert report.summary().startswith("valid: 6 rows, 5 columns")


def test_column_order_and_surrounding_whitespace_do_not_matter() -> None:
    header = ["churned", " plan", "age ", "score", "income"]
    order = [HEADER.index(name.strip()) for name in header]
    rows = [[f" {row[i]} " for i in order] for row in CLEAN]
    report = validate_csv(CONTRACT, csv(rows, header))
    assert report.ok, report.summary()
    assert report.columns == [name.strip() for name in header]


def test_integral_floats_are_ints_and_exponents_are_numbers() -> None:
    rows = with_cell(0, "age", "34.0")
    rows[1][1] = "6.1e4"
    report = validate_csv(CONTRACT, csv(rows))
    assert report.ok, report.summary()
    assert validate_csv(CONTRACT, csv(with_cell(0, "age", "3e1"))).ok


def test_report_is_deterministic_and_json_serialisable() -> None:
    body = csv(with_cell(2, "age", "abc"))
    first, second = validate_csv(CONTRACT, body), validate_csv(CONTRACT, body)
    assert first == second
    assert json.loads(first.model_dump_json())["issues"][0]["lines"] == [4]


# --- several faults at once --------------------------------------------------------------------------------------


def test_every_fault_in_one_file_is_reported_with_its_rows_lines_and_column() -> None:
    rows = [list(r) for r in CLEAN]
    rows[0][0] = "abc"  # types[age], line 2
    rows[1][0] = "1.5"  # types[age], line 3
    rows[2][1] = "-5"  # ranges[income] below min, line 4
    rows[3][0] = "130"  # ranges[age] above max, line 5
    rows[4][2] = "gold"  # categories[plan], line 6
    rows[5][4] = "maybe"  # categories[churned], line 7
    rows[1][2] = ""  # nulls[plan] (not nullable), line 3
    rows[3][1] = "inf"  # ranges[income] non-finite, line 5
    report = validate_csv(CONTRACT, csv(rows))

    assert not report.ok
    assert keys(report) == {
        ("types", "age"),
        ("ranges", "income"),
        ("ranges", "age"),
        ("categories", "plan"),
        ("categories", "churned"),
        ("nulls", "plan"),
    }
    age_types = sorted((i.lines, i.message) for i in report.issues if i.check == "types" and i.column == "age")
    assert [lines for lines, _ in age_types] == [[2], [3]]
    assert "'abc'" in age_types[0][1] and "not numbers" in age_types[0][1]
    assert "'1.5'" in age_types[1][1] and "whole numbers" in age_types[1][1]
    income = [i for i in report.issues if i.check == "ranges" and i.column == "income"]
    assert sorted((i.rows, i.lines) for i in income) == [([2], [4]), ([3], [5])]
    assert only(report, "ranges", "age").lines == [5]
    assert "120" in only(report, "ranges", "age").message
    plan = only(report, "categories", "plan")
    assert (plan.rows, plan.lines, plan.row_count) == ([4], [6], 1)
    assert "'gold'" in plan.message
    assert only(report, "categories", "churned").lines == [7]
    assert only(report, "nulls", "plan").lines == [3]
    # Issues come grouped by check, in a fixed order.
    order = [i.check for i in report.issues]
    assert order == sorted(order, key=["types", "nulls", "ranges", "categories"].index)
    summary = report.summary()
    assert "\n" not in summary
    assert summary.startswith(f"rejected: {len(report.issues)} issues in 6 rows")


# --- schema ------------------------------------------------------------------------------------------------------


def test_missing_extra_and_duplicate_columns_are_each_named() -> None:
    header = ["age", "income", "notes", "score", "Plan", "income", "source"]
    rows = [[r[0], r[1], "x", r[3], r[2], r[1], "web"] for r in CLEAN]
    report = validate_csv(CONTRACT, csv(rows, header))

    assert keys(report) == {
        ("schema", "plan"),
        ("schema", "churned"),
        ("schema", "notes"),
        ("schema", "Plan"),
        ("schema", "source"),
        ("schema", "income"),
    }
    assert "case-sensitive" in only(report, "schema", "plan").message
    assert "target" in only(report, "schema", "churned").message
    assert "2 times" in only(report, "schema", "income").message
    assert all(i.row_count == 0 and i.rows == [] for i in report.issues)


def test_present_columns_are_still_checked_when_others_are_missing() -> None:
    header = ["age", "income", "score", "churned"]
    rows = [[r[0], r[1], r[3], r[4]] for r in with_cell(1, "age", "old")]
    report = validate_csv(CONTRACT, csv(rows, header))
    assert keys(report) == {("schema", "plan"), ("types", "age")}
    assert only(report, "types", "age").lines == [3]


def test_unnamed_column_from_a_trailing_comma_is_unexpected() -> None:
    rows = [[*r, ""] for r in CLEAN]
    report = validate_csv(CONTRACT, csv(rows, [*HEADER, ""]))
    issue = only(report, "schema", "")
    assert "position 6" in issue.message


# --- types -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [("age", "abc"), ("age", "1.5"), ("age", "1,5"), ("income", "lots"), ("income", "0x10"), ("score", "n/a")],
)
def test_values_of_the_wrong_type_are_reported(column: str, value: str) -> None:
    body = csv(with_cell(3, column, f'"{value}"' if "," in value else value))
    issue = only(validate_csv(CONTRACT, body), "types", column)
    assert (issue.rows, issue.lines, issue.row_count) == ([3], [5], 1)
    assert repr(value) in issue.message


def test_regression_target_must_be_numeric() -> None:
    body = csv([["3", "100.5"], ["2", "cheap"], ["4", "120"]], ["rooms", "price"])
    report = validate_csv(REGRESSION, body)
    assert keys(report) == {("types", "price")}
    assert only(report, "types", "price").lines == [3]


def test_classification_target_without_a_class_list_accepts_any_label() -> None:
    contract = CONTRACT.model_copy(update={"target_values": None})
    assert validate_csv(contract, csv(with_cell(0, "churned", "maybe"))).ok


# --- nulls -------------------------------------------------------------------------------------------------------


def test_a_non_nullable_feature_rejects_any_empty_cell() -> None:
    report = validate_csv(CONTRACT, csv(with_cell(4, "income", "   ")))
    issue = only(report, "nulls", "income")
    assert (issue.rows, issue.lines) == ([4], [6])
    assert "not nullable" in issue.message


def test_a_nullable_feature_accepts_nulls_up_to_max_null_fraction_and_names_every_null_row_beyond() -> None:
    assert CLEAN[1][3] == ""  # one empty score in six rows is within 0.25
    assert validate_csv(CONTRACT, csv(CLEAN)).ok
    report = validate_csv(CONTRACT, csv(with_cell(0, "score", "")))  # two in six is not
    issue = only(report, "nulls", "score")
    assert (issue.rows, issue.lines, issue.row_count) == ([0, 1], [2, 3], 2)
    assert "max_null_fraction is 0.25" in issue.message


def test_the_target_may_not_be_empty() -> None:
    issue = only(validate_csv(CONTRACT, csv(with_cell(2, "churned", ""))), "nulls", "churned")
    assert issue.lines == [4]


def test_short_rows_are_a_parse_issue_not_silent_nulls() -> None:
    body = csv(CLEAN).replace(b"23,0,team,0.7,no", b"23,0,team")
    report = validate_csv(CONTRACT, body)
    issue = only(report, "parse", None)
    assert issue.lines == [4]
    assert "fewer" in issue.message


# --- ranges ------------------------------------------------------------------------------------------------------


def test_values_outside_min_and_max_are_reported_separately() -> None:
    rows = with_cell(0, "age", "-1")
    rows[5][0] = "121"
    rows[2][1] = "-0.01"
    report = validate_csv(CONTRACT, csv(rows))
    age = [i for i in report.issues if i.column == "age"]
    assert sorted((i.lines[0], "minimum" in i.message, "maximum" in i.message) for i in age) == [
        (2, True, False),
        (7, False, True),
    ]
    assert only(report, "ranges", "income").lines == [4]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "NaN", "Infinity"])
def test_non_finite_numbers_are_range_issues(value: str) -> None:
    report = validate_csv(CONTRACT, csv(with_cell(3, "score", value)))
    issue = only(report, "ranges", "score")
    assert issue.lines == [5]
    assert "non-finite" in issue.message
    assert keys(report) == {("ranges", "score")}


def test_boundaries_are_inclusive() -> None:
    rows = with_cell(0, "age", "0")
    rows[1][0] = "120"
    assert validate_csv(CONTRACT, csv(rows)).ok


# --- categories --------------------------------------------------------------------------------------------------


def test_unknown_categories_list_the_offending_distinct_values() -> None:
    rows = [list(r) for r in CLEAN + CLEAN]
    for i, value in enumerate(["gold", "Basic", "gold", "x1", "x2", "x3", "x4"]):
        rows[i][2] = value
    report = validate_csv(CONTRACT, csv(rows))
    issue = only(report, "categories", "plan")
    assert issue.row_count == 7
    assert issue.lines == [2, 3, 4, 5, 6, 7, 8]
    assert "'gold', 'Basic', 'x1', 'x2', 'x3' and 1 more distinct" in issue.message
    assert "'basic'" in issue.message  # the allowed values are named too


# --- quality -----------------------------------------------------------------------------------------------------


def test_too_few_rows() -> None:
    report = validate_csv(CONTRACT, csv(CLEAN[:3]))
    issue = only(report, "quality", None)
    assert "3 data rows" in issue.message
    assert "min_rows 5" in issue.message
    assert issue.row_count == 0


def test_header_only_file_is_readable_but_has_too_few_rows() -> None:
    report = validate_csv(CONTRACT, csv([]))
    assert keys(report) == {("quality", None)}
    assert report.rows == 0
    assert report.columns == HEADER


def test_single_class_target_cannot_train() -> None:
    rows = [[*r[:4], "no"] for r in CLEAN]
    issue = only(validate_csv(CONTRACT, csv(rows)), "quality", "churned")
    assert "single class ('no')" in issue.message


def test_single_class_does_not_apply_to_regression() -> None:
    assert validate_csv(REGRESSION, csv([["1", "5"], ["2", "5"]], ["rooms", "price"])).ok


# --- unreadable files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "empty"),
        (b"  \n\r\n\t", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", "UTF-8"),
        (bytes(range(256)) * 4, "UTF-8"),
        (b"age,income\n1,\x002\n", "NUL"),
        (b"age;income;plan;score;churned\n1;2;basic;3;yes\n", "semicolon"),
        (b"age\tincome\tplan\tscore\tchurned\n", "tab"),
    ],
)
def test_unreadable_files_give_one_parse_issue_and_never_raise(body: bytes, words: str) -> None:
    report = validate_csv(CONTRACT, body)
    assert not report.ok
    assert [i.check for i in report.issues] == ["parse"]
    assert words in report.issues[0].message
    assert report.rows == 0
    assert report.sha256 == hashlib.sha256(body).hexdigest()
    assert "unreadable" in report.summary()


def test_ragged_rows_list_every_bad_line() -> None:
    body = csv(CLEAN).replace(b"45,61000,pro,,no", b"45,61,000,pro,,no").replace(b"67,12000", b"67,12,000")
    issue = only(validate_csv(CONTRACT, body), "parse", None)
    assert (issue.rows, issue.lines, issue.row_count) == ([1, 3], [3, 5], 2)
    assert "quoted" in issue.message


def test_invalid_utf8_names_the_line() -> None:
    body = csv(CLEAN).replace(b"team,0.7", b"t\xe9am,0.7")
    issue = only(validate_csv(CONTRACT, body), "parse", None)
    assert "line 4" in issue.message


def test_garbage_text_is_a_schema_problem_not_a_crash() -> None:
    report = validate_csv(CONTRACT, b'{"age": 3, "plan": "basic"}\n')
    assert not report.ok
    assert ("schema", "churned") in keys(report)


def test_a_file_without_any_contract_column_still_counts_its_rows() -> None:
    report = validate_csv(CONTRACT, b"foo,bar\n1,2\n3,4\n")
    assert report.rows == 2
    assert keys(report) == {("schema", name) for name in [*HEADER, "foo", "bar"]} | {("quality", None)}


@pytest.mark.parametrize("value", ["True", "99999999999999999999"])
def test_columns_pandas_types_oddly_are_still_checked_as_numbers(value: str) -> None:
    rows = [list(r) for r in CLEAN]
    for row in rows:
        row[0] = value
    issue = validate_csv(CONTRACT, csv(rows)).issues[0]
    assert (issue.column, issue.row_count) == ("age", 6)
    assert issue.check == ("types" if value == "True" else "ranges")


def test_numeric_looking_categories_and_classes_are_compared_as_text() -> None:
    contract = load_contract(
        """
name: digits
task: classification
target: label
target_values: ["0", "1"]
quality: {min_rows: 2}
features:
  - {name: bucket, type: category, values: ["1", "2", "10"]}
"""
    )
    assert validate_csv(contract, b"bucket,label\n1,0\n10,1\n 2 ,1\n").ok
    report = validate_csv(contract, b"bucket,label\n1,0\n1.0,1\n2,2\n")
    assert only(report, "categories", "bucket").lines == [3]
    assert only(report, "categories", "label").lines == [4]


# --- line numbers ------------------------------------------------------------------------------------------------


def test_lines_account_for_blank_lines_crlf_bom_and_quoted_newlines() -> None:
    rows = [list(r) for r in CLEAN]
    rows[1][2] = '"team"'
    rows[2][2] = '"basic\nplus"'  # a bad category spanning lines 5-6
    rows[4][0] = "old"
    text = csv(rows, newline="\r\n").replace(b"67,12000", b"\r\n   \r\n67,12000")
    body = b"\xef\xbb\xbf" + text
    report = validate_csv(CONTRACT, body)
    assert report.columns[0] == "age"
    assert keys(report) == {("categories", "plan"), ("types", "age")}
    # header 1, rows at 2, 3, 4-5 (quoted newline), blank 6-7, then 8, 9, 10
    assert only(report, "categories", "plan").lines == [4]
    assert only(report, "types", "age").rows == [4]
    assert only(report, "types", "age").lines == [9]


def test_escaped_quotes_do_not_confuse_line_numbers() -> None:
    rows = [list(r) for r in CLEAN]
    rows[0][2] = '"say ""hi"",\nthere"'
    rows[3][0] = "x"
    report = validate_csv(CONTRACT, csv(rows))
    assert only(report, "categories", "plan").lines == [2]
    assert only(report, "types", "age").lines == [6]


def test_leading_blank_lines_and_a_stray_quote_keep_line_numbers_right() -> None:
    rows = with_cell(0, "plan", 'pro"x')  # literal to pandas: a quote inside an unquoted value
    rows[2][0] = "young"
    body = b"\n\n" + csv(rows)
    report = validate_csv(CONTRACT, body)
    assert keys(report) == {("categories", "plan"), ("types", "age")}
    assert only(report, "categories", "plan").lines == [4]
    assert only(report, "types", "age").lines == [6]


def test_max_issue_rows_caps_examples_but_not_the_count() -> None:
    rows = [[str(200 + i), "1", "basic", "", "yes" if i % 2 else "no"] for i in range(30)]
    rows[0][3] = "1"
    contract = CONTRACT.model_copy(update={"quality": CONTRACT.quality.model_copy(update={"max_null_fraction": 1.0})})
    issue = only(validate_csv(contract, csv(rows), max_issue_rows=3), "ranges", "age")
    assert (issue.rows, issue.lines, issue.row_count) == ([0, 1, 2], [2, 3, 4], 30)
    assert "30 rows (lines 2, 3, 4, ...)" in issue.describe()


# --- scale -------------------------------------------------------------------------------------------------------


def test_a_large_file_with_one_bad_row_is_fast_and_points_at_that_row() -> None:
    n, bad = 50_000, 31_337
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n).astype(str),
            "income": np.round(rng.uniform(0, 1e5, n), 2).astype(str),
            "plan": rng.choice(["basic", "pro", "team"], n),
            "score": rng.normal(size=n).round(4).astype(str),
            "churned": rng.choice(["yes", "no"], n),
        }
    )
    frame.loc[bad, "income"] = "12k"
    body = frame.to_csv(index=False).encode()
    report = validate_csv(CONTRACT, body)
    assert report.rows == n
    assert [(i.check, i.column, i.rows, i.lines, i.row_count) for i in report.issues] == [
        ("types", "income", [bad], [bad + 2], 1)
    ]


# --- distribution against the previous version -------------------------------------------------------------------


def _population(n: int, seed: int, income_mean: float = 50_000.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n).astype(str),
            "income": np.round(np.abs(rng.normal(income_mean, 10_000, n)), 2).astype(str),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2]),
            "score": rng.normal(size=n).round(4).astype(str),
            "churned": rng.choice(["yes", "no"], n),
        }
    )


def _profile_of(contract: DatasetContract, frame: pd.DataFrame) -> dict[str, Any]:
    validated = validate(contract, BytesSource("previous.csv", frame.to_csv(index=False).encode()))
    assert validated.profile is not None
    return validated.profile


def test_distribution_shift_against_the_previous_version_is_reported_per_feature() -> None:
    contract = CONTRACT.model_copy(update={"quality": CONTRACT.quality.model_copy(update={"max_psi": 0.25})})
    previous = _profile_of(contract, _population(5_000, seed=1))

    same = validate_csv(contract, _population(4_000, seed=2).to_csv(index=False).encode(), previous_profile=previous)
    assert same.ok, same.summary()

    shifted = validate_csv(
        contract, _population(4_000, seed=3, income_mean=80_000).to_csv(index=False).encode(), previous_profile=previous
    )
    issue = only(shifted, "distribution", "income")
    assert keys(shifted) == {("distribution", "income")}
    assert "max_psi 0.25" in issue.message
    assert issue.row_count == 0

    without_limit = validate_csv(
        CONTRACT, _population(4_000, seed=3, income_mean=80_000).to_csv(index=False).encode(), previous_profile=previous
    )
    assert without_limit.ok
