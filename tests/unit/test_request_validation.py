"""Prediction requests are checked against the contract; every fault names the record and field."""

from __future__ import annotations

import pytest

from loopml_core.contract import OutOfRange, load_contract
from loopml_core.errors import InvalidRequestError
from loopml_core.logic.inference import validate_records

CONTRACT = load_contract("""
name: churn
task: classification
target: churned
features:
  - {name: tenure_months, type: int, min: 0}
  - {name: monthly_charges, type: float}
  - {name: plan, type: category, values: [basic, pro]}
""")
GOOD = {"tenure_months": 3, "monthly_charges": 70.5, "plan": "pro"}


def _problems(records, max_records=10):
    with pytest.raises(InvalidRequestError) as caught:
        validate_records(CONTRACT, records, max_records)
    return caught.value, [(p.record, p.field, p.message) for p in caught.value.details]


def test_valid_records_pass_through():
    assert validate_records(CONTRACT, [GOOD, {**GOOD, "monthly_charges": 3}], 10) == [
        GOOD,
        {**GOOD, "monthly_charges": 3},
    ]


@pytest.mark.parametrize(
    ("record", "field", "fragment"),
    [
        ({k: v for k, v in GOOD.items() if k != "plan"}, "plan", "is required"),
        ({**GOOD, "coupon": "x"}, "coupon", "is not a feature"),
        ({**GOOD, "tenure_months": "3"}, "tenure_months", "must be a number"),
        ({**GOOD, "tenure_months": 2.5}, "tenure_months", "must be an integer"),
        ({**GOOD, "tenure_months": True}, "tenure_months", "must be a number"),
        ({**GOOD, "monthly_charges": None}, "monthly_charges", "must not be null"),
        ({**GOOD, "monthly_charges": float("nan")}, "monthly_charges", "finite"),
        ({**GOOD, "monthly_charges": float("inf")}, "monthly_charges", "finite"),
        ({**GOOD, "plan": "gold"}, "plan", "'gold' is not one of"),
        ({**GOOD, "plan": 3}, "plan", "must be a string"),
    ],
)
def test_each_fault_names_record_and_field(record, field, fragment):
    error, problems = _problems([GOOD, record])
    assert error.status_code == 422
    assert len(problems) == 1
    assert problems[0][0] == 1 and problems[0][1] == field and fragment in problems[0][2]


def test_every_fault_is_reported_not_only_the_first():
    _, problems = _problems([{"plan": "gold"}, "not an object"])
    assert {(r, f) for r, f, _ in problems} == {(0, "tenure_months"), (0, "monthly_charges"), (0, "plan"), (1, None)}


def test_empty_oversized_and_non_list_records():
    assert _problems([])[0].status_code == 422
    assert _problems([GOOD] * 11)[0].status_code == 413
    assert _problems({"a": 1})[1][0][1] == "records"


def test_out_of_range_values_are_refused_unless_the_contract_accepts_them():
    negative = {**GOOD, "tenure_months": -3}
    _, problems = _problems([negative])
    assert problems == [(0, "tenure_months", "-3 is below the contract's minimum 0")]
    accepting = CONTRACT.model_copy(
        update={"serving": CONTRACT.serving.model_copy(update={"out_of_range": OutOfRange.ACCEPT})}
    )
    assert validate_records(accepting, [negative], 10) == [negative]


@pytest.mark.parametrize("value", [1e39, -4e38, 10**400])
def test_a_number_the_model_cannot_take_is_refused(value):
    _, problems = _problems([{**GOOD, "monthly_charges": value}])
    [(record, field, message)] = problems
    assert (record, field) == (0, "monthly_charges") and ("float32" in message or "finite" in message)
