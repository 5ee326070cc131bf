"""A per-process cache of the rendered bank-feed view, right on every replica with nothing to invalidate.

Each read first fetches the view's *stamp* with one indexed query: the business's ``feed_version`` and
``created_at``, and its current connection's id, Codat id, status and ``confirmed_at``. Every other change
the view shows (accounts, their names and feed statuses, the business's name) bumps ``feed_version`` in the
transaction that makes it (see OnboardingRepository). So a read whose stamp equals the cached entry's gets the
cached JSON and ETag; any other renders the view again. A change committed by any replica is seen by the
very next read: no message to lose, no window where a stale view is served.

The stamp is read *before* the view is rendered. A change committed in between makes the rendered view newer
than its stamp, never older, and that stamp never comes back (``feed_version`` only grows, a connection's
``confirmed_at`` only moves on, connection ids are not reused), so such an entry is just never hit again.

On Postgres the stamp comes over raw asyncpg, from a small pool of this cache's own: through the ORM session
it would cost four round trips (ping, BEGIN, SELECT, COMMIT) and several times the CPU. On SQLite (dev and
the tests) it is read through a short session of its own.

Whoever adds a write that changes what the view shows must bump ``feed_version`` in the same transaction, or
change a column of the stamp (tests/onboarding/test_view_cache.py checks the writes there are).
"""

import asyncio
import weakref
from collections import OrderedDict
from typing import Any, Generic, TypeVar

import asyncpg
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.util import await_

from app.onboarding.repository import OnboardingRepository

V = TypeVar("V")
Stamp = tuple[Any, ...]

ENTRIES = 2048  # businesses per process; the least recently read is dropped first
STAMP_CONNECTIONS = 4  # per process, on top of the engine's pool; each read holds one for one short query
STAMP_TIMEOUT_SECONDS = 10.0
# OnboardingRepository.view_stamp, for asyncpg.
STAMP_SQL = """
SELECT b.feed_version, b.created_at, c.id, c.codat_connection_id, c.status, c.confirmed_at
FROM business AS b LEFT OUTER JOIN feed_connection AS c ON c.business_id = b.id AND c.is_current
WHERE b.id = $1
"""
# Keys of the URL's query that SQLAlchemy's asyncpg dialect consumes itself rather than passing to asyncpg.
_SQLALCHEMY_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


class ViewCache(Generic[V]):
    """Rendered views by business id, each with the stamp it was rendered at. One per engine (per process)."""

    _by_engine: "weakref.WeakKeyDictionary[Engine, ViewCache[Any]]" = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, engine: AsyncEngine) -> "ViewCache[Any]":
        cache = cls._by_engine.get(engine.sync_engine)
        if cache is None:
            cache = cls._by_engine[engine.sync_engine] = cls(engine)
        return cache

    def __init__(self, engine: AsyncEngine) -> None:
        self._entries: OrderedDict[str, tuple[Stamp, V]] = OrderedDict()
        self._engine = weakref.ref(
            engine
        )  # the engine keys this cache: a strong reference would keep both forever
        self._postgres = engine.dialect.name == "postgresql"
        self._connect_args = _asyncpg_connect_args(engine) if self._postgres else {}
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        # First come, first served: asyncpg's pool lets a newcomer take a connection a waiter was woken for,
        # and under load a few unlucky reads then wait for hundreds of milliseconds.
        self._turns = asyncio.Semaphore(STAMP_CONNECTIONS)
        event.listen(engine.sync_engine, "engine_disposed", self._close_pool)

    async def stamp(self, business_id: str) -> Stamp | None:
        """The business's current stamp (None: no such business), straight from the database."""
        if not self._postgres:
            async with AsyncSession(self._engine()) as session:
                return await OnboardingRepository(session).view_stamp(business_id)
        pool = self._pool or await self._open_pool()
        async with self._turns:
            row = await pool.fetchrow(STAMP_SQL, business_id, timeout=STAMP_TIMEOUT_SECONDS)
        return tuple(row) if row is not None else None

    def get(self, business_id: str, stamp: Stamp) -> V | None:
        entry = self._entries.get(business_id)
        if entry is None or entry[0] != stamp:
            return None
        self._entries.move_to_end(business_id)
        return entry[1]

    def put(self, business_id: str, stamp: Stamp, view: V) -> None:
        self._entries[business_id] = (stamp, view)
        self._entries.move_to_end(business_id)
        if len(self._entries) > ENTRIES:
            self._entries.popitem(last=False)

    async def _open_pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=1, max_size=STAMP_CONNECTIONS, reset=_nothing_to_reset, **self._connect_args
                )
            return self._pool

    def _close_pool(self, _engine: Engine) -> None:
        """Closed with the engine's pool (``AsyncEngine.dispose()``, at shutdown); a later read opens one."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await_(pool.close())  # dispose() runs this in SQLAlchemy's greenlet, where awaiting is allowed
        except Exception:  # noqa: BLE001 - a sync dispose(), or a closed loop: close without the goodbyes
            pool.terminate()


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """A stamp read changes no session state: skip asyncpg's reset query (a round trip) on each release."""


def _asyncpg_connect_args(engine: AsyncEngine) -> dict[str, Any]:
    """The engine's host, port, user, password, database and driver options, as asyncpg.connect takes them."""
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    for key in _SQLALCHEMY_ONLY:
        kwargs.pop(key, None)
    kwargs.setdefault("server_settings", {"application_name": "bankfeeds-bff"})
    return dict(kwargs)
