"""A small pool of raw asyncpg connections beside the engine's, for the hottest reads.

Through the ORM session one short query costs four round trips (ping, BEGIN, the query, COMMIT) and several
times the CPU; the hot reads (the bank-feed view's stamp, a still-valid link) need none of that.
"""

import asyncio
import weakref
from typing import Any

import asyncpg
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_

CONNECTIONS = 4  # per process, on top of the engine's pool; each read holds one for one short query
TIMEOUT_SECONDS = 10.0
# Keys of the URL's query that SQLAlchemy's asyncpg dialect consumes itself rather than passing to asyncpg.
_SQLALCHEMY_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


class RawPool:
    """One per engine (per process), opened at its first query and closed with the engine."""

    _by_engine: "weakref.WeakKeyDictionary[Engine, RawPool]" = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, engine: AsyncEngine) -> "RawPool":
        pool = cls._by_engine.get(engine.sync_engine)
        if pool is None:
            pool = cls._by_engine[engine.sync_engine] = cls(engine)
        return pool

    def __init__(self, engine: AsyncEngine) -> None:
        self.connect_args = asyncpg_connect_args(engine)
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        # First come, first served: asyncpg's pool lets a newcomer take a connection a waiter was woken for,
        # and under load a few unlucky reads then wait for hundreds of milliseconds.
        self._turns = asyncio.Semaphore(CONNECTIONS)
        event.listen(engine.sync_engine, "engine_disposed", self._close)

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        pool = self._pool or await self._open()
        async with self._turns:
            return await pool.fetchrow(query, *args, timeout=TIMEOUT_SECONDS)

    async def execute(self, query: str, *args: object) -> None:
        pool = self._pool or await self._open()
        async with self._turns:
            await pool.execute(query, *args, timeout=TIMEOUT_SECONDS)

    async def _open(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=1, max_size=CONNECTIONS, reset=_nothing_to_reset, **self.connect_args
                )
            return self._pool

    def _close(self, _engine: Engine) -> None:
        """Closed with the engine's pool (``AsyncEngine.dispose()``, at shutdown); a later query opens one."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await_(pool.close())  # dispose() runs this in SQLAlchemy's greenlet, where awaiting is allowed
        except Exception:  # noqa: BLE001 - a sync dispose(), or a closed loop: close without the goodbyes
            pool.terminate()


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """These reads change no session state: skip asyncpg's reset query (a round trip) on each release."""


def asyncpg_connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """The engine's host, port, user, password, database and driver options, as asyncpg.connect takes them."""
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    for key in _SQLALCHEMY_ONLY:
        kwargs.pop(key, None)
    kwargs.setdefault("server_settings", {"application_name": "bankfeeds-bff"})
    return dict(kwargs)
