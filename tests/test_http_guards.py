"""Every answer: the request's id (also in error bodies, 500s included), security headers; a lost database is
a 503 to retry; an oversized body a 413; the operational documents behind a token when one is set."""

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import create_sessionmaker
from app.main import create_app
from tests.contract import contract_checked


@pytest.fixture
def broken_token_check(app, monkeypatch):  # type: ignore[no-untyped-def]
    def explode(token: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.state.token_verifier, "end_user", explode)
    monkeypatch.setattr(app.state.token_verifier, "remembered_end_user", lambda token: None)


@pytest.mark.usefixtures("broken_token_check")
async def test_a_500_carries_the_request_id_in_its_header_and_body(client, user_headers, business, caplog):
    mine = await client.get(
        "/v1/bank-feed", headers={**user_headers(business), "X-Request-ID": "abc-123-def-456"}
    )
    made = await client.get("/v1/bank-feed", headers={**user_headers(business), "X-Request-ID": "bad id!"})

    assert mine.status_code == 500
    assert mine.headers["x-request-id"] == "abc-123-def-456" == mine.json()["correlationId"]
    assert made.status_code == 500
    assert made.headers["x-request-id"] == made.json()["correlationId"] != "-"
    assert any(r.getMessage() == "unhandled error" for r in caplog.records)


async def test_a_database_that_is_down_is_a_503_with_retry_after(app, client, user_headers, business):
    dead = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    app.state.sessionmaker = create_sessionmaker(dead)
    try:
        response = await client.post("/v1/bank-feed/refresh", headers=user_headers(business))
    finally:
        await dead.dispose()

    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-request-id"] == response.json()["correlationId"]


@pytest.mark.parametrize("path", ["/v1/bank-feed", "/healthz", "/nowhere", "/docs", "/"])
async def test_security_headers_on_every_answer(client, user_headers, business, path):
    response = await client.get(path, headers=user_headers(business))

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-request-id"]


async def test_hsts_behind_tls(client):
    response = await client.get("/healthz", headers={"X-Forwarded-Proto": "https"})

    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_an_oversized_body_is_a_413_and_nothing_runs(client, settings, service_headers, business):
    huge = b'{"name": "' + b"x" * settings.http.max_body_bytes + b'", "country": "US"}'
    chunks = iter([huge[:1000], huge[1000:]])

    declared = await client.put("/internal/v1/businesses/big-1", content=huge, headers=service_headers())
    streamed = await client.put(  # no Content-Length: counted as it is read
        "/internal/v1/businesses/big-2",
        content=_stream(chunks),
        headers={**service_headers(), "Content-Type": "application/json"},
    )

    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert declared.json()["error"] == "payload_too_large"
    lookup = await client.get("/internal/v1/businesses/big-2/bank-feed", headers=service_headers())
    assert lookup.status_code == 404


async def _stream(chunks):  # type: ignore[no-untyped-def]
    for chunk in chunks:
        yield chunk


async def test_ops_documents_behind_a_token_when_one_is_set(settings, sandbox_app):
    guarded = settings.model_copy(
        update={"http": settings.http.model_copy(update={"ops_token": SecretStr("ops-secret")})}
    )
    app = create_app(guarded, sandbox_app=contract_checked(sandbox_app))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        for path in ("/docs", "/openapi.json", "/metrics"):
            assert (await http.get(path)).status_code == 401
            assert (await http.get(path, headers={"Authorization": "Bearer ops-secret"})).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
