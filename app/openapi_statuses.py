"""Declare, on every operation, the statuses that the layers around the endpoints answer.

The endpoints declare their own errors (`error_responses`); these come from elsewhere and apply to many:
the database being unavailable (503), a body too large (413) or unreadable (400), an Idempotency-Key in use or
reused (409, 422), a rate limit (429, declared by the routers that apply one). A generated client, and the
fuzzer in the tests, then see every status the service can answer.
"""

from typing import Any

from fastapi import FastAPI

from app.idempotency.route import IdempotentRoute

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
}
_BODY_METHODS = ("post", "put", "patch")
_NO_DATABASE = ("/healthz",)  # answers without touching the database


def install(app: FastAPI) -> None:
    """Make `app.openapi()` add the common statuses to the document FastAPI generates."""

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _add_common_statuses(generate(), _idempotent_operations(app))  # generate() keeps what it made
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _idempotent_operations(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, IdempotentRoute)
        for method in route.methods or ()
        if method in ("POST", "PATCH")
    }


def _add_common_statuses(document: dict[str, Any], idempotent: set[tuple[str, str]]) -> None:
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if path not in _NO_DATABASE:
                _declare(
                    responses, "503", "`database_unavailable` (or Codat unavailable): retry after Retry-After"
                )
            if method in _BODY_METHODS:
                _declare(responses, "413", "`payload_too_large`: the body is over the size limit")
                _declare(responses, "400", "`http_error`: the body could not be read")
            if (path, method) in idempotent:
                _declare(responses, "409", "`idempotency_key_in_flight`: the first request is still running")
                _declare(responses, "422", "`idempotency_key_reused`: the key came with another body")
            for status in ("429", "503"):
                if status in responses:
                    responses[status].setdefault("headers", _RETRY_AFTER)


def _declare(responses: dict[str, Any], status: str, description: str) -> None:
    entry = responses.setdefault(status, {"description": "", **_ERROR})
    entry["description"] = ", ".join(filter(None, [entry.get("description"), description]))
