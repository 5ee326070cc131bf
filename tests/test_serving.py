"""How `serve` speaks HTTP (app/serving.py), seen from the socket: a response leaves in one send, head and
body together, while a stream's head leaves at once; a connection that does not send a request's headers in
time is closed, while one idle between requests is kept until its keep-alive ends (a proxy reuses it)."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from uvicorn.server import ServerState

from app.serving import HttpProtocol, uvicorn_options

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
GET = b"GET /thing HTTP/1.1\r\nHost: x\r\n\r\n"


class Served(HttpProtocol):
    def header_timeout_seconds(self) -> float:
        return 10.0  # as configured by default (`serve` reads it from the settings)


class Quick(HttpProtocol):
    def header_timeout_seconds(self) -> float:
        return 0.5


class Wire(asyncio.Transport):
    """The connection's socket as the protocol sees it: what is sent, one entry a send."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.sends.append(bytes(data))

    def writelines(self, data: Any) -> None:
        self.sends.append(b"".join(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connect(
    app: App, protocol: type[HttpProtocol] = Served, keep_alive: float = 5
) -> tuple[HttpProtocol, Wire]:
    config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_keep_alive=keep_alive)
    config.load()
    server = protocol(config=config, server_state=ServerState(), app_state={})
    wire = Wire()
    server.connection_made(wire)
    return server, wire


@asynccontextmanager
async def listening(app: App) -> AsyncIterator[int]:
    """The app served on a real socket by uvicorn with Quick; yields its port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", http=Quick))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def json_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b'{"ok": true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_a_response_leaves_in_one_send_head_and_body_together():
    server, wire = connect(json_app)
    server.data_received(GET)
    await settle()
    server.data_received(GET)  # and again on the same connection
    await settle()
    server.connection_lost(None)

    assert len(wire.sends) == 2
    for sent in wire.sends:
        assert sent.startswith(b"HTTP/1.1 200 OK\r\n")
        assert sent.endswith(b'\r\n\r\n{"ok": true}')


async def test_a_streamed_response_has_its_head_sent_before_its_first_part():
    first_part = asyncio.Event()

    async def events(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await first_part.wait()
        await send({"type": "http.response.body", "body": b"event: ready\n\n", "more_body": False})

    server, wire = connect(events)
    server.data_received(GET)
    await settle()
    head_alone = list(wire.sends)
    first_part.set()
    await settle()
    server.connection_lost(None)

    assert len(head_alone) == 1
    assert head_alone[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head_alone[0]
    assert wire.sends[1:] == [b"e\r\nevent: ready\n\n\r\n0\r\n\r\n"]


async def test_a_head_request_is_answered_with_the_head_alone():
    server, wire = connect(json_app)
    server.data_received(b"HEAD /thing HTTP/1.1\r\nHost: x\r\n\r\n")
    await settle()
    server.connection_lost(None)

    assert len(wire.sends) == 1
    assert wire.sends[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert wire.sends[0].endswith(b"\r\n\r\n")


async def test_a_client_that_expects_100_continue_gets_it_before_it_sends_the_body():
    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    server, wire = connect(echo)
    server.data_received(
        b"POST /thing HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    await settle()
    before_the_body = list(wire.sends)
    server.data_received(b"hello")
    await settle()
    server.connection_lost(None)

    assert before_the_body == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert len(wire.sends) == 2
    assert wire.sends[1].endswith(b"\r\n\r\nhello")


async def test_an_app_that_fails_after_starting_its_response_still_sends_the_head_then_closes():
    async def fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise RuntimeError("a bug")

    server, wire = connect(fails)
    server.data_received(GET)
    await settle()
    server.connection_lost(None)

    assert wire.closed
    assert len(wire.sends) == 1
    assert wire.sends[0].startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_connection_that_keeps_sending_requests_stays_open_past_the_header_deadline():
    server, wire = connect(json_app, Quick)
    for _ in range(12):  # 1.2 s of requests, 0.1 s apart: more than twice the deadline
        server.data_received(GET)
        await asyncio.sleep(0.1)
    still_open = not wire.closed
    server.connection_lost(None)

    assert still_open
    assert len(wire.sends) == 12


async def test_an_idle_connection_outlives_the_header_deadline_and_is_closed_when_its_keep_alive_ends():
    # A proxy in front reuses its idle connections to us: closing one at the header deadline, while the
    # proxy still trusted it, would meet the proxy's next request with a reset (a 502 to its client).
    server, wire = connect(json_app, Quick, keep_alive=1.5)
    server.data_received(GET)
    await asyncio.sleep(1.0)  # idle for twice the header deadline
    open_after_idling = not wire.closed
    server.data_received(GET)  # the connection is reused
    await asyncio.sleep(2.0)  # then idle past its keep-alive
    server.connection_lost(None)

    assert open_after_idling
    assert len(wire.sends) == 2
    assert all(sent.startswith(b"HTTP/1.1 200 OK") for sent in wire.sends)
    assert wire.closed


async def test_a_later_request_that_dawdles_over_its_headers_is_closed_at_the_deadline():
    server, wire = connect(json_app, Quick, keep_alive=60)
    server.data_received(GET)
    await asyncio.sleep(0.3)
    server.data_received(b"GET /thing HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    await asyncio.sleep(0.3)
    open_before_the_deadline = not wire.closed
    await asyncio.sleep(0.4)  # 0.7 s since its first byte: past the deadline, long before the keep-alive
    server.connection_lost(None)

    assert open_before_the_deadline
    assert len(wire.sends) == 1
    assert wire.closed


async def test_serve_closes_a_connection_that_dawdles_over_its_headers(app):
    async with listening(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        await writer.drain()
        closed = await asyncio.wait_for(reader.read(), timeout=5)  # b"" once the server closes it
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            prompt = await http.get("/healthz")  # a normal client is unaffected

    assert closed == b""
    assert prompt.status_code == 200


async def test_a_connection_idle_past_the_header_deadline_is_still_there_for_the_next_request(app):
    # What a proxy in front does with its pooled connections to us: a request, a pause, the next request.
    async with listening(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for pause in (0, 1.0):  # the second after twice Quick's header deadline
            await asyncio.sleep(pause)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            answers.append(head.split(b"\r\n")[0])
        writer.close()

    assert answers == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]


def test_serve_keeps_an_idle_connection_longer_than_a_proxy_in_front_keeps_its_own(settings):
    # nginx's upstream keepalive_timeout and an AWS Application Load Balancer's idle timeout: 60 s.
    assert uvicorn_options(settings)["timeout_keep_alive"] > 60


async def test_a_websocket_upgrade_is_answered_by_the_app_not_refused_by_the_protocol(app):
    # The BFF has no WebSocket route: the app refuses the handshake (403), as it did on uvicorn's protocol.
    async with listening(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /v1/bank-feed HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        writer.close()

    assert status_line.startswith(b"HTTP/1.1 403")
