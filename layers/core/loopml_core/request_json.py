"""Request bodies read as strict JSON: what Python's `json` accepts but a client cannot have meant is refused.

Bodies are parsed with orjson, which already refuses most of it: `NaN` and `Infinity`, numbers that overflow a
float64 (`1e400`, an integer of 400 digits), nesting deeper than 1024, invalid UTF-8 and lone surrogates. It reads
an integer beyond 64 bits as the nearest float, as a float64 would hold it anyway.

Only a body orjson refuses is read a second time, by Python's `json` with hooks that name the fault the way the API
documents it ("NaN is not a JSON number", "an integer of 5000 digits is beyond the range of a float64", "the body is
nested too deeply", ...). A body that second reader would take, orjson's refusal stands: the error is always a
`JSONDecodeError`, which the API answers with a 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

MAX_INT_DIGITS = 309  # past this an integer does not fit a float64, whatever its digits


def _refuse(message: str) -> json.JSONDecodeError:
    return json.JSONDecodeError(message, "", 0)


def _constant(name: str) -> float:
    raise _refuse(f"{name} is not a JSON number; send a finite number or null")


def _integer(text: str) -> float | int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _refuse(f"an integer of {len(text.lstrip('-'))} digits is beyond the range of a float64")
    value = int(text)
    if not math.isfinite(float(value)):
        raise _refuse("an integer beyond the range of a float64")
    return value


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _refuse(f"the number {text[:40]} overflows a float64")
    return value


def _diagnose(text: str | bytes, refusal: orjson.JSONDecodeError) -> json.JSONDecodeError:
    """Why the body was refused, in the words of the API's documented errors where one applies."""
    try:
        json.loads(text, parse_constant=_constant, parse_int=_integer, parse_float=_number)
    except RecursionError:
        return _refuse("the body is nested too deeply")
    except json.JSONDecodeError as error:
        return error
    except UnicodeDecodeError as error:
        return _refuse(f"byte {error.start} cannot be decoded as UTF-8")
    return refusal  # orjson is the stricter reader (a lone surrogate, a byte order mark): its word stands


def strict_json(text: str | bytes) -> Any:
    """Parse a request body; raise JSONDecodeError for anything a client cannot have meant."""
    try:
        # Bytes parse faster than a str, which orjson would first have to check as UTF-8 through the str API.
        return orjson.loads(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    except orjson.JSONDecodeError as refusal:
        raise _diagnose(text, refusal) from None
