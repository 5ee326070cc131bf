"""How `serve` and `dev` run uvicorn: our JSON logging for its loggers, keep-alive and header timeouts.

uvicorn has no timeout for a request's headers: a client that opens a connection and sends its headers a byte
at a time holds it for ever (300 such connections held the service for 40 s in a probe). HeaderTimeoutProtocol
closes a connection that has not completed a request's headers in time, from the moment it opens and again
after each response (between keep-alive requests).
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings, get_settings
from app.observability import uvicorn_log_config


class HeaderTimeoutProtocol(HttpToolsProtocol):
    _header_deadline: asyncio.TimerHandle | None = None

    def header_timeout_seconds(self) -> float:
        # Read in the worker process (uvicorn spawns its workers and imports this class anew in each).
        return get_settings().http.header_timeout_seconds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_seconds(), self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "log_config": uvicorn_log_config(settings.log_level),
        "http": HeaderTimeoutProtocol,
        "timeout_keep_alive": settings.http.keep_alive_seconds,
        "timeout_graceful_shutdown": int(settings.ops.shutdown_grace_seconds),
    }
