"""Codat's failures, translated once into two kinds the rest of the service can act on.

``CodatUnavailable``: a retry later may work (network, timeouts, 408, 429, 5xx, open circuit, spent
deadline). ``CodatRejected``: Codat refused the request itself (other 4xx); retrying it unchanged will not
help. Codat's own error text is kept for logs; callers map these to their own error shapes.
"""

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from app.clock import as_utc

DEFAULT_RETRY_AFTER_SECONDS = 5
# Codat's daily quota answers 429 with a Retry-After up to midnight UTC; cap what we pass on.
MAX_RETRY_AFTER_SECONDS = 3600


class UnavailableReason(StrEnum):
    TRANSPORT_ERROR = "transport_error"
    TIMEOUT = "timeout"
    REQUEST_TIMEOUT = "request_timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    REQUEST_IN_PROGRESS = "request_in_progress"
    INVALID_RESPONSE = "invalid_response"
    CIRCUIT_OPEN = "circuit_open"
    DEADLINE_EXCEEDED = "deadline_exceeded"


class CodatError(Exception):
    """Base of every error raised by the Codat adapter."""


class CodatUnavailable(CodatError):
    """Codat could not answer now; the same call may succeed after ``retry_after_seconds``."""

    def __init__(
        self,
        reason: UnavailableReason,
        *,
        retry_after_seconds: int | None = None,
        status_code: int | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(f"Codat unavailable: {reason} (status {status_code})")
        self.reason = reason
        self.retry_after_from_codat = retry_after_seconds is not None
        self.retry_after_seconds = (
            DEFAULT_RETRY_AFTER_SECONDS if retry_after_seconds is None else retry_after_seconds
        )
        self.status_code = status_code
        self.correlation_id = correlation_id


class CodatRejected(CodatError):
    """Codat refused the request (a 4xx other than 408/429); ``error`` is Codat's text, for logs only."""

    def __init__(
        self,
        status_code: int,
        *,
        error: str | None = None,
        correlation_id: str | None = None,
        validation_errors: list[str] | None = None,
        item_ids: list[str] | None = None,
    ) -> None:
        super().__init__(f"Codat rejected the request: {status_code} ({error})")
        self.status_code = status_code
        self.error = error
        self.correlation_id = correlation_id
        self.validation_errors = validation_errors or []
        self.item_ids = item_ids or []


class CodatNotFound(CodatRejected):
    """404: a wrong or deleted company, connection or account id."""


class CodatConflict(CodatRejected):
    """409."""


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class _ValidationItem(_Wire):
    item_id: str | None = None
    message: str | None = None


class _Validation(_Wire):
    errors: list[_ValidationItem] | None = None


class _ErrorBody(_Wire):
    """Codat's ``ErrorMessage``: no field is required, ``canBeRetried`` is a string (ignored here)."""

    error: str | None = None
    correlation_id: str | None = None
    validation: _Validation | None = None

    @classmethod
    def parse(cls, response: httpx.Response) -> "_ErrorBody":
        try:
            return cls.model_validate(response.json())
        except (ValueError, ValidationError):
            return cls()

    @property
    def validation_items(self) -> list[_ValidationItem]:
        return (self.validation and self.validation.errors) or []


def is_transient_status(status_code: int) -> bool:
    return status_code in (408, 429) or status_code >= 500


def error_from_response(response: httpx.Response) -> CodatError:
    """The error for a non-success response, with Codat's error body parsed once."""
    body = _ErrorBody.parse(response)
    status = response.status_code
    if is_transient_status(status):
        return CodatUnavailable(
            _reason_for_status(status),
            retry_after_seconds=retry_after_seconds(response),
            status_code=status,
            correlation_id=body.correlation_id,
        )
    rejected = {404: CodatNotFound, 409: CodatConflict}.get(status, CodatRejected)
    return rejected(
        status,
        error=body.error,
        correlation_id=body.correlation_id,
        validation_errors=[item.message for item in body.validation_items if item.message],
        item_ids=[item.item_id for item in body.validation_items if item.item_id],
    )


def unavailable_from_transport(exc: httpx.TransportError) -> CodatUnavailable:
    timed_out = isinstance(exc, httpx.TimeoutException)
    return CodatUnavailable(UnavailableReason.TIMEOUT if timed_out else UnavailableReason.TRANSPORT_ERROR)


def retry_after_seconds(response: httpx.Response) -> int | None:
    """``Retry-After`` as whole seconds (delta or HTTP date), capped; None when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (as_utc(when) - datetime.now(UTC)).total_seconds()
    return min(max(math.ceil(seconds), 0), MAX_RETRY_AFTER_SECONDS)


def _reason_for_status(status_code: int) -> UnavailableReason:
    if status_code == 408:
        return UnavailableReason.REQUEST_TIMEOUT
    if status_code == 429:
        return UnavailableReason.RATE_LIMITED
    return UnavailableReason.SERVER_ERROR
