"""Each business's rendered bank-feed view: kept in Postgres, and in a bounded cache in each process.

A read costs the same for a business this process never saw as for one it just served: at most one indexed
query over raw asyncpg, which returns the view's *stamp* (the business's ``feed_version`` and ``created_at``,
its current connection's id, Codat id, status and ``confirmed_at``) and the view stored by whichever replica
rendered it last, with the stamp it was rendered at. The stored view is served while the two stamps are equal;
otherwise the view is rendered (through the ORM) once and stored for every replica. So a business's view is
rendered once per change, and a write pays nothing for views nobody reads (a webhook burst, a bulk import).

Every change the view shows bumps ``feed_version`` in the transaction that makes it, or changes a column of
the stamp (see BankFeedRepository; tests/onboarding/test_view_cache.py checks the writes there are). The
stamp is read *before* the view is rendered: a change committed in between makes the rendered view newer
than its stamp, never older, and that stamp never comes back, so such a view is just never served.

The per-process cache saves even that query. On Postgres, triggers on the view's tables ``NOTIFY`` the
business's id at commit (migration 0005); each process LISTENs on one connection of its own and drops the
business's entry. An entry is served without a query only while that listener is connected, was connected
before the entry was read (no notification can have been missed), and no write this process committed is
still on its way to it (read-your-writes: the process's own write shows on its next read, even if the
notification is slower than the caller). Whenever the listener is down (or stops answering its heartbeat),
reads fall back to comparing the stamp (one query, always right), and after it reconnects every entry is
checked once more. Each time the listener starts, the process takes in every stored view still current
(and subscribers, the link cache, what they keep), and an app's start waits for the first time (`started`),
so a replica costs no more for a business it never served than for one it did. Why not only the
stamp, as before: the stamp's round trip was most of a cached read's cost. Why not only NOTIFY: a listener
can be down, and nothing then would tell this process what it missed.

On SQLite (dev, the tests without Postgres) there is no stored view and no listener: each read compares the
stamp, read through a short session of its own.
"""

import asyncio
import logging
import re
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import ConnectionPoolEntry

from app.bankfeed.exceptions import BusinessNotFound
from app.bankfeed.repository import BankFeedRepository
from app.db import PerEngine
from app.http import Rendered
from app.rawpool import RawPool

log = logging.getLogger(__name__)

T = TypeVar("T")
Stamp = Any  # Postgres: the text STAMP_SQL makes; SQLite: BankFeedRepository.view_stamp's tuple
Render = Callable[[], Awaitable[Rendered]]
Watermark = tuple[int | None, int, int]  # see ViewCache.watermark
Warm = Callable[[Watermark], Awaitable[None]]  # takes in what is current when a listener starts listening

DEFAULT_ENTRIES = 20_000  # businesses per process; the least recently read is dropped first
LISTEN_RETRY_SECONDS = 1.0
HEARTBEAT_SECONDS = 2.0  # how long a listener's connection may be silently dead before reads stop trusting it
WARM_TIMEOUT_SECONDS = 30.0  # reading every stored view at start (20,000 take well under a second)
CHANNEL = "bank_feed_changed"  # migration 0005's triggers notify it
# The stamp (BankFeedRepository.view_stamp's columns, as one text) and the stored view, in one round trip.
# Times as epoch seconds: their text form would depend on the session's TimeZone.
STAMP = """format('%s|%s|%s|%s|%s|%s', b.feed_version, extract(epoch FROM b.created_at), c.id,
              c.codat_connection_id, c.status, extract(epoch FROM c.confirmed_at))"""
STAMP_SQL = f"""
SELECT {STAMP} AS stamp, v.stamp AS stored_stamp, v.body, v.etag
FROM business AS b
LEFT OUTER JOIN feed_connection AS c ON c.business_id = b.id AND c.is_current
LEFT OUTER JOIN stored_bank_feed_view AS v ON v.business_id = b.id
WHERE b.id = $1
"""
# The stored views still current, for a process that has just started listening: up to $1 of them.
CURRENT_VIEWS_SQL = f"""
SELECT v.business_id, v.stamp, v.body, v.etag
FROM stored_bank_feed_view AS v
JOIN business AS b ON b.id = v.business_id
LEFT OUTER JOIN feed_connection AS c ON c.business_id = b.id AND c.is_current
WHERE v.stamp = {STAMP}
LIMIT $1
"""
STORE_SQL = """
INSERT INTO stored_bank_feed_view (business_id, stamp, body, etag) VALUES ($1, $2, $3, $4)
ON CONFLICT (business_id) DO UPDATE SET stamp = excluded.stamp, body = excluded.body, etag = excluded.etag
"""
_WROTE = "bank_feed_cache_wrote"  # set in a pooled connection's info by a write, until it is checked in
_WRITE_TARGET = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)
VIEW_TABLES = frozenset({"business", "bank_account", "feed_connection", "feed_account"})  # migration 0005


@dataclass(frozen=True, slots=True)
class _Entry:
    stamp: Stamp
    rendered: Rendered
    trusted_in: int | None  # the listener's epoch in which no change to it can have gone unnoticed


class ViewCache:
    """Rendered views by business id. One per engine (per process)."""

    _by_engine: "PerEngine[ViewCache]" = PerEngine()

    @classmethod
    def of(cls, engine: AsyncEngine, entries: int = DEFAULT_ENTRIES) -> "ViewCache":
        return cls._by_engine.of(engine, lambda: cls(engine, entries))

    def __init__(self, engine: AsyncEngine, entries: int = DEFAULT_ENTRIES) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.max_entries = entries
        self._subscribers: list[Callable[[str], None]] = []
        self._warmers: list[Warm] = [self._take_views]
        self._settled = asyncio.Event()
        # The engine keys this cache: a strong reference would keep both forever.
        self._engine = weakref.ref(engine)
        self._postgres = engine.dialect.name == "postgresql"
        self._pool = RawPool.of(engine) if self._postgres else None
        self._listener = None
        if self._pool is not None:
            self._listener = _Listener(self._pool.connect_args, self._changed, self._warm, self._settled.set)
        event.listen(engine.sync_engine, "engine_disposed", self._close)
        if self._listener is not None:
            event.listen(engine.sync_engine, "after_cursor_execute", _note_write)
            event.listen(engine.sync_engine.pool, "checkin", self._checked_in)

    async def served(self, business_id: str, render: Render | None = None) -> Rendered | None:
        """The business's current view; None when it would have to be rendered and `render` is None.

        Raises BusinessNotFound when there is no such business."""
        entry = self._entries.get(business_id)
        if entry is not None and entry.trusted_in is not None and entry.trusted_in == self.trusted_epoch():
            self._entries.move_to_end(business_id)
            return entry.rendered
        watermark = self.watermark()
        stamp, stored = await self._current(business_id)
        if entry is not None and entry.stamp == stamp:
            rendered = entry.rendered
        elif stored is not None:
            rendered = stored
        elif render is None:
            return None
        else:
            rendered = await render()
            await self._store(business_id, stamp, rendered)
        trusted = watermark[0] if watermark[0] is not None and watermark == self.watermark() else None
        self._put(business_id, _Entry(stamp, rendered, trusted))
        return rendered

    async def stamp(self, business_id: str) -> Stamp | None:
        """The business's current stamp (None: no such business), straight from the database."""
        try:
            return (await self._current(business_id))[0]
        except BusinessNotFound:
            return None

    # The process's cache

    def _put(self, business_id: str, entry: _Entry) -> None:
        remember(self._entries, business_id, entry, self.max_entries)

    def subscribe(self, changed: Callable[[str], None], warm: Warm | None = None) -> None:
        """Have `changed` called with each business the listener hears of (other caches trusted alike), and
        `warm` awaited with the watermark each time the listener starts listening (after the views' own)."""
        self._subscribers.append(changed)
        if warm is not None:
            self._warmers.append(warm)

    async def started(self, timeout: float = WARM_TIMEOUT_SECONDS) -> None:
        """Start listening and wait (at most `timeout`) until the first warm-up is over, or the listener's
        first try to connect failed: a replica then serves its first requests as it serves the rest."""
        if self._listener is None:
            return
        self._listener.start()
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            log.warning("view_cache.warm_timeout")

    def _changed(self, business_id: str) -> None:
        self._entries.pop(business_id, None)
        for changed in self._subscribers:
            changed(business_id)

    def trusted_epoch(self) -> int | None:
        """The listener's epoch while entries may be served without a query; None while they may not."""
        if self._listener is None:
            return None
        self._listener.start()
        return self._listener.epoch if self._listener.unsynced == 0 else None

    def watermark(self) -> Watermark:
        """Changes that, had any come while a view was read, make that view unfit to trust: trusted if the
        watermark taken before reading it from the database is still the same, with an epoch, after."""
        if self._listener is None:
            return None, 0, 0
        return self.trusted_epoch(), self._listener.notifications, self._listener.local_writes

    async def _warm(self) -> None:
        """Once listening, take in what is current (the views, then what subscribers keep), so that a
        business this process has never served costs no more than one it has: no query for either (a
        replica's first minutes, and a fleet of 20,000 businesses polled in turn, would otherwise be a query
        a read)."""
        try:
            watermark = self.watermark()
            if watermark[0] is not None:
                for warm in self._warmers:
                    await warm(watermark)
        finally:
            self._settled.set()

    async def current_rows(self, watermark: Watermark, query: str, *args: object) -> list[asyncpg.Record]:
        """What a warm-up (see `subscribe`) takes in: the rows of `query`, or none if it failed or a change
        came while it ran (it could be any of them: reads then fetch their own)."""
        assert self._pool is not None
        try:
            rows = await self._pool.fetch(query, *args, timeout=WARM_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - only a head start: reads fetch what they need meanwhile
            log.warning("view_cache.warm_failed", extra={"error": type(exc).__name__})
            return []
        return rows if watermark == self.watermark() else []

    async def _take_views(self, watermark: Watermark) -> None:
        for row in await self.current_rows(watermark, CURRENT_VIEWS_SQL, self.max_entries):
            if row["business_id"] not in self._entries:
                rendered = Rendered(row["body"], row["etag"])
                self._put(row["business_id"], _Entry(row["stamp"], rendered, watermark[0]))

    def _checked_in(self, _dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # After its commit (or rollback): a write of this process must reach the listener before entries
        # are trusted again, or this process's next read could miss its own write.
        if record.info.pop(_WROTE, False) and self._listener is not None:
            self._listener.local_write_committed()

    # The database

    async def _current(self, business_id: str) -> tuple[Stamp, Rendered | None]:
        if not self._postgres:
            async with AsyncSession(self._engine()) as session:
                stamp = await BankFeedRepository(session).view_stamp(business_id)
            if stamp is None:
                raise BusinessNotFound()
            return stamp, None
        assert self._pool is not None
        row = await self._pool.fetchrow(STAMP_SQL, business_id)
        if row is None:
            raise BusinessNotFound()
        stored = Rendered(row["body"], row["etag"]) if row["stored_stamp"] == row["stamp"] else None
        return row["stamp"], stored

    async def _store(self, business_id: str, stamp: Stamp, rendered: Rendered) -> None:
        if self._pool is not None:
            await self._pool.execute(STORE_SQL, business_id, stamp, rendered.body, rendered.etag)

    def _close(self, _engine: Engine) -> None:
        """Emptied with the engine's disposal (at shutdown); its listener stops."""
        self._entries.clear()
        if self._listener is not None:
            self._listener.stop()


class _Listener:
    """LISTENs for changed businesses on a connection of its own, reconnecting whenever it is lost.

    `epoch` is None while not listening and changes with each new connection: an entry read in an earlier
    epoch may have missed a notification. `unsynced` counts this process's committed writes not yet known to
    have reached it: the connection is asked a round trip after they commit, and Postgres sends a
    notification to its listeners before it tells the writer its commit is done, so any notification of
    theirs is in the connection's stream before that round trip's answer.
    """

    def __init__(
        self,
        connect_args: dict[str, Any],
        changed: Callable[[str], None],
        listening: Callable[[], Coroutine[Any, Any, None]],
        unavailable: Callable[[], None],
    ) -> None:
        self._connect_args = connect_args
        self._changed = changed
        self._listening = listening  # called at the start of each epoch
        self._unavailable = unavailable  # called each time a try to listen fails
        self.epoch: int | None = None
        self._epochs = 0
        self.notifications = 0
        self.local_writes = 0
        self.unsynced = 0
        self._task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._warm_task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        self._round_trips = asyncio.Lock()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen_forever())

    def stop(self) -> None:
        for task in (self._task, self._sync_task, self._warm_task):
            if task is not None:
                task.cancel()
        self._task = self._sync_task = self._warm_task = None
        self.epoch = None
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    def local_write_committed(self) -> None:
        self.local_writes += 1
        if self.epoch is None:
            return  # nothing is trusted while not listening; the next epoch starts after this write
        self.unsynced += 1
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync())

    async def _sync(self) -> None:
        while self.unsynced:
            covered = self.unsynced
            if not await self._round_trip():
                return  # the connection is lost: _listen_forever starts a new epoch
            self.unsynced -= covered

    async def _round_trip(self) -> bool:
        """One query on the listening connection, answered in time; False (the connection ended) if not."""
        connection = self._connection
        if connection is None:
            return False
        async with self._round_trips:  # one query at a time on a connection
            try:
                await asyncio.wait_for(connection.execute("SELECT 1"), HEARTBEAT_SECONDS)
                return True
            except Exception:  # noqa: BLE001 - whatever the reason, it can no longer vouch for anything
                connection.terminate()
                return False

    async def _listen_forever(self) -> None:
        while True:
            lost = asyncio.Event()
            try:
                self._connection = await self._connect()
                self._connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await self._connection.add_listener(CHANNEL, self._notified)
            except Exception as exc:  # noqa: BLE001 - whatever it is, reads check the stamp meanwhile
                log.warning("view_cache.listener_unavailable", extra={"error": type(exc).__name__})
                self._unavailable()
                if self._connection is not None:
                    self._connection.terminate()
                self._connection = None
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            self._epochs += 1
            self.epoch, self.unsynced = self._epochs, 0
            self._warm_task = asyncio.get_running_loop().create_task(self._listening())
            await self._heartbeat(lost)
            self.epoch, self._connection = None, None
            log.warning("view_cache.listener_lost")

    async def _heartbeat(self, lost: asyncio.Event) -> None:
        """Until the connection is lost. One that silently stops answering (a dead peer, a dropped route)
        counts as lost after at most two heartbeats, so no entry is trusted for longer than that."""
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                if not await self._round_trip():
                    return

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(**self._connect_args)

    def _notified(self, _connection: object, _pid: int, _channel: str, business_id: object) -> None:
        self.notifications += 1
        self._changed(str(business_id))  # NOTIFY's payload: always text


def remember(entries: "OrderedDict[str, T]", key: str, value: T, limit: int) -> None:
    """`value` as the most recently used entry; the least recently used beyond `limit` is dropped."""
    entries[key] = value
    entries.move_to_end(key)
    if len(entries) > limit:
        entries.popitem(last=False)


def _note_write(conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
    if writes_to_the_view(statement):
        conn.info[_WROTE] = True


def writes_to_the_view(statement: str) -> bool:
    """Whether a statement may change what a view shows: an INSERT, UPDATE or DELETE of one of its tables,
    or any statement this cannot tell apart (neither a SELECT nor a plain write to another table)."""
    if statement.lstrip()[:6].upper() == "SELECT":
        return False
    target = _WRITE_TARGET.match(statement)
    return target is None or target.group(1).lower() in VIEW_TABLES
