"""A small pool of raw asyncpg connections beside the engine's, for the hottest reads and statements.

Through the ORM session one short query costs four round trips (ping, BEGIN, the query, COMMIT) and several
times the CPU; the hot reads (the bank-feed view's stamp, a still-valid link) need none of that.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_

from app.db import PerEngine

T = TypeVar("T")
_CONNECTION_LOST = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionError)
CONNECTIONS = 4  # per process unless asked, on top of the engine's pool; each query holds one briefly
TIMEOUT_SECONDS = 10.0
# Keys of the URL's query that SQLAlchemy's asyncpg dialect consumes itself rather than passing to asyncpg.
_SQLALCHEMY_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


class RawPool:
    """A few connections, one per engine (per process), opened on demand and closed with the engine.

    Hand-written rather than asyncpg's Pool: on these one-query reads, the Pool's acquire and release cost
    about as much CPU as the query itself (measured: ~40 µs a read with a queue of connections, ~80–130 µs
    through asyncpg.Pool, even without its reset query), and that was most of a cold read's cost.
    """

    _by_engine: "PerEngine[RawPool]" = PerEngine()

    @classmethod
    def of(
        cls, engine: AsyncEngine, connections: int = CONNECTIONS, application_name: str = "bankfeeds-bff"
    ) -> "RawPool":
        """The engine's pool; `connections` and `application_name` are its own when this call makes it."""
        return cls._by_engine.of(engine, lambda: cls(engine, connections, application_name))

    def __init__(
        self, engine: AsyncEngine, connections: int = CONNECTIONS, application_name: str = "bankfeeds-bff"
    ) -> None:
        self.connect_args = asyncpg_connect_args(engine, application_name)
        self.connections = connections
        # Free connections, and None for each free slot not connected yet (or whose connection was lost).
        # A queue serves its waiters first come, first served: no read waits behind newcomers.
        self._free: asyncio.Queue[asyncpg.Connection | None] | None = None
        self._connections: set[asyncpg.Connection] = set()
        event.listen(engine.sync_engine, "engine_disposed", self._close)

    @property
    def is_open(self) -> bool:
        return bool(self._connections)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        return await self._run(lambda connection: connection.fetchrow(query, *args, timeout=TIMEOUT_SECONDS))

    async def fetch(
        self, query: str, *args: object, timeout: float = TIMEOUT_SECONDS
    ) -> list[asyncpg.Record]:
        return await self._run(lambda connection: connection.fetch(query, *args, timeout=timeout))

    async def execute(self, query: str, *args: object) -> None:
        await self._run(lambda connection: connection.execute(query, *args, timeout=TIMEOUT_SECONDS))

    async def _run(self, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """The query on a free connection, and once more on a new one if that connection turned out dead (a
        restarted server, an idle timeout): no failure of the database, and the caller need not see it."""
        tries = 2
        while True:
            tries -= 1
            connection = await self._acquire()
            try:
                result = await query(connection)
            except _CONNECTION_LOST:
                self._discard(connection)
                if tries == 0:
                    raise
                continue
            except BaseException:
                self._discard(connection)  # its state is unknown (a timeout, a cancellation)
                raise
            self._release(connection)
            return result

    async def _acquire(self) -> asyncpg.Connection:
        if self._free is None:
            self._free = asyncio.Queue()
            for _ in range(self.connections):
                self._free.put_nowait(None)
        free = self._free
        kept = await free.get()
        if kept is not None and not kept.is_closed():
            return kept
        if kept is not None:
            self._connections.discard(kept)  # one the server closed
        try:
            connection: asyncpg.Connection = await asyncpg.connect(**self.connect_args)
        except BaseException:
            free.put_nowait(None)
            raise
        self._connections.add(connection)
        return connection

    def _release(self, connection: asyncpg.Connection) -> None:
        if self._free is not None:
            self._free.put_nowait(connection)

    def _discard(self, connection: asyncpg.Connection) -> None:
        self._connections.discard(connection)
        connection.terminate()
        if self._free is not None:
            self._free.put_nowait(None)

    def _close(self, _engine: Engine) -> None:
        """Closed with the engine's pool (``AsyncEngine.dispose()``, at shutdown); a later query opens one."""
        connections, self._connections, self._free = self._connections, set(), None
        for connection in connections:
            try:
                await_(
                    connection.close()
                )  # dispose() runs this in SQLAlchemy's greenlet: awaiting is allowed
            except Exception:  # noqa: BLE001 - a sync dispose(), or a closed loop: close without the goodbyes
                connection.terminate()


def asyncpg_connect_args(engine: AsyncEngine, application_name: str) -> dict[str, Any]:
    """The engine's host, port, user, password, database and driver options, as asyncpg.connect takes them."""
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    for key in _SQLALCHEMY_ONLY:
        kwargs.pop(key, None)
    kwargs.setdefault("server_settings", {"application_name": application_name})
    return dict(kwargs)
