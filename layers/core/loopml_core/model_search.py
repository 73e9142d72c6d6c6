"""`loopml models search --filter`: MLflow's filter words over registered models, and the page tokens of its results.

A filter is clauses joined by `AND` (any case), each one of:

    name = 'churn'            name != 'churn'            name LIKE 'churn-%'         name ILIKE '%CHURN%'
    tag.team = 'risk'         tag.team != 'risk'         tag.team LIKE 'ri%'         tag."cost center" = '42'
    description LIKE '%retention%'

`LIKE` takes `%` (any run of characters) and `_` (one character); `ILIKE` ignores case. A quote inside a value is
doubled (`'it''s'`). A model without the tag does not match any clause about it (`!=` included), as in MLflow.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loopml_core.models import RegisteredModel

MAX_RESULTS = 1000
_CLAUSE = re.compile(
    r"""\s*(?P<field>name|description|tag\.(?:"(?P<quoted>[^"]+)"|`(?P<ticked>[^`]+)`|(?P<bare>[\w.\-/]+)))"""
    r"""\s*(?P<op>!=|=|\bNOT\s+LIKE\b|\bLIKE\b|\bILIKE\b)\s*'(?P<value>(?:[^']|'')*)'\s*""",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)


class FilterError(ValueError):
    """A filter this search cannot read; the message shows what it expected."""


@dataclass(frozen=True)
class Clause:
    field: str  # "name", "description" or "tag"
    tag: str | None
    op: str  # "=", "!=", "LIKE", "NOT LIKE", "ILIKE"
    value: str

    def matches(self, model: RegisteredModel) -> bool:
        if self.field == "tag":
            assert self.tag is not None
            if self.tag not in model.tags:
                return False
            subject = model.tags[self.tag]
        else:
            subject = model.name if self.field == "name" else model.description
        if self.op == "=":
            return subject == self.value
        if self.op == "!=":
            return subject != self.value
        pattern = _like(self.value, ignore_case=self.op == "ILIKE")
        found = pattern.fullmatch(subject) is not None
        return not found if self.op == "NOT LIKE" else found


def parse_filter(text: str | None) -> list[Clause]:
    """The clauses of `text` (none for an empty filter); raises FilterError naming the part it could not read."""
    if not text or not text.strip():
        return []
    clauses = []
    for part in _AND.split(text.strip()):
        matched = _CLAUSE.fullmatch(part)
        if matched is None:
            raise FilterError(
                f"cannot read {part.strip()!r}: expected name|description|tag.<key> followed by =, !=, LIKE, "
                "NOT LIKE or ILIKE and a value in single quotes, e.g. tag.team = 'risk'"
            )
        field = matched["field"].lower()
        tag = matched["quoted"] or matched["ticked"] or matched["bare"]
        clauses.append(
            Clause(
                field="tag" if field.startswith("tag.") else field,
                tag=tag,
                op=" ".join(matched["op"].upper().split()),
                value=matched["value"].replace("''", "'"),
            )
        )
    return clauses


def _like(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


@dataclass(frozen=True)
class Page:
    models: list[RegisteredModel]
    next_page_token: str | None  # pass it back for the next page; None on the last one


def search(
    models: Sequence[RegisteredModel], filter_text: str | None, max_results: int = 100, page_token: str | None = None
) -> Page:
    """The models matching the filter, in name order, `max_results` at a time from where `page_token` left off."""
    if not 1 <= max_results <= MAX_RESULTS:
        raise FilterError(f"max results must be between 1 and {MAX_RESULTS}, not {max_results}")
    clauses = parse_filter(filter_text)
    after = _decode(page_token) if page_token else None
    matching: Callable[[RegisteredModel], bool] = lambda m: all(c.matches(m) for c in clauses)  # noqa: E731
    ordered = sorted((m for m in models if (after is None or m.name > after) and matching(m)), key=lambda m: m.name)
    page = ordered[:max_results]
    more = len(ordered) > max_results
    return Page(page, _encode(page[-1].name) if more and page else None)


def _encode(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode(token: str) -> str:
    try:
        return base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError) as error:
        raise FilterError(f"{token!r} is not a page token this search gave") from error
