"""Logs (one JSON object a line, secrets scrubbed), correlation ids and Prometheus metrics."""

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import correlation_id_var, new_correlation_id, unexpected_error_response
from app.redaction import scrub

# Answers a request before routing, or returns False to let the app answer it.
FastAnswer = Callable[[Scope, Receive, Send], Awaitable[bool]]

log = logging.getLogger(__name__)
REQUESTS = Counter("bff_http_requests_total", "HTTP requests served", ["method", "route", "status"])
LATENCY = Histogram("bff_http_request_seconds", "HTTP request latency", ["method", "route"])
access_log = logging.getLogger("app.access")

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line. Defence in depth: code never logs secrets, and should one slip into a field, a
    message or an exception's text, it is redacted here, on the values before they are encoded."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "correlationId": correlation_id_var.get(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(scrub(_plain(entry)), default=str)


def _plain(value: Any) -> Any:
    """JSON-ready values, so that scrub() sees every string (an exception, a URL object) before encoding."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# uvicorn's own loggers ("Exception in ASGI application", access lines) through the same formatter; uvicorn
# applies this at start-up, so `serve` and `dev` pass it as `log_config`.
def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {
            **{
                name: {"handlers": ["json"], "level": level, "propagate": False}
                for name in ("uvicorn", "uvicorn.error")
            },
            # RequestContextMiddleware writes one JSON access line a request; uvicorn's own would be a second.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("app").setLevel(level)
    # These log full URLs or SQL parameters at INFO/DEBUG, and a stored linkUrl carries an OTP.
    for noisy in ("httpx", "httpcore", "aiosqlite", "sqlalchemy.engine", "asyncpg", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # uvicorn's own lines in the same JSON (through the root handler); its access log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


class RequestContextMiddleware:
    """Give every request a correlation id (or keep the caller's), echo it back, and measure the request.

    `fast_answer` may answer a request before routing (main passes app/onboarding/fastpath.py's, which answers
    a `GET /v1/bank-feed` from the view cache); every other request goes on to the app.
    """

    def __init__(self, app: ASGIApp, fast_answer: FastAnswer | None = None) -> None:
        self.app = app
        self.fast_answer = fast_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        correlation_id = incoming if re.fullmatch(r"[A-Za-z0-9._-]{8,64}", incoming) else new_correlation_id()
        token = correlation_id_var.set(correlation_id)
        trace.get_current_span().set_attribute("bff.request_id", correlation_id)  # a no-op when not traced
        started, status, started_response = time.perf_counter(), 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status
            nonlocal started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", correlation_id.encode())]
            await send(message)

        try:
            if self.fast_answer is None or not await self.fast_answer(scope, receive, send_with_id):
                await self.app(scope, receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - answered here, with the request's id, and logged scrubbed
            # Not re-raised: uvicorn would log it again, as a plain-text traceback with no correlation id.
            if started_response:
                log.exception("unhandled error after the response started", exc_info=exc)
                return
            await unexpected_error_response(exc)(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            counter, histogram = _metrics(scope["method"], route, status)
            counter.inc()
            histogram.observe(seconds)
            _log_access(scope, route, status, seconds)
            correlation_id_var.reset(token)


def _log_access(scope: Scope, route: str, status: int, seconds: float) -> None:
    """One line a request: the route template, never the path (an OTP or a token could be in a query)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    business_id = scope.get("state", {}).get("business_id") or scope.get("path_params", {}).get("businessId")
    access_log.info(
        "http.request",
        extra={
            "method": scope["method"],
            "route": route,
            "status": status,
            "durationMs": round(seconds * 1000, 2),
            "businessId": business_id,
        },
    )


_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _metrics(method: str, route: str, status: int) -> tuple[Any, Any]:
    """The labelled counter and histogram of a request; `labels()` each time costs a few microseconds."""
    children = _children.get((method, route, status))
    if children is None:
        children = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route))
        _children[(method, route, status)] = children
    return children


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or (
        "/sandbox" if scope["path"].startswith("/sandbox") else "unmatched"
    )
