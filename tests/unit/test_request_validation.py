"""Prediction requests are checked against the contract; every fault names the record and field.

Requests are checked column by column with numpy; only a request that fails is walked record by record to name its
faults. A body as sent is decoded by a decoder made from the contract, and only a body it refuses is read by the
strict reader. Each fast path must always agree with the slow one, which the property tests check on generated
requests.
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopml_core.contract import OutOfRange, load_contract
from loopml_core.errors import InvalidRequestError
from loopml_core.logic.inference import (
    MAX_PROBLEMS,
    JsonRequest,
    RecordValidator,
    record_problems,
    validate_records,
)
from loopml_core.request_json import strict_json

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
NULLABLE = load_contract("""
name: churn
task: classification
target: churned
features:
  - {name: tenure_months, type: int, min: 0, max: 600}
  - {name: discount, type: float, nullable: true}
  - {name: plan, type: category, values: [basic, pro]}
  - {name: region, type: category, values: [north, south], nullable: true}
""")


def _problems(records, max_records=10, contract=CONTRACT):
    with pytest.raises(InvalidRequestError) as caught:
        validate_records(contract, records, max_records)
    return caught.value, [(p.record, p.field, p.message) for p in caught.value.details]


def test_valid_records_become_columns_in_record_order():
    columns = validate_records(CONTRACT, [GOOD, {**GOOD, "monthly_charges": 3}], 10)
    assert columns.count == 2
    assert {name: list(values) for name, values in columns.values.items()} == {
        "tenure_months": [3, 3],
        "monthly_charges": [70.5, 3],
        "plan": ["pro", "pro"],
    }
    assert columns.numbers.dtype == np.float64 and columns.numbers.tolist() == [[3.0, 3.0], [70.5, 3.0]]
    assert columns.categories["plan"].tolist() == ["pro", "pro"]


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
        ({**GOOD, "monthly_charges": [1.0]}, "monthly_charges", "must be a number"),
        ({**GOOD, "plan": "gold"}, "plan", "'gold' is not one of"),
        ({**GOOD, "plan": 3}, "plan", "must be a string"),
        ({**GOOD, "plan": None}, "plan", "must not be null"),
        ({**GOOD, "plan": ["pro"]}, "plan", "must be a string"),
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
    assert validate_records(accepting, [negative], 10).numbers[0].tolist() == [-3.0]


@pytest.mark.parametrize("value", [1e39, -4e38, 10**400])
def test_a_number_the_model_cannot_take_is_refused(value):
    _, problems = _problems([{**GOOD, "monthly_charges": value}])
    [(record, field, message)] = problems
    assert (record, field) == (0, "monthly_charges") and ("float32" in message or "finite" in message)


def test_nullable_features_take_null_and_the_model_gets_nan_or_the_empty_category():
    records = [
        {"tenure_months": 1, "discount": None, "plan": "pro", "region": None},
        {"tenure_months": 2, "discount": 0.5, "plan": "basic", "region": "north"},
    ]
    columns = validate_records(NULLABLE, records, 10)
    discount = columns.numbers[1]
    assert math.isnan(discount[0]) and discount[1] == 0.5
    assert columns.categories["region"].tolist() == ["", "north"]
    assert list(columns.values["discount"]) == [None, 0.5]  # capture records what was sent


def test_a_nan_sent_as_a_number_is_refused_even_where_null_is_allowed():
    records = [{"tenure_months": 1, "discount": float("nan"), "plan": "pro", "region": "north"}]
    _, problems = _problems(records, contract=NULLABLE)
    assert problems == [(0, "discount", "must be a finite number")]


def test_a_large_request_names_its_one_fault_by_record():
    records = [{**GOOD, "tenure_months": i % 500} for i in range(1000)]
    records[637] = {**GOOD, "tenure_months": 7.5}
    _, problems = _problems(records, max_records=1000)
    assert problems == [(637, "tenure_months", "must be an integer, got 7.5")]


def test_faults_are_capped_in_record_order():
    records = [{**GOOD, "plan": "gold"} for _ in range(200)]
    error, problems = _problems(records, max_records=1000)
    assert len(problems) == MAX_PROBLEMS and [r for r, _, _ in problems] == list(range(MAX_PROBLEMS))
    assert error.message == f"{MAX_PROBLEMS} invalid field(s) in 'records'"


def test_records_in_any_key_order_and_from_a_parsed_body_are_read_by_name():
    body = json.dumps({"records": [GOOD, dict(reversed(list(GOOD.items()))), {**GOOD, "tenure_months": 9}]})
    records = orjson.loads(body)["records"]
    columns = validate_records(CONTRACT, records, 10)
    assert list(columns.values["tenure_months"]) == [3, 3, 9] and list(columns.values["plan"]) == ["pro"] * 3


def test_values_of_python_callers_the_rule_accepts_are_converted_one_by_one():
    records = [{"tenure_months": 4, "monthly_charges": np.float64(2.5), "plan": np.str_("basic")}]  # subclasses
    columns = validate_records(CONTRACT, records, 10)
    assert columns.numbers.tolist() == [[4.0], [2.5]] and columns.categories["plan"].tolist() == ["basic"]


# --- the vectorised checks agree with the record walk on any request ------------------------------------------------

CELLS = st.one_of(
    st.integers(-5, 700),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([None, True, False, "pro", "basic", "north", "gold", "3", 1e39, -1e39, 2.5, 10**30]),
)
RECORD = st.fixed_dictionaries(
    {},
    optional={
        "tenure_months": CELLS,
        "discount": CELLS,
        "plan": CELLS,
        "region": CELLS,
        "extra": st.just(1),
    },
)
VALID = st.fixed_dictionaries(
    {
        "tenure_months": st.integers(0, 600),
        "discount": st.one_of(st.none(), st.floats(-1e6, 1e6)),
        "plan": st.sampled_from(["pro", "basic"]),
        "region": st.sampled_from([None, "north", "south"]),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(VALID, VALID, RECORD, st.just("not a record")), min_size=1, max_size=12),
    st.booleans(),
)
def test_the_vectorised_checks_agree_with_the_record_walk(records, accept_out_of_range):
    contract = NULLABLE
    if accept_out_of_range:
        contract = NULLABLE.model_copy(
            update={"serving": NULLABLE.serving.model_copy(update={"out_of_range": OutOfRange.ACCEPT})}
        )
    expected = record_problems(contract, records)
    try:
        columns = RecordValidator(contract).validate(records, 100)
    except InvalidRequestError as error:
        assert [p.to_dict() for p in error.details] == [p.to_dict() for p in expected]
        assert expected
        return
    assert not expected
    for row, name in enumerate(["tenure_months", "discount"]):
        sent = [record[name] for record in records]
        assert columns.numbers[row].tolist() == pytest.approx([math.nan if v is None else v for v in sent], nan_ok=True)
    assert columns.categories["region"].tolist() == ["" if r["region"] is None else r["region"] for r in records]


# --- a body decoded by the contract's decoder gives what the strict reader and the checks give ---------------------


def _read(body: bytes):
    return strict_json(body)["records"]


def _outcome(validate):
    try:
        columns = validate()
    except (InvalidRequestError, json.JSONDecodeError) as error:
        if isinstance(error, InvalidRequestError):
            return ("refused", error.status_code, [p.to_dict() for p in error.details])
        return ("not JSON", error.msg)
    return (
        "columns",
        {name: [repr(value) for value in values] for name, values in columns.values.items()},  # 3 is not 3.0 here
        columns.numbers.tobytes(),  # NaN for a null compares equal byte for byte
        {name: column.tolist() for name, column in columns.categories.items()},
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(VALID, VALID, RECORD, st.just("not a record")), min_size=0, max_size=12),
    st.sampled_from(["records", "rows"]),
)
def test_a_body_decoded_by_the_contract_decoder_gives_what_reading_it_strictly_gives(records, key):
    validator = RecordValidator(NULLABLE)
    body = json.dumps({key: records}).encode()  # NaN and Infinity are written as such: the reader refuses them

    def read(sent: bytes):  # as the API reads it: a body that is not `{"records": [...]}` is refused (a dict is)
        document = strict_json(sent)
        return document["records"] if key == "records" else document

    fast = _outcome(lambda: validator.validate(JsonRequest(body, read), 10))
    assert fast == _outcome(lambda: validator.validate(read(body), 10))


@pytest.mark.parametrize(
    "body",
    [
        b'{"records": [{"tenure_months": 3, "monthly_charges": 1, "plan": "pro"}]}',
        b'{"records": [{"tenure_months": 3.0, "monthly_charges": 1, "plan": "pro"}]}',  # an integral float
        b'{"records": [{"tenure_months": 100000000000000000000, "monthly_charges": 1, "plan": "pro"}]}',
        b'{"records": [{"monthly_charges": 1.5, "plan": "basic", "tenure_months": 0}], "records": []}',
        b'{"records": [{"tenure_months": 1, "monthly_charges": 1e-400, "plan": "pro"}]}',
    ],
)
def test_edge_bodies_read_alike_by_the_decoder_and_the_strict_reader(body):
    validator = RecordValidator(CONTRACT)
    fast = _outcome(lambda: validator.validate(JsonRequest(body, _read), 10))
    assert fast == _outcome(lambda: validator.validate(_read(body), 10))


def test_the_decoder_reads_a_valid_body_without_the_strict_reader():
    def must_not_read(body: bytes):
        raise AssertionError("a valid body took the slow path")

    body = orjson.dumps({"records": [GOOD, {**GOOD, "plan": "basic", "monthly_charges": 2}] * 50})
    columns = RecordValidator(CONTRACT).validate(JsonRequest(body, must_not_read), 1000)
    assert columns.count == 100 and columns.values["plan"][:2] == ("pro", "basic")
    assert columns.numbers[:, :2].tolist() == [[3.0, 3.0], [70.5, 2.0]]


def test_feature_names_need_not_be_python_identifiers():
    contract = load_contract("""
name: odd
task: regression
target: y
features:
  - {name: "class", type: float}
  - {name: "unit price ($)", type: float, nullable: true}
  - {name: "3d-kind", type: category, values: ["a b", "c"]}
""")
    body = b'{"records": [{"class": 1, "unit price ($)": null, "3d-kind": "a b"}]}'
    columns = RecordValidator(contract).validate(JsonRequest(body, _read), 10)
    assert columns.values == {"class": (1,), "unit price ($)": (None,), "3d-kind": ("a b",)}
