"""One error shape for every error the callers get.

``{"error": "<stable_code>", "detail": "<sentence>", "correlationId": "<id>", "fields": [...]}``; ``fields``
appears only on validation errors, each naming the field and the reason.
"""

import contextvars
import logging
import random
from typing import Any, ClassVar

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

correlation_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")


class FieldError(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    error: str
    detail: str
    correlationId: str  # noqa: N815 - wire name
    fields: list[FieldError] | None = None


class AppError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self, detail: str, *, fields: list[FieldError] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields
        self.headers = headers or {}


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class InvalidInput(AppError):
    status_code = 422
    code = "validation_error"

    @classmethod
    def for_field(cls, field: str, reason: str) -> "InvalidInput":
        return cls(f"{field}: {reason}", fields=[FieldError(field=field, reason=reason)])


class UpstreamUnavailable(AppError):
    """Codat failed in a way that a retry may fix; nothing half-done is lost."""

    status_code = 503
    code = "upstream_unavailable"

    def __init__(self, detail: str, *, retry_after_seconds: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


def error_response(
    status_code: int,
    code: str,
    detail: str,
    *,
    fields: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=code, detail=detail, correlationId=correlation_id_var.get(), fields=fields)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status_code, headers=headers)


def error_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries declaring our error shape and its codes."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        entry = out.setdefault(err.status_code, {"model": ErrorBody, "description": ""})
        entry["description"] = ", ".join(filter(None, [entry["description"], f"`{err.code}`"]))
    return out


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.detail, fields=exc.fields, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [FieldError(field=_location(e["loc"]), reason=e["msg"]) for e in exc.errors()]
        detail = "; ".join(f"{f.field}: {f.reason}" for f in fields)
        return error_response(422, InvalidInput.code, detail, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Requests' own errors are answered by the request-context middleware; this is for the rest.
        return unexpected_error_response(exc)


# What a database that is down, restarting or failing over raises (asyncpg's own errors arrive wrapped).
_DATABASE_UNAVAILABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pool connection in time
    ConnectionError,
)
DATABASE_RETRY_AFTER_SECONDS = 2


def database_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _DATABASE_UNAVAILABLE)


def unexpected_error_response(exc: Exception) -> JSONResponse:
    """A 503 with Retry-After when the database is unavailable (a retry will do), else a 500; logged either
    way (the log formatter scrubs the exception's text)."""
    if database_unavailable(exc):
        log.warning("database unavailable", exc_info=exc)
        return error_response(
            503,
            "database_unavailable",
            "The service's database is unavailable; retry shortly.",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, AppError.code, "Something went wrong on our side; it has been logged.")


def new_correlation_id() -> str:
    # 128 random bits in uuid4's hex form. Not uuid4 itself: its os.urandom is a system call on every request
    # (4 % of a cached read's CPU); an id to find a request by must be unique, not unpredictable.
    return f"{random.getrandbits(128):032x}"
