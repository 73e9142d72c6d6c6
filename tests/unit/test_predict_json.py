"""Request bodies are parsed with orjson; what no client can have meant is refused with the documented message."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml_core.request_json import strict_json


def _with(raw: str) -> str:
    return '{"records": [{"tenure_months": ' + raw + ', "plan": "pro"}]}'


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_with("NaN"), "NaN is not a JSON number; send a finite number or null"),
        (_with("-Infinity"), "-Infinity is not a JSON number"),
        (_with("Infinity"), "Infinity is not a JSON number"),
        (_with("1e400"), "the number 1e400 overflows a float64"),
        (_with("-1e400"), "the number -1e400 overflows a float64"),
        (_with("1" + "0" * 400), "an integer of 401 digits is beyond the range of a float64"),
        (_with("9" * 5000), "an integer of 5000 digits is beyond the range of a float64"),
        (_with("1" + "0" * 308 + "9"), "an integer of 310 digits"),
        ('{"records": ' + "[" * 100_000 + "]" * 100_000 + "}", "the body is nested too deeply"),
        ("{not json", "Expecting property name enclosed in double quotes"),
        ('{"records": []} trailing', "Extra data"),
        ("", "Expecting value"),
    ],
)
def test_what_no_client_meant_is_refused_with_the_documented_message(body, says):
    for given_as in (body, body.encode()):
        with pytest.raises(json.JSONDecodeError) as refused:
            strict_json(given_as)
        assert says in refused.value.msg


def test_integers_a_float64_holds_but_64_bits_do_not_are_read_as_floats():
    assert strict_json("[100000000000000000000, 18446744073709551615, -9223372036854775809]") == [
        1e20,
        18446744073709551615,
        -9.223372036854776e18,
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'{"records": [{"plan": "\\xff\\xfe"}]}'.replace(b"\\xff\\xfe", b"\xff\xfe"),  # not UTF-8
        b'["\\ud800"]',  # an escaped lone surrogate: not a character
        '["\ud800"]',  # a lone surrogate in a str body
        b"\xef\xbb\xbf[1]",  # a byte order mark
    ],
)
def test_text_that_is_not_utf8_is_refused_as_json_not_crashed_on(body):
    with pytest.raises(json.JSONDecodeError):
        strict_json(body)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_any_json_a_client_can_mean_reads_as_pythons_json_reads_it(value):
    text = json.dumps(value)
    assert strict_json(text) == json.loads(text)
    assert strict_json(text.encode()) == json.loads(text)
