"""Which rows of a batch the model may score: each feature cell checked against the contract, vectorized.

The rules are validation's (`loopml_core.validation.columns`, whose number parsing is reused) applied per row
instead of per file, and serving's where serving is stricter: a number must be finite and fit the model's float32
input, a value outside a feature's min/max is refused unless the contract's `serving.out_of_range` is `accept`, a
category must be one of the contract's values, and a null is accepted only in a nullable feature (the model's
graph imputes it). A row with any cell at fault is not scored; every fault is counted and shown by example.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml_core.contract import DatasetContract, Feature, OutOfRange
from loopml_core.validation.columns import Hits, Part, check_numbers, column_plan, distinct_values, hits_of

FLOAT32_MAX = float(np.finfo(np.float32).max)  # a larger number would reach the model as infinity
MAX_ISSUE_ROWS = 100  # example rows kept per issue; counts are always complete
DISTINCT_KEPT = 50  # distinct offending values kept per issue

# kind of fault -> the report's check
CHECKS: dict[str, str] = {
    "ragged": "parse",
    "not_number": "types",
    "fractional": "types",
    "non_finite": "ranges",
    "below": "ranges",
    "above": "ranges",
    "overflow": "ranges",
    "outside": "categories",
    "null": "nulls",
}


@dataclass
class CheckedRows:
    """The rows of one segment or record batch: which are invalid, why, and the model's inputs."""

    invalid: np.ndarray
    faults: dict[tuple[str, str], Hits] = field(default_factory=dict)  # (column, kind) -> rows (local), values
    feeds: dict[str, np.ndarray] = field(default_factory=dict)  # one column per feature, as the ONNX graph takes it


def check_rows(contract: DatasetContract, columns: Mapping[str, Any], rows: int) -> CheckedRows:
    """Check every feature column (Arrow arrays of `rows` cells, text or typed) and build the model's feeds."""
    checked = CheckedRows(invalid=np.zeros(rows, dtype=bool))
    accept = contract.serving.out_of_range is OutOfRange.ACCEPT
    for feature in contract.features:
        array = columns[feature.name]
        if feature.is_numeric:
            null, feed = _check_number(contract, feature, array, accept, checked)
        else:
            null, feed = _check_category(feature, array, checked)
        if not feature.nullable and null.any():
            checked.faults[feature.name, "null"] = hits_of(null, MAX_ISSUE_ROWS)
            checked.invalid |= null
        checked.feeds[feature.name] = feed
    return checked


def _check_number(
    contract: DatasetContract, feature: Feature, array: Any, accept: bool, checked: CheckedRows
) -> tuple[np.ndarray, np.ndarray]:
    part = Part()
    null, values = check_numbers(MAX_ISSUE_ROWS, part, column_plan(contract, feature.name, feature.name), array)
    for kind in ("not_number", "fractional", "non_finite"):
        if (feature.name, kind) in part.findings:
            checked.faults[feature.name, kind] = part.findings[feature.name, kind]
    invalid = np.isnan(values) & ~null  # check_numbers leaves NaN where a cell is not a usable number
    finite = np.isfinite(values)
    if not accept:
        for kind, bound in (("below", feature.min), ("above", feature.max)):
            if bound is None:
                continue
            outside = finite & (values < bound if kind == "below" else values > bound)
            if outside.any():
                checked.faults[feature.name, kind] = part.findings[feature.name, kind]
                invalid |= outside
    overflow = finite & (np.abs(values) > FLOAT32_MAX)
    if overflow.any():
        checked.faults[feature.name, "overflow"] = hits_of(
            overflow, MAX_ISSUE_ROWS, lambda rows: distinct_values(values[rows[: DISTINCT_KEPT * 4]].tolist())
        )
        invalid |= overflow
    checked.invalid |= invalid
    with np.errstate(over="ignore"):  # rows beyond float32 are refused above; they are never scored
        return null, values.astype(np.float32)  # NaN where null: a nullable feature's imputer fills it


def _check_category(feature: Feature, array: Any, checked: CheckedRows) -> tuple[np.ndarray, np.ndarray]:
    from loopml_core.arrow_arrays import dictionary_codes

    words, codes = dictionary_codes(array)
    allowed = set(feature.values or ())
    # One slot per dictionary word and a last one for null, which code -1 reaches by numpy's negative indexing.
    blank = np.array([word == "" for word in words] + [True])
    known = np.array([word in allowed for word in words] + [False])
    null = blank[codes]
    outside = ~null & ~known[codes]
    if outside.any():
        distinct, first_seen = np.unique(codes[outside], return_index=True)
        in_order = distinct[np.argsort(first_seen)]
        checked.faults[feature.name, "outside"] = Hits(
            count=int(outside.sum()),
            rows=np.flatnonzero(outside)[:MAX_ISSUE_ROWS],
            values=distinct_values([words[i] for i in in_order[: DISTINCT_KEPT + 1]]),
            more_values=len(in_order) > DISTINCT_KEPT,
        )
        checked.invalid |= outside
    feed = np.array([*words, ""], dtype=object)[codes]  # a null category is "", which the encoder ignores
    return null, feed
