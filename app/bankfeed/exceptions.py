"""Onboarding errors the apps can act on, and the one place Codat's failures become them."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from app.codat.exceptions import CodatConflict, CodatRejected, CodatUnavailable
from app.errors import AppError, Conflict, NotFound, UpstreamUnavailable

log = logging.getLogger(__name__)


class BusinessNotFound(NotFound):
    code = "business_not_found"

    def __init__(self, detail: str = "No business is registered under this id.") -> None:
        super().__init__(detail)


class AccountNotFound(NotFound):
    code = "account_not_found"


class NotConnected(Conflict):
    code = "not_connected"


class ConnectionGone(Exception):
    """Codat no longer knows our connection (deleted there): it has been retired here as history."""


class UpstreamRejected(AppError):
    """Codat refused a request we believed valid: a bug or a drift on one side, not the user's doing."""

    status_code = 502
    code = "upstream_rejected"


@contextmanager
def translate_codat_errors(operation: str) -> Iterator[None]:
    """Turn Codat's failures into our error shape; Codat's own text goes to the log, never to the caller."""
    try:
        yield
    except CodatConflict as exc:
        # Codat answers 409 while a request with the same idempotency key is still in flight elsewhere.
        log.info(
            "codat.in_flight", extra={"operation": operation, "codat_correlation_id": exc.correlation_id}
        )
        raise UpstreamUnavailable(
            "The same step is in progress in another request; retry shortly.", retry_after_seconds=1
        ) from exc
    except CodatUnavailable as exc:
        log.warning(
            "codat.unavailable",
            extra={"operation": operation, "reason": exc.reason, "codat_correlation_id": exc.correlation_id},
        )
        raise UpstreamUnavailable(
            "Codat is not answering right now; nothing was lost, retry the same request.",
            retry_after_seconds=max(1, exc.retry_after_seconds),
        ) from exc
    except CodatRejected as exc:
        log.error(
            "codat.rejected",
            extra={
                "operation": operation,
                "status": exc.status_code,
                "codat_error": exc.error,
                "codat_validation": exc.validation_errors,
                "codat_correlation_id": exc.correlation_id,
            },
        )
        raise UpstreamRejected(
            f"Codat refused the {operation} step; it has been logged for the team."
        ) from exc
