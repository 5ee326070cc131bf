"""What the operator on call looks at: liveness, readiness with the reason, metrics, access lines."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from app.metrics import registry
from app.migrate import head_revisions
from app.observability import JsonFormatter
from app.sandbox import SandboxConfig, create_sandbox_app
from tests.conftest import TEST_API_KEY, _empty_tables
from tests.factories import register


async def test_livez_and_its_healthz_alias_answer_while_the_process_is_up(client):
    for path in ("/livez", "/healthz"):
        response = await client.get(path)

        assert response.json() == {"status": "ok"}


async def probe_after_check(client: httpx.AsyncClient, app: FastAPI) -> httpx.Response:
    """/readyz once the background Codat check it started has finished."""
    await client.get("/readyz")
    await app.state.codat_health.wait()
    return await client.get("/readyz")


async def probe_after_both_checks(client: httpx.AsyncClient, app: FastAPI) -> httpx.Response:
    """/readyz once two rounds (the integration, then the data types) have run, as after two minutes."""
    app.state.codat_health.interval_seconds = 0
    await probe_after_check(client, app)
    return await probe_after_check(client, app)


class TestReadyz:
    async def test_ready_with_database_at_head_and_codat_reported_ok(self, client, app):
        response = await probe_after_both_checks(client, app)

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ready"
        assert body["checks"] == {"database": "ok", "migrations": "ok"}
        assert body["codat"]["checks"] == {"codat": "ok", "integration": "ok", "dataTypes": "ok"}
        assert body["codat"]["checkedAt"] is not None

    @pytest.mark.parametrize(
        ("portal", "check", "reason"),
        [
            ({"integrationEnabled": False}, "integration", "hcws is not enabled"),
            ({"dataTypes": {"bankTransactions": False}}, "dataTypes", "bankTransactions"),
        ],
    )
    async def test_a_portal_switch_off_is_reported_and_in_metrics_but_the_replica_stays_ready(
        self, client, app, sandbox, portal, check, reason
    ):
        sandbox.set_settings(portal)

        response = await probe_after_both_checks(client, app)

        assert response.status_code == 200
        assert reason in response.json()["codat"]["checks"][check]
        assert f'bff_codat_check_up{{check="{check}"}} 0.0' in (await client.get("/metrics")).text

    async def test_not_ready_while_the_database_is_behind_the_code(self, client, app):
        (head,) = head_revisions()
        sessions = app.state.sessionmaker
        async with sessions.begin() as session:
            await session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        try:
            response = await client.get("/readyz")
        finally:
            async with sessions.begin() as session:
                await session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})

        assert response.status_code == 503
        assert "run migrate" in response.json()["checks"]["migrations"]


@pytest.fixture
async def codat_server() -> AsyncIterator[tuple[uvicorn.Server, FastAPI, str]]:
    """The sandbox as Codat on a loopback port, so that a test can stop it."""
    sandbox_app = create_sandbox_app(SandboxConfig(api_keys=[TEST_API_KEY], seed=1))
    server = uvicorn.Server(uvicorn.Config(sandbox_app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield server, sandbox_app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_a_thousand_probes_a_minute_cost_one_codat_check_and_codat_down_keeps_the_replica_ready(
    database_url, codat_server, service_headers, user_headers
):
    server, sandbox_app, codat_url = codat_server
    settings = Settings(
        environment="test",
        database={"url": database_url},
        codat={"base_url": codat_url, "api_key": TEST_API_KEY, "max_attempts": 2},
        ops={"codat_check_interval_seconds": 60},
    )
    app = create_app(settings)
    counters = sandbox_app.state.sandbox.counters
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bff") as client,
        ):
            await register(client, service_headers(), "biz-ops")
            answers = [(await client.get("/readyz")).status_code for _ in range(1000)]
            await app.state.codat_health.wait()

            assert set(answers) == {200}
            assert dict(counters) == {"get-integration": 1}  # one Codat call in all

            server.should_exit = True  # Codat goes away
            while not server.should_exit or server.servers and server.servers[0].is_serving():
                await asyncio.sleep(0.01)
            app.state.codat_health.interval_seconds = 0  # the minute has passed
            ready = await probe_after_check(client, app)
            live = await client.get("/livez")
            view = await client.get("/v1/bank-feed", headers=user_headers("biz-ops"))

        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "migrations": "ok"}
        assert ready.json()["codat"]["checks"]["codat"].startswith("failed")
        assert live.status_code == 200
        assert view.status_code == 200
        assert [a["accountId"] for a in view.json()["accounts"]] == ["acc-1", "acc-2", "acc-3"]
    finally:
        await _empty_tables(database_url)


async def test_metrics_count_requests_by_route_template(client, user_headers, business):
    await client.get("/v1/bank-feed", headers=user_headers(business))

    metrics = (await client.get("/metrics")).text

    assert 'bff_http_requests_total{method="GET",route="/v1/bank-feed",status="200"}' in metrics
    assert "codat_calls_total" in metrics


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_one_json_access_line_a_request_with_route_template_business_and_no_secret(
    client, user_headers, business
):
    headers = {**user_headers(business), "X-Request-ID": "access-12345678"}
    access, handler = logging.getLogger("app.access"), Lines()
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        await client.get("/v1/bank-feed/link?otp=secret-otp", headers=headers)
    finally:
        access.removeHandler(handler)
        access.setLevel(logging.NOTSET)

    (line,) = handler.lines
    entry = json.loads(line)
    assert entry["event"] == "http.request"
    assert (entry["correlationId"], entry["route"], entry["businessId"]) == (
        "access-12345678",
        "/v1/bank-feed/link",
        business,
    )
    assert entry["status"] == 409  # not connected yet
    assert entry["durationMs"] > 0
    assert "secret-otp" not in line
    assert headers["Authorization"].split()[1] not in line


async def test_every_answer_carries_a_correlation_id_and_errors_repeat_it(client):
    response = await client.get("/v1/bank-feed", headers={"X-Request-ID": "trace-12345678"})

    assert response.headers["x-request-id"] == "trace-12345678"
    assert response.json()["correlationId"] == "trace-12345678"


async def test_429s_from_codat_are_counted_each_attempt(client, app, sandbox):
    sandbox.set_knobs(rateLimitRate=1.0, retryAfterSeconds=0)
    before = registry().get_sample_value("bff_codat_rate_limited_responses_total") or 0.0

    await probe_after_check(client, app)  # the background check meets Codat's 429s

    after = registry().get_sample_value("bff_codat_rate_limited_responses_total")
    assert after - before == sandbox.counters["get-integration"]  # one per attempt (max_attempts=2)
    assert after - before == 2
