"""How `serve` and `dev` run uvicorn: our JSON logging for its loggers, keep-alive and header timeouts, and a
response's head sent with its body.

uvicorn has no timeout for a request's headers: a client that opens a connection and sends its headers a byte
at a time holds it for ever (300 such connections held the service for 40 s in a probe). HttpProtocol closes a
connection that has not completed a request's headers in time: the first request's from the moment the
connection opens, a later one's from its first byte. Between requests a connection is idle, and uvicorn's
keep-alive timeout alone decides when it is closed: a proxy or load balancer in front reuses its idle
connections to us, and one we close while it still trusts it (nginx's upstream keep-alive and an AWS
Application Load Balancer both keep theirs 60 s) meets the next request it sends there with a reset, which the
proxy answers with a 502 unless it can safely retry (never a POST). Hence the long default keep-alive
(`http.keep_alive_seconds`, app/config.py).

Both changes cost a request no timer and no callback: a timer per request (armed as a response completes,
cancelled as the next headers arrive) or a `call_soon` per response cost the bare endpoint ~12% of its
throughput and quadrupled its p99 under wrk (bench/README.md, "Reads at scale", item 8).
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings, get_settings
from app.observability import uvicorn_log_config

CONTINUE = b"HTTP/1.1 100 "
KNOWN_LENGTH = b"\r\ncontent-length: "  # uvicorn writes header names in lower case


class HeadWithBody(asyncio.Transport):
    """What uvicorn's request cycles write through: a response whose length is known has its head held until
    the cycle writes its body, and both leave in one send.

    uvicorn writes the head as soon as the app starts its response, then the body; with TCP_NODELAY each is a
    syscall and a packet of its own, and the client is woken for each (strace: two writes a response).
    aiohttp's server does the same since aio-libs/aiohttp#10991. A streamed response (chunked, such as the
    bank feed's events) has its head sent at once; a held head never outlives its response (HttpProtocol
    sends it when the response completes: a HEAD request's has no body) nor the connection (`close`).
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._head_next = True  # the next write, unless it is a "100 Continue", is a response's head
        self._held: bytes | bytearray | memoryview | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.writelines((held, data))  # one writev
        elif self._head_next and isinstance(data, bytes) and not data.startswith(CONTINUE):  # uvicorn's are
            self._head_next = False
            if KNOWN_LENGTH in data:
                self._held = data
            else:
                self._transport.write(data)
        else:
            self._transport.write(data)

    def response_complete(self) -> None:
        self._head_next = True
        self._send_held()

    def _send_held(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._send_held()
        self._transport.close()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for each request's headers and HeadWithBody's writes."""

    def header_timeout_seconds(self) -> float:
        # Read in the worker process (uvicorn spawns its workers and imports this class anew in each).
        return get_settings().http.header_timeout_seconds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_with_body = HeadWithBody(transport)
        # One timer per connection, not per request: it fires at the deadline of the wait it was set for,
        # closes the connection if that wait is still on, or else is set again for the current one. The
        # first request's headers are due from now.
        self._waiting_since: float | None = self.loop.time()
        self._deadline = self.loop.call_later(self.header_timeout_seconds(), self._check_deadline)

    def on_message_begin(self) -> None:
        if self._waiting_since is None:  # a later request: its headers are due from its first byte
            self._waiting_since = self.loop.time()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._waiting_since = None
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # not a WebSocket upgrade, which makes no cycle
            # Its task starts on a later turn of the loop, so it writes only through HeadWithBody.
            self.cycle.transport = self._head_with_body

    def send_400_response(self, msg: str) -> None:
        self._head_with_body.response_complete()  # a held head goes first
        super().send_400_response(msg)

    def on_response_complete(self) -> None:
        self._head_with_body.response_complete()
        super().on_response_complete()  # arms uvicorn's keep-alive timer: it closes the connection if idle

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)

    def _check_deadline(self) -> None:
        if self.transport.is_closing():
            return
        timeout, now, since = self.header_timeout_seconds(), self.loop.time(), self._waiting_since
        if since is not None and now - since >= timeout:
            self.transport.close()
            return
        # Not before 10 ms from now: the loop's timers are as coarse as a millisecond and may fire early.
        deadline = max((now if since is None else since) + timeout, now + 0.01)
        self._deadline = self.loop.call_at(deadline, self._check_deadline)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "log_config": uvicorn_log_config(settings.log_level),
        "http": HttpProtocol,
        "timeout_keep_alive": settings.http.keep_alive_seconds,
        "timeout_graceful_shutdown": int(settings.ops.shutdown_grace_seconds),
    }
