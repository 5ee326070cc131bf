"""The HTTP transport under httpx (app/transport.py), against real servers on 127.0.0.1: what a caller of
Codat (or the sandbox's webhook sender) would notice: answers read whole and decoded, connections kept and
reused, and every way an exchange can go wrong ending in httpx's own error, with the connection dropped."""

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.transport import LeanTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A raw HTTP server whose every answer the test writes byte for byte; it counts its connections and keeps
    the requests it read."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.close_after_answering = False  # without saying so, as a server whose keep-alive ran out
        self.delay = 0.0
        self.ended = 0  # connections closed, by either side

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = await _chunked_body(reader) if b"transfer-encoding: chunked" in head.lower() else b""
                body += await reader.readexactly(length)
                self.requests.append(head + body)
                reply = self.answer(head + body)
                if reply is None:  # never answers: waits for the client to give up and close
                    await reader.read()
                    break
                await asyncio.sleep(self.delay)
                writer.write(reply)
                await writer.drain()
                head = reply.split(b"\r\n\r\n")[0].lower()
                if (
                    self.close_after_answering
                    or b"connection: close" in head
                    or not (b"content-length" in head or b"chunked" in head)
                ):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.ended += 1
            writer.close()


async def _chunked_body(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return body


def ok(body: bytes = b'{"ok":true}', *headers: bytes) -> bytes:
    head = [
        b"HTTP/1.1 200 OK",
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@asynccontextmanager
async def serving(
    answer: Callable[[bytes], bytes | None], tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Server, str]]:
    server = Server(answer)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield server, f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        listening.close()


def client(**kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=LeanTransport(**kwargs), timeout=2)  # type: ignore[arg-type]


async def test_connections_are_kept_and_reused_and_bodies_sent_whole() -> None:
    async with serving(lambda request: ok()) as (server, url), client() as http:
        for n in range(3):
            response = await http.post(f"{url}/push?n={n}", json={"n": n}, headers={"Idempotency-Key": "k"})
            assert response.status_code == 200
            assert response.json() == {"ok": True}
            assert response.reason_phrase == "OK"
    assert server.connections == 1
    assert server.requests[2].startswith(b"POST /push?n=2 HTTP/1.1\r\n")
    assert b"\r\nidempotency-key: k\r\n" in server.requests[2].lower()
    assert server.requests[2].endswith(b'{"n":2}')


async def test_chunked_and_gzipped_answers_are_read_whole_and_decoded() -> None:
    payload = gzip.compress(b'{"items":[' + b",".join(b"%d" % n for n in range(2000)) + b"]}")
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + 500]), payload[i : i + 500])
        for i in range(0, len(payload), 500)
    )
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    async with serving(lambda request: answer) as (server, url), client() as http:
        first, second = await http.get(f"{url}/a"), await http.get(f"{url}/b")
    assert first.json()["items"] == list(range(2000))
    assert second.json() == first.json()
    assert server.connections == 1


async def test_an_answer_ended_by_the_close_is_read_whole_and_its_connection_not_reused() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nuntil the end"
    async with serving(lambda request: answer) as (server, url), client() as http:
        assert (await http.get(url)).text == "until the end"
        assert (await http.get(url)).text == "until the end"
    assert server.connections == 2


async def test_a_kept_connection_the_server_closed_is_not_used_again() -> None:
    async with serving(lambda request: ok()) as (server, url), client() as http:
        server.close_after_answering = True
        await http.get(url)
        server.close_after_answering = False
        # At once: the close may still wait unread, and the request must not be sent into it.
        assert (await http.get(url)).json() == {"ok": True}
        assert (await http.get(url)).json() == {"ok": True}
    assert server.connections == 2


async def test_an_answer_saying_connection_close_ends_its_connection() -> None:
    async with serving(lambda request: ok(b"{}", b"connection: close")) as (server, url), client() as http:
        await http.get(url)
        await http.get(url)
    assert server.connections == 2


async def test_a_connection_idle_past_the_keepalive_expiry_is_replaced() -> None:
    async with serving(lambda request: ok()) as (server, url), client(keepalive_expiry=0.05) as http:
        await http.get(url)
        await asyncio.sleep(0.1)
        await http.get(url)
    assert server.connections == 2


async def test_closing_the_client_closes_its_kept_connections_and_those_still_in_an_exchange() -> None:
    async with serving(lambda request: ok()) as (server, url):
        http = client()
        await http.get(url)
        server.delay = 0.1
        in_flight = asyncio.gather(http.get(url), http.get(url))
        await asyncio.sleep(0.02)
        await http.aclose()
        assert [answer.status_code for answer in await in_flight] == [200, 200]
        await asyncio.sleep(0.05)
    assert server.connections == 2
    assert server.ended == 2


async def test_no_answer_in_time_is_a_read_timeout_and_the_connection_is_dropped() -> None:
    async with (
        serving(lambda request: None if b"/slow" in request else ok()) as (server, url),
        client() as http,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{url}/slow", timeout=0.2)
        assert (await http.get(url)).status_code == 200
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\nonly ten b",  # then closes
        b"HTTP/1.1 2000 Nonsense\r\ncontent-length: 0\r\n\r\n",
        b"not http at all\r\n\r\n",
    ],
    ids=["cut short", "bad status line", "not HTTP"],
)
async def test_a_broken_answer_is_a_protocol_error_and_the_next_request_gets_a_new_connection(
    answer: bytes,
) -> None:
    async with (
        serving(lambda request: answer if b"/broken" in request else ok()) as (server, url),
        client() as http,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"{url}/broken")
        assert (await http.get(url)).status_code == 200
    assert server.connections == 2


async def test_a_refused_connection_is_a_connect_error_after_the_retries() -> None:
    async with serving(lambda request: ok()) as (_, url):
        pass  # closed: nothing listens on its port now
    async with client(retries=1) as http:
        with pytest.raises(httpx.ConnectError, match="no connection to 127.0.0.1"):
            await http.get(url)


@pytest.mark.parametrize(
    "headers",
    [{"X-Note": "a\r\nX-Injected: 1"}, {"X-Note": "a\nb"}, {"Bad Name": "x"}, {"X-Note": "nul\x00"}],
    ids=["CRLF in a value", "LF in a value", "space in a name", "NUL in a value"],
)
async def test_a_header_that_would_break_its_line_is_refused_before_anything_is_sent(
    headers: dict[str, str],
) -> None:
    async with serving(lambda request: ok()) as (server, url), client() as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.get(url, headers=headers)
    assert server.connections == 0


async def test_a_streamed_body_is_sent_whole_as_one_chunk() -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"first,", b"second,", b"third"):
            yield part

    async with serving(lambda request: ok()) as (server, url), client() as http:
        assert (await http.post(url, content=parts())).status_code == 200
    assert server.requests[0].endswith(b"\r\n\r\nfirst,second,third")


async def test_head_has_the_headers_and_no_body() -> None:
    async with serving(lambda request: ok()[: ok().index(b"\r\n\r\n") + 4]) as (_, url), client() as http:
        response = await http.head(url)
    assert response.status_code == 200
    assert response.headers["content-length"] == "11"
    assert response.content == b""


async def test_many_requests_at_once_each_get_their_own_answer() -> None:
    async with serving(lambda request: ok(request.split(b" ")[1])) as (server, url), client() as http:
        answers = await asyncio.gather(*(http.get(f"{url}/{n}") for n in range(50)))
        assert [a.content for a in answers] == [b"/%d" % n for n in range(50)]
        again = await asyncio.gather(*(http.get(f"{url}/{n}") for n in range(50)))
    assert [a.content for a in again] == [b"/%d" % n for n in range(50)]
    assert server.connections == 50 + 30  # 20 of the first round's were kept (the most idle) and reused


async def test_https_is_verified_against_the_given_authorities(tmp_path: Path) -> None:
    server_tls, trusted = _self_signed(tmp_path)
    async with serving(lambda request: ok(), tls=server_tls) as (_, url):
        async with client(verify=trusted) as http:
            assert (await http.get(url)).json() == {"ok": True}
        async with client() as http:  # certifi's authorities do not know this certificate
            with pytest.raises(httpx.ConnectError):
                await http.get(url)


def _self_signed(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))
