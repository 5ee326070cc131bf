"""CORS: the SPA origins in BANKFEEDS_CORS_ORIGINS may call the API from a browser; no other origin may."""

from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from app.main import create_app

SPA = "https://app.example-fintech.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,idempotency-key",
}


def client_for(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://test")


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(Settings(environment="test", cors_origins=[SPA])) as http:
        yield http


async def test_a_configured_origin_may_call_the_api(api: httpx.AsyncClient) -> None:
    preflight = await api.options("/v1/bank-feed/connect", headers={"Origin": SPA, **PREFLIGHT})
    answer = await api.get("/healthz", headers={"Origin": SPA})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == SPA
    assert {"authorization", "idempotency-key"} <= set(
        preflight.headers["access-control-allow-headers"].lower().split(", ")
    )
    assert answer.headers["access-control-allow-origin"] == SPA
    assert "ETag" in answer.headers["access-control-expose-headers"]


async def test_another_origin_gets_no_cors_headers(api: httpx.AsyncClient) -> None:
    other = "https://evil.example"
    preflight = await api.options("/v1/bank-feed/connect", headers={"Origin": other, **PREFLIGHT})
    answer = await api.get("/healthz", headers={"Origin": other})

    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in answer.headers


async def test_no_origin_is_allowed_by_default() -> None:
    async with client_for(Settings(environment="test")) as http:
        answer = await http.get("/healthz", headers={"Origin": SPA})

    assert "access-control-allow-origin" not in answer.headers
