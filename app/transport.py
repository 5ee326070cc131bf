"""An HTTP/1.1 transport for httpx, for the calls to Codat and the sandbox's webhooks: a fraction of the CPU.

Hand-written, because the maintained default costs more than the work it carries: httpcore over anyio, parsing
with h11 in Python, spent ~350 µs of CPU on each request to a local server (httpx's own layer ~75 µs), where
this spends ~90. A push of bank transactions costs three such requests (the worker's push and its read of the
push operation, Codat's webhook to us), so the default transport was about a tenth of a push's fixed CPU
across the four processes (measured: bench/README.md, fifth round). httpx stays the client: its API,
timeouts, auth, redirects, content decoding and proxies from the environment (those are mounted over httpx's
own transports) are unchanged. Only the exchange is replaced, by maintained parts: asyncio's transports
carry the bytes (TLS included) and httptools (llhttp, the parser uvicorn serves with) reads the answer.

Scope, kept small on purpose: HTTP/1.1, one request at a time on a connection, kept-alive connections reused
newest first; no HTTP/2, no ``Expect: 100-continue``, no upgrades, no informational (1xx) answers; bodies are
sent and read whole (every caller reads the whole answer). The read timeout bounds the whole exchange, from
the request's write to the answer's last byte. A connection whose exchange did not end cleanly (a timeout,
a cancellation, a malformed answer) is closed, never reused.
"""

import asyncio
import re
import select
import ssl
import time
from dataclasses import dataclass, field
from typing import cast

import httptools
import httpx

# RFC 9110 field names are tokens; a value may not hold CR, LF or NUL (a header injected into the request).
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(rb"[\r\n\x00]")
_DEFAULT_PORTS = {"http": 80, "https": 443}
CONNECT_RETRY_DELAYS = (0.0, 0.5, 1.0, 2.0)  # as httpcore's: the first retry at once, then backing off


@dataclass
class _Answer:
    status: int = 0
    reason: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    keep_alive: bool = False


class _Connection(asyncio.Protocol):
    """One kept-alive connection: the socket's callbacks feed the parser, whose callbacks fill the answer."""

    def __init__(self) -> None:
        self.closed = False
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer = _Answer()
        self._waiter: asyncio.Future[_Answer] | None = None
        self._head_only = False
        self._headers_done = False

    async def exchange(self, request: bytes, head_only: bool, timeout: float | None) -> _Answer:
        assert self._transport is not None
        assert self._waiter is None
        self._answer, self._head_only, self._headers_done = _Answer(), head_only, False
        self._waiter = asyncio.get_running_loop().create_future()
        # One write for the head and the body: the server is woken once and reads the request whole.
        self._transport.write(request)
        try:
            async with asyncio.timeout(timeout):
                return await self._waiter
        except TimeoutError:
            self.close()
            raise httpx.ReadTimeout("no complete answer within the read timeout") from None
        except BaseException:
            self.close()  # cancelled or failed mid-exchange: what the connection holds next is unknown
            raise
        finally:
            self._waiter = None

    def unusable(self) -> bool:
        """Closed, or something (most likely the server's close) waiting unread on the idle connection: the
        loop may not have read it yet, and a request sent now would meet the close."""
        if self.closed or self._transport is None:
            return True
        poll = select.poll()
        poll.register(self._transport.get_extra_info("socket").fileno(), select.POLLIN)
        return bool(poll.poll(0))

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream's (uvloop's is no subclass of it)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted with the next request
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed answer: {type(exc).__name__}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._answer.keep_alive and _delimited_by_close(self._answer):
            self._finish()  # an answer without a length ends when the server closes
        else:
            self._fail(httpx.RemoteProtocolError("the server closed the connection before answering in full"))

    # httptools' callbacks
    def on_status(self, reason: bytes) -> None:
        self._answer.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._answer.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._answer.status = self._parser.get_status_code()
        if self._head_only:
            # llhttp cannot be told that a HEAD's answer has no body; the connection ends with the headers.
            self._finish()
            self.close()

    def on_body(self, body: bytes) -> None:
        self._answer.body.append(body)

    def on_message_complete(self) -> None:
        self._answer.keep_alive = self._parser.should_keep_alive()
        self._finish()

    def _finish(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(self._answer)

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        self.close()


def _delimited_by_close(answer: _Answer) -> bool:
    names = {name.lower() for name, _ in answer.headers}
    return b"content-length" not in names and b"transfer-encoding" not in names


class LeanTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=LeanTransport())``: see the module's docstring for what it does not do.

    ``verify``: the TLS context for https (httpx's default, certifi's CAs, when not given). ``retries``: how
    many times a connection that could not be made is tried again, as httpx.AsyncHTTPTransport's.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | None = None,
        retries: int = 0,
        max_connections: int = 100,
        max_idle_per_origin: int = 20,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._verify = verify
        self._retries = retries
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle_per_origin
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scheme, host = request.url.scheme, request.url.host
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"{scheme!r} is not http or https")
        origin = (scheme, host, request.url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout", {})
        message = _serialized(request, await request.aread())
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("every connection is busy") from None
        try:
            connection = self._kept(origin) or await self._connect(origin, timeouts.get("connect"))
            answer = await connection.exchange(message, request.method == "HEAD", timeouts.get("read"))
            self._keep(origin, connection, answer.keep_alive)
        finally:
            self._slots.release()
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(b"".join(answer.body)),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
        )

    async def aclose(self) -> None:
        self._closed = True  # a connection still in an exchange is closed when it ends
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _kept(self, origin: tuple[str, str, int]) -> _Connection | None:
        """The newest idle connection to the origin still open: its server is the least likely to be closing
        it. One found expired means every older one is: they are closed."""
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < self._keepalive_expiry and not connection.unusable():
                return connection
            connection.close()
        return None

    def _keep(self, origin: tuple[str, str, int], connection: _Connection, keep_alive: bool) -> None:
        if not keep_alive or connection.closed or self._closed:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle = self._idle.setdefault(origin, [])
        idle.append(connection)
        if len(idle) > self._max_idle:
            idle.pop(0).close()

    async def _connect(self, origin: tuple[str, str, int], timeout: float | None) -> _Connection:
        scheme, host, port = origin
        tls = self._tls() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        error: httpx.TransportError = httpx.ConnectError("not tried")
        for delay in CONNECT_RETRY_DELAYS[: self._retries + 1]:
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(timeout):
                    _, connection = await loop.create_connection(
                        _Connection, host, port, ssl=tls, server_hostname=host if tls else None
                    )
                return connection
            except TimeoutError:
                error = httpx.ConnectTimeout(f"no connection to {host}:{port} within the connect timeout")
            except OSError as exc:  # refused, unreachable, unknown name, TLS refused (ssl.SSLError)
                error = httpx.ConnectError(f"no connection to {host}:{port}: {exc.strerror or exc}")
        raise error

    def _tls(self) -> ssl.SSLContext:
        if self._verify is None:
            self._verify = httpx.create_ssl_context()  # loads the CAs once (~25 ms), on the first https call
        return self._verify


def _serialized(request: httpx.Request, body: bytes) -> bytes:
    """The request's bytes; a field that would break out of its line is refused before anything is sent."""
    target = request.url.raw_path
    if _FORBIDDEN_IN_VALUE.search(target) or b" " in target:
        raise httpx.LocalProtocolError("the request target holds a space or a line break")
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), target)]
    chunked = False
    for name, value in request.headers.raw:
        if not _FIELD_NAME.fullmatch(name) or _FORBIDDEN_IN_VALUE.search(value):
            raise httpx.LocalProtocolError(f"header {name[:40]!r} is not a valid field")
        chunked |= name.lower() == b"transfer-encoding"
        lines.append(name + b": " + value)
    if chunked:  # a body of unknown length, as httpx frames a streamed one: sent here as one chunk
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
