"""Who is calling: an end user of one business, or an internal service with scopes."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EndUser:
    subject: str
    business_id: str


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    scopes: frozenset[str]
