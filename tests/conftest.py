"""Test harness: the BFF in-process, the embedded sandbox as Codat, a real database migrated by Alembic.

With TEST_DATABASE_URL (postgresql+asyncpg://…) the suite creates a fresh database on that server, migrates
it and drops it at the end; an unreachable server is an error, never a skip. Without it, a SQLite file.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import delete
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app import migrate
from app.auth.tokens import mint_end_user_token, mint_service_token
from app.config import AuthSettings, Settings
from app.main import create_app
from app.models import Base
from app.sandbox import SandboxConfig, create_sandbox_app
from tests.contract import contract_checked

TEST_API_KEY = "test-sandbox-key"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server_url = os.environ.get("TEST_DATABASE_URL")
    if not server_url:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        migrate.upgrade(url)
        yield url
        return
    name = f"bankfeeds_test_{uuid.uuid4().hex[:8]}"
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(server_url: str, statement: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        environment="test",
        database={"url": database_url},
        sandbox={"enabled": True, "api_key": TEST_API_KEY, "public_url": "http://test/sandbox"},
        codat={"max_attempts": 2},
    )


@pytest.fixture
def sandbox_app(settings: Settings) -> FastAPI:
    config = SandboxConfig(
        api_keys=[TEST_API_KEY],
        public_url=settings.sandbox.public_url,
        webhook_secret=settings.webhooks.signing_secret.get_secret_value(),  # type: ignore[union-attr]
        seed=1234,
    )
    return create_sandbox_app(config)


@pytest.fixture
async def app(settings: Settings, sandbox_app: FastAPI) -> AsyncIterator[FastAPI]:
    application = create_app(settings, sandbox_app=contract_checked(sandbox_app))
    async with application.router.lifespan_context(application):
        yield application
    await _empty_tables(settings.database.url)


async def _empty_tables(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(delete(table))
    finally:
        await engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
def sandbox(sandbox_app: FastAPI):  # type: ignore[no-untyped-def]
    """The sandbox's state: counters, clock, knobs."""
    return sandbox_app.state.sandbox


@pytest.fixture
def auth_settings(settings: Settings) -> AuthSettings:
    return settings.auth


@pytest.fixture
def user_headers(auth_settings: AuthSettings):  # type: ignore[no-untyped-def]
    def headers(business_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_end_user_token(auth_settings, business_id)}"}

    return headers


@pytest.fixture
def service_headers(auth_settings: AuthSettings):  # type: ignore[no-untyped-def]
    def headers(*scopes: str) -> dict[str, str]:
        scopes = scopes or ("businesses:write", "bank-feed:read")
        return {"Authorization": f"Bearer {mint_service_token(auth_settings, 'test-service', list(scopes))}"}

    return headers


@pytest.fixture
async def business(client: httpx.AsyncClient, service_headers) -> str:  # type: ignore[no-untyped-def]
    """biz-1 (US) with the three accounts of tests.factories.ACCOUNTS, registered by an internal service."""
    from tests.factories import register

    await register(client, service_headers(), "biz-1")
    return "biz-1"


@pytest.fixture
async def live_url(app, sandbox) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """The BFF served by uvicorn on a loopback port; the sandbox delivers its webhooks there."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    sandbox.set_settings(webhook={"url": f"{url}/webhooks/codat"})
    yield url
    server.should_exit = True
    await task
