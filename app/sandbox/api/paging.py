"""Codat's ``page``/``pageSize`` query parameters and the slice of results they select."""

from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request

from app.sandbox import views
from app.sandbox.errors import invalid

T = TypeVar("T")

MAX_REQUESTED_PAGE_SIZE = 5000
# The response schema caps pageSize at 2000 while the parameter allows 5000; larger pages are served as 2000.
MAX_SERVED_PAGE_SIZE = 2000


@dataclass(frozen=True)
class Paging:
    number: int
    size: int

    @classmethod
    def from_request(cls, request: Request) -> "Paging":
        number = _int_param(request, "page", default=1, low=1, high=None)
        size = _int_param(request, "pageSize", default=100, low=1, high=MAX_REQUESTED_PAGE_SIZE)
        return cls(number, min(size, MAX_SERVED_PAGE_SIZE))

    def envelope(self, items: list[T], render: Any, path: str) -> dict[str, Any]:
        start = (self.number - 1) * self.size
        results = [render(item) for item in items[start : start + self.size]]
        return views.page(results, path=path, number=self.number, size=self.size, total=len(items))


def _int_param(request: Request, name: str, *, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    bounds = f"between {low} and {high}" if high else f"at least {low}"
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise invalid(f"{name} must be an integer {bounds}.", item_id=name, validator="PagingValidator")
    return value
