"""A bad day: the database connection dies while the one-time credentials answer is being stored.

Everything that is logged (every logger at DEBUG, uvicorn's included, under a real uvicorn server) and the
error body must hold neither the username nor the password; no table may hold a live OTP or link in clear.
"""

import asyncio
import io
import logging
import threading
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy import event
from sqlalchemy.engine import make_url

from app.models import Base
from app.observability import JsonFormatter, configure_logging, uvicorn_log_config

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def every_log_line() -> Iterator[io.StringIO]:
    """The service's logging at DEBUG on every logger; what its formatter writes is kept here too."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {name: logging.getLogger(name).level for name in _all_loggers()}
    configure_logging("DEBUG")
    root.setLevel(logging.DEBUG)
    for name in _all_loggers():
        logging.getLogger(name).setLevel(logging.DEBUG)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    yield out
    root.handlers, root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def _all_loggers() -> list[str]:
    return [
        *logging.root.manager.loggerDict,
        "httpx",
        "httpcore",
        "sqlalchemy.engine",
        "asyncpg",
        *UVICORN_LOGGERS,
    ]


@pytest.fixture
async def served(app, sandbox, every_log_line: io.StringIO) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """The BFF under uvicorn, configured as `serve` configures it, its loggers also captured."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=uvicorn_log_config("DEBUG"))
    )
    handler = logging.StreamHandler(every_log_line)
    handler.setFormatter(JsonFormatter())
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    await task
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).removeHandler(handler)


def kill_connection_when(engine, statement_start: str, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """Terminate the server process of the connection about to run the first statement starting so; the
    statement then runs on a dead connection, as when Postgres restarts or fails over."""
    server_url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)

    def terminate(pid: int) -> None:
        async def run() -> None:
            admin = await asyncpg.connect(server_url)
            try:
                await admin.execute("SELECT pg_terminate_backend($1, 5000)", pid)
            finally:
                await admin.close()

        asyncio.run(run())

    killed: list[int] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if not killed and statement.lstrip().upper().startswith(statement_start):
            pid = conn.connection.dbapi_connection._connection.get_server_pid()
            killed.append(pid)
            worker = threading.Thread(target=terminate, args=(pid,))
            worker.start()
            worker.join()


async def every_table_as_text(app) -> str:  # type: ignore[no-untyped-def]
    """Every row of every table, as the database holds it (no decryption)."""
    async with app.state.sessionmaker() as session:
        connection = await session.connection()
        dumps = []
        for table in Base.metadata.sorted_tables:
            rows = await connection.exec_driver_sql(f'SELECT * FROM "{table.name}"')
            dumps.append(repr(rows.all()))
        return "\n".join(dumps)


async def test_a_connection_killed_while_storing_credentials_leaks_nothing(
    app, client, sandbox, settings, user_headers, business, served, every_log_line
):
    if settings.uses_sqlite:
        pytest.skip("needs Postgres (TEST_DATABASE_URL): a server process to terminate")
    connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
    engine = app.state.sessionmaker.kw["bind"]
    kill_connection_when(engine, "UPDATE IDEMPOTENCY_RECORD", settings.database.url)

    async with httpx.AsyncClient(base_url=served) as http:
        response = await http.post(
            "/v1/bank-feed/credentials",
            headers={
                **user_headers(business),
                "Idempotency-Key": "creds-1",
                "X-Request-ID": "req-creds-0001",
            },
        )

    [connection] = sandbox.connections.values()
    [minted] = connection.credentials  # Codat minted them: they are live
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.headers["x-request-id"] == "req-creds-0001" == response.json()["correlationId"]
    logged = every_log_line.getvalue()
    assert "req-creds-0001" in logged  # the failure was logged, under the request's id
    for secret in (minted.username, minted.password):
        assert secret not in logged
        assert secret not in response.text
    otp = connected["linkUrl"].rsplit("otp=", 1)[1]
    stored = await every_table_as_text(app)
    for secret in (minted.username, minted.password, otp, connected["linkUrl"]):
        assert secret not in stored


async def test_a_replayable_credentials_answer_is_encrypted_at_rest_and_replays(
    app, client, sandbox, user_headers, business
):
    await client.post("/v1/bank-feed/connect", headers=user_headers(business))
    headers = {**user_headers(business), "Idempotency-Key": "creds-2"}

    first = await client.post("/v1/bank-feed/credentials", headers=headers)
    replay = await client.post("/v1/bank-feed/credentials", headers=headers)

    assert first.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    stored = await every_table_as_text(app)
    assert first.json()["password"] not in stored
    assert first.json()["username"] not in stored
