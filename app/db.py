"""Engine, sessions and the declarative base.

One commit point per unit of work: request handlers get a session whose transaction commits when the
endpoint returns (before the response is sent) and rolls back on error. Code that calls Codat never holds
that session across the call: it uses ``sessionmaker.begin()`` for short transactions around it.
"""

import weakref
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Generic, TypeVar, cast

from fastapi import Depends, Request
from sqlalchemy import CursorResult, Engine, Insert, MetaData, Result, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from app.config import Settings
from app.crypto import use_keys

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class PerEngine(Generic[T]):
    """One T for each engine, so one per process: made on first use, dropped with the engine."""

    def __init__(self) -> None:
        self._made: weakref.WeakKeyDictionary[Engine, T] = weakref.WeakKeyDictionary()

    def of(self, engine: AsyncEngine, make: Callable[[], T]) -> T:
        made = self._made.get(engine.sync_engine)
        if made is None:
            made = self._made[engine.sync_engine] = make()
        return made


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(settings: Settings, application_name: str = "bankfeeds-bff") -> AsyncEngine:
    if settings.database.encryption_key is not None:
        use_keys(settings.database.encryption_key.get_secret_value())  # for the encrypted columns
    url = settings.database.url
    if settings.uses_sqlite:
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url,
        pool_size=settings.database.pool_size,
        max_overflow=settings.database.max_overflow,
        pool_recycle=600,
        # The connection returned last is handed out next: its prepared statements (asyncpg prepares each
        # statement once per connection) and its types are warm, where a FIFO pool rotates through all.
        pool_use_lifo=True,
        # A failed statement's error text would otherwise carry its parameters, e.g. one-time credentials.
        hide_parameters=True,
        connect_args={
            "server_settings": {"application_name": application_name},
            "command_timeout": settings.database.command_timeout_seconds,
        },
    )
    event.listen(engine.sync_engine.pool, "checkout", _replace_if_closed)
    return engine


def _replace_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server ended (a restart, a failover, an idle timeout) is replaced at checkout.

    Rather than `pool_pre_ping`, whose ping through asyncpg is three round trips (BEGIN, a query, ROLLBACK) on
    every checkout: when the server ends a connection it closes the socket, and asyncpg marks the connection
    closed as soon as the event loop reads that, so looking costs nothing. The pool retries the checkout with
    a new connection on DisconnectionError."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:  # the DB-API connection is untyped
    # WAL lets the dev server read while a write is in progress; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def one_statement_sessions(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions for work that is one statement, whole on its own: on Postgres without a transaction around it
    (BEGIN and COMMIT are a round trip each); elsewhere (SQLite, where such work takes several statements)
    the sessions themselves."""
    engine: AsyncEngine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        return sessions
    return create_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_sessionmaker(request)() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def insert_ignoring_conflicts(
    session: AsyncSession, model: type[Base], rows: list[dict[str, Any]], conflict_columns: list[str]
) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` on Postgres and SQLite: two writers of a row both succeed."""
    return ignoring_conflicts(session, model, conflict_columns).values(rows)


def ignoring_conflicts(
    session: AsyncSession, model: type[Base] | Table, conflict_columns: list[str]
) -> Insert:
    """The same statement without values, to execute with rows as parameters: the same small statement,
    compiled once, whatever the rows (building a multi-row VALUES took ~80 ms for 500). On a Table rather
    than a model, a Core insert, whose result tells how many rows it inserted."""
    return dialect_insert(session)(model).on_conflict_do_nothing(index_elements=conflict_columns)


def dialect_insert(
    session: AsyncSession,
) -> Callable[[type[Base] | Table], postgresql.Insert | sqlite.Insert]:
    """Postgres's or SQLite's INSERT, for their ON CONFLICT clauses."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed: SQLAlchemy types its result as Result, not CursorResult."""
    return cast(CursorResult[Any], result).rowcount
