"""The SQLAlchemy pool without a pre-ping: a pooled connection the server ended is replaced at checkout, so
a Postgres restart (or an idle timeout) does not fail the requests that follow it."""

import asyncio

import asyncpg
import pytest
from sqlalchemy import text


async def test_connections_the_server_ended_are_replaced_at_checkout(
    app, client, settings, user_headers, business
):
    if settings.uses_sqlite:
        pytest.skip("needs Postgres (TEST_DATABASE_URL): server processes to terminate")
    engine = app.state.sessionmaker.kw["bind"]
    held = [await engine.connect() for _ in range(3)]  # three connections in the pool, idle once returned
    pids = [(await c.get_raw_connection()).driver_connection.get_server_pid() for c in held]
    for connection in held:
        await connection.close()
    assert engine.pool.checkedin() >= 3

    admin = await asyncpg.connect(settings.database.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for pid in pids:
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.05)  # the event loop reads each closed socket

    # Every pooled connection is checked out again: none of the dead ones is handed out.
    in_use = [await engine.connect() for _ in range(engine.pool.checkedin())]
    for connection in in_use:
        assert await connection.scalar(text("SELECT 1")) == 1
        assert (await connection.get_raw_connection()).driver_connection.get_server_pid() not in pids
        await connection.close()
    response = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
    assert response.status_code == 200


async def test_a_burst_reuses_the_pooled_connections(app, settings):
    """Two bursts as large as the pool allows run on the same Postgres connections: none is closed on its
    return and replaced by a new one (a backend started again, every statement prepared again)."""
    if settings.uses_sqlite:
        pytest.skip("needs Postgres (TEST_DATABASE_URL): server processes to count")
    engine = app.state.sessionmaker.kw["bind"]
    burst = settings.database.pool_size + settings.database.max_overflow  # the most the pool hands out

    async def pids_of_a_burst() -> set[int]:
        held = [await engine.connect() for _ in range(burst)]
        try:
            return {await c.scalar(text("SELECT pg_backend_pid()")) for c in held}
        finally:
            for connection in held:
                await connection.close()

    first = await pids_of_a_burst()
    assert len(first) == burst
    assert await pids_of_a_burst() == first
