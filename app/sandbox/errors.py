"""Codat's ErrorMessage, the one error shape every sandbox response uses."""

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.sandbox.responses import JSONResponse

log = logging.getLogger(__name__)

# Codat's own texts for its shared responses (Codat-Bank-Feeds.json components.responses examples).
STANDARD_MESSAGES = {
    400: "Error processing request - not valid.",
    401: "Unauthorized",
    403: "You are using an outdated API key or a key not associated with that resource.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "Conflict.",
    422: "Unprocessable entity.",
    429: "You have made too many requests in a given amount of time; please retry later.",
    500: "There is a problem with our server. Please try again later.",
    503: "The Codat API is temporarily offline for maintenance. Please try again later.",
    504: "The request timed out. Please try again later.",
}

_RETRYABLE = {409, 429, 500, 502, 503, 504}
_NOT_RETRYABLE = {400, 422}


@dataclass(frozen=True)
class ValidationItem:
    item_id: str | None
    message: str
    validator_name: str

    def to_json(self) -> dict[str, str | None]:
        return {"itemId": self.item_id, "message": self.message, "validatorName": self.validator_name}


class CodatError(Exception):
    def __init__(
        self,
        status_code: int,
        error: str | None = None,
        *,
        errors: Iterable[ValidationItem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.error = error or STANDARD_MESSAGES.get(status_code, "Error.")
        self.errors = list(errors)
        self.headers = headers or {}
        super().__init__(self.error)

    def body(self) -> dict[str, Any]:
        validation = {"errors": [e.to_json() for e in self.errors], "warnings": []} if self.errors else None
        return {
            "statusCode": self.status_code,
            "service": "PublicApi",
            "error": self.error,
            "correlationId": uuid.uuid4().hex,
            "validation": validation,
            "canBeRetried": _can_be_retried(self.status_code),
            "detailedErrorCode": 0,
        }

    def to_response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


def _can_be_retried(status_code: int) -> str:
    # Codat types this as a string; its examples only ever say "Unknown".
    if status_code in _RETRYABLE:
        return "True"
    return "False" if status_code in _NOT_RETRYABLE else "Unknown"


def invalid(message: str, *, item_id: str | None, validator: str, status_code: int = 400) -> CodatError:
    """A request refused for one reason, named in ``validation.errors``."""
    item = ValidationItem(item_id=item_id, message=message, validator_name=validator)
    return CodatError(status_code, message, errors=[item])


def from_validation_error(exc: ValidationError, *, validator: str, status_code: int = 400) -> CodatError:
    items = [
        ValidationItem(item_id=_location(e["loc"]), message=e["msg"], validator_name=validator)
        for e in exc.errors()
    ]
    summary = "; ".join(f"{item.item_id or 'body'}: {item.message}" for item in items)
    return CodatError(status_code, summary, errors=items)


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CodatError)
    async def _codat_error(_: Request, exc: CodatError) -> JSONResponse:
        return exc.to_response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return CodatError(exc.status_code, headers=getattr(exc, "headers", None)).to_response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("sandbox bug", exc_info=exc)
        return CodatError(500).to_response()
