"""Request bodies read as strict JSON: what Python's `json` accepts but a client cannot have meant is refused.

`json.loads` takes `NaN` and `Infinity`, integers of any length (and raises an unrelated ValueError past 4300
digits), numbers that overflow to infinity, and recurses until the interpreter's stack gives out. Each of those
would reach the model or crash the function; here each is a `JSONDecodeError` saying what was wrong, which the API
answers with a 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

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


def strict_json(text: str | bytes) -> Any:
    """Parse a request body; raise JSONDecodeError for anything a client cannot have meant."""
    try:
        return json.loads(text, parse_constant=_constant, parse_int=_integer, parse_float=_number)
    except RecursionError:
        raise _refuse("the body is nested too deeply") from None
