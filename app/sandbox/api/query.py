"""Codat's ``query`` and ``orderBy`` on list operations (docs.codat.io using-the-api/querying and
using-the-api/ordering-results).

``query``: ``field op value`` clauses joined by ``&&`` (and) or ``||`` (or), grouped with ``{`` ``}``; the
operators ``=``, ``!=`` (numbers, strings, dates), ``~`` (contains; strings only), ``>``, ``<``, ``>=``,
``<=`` (numbers and dates only); ``a.b`` reaches a sub-property (tags here), never into an array; under 2,048
characters; no querying on null. ``orderBy``: a field, ``-field`` for descending. Anything else is a 400
naming the parameter, never a silent match-all.

Hand-written: no maintained Python parser of Codat's query language exists, and the grammar is tiny.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from fastapi import Request

from app.sandbox.errors import CodatError, invalid

T = TypeVar("T")
MAX_QUERY_LENGTH = 2048
VALIDATOR = "QueryValidator"


class Kind(Enum):
    string = "string"
    date = "date"


_OPERATORS_BY_KIND = {
    Kind.string: {"=", "!=", "~"},
    Kind.date: {"=", "!=", ">", "<", ">=", "<="},
}
# Longest first, so that ">=" is not read as ">".
_TOKEN = re.compile(r"\s*(&&|\|\||\{|\}|!=|>=|<=|=|~|>|<)")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda held, wanted: held == wanted,
    "!=": lambda held, wanted: held != wanted,
    "~": lambda held, wanted: wanted.lower() in held.lower(),
    ">": lambda held, wanted: held > wanted,
    "<": lambda held, wanted: held < wanted,
    ">=": lambda held, wanted: held >= wanted,
    "<=": lambda held, wanted: held <= wanted,
}


@dataclass(frozen=True)
class Field(Generic[T]):
    kind: Kind
    read: Callable[[T], Any]


# Resolves a field name (``tags.region``) to how to read it, or None when the resource has no such field.
Fields = Callable[[str], Field[T] | None]
Predicate = Callable[[T], bool]


def refused(parameter: str, message: str) -> CodatError:
    return invalid(message, item_id=parameter, validator=VALIDATOR)


def from_request(request: Request, items: list[T], fields: Fields[T]) -> list[T]:
    """The items the request's ``query`` selects, in its ``orderBy`` order (else as stored)."""
    params = request.query_params
    return filter_and_order(items, fields, params.get("query"), params.get("orderBy"))


def filter_and_order(items: list[T], fields: Fields[T], query: str | None, order_by: str | None) -> list[T]:
    if query is not None:
        matches = parse_query(query, fields)
        items = [item for item in items if matches(item)]
    if order_by is not None:
        items = ordered(items, fields, order_by)
    return items


def ordered(items: list[T], fields: Fields[T], order_by: str) -> list[T]:
    name = order_by.strip()
    descending = name.startswith("-")
    field = fields(name.removeprefix("-"))
    if field is None:
        raise refused("orderBy", f"'{name.removeprefix('-')}' is not a field results can be ordered by.")
    present = [item for item in items if field.read(item) is not None]
    missing = [item for item in items if field.read(item) is None]
    return sorted(present, key=field.read, reverse=descending) + missing


def parse_query(query: str, fields: Fields[T]) -> Predicate[T]:
    if len(query) >= MAX_QUERY_LENGTH:
        raise refused("query", f"The query must be under {MAX_QUERY_LENGTH} characters.")
    parser = _Parser(query, fields)
    predicate = parser.disjunction()
    if parser.rest().strip():
        raise refused("query", f"Unexpected '{parser.rest().strip()}' in the query.")
    return predicate


class _Parser(Generic[T]):
    """Recursive descent over ``or := and ('||' and)*``, ``and := atom ('&&' atom)*``,
    ``atom := '{' or '}' | field op value``."""

    def __init__(self, text: str, fields: Fields[T]) -> None:
        self._text = text
        self._at = 0
        self._fields = fields

    def rest(self) -> str:
        return self._text[self._at :]

    def disjunction(self) -> Predicate[T]:
        terms = [self._conjunction()]
        while self._take("||"):
            terms.append(self._conjunction())
        return lambda item: any(term(item) for term in terms)

    def _conjunction(self) -> Predicate[T]:
        terms = [self._atom()]
        while self._take("&&"):
            terms.append(self._atom())
        return lambda item: all(term(item) for term in terms)

    def _atom(self) -> Predicate[T]:
        if self._take("{"):
            inner = self.disjunction()
            if not self._take("}"):
                raise refused("query", "A '{' in the query has no matching '}'.")
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate[T]:
        name = self._until_token().strip()
        operator = self._token()
        if not name or operator not in _COMPARE:
            raise refused("query", "Each clause must be a field, an operator and a value, like `name=Acme`.")
        raw = self._until_token().strip()
        field = self._fields(name)
        if field is None:
            raise refused("query", f"'{name}' is not a field these results can be queried on.")
        if operator not in _OPERATORS_BY_KIND[field.kind]:
            kind = field.kind.value
            raise refused("query", f"The operator '{operator}' does not apply to the {kind} '{name}'.")
        if not raw or raw.lower() == "null":
            raise refused("query", "Querying on null (or on an empty value) is not supported.")
        wanted = _value(field.kind, raw, name)
        compare = _COMPARE[operator]

        def test(item: T) -> bool:
            held = field.read(item)
            return held is not None and compare(held, wanted)

        return test

    def _take(self, token: str) -> bool:
        match = _TOKEN.match(self._text, self._at)
        if match and match.group(1) == token:
            self._at = match.end()
            return True
        return False

    def _token(self) -> str | None:
        match = _TOKEN.match(self._text, self._at)
        if match is None:
            return None
        self._at = match.end()
        return match.group(1)

    def _until_token(self) -> str:
        start = self._at
        while self._at < len(self._text) and not _TOKEN.match(self._text, self._at):
            self._at += 1
        return self._text[start : self._at]


def _value(kind: Kind, raw: str, name: str) -> Any:
    if kind is Kind.string:
        return raw
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise refused("query", f"'{raw}' is not a date for '{name}'.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def top_level(table: dict[str, Field[T]]) -> Fields[T]:
    return table.get
