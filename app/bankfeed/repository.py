"""All SQL of the onboarding domain. Methods take domain arguments; the caller owns the transaction."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    Date,
    Integer,
    TableValuedAlias,
    Text,
    UnaryExpression,
    Update,
    bindparam,
    case,
    cast,
    delete,
    false,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.util import AliasedClass

from app.bankfeed.exceptions import BusinessNotFound
from app.bankfeed.models import BankAccount, Business, FeedAccount, FeedConnection
from app.bankfeed.schemas import DEFAULT_TIME_ZONES
from app.db import Base, ignoring_conflicts, rows_changed


@dataclass(frozen=True, slots=True)
class FeedAccountOutcome:
    account_id: str
    status: str | None
    feed_start_date: date | None


@dataclass(frozen=True, slots=True)
class ConnectionOutcome:
    codat_connection_id: str
    status: str
    link_url: str
    link_expires_at: datetime


# Plain rows rather than ORM objects where a business's every account is read: 500 ORM objects cost ~10 ms to
# load and their changes are tracked attribute by attribute, where these cost well under a millisecond.


@dataclass(frozen=True, slots=True)
class BankAccountRow:
    """A registered bank account: what is offered to Codat and shown in the view."""

    id: str
    name: str
    account_type: str
    account_number: str
    routing_number: str | None
    currency: str
    balance: Decimal


@dataclass(slots=True)
class FeedAccountRow:
    """A bank account's row on a connection; connect updates it as it records Codat's answers."""

    account_id: str
    request_key: str
    registered: bool
    status: str | None
    feed_start_date: date | None
    status_changed_at: datetime | None
    target_account_id: str | None
    target_account_name: str | None
    write_hold: str | None


def new_request_key() -> str:
    return str(uuid.uuid4())


class BankFeedRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _on_postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    # Businesses and their bank accounts (written by internal services)

    async def get_business(self, business_id: str) -> Business | None:
        return await self.session.get(Business, business_id)

    async def require_business(self, business_id: str) -> Business:
        business = await self.get_business(business_id)
        if business is None:
            raise BusinessNotFound()
        return business

    async def upsert_business(
        self, business_id: str, name: str, country: str, time_zone: str | None = None
    ) -> Business:
        time_zone = time_zone or DEFAULT_TIME_ZONES[country]
        business = await self.get_business(business_id)
        if business is None:
            business = Business(id=business_id, name=name, country=country, time_zone=time_zone)
            self.session.add(business)
        elif (business.name, business.country, business.time_zone) != (name, country, time_zone):
            business.name, business.country, business.time_zone = name, country, time_zone
            business.feed_version += 1
        await self.session.flush()
        return business

    async def get_bank_account(self, business_id: str, account_id: str) -> BankAccount | None:
        return await self.session.get(BankAccount, (business_id, account_id))

    async def bank_accounts(self, business_id: str) -> list[BankAccountRow]:
        """The business's registered accounts, by id."""
        rows = await self.session.execute(_BANK_ACCOUNT_ROWS, {"business": business_id})
        return [BankAccountRow(*row) for row in rows]

    async def save_bank_account(self, account: BankAccount) -> BankAccount:
        merged = await self.session.merge(account)
        await self.bump_feed_version(account.business_id)
        return merged

    async def bump_feed_version(self, business_id: str) -> None:
        await self.session.execute(
            update(Business).where(Business.id == business_id).values(feed_version=Business.feed_version + 1)
        )

    # Codat company

    async def claim_company_request_key(self, business_id: str, now: datetime, stale_before: datetime) -> str:
        """The create-company idempotency key every caller uses: stored once, replaced only when stale.

        A stale key (older than any request could still be using) is replaced, atomically, so that Codat's
        replay of an old answer (its cache keeps even a 5xx for 90 minutes) cannot block the business.
        """
        params = {"business": business_id, "key": new_request_key(), "now": now, "stale_before": stale_before}
        claimed = await self.session.scalar(_CLAIM_COMPANY_KEY, params)
        if claimed is not None:
            return claimed
        key = await self.session.scalar(_COMPANY_KEY, params)
        assert key is not None
        return key

    # Codat connections

    async def current_connection(self, business_id: str) -> FeedConnection | None:
        query = select(FeedConnection).where(
            FeedConnection.business_id == business_id, FeedConnection.is_current.is_(True)
        )
        return await self.session.scalar(query)

    async def business_connection_and_account_ids(
        self, business_id: str
    ) -> tuple[Business, FeedConnection | None, list[str]]:
        """The business, its `latest_connection` and its bank accounts' ids (sorted), in one query: what
        connect reads before its first call."""
        row = (await self.session.execute(_CONNECT_READS, {"business": business_id})).one_or_none()
        if row is None:
            raise BusinessNotFound()
        business, latest, account_ids = row
        return business, latest, sorted(account_ids.split(" ")) if account_ids else []

    async def latest_connection(self, business_id: str) -> FeedConnection | None:
        """The current connection, else the newest kept as history."""
        return await self.session.scalar(_LATEST_CONNECTION, {"business": business_id})

    async def get_connection(self, connection_id: int) -> FeedConnection | None:
        return await self.session.get(FeedConnection, connection_id, populate_existing=True)

    async def add_connection_intent(
        self, business_id: str, platform_key: str, now: datetime
    ) -> FeedConnection:
        connection = FeedConnection(
            business_id=business_id,
            is_current=True,
            platform=platform_key,
            request_key=new_request_key(),
            created_at=now,
        )
        self.session.add(connection)
        await self.session.flush()
        return connection

    async def known_connection_ids(self, business_id: str) -> set[str]:
        query = select(FeedConnection.codat_connection_id).where(
            FeedConnection.business_id == business_id, FeedConnection.codat_connection_id.is_not(None)
        )
        return set((await self.session.scalars(query)).all())  # type: ignore[arg-type]

    async def renew_connection_intent(self, stale: FeedConnection, now: datetime) -> FeedConnection:
        """Swap a connection intent Codat never confirmed for a new one with a new key (and a new clock)."""
        await self.session.execute(
            delete(FeedConnection).where(
                FeedConnection.id == stale.id, FeedConnection.codat_connection_id.is_(None)
            )
        )
        return await self.current_connection(stale.business_id) or await self.add_connection_intent(
            stale.business_id, stale.platform, now
        )

    async def retire_connection(self, connection_id: int, status: str | None = None) -> None:
        """Keep the connection as history; `status` records why when Codat has no status for it (Deleted)."""
        values: dict[str, object] = {"is_current": False}
        if status is not None:
            values["status"] = status
        await self.session.execute(
            update(FeedConnection).where(FeedConnection.id == connection_id).values(**values)
        )

    async def claim_link_lease(
        self, connection_id: int, now: datetime, until: datetime, fresh_until: datetime
    ) -> bool:
        """Take the right to refresh this connection's link; False when another refresher holds it or has
        just stored a link that lasts past `fresh_until` (checked in the same statement: no race)."""
        result = await self.session.execute(
            update(FeedConnection)
            .where(FeedConnection.id == connection_id)
            .where(or_(FeedConnection.link_lease_until.is_(None), FeedConnection.link_lease_until < now))
            .where(
                or_(FeedConnection.link_expires_at.is_(None), FeedConnection.link_expires_at <= fresh_until)
            )
            .values(link_lease_until=until)
            # The row loaded in this session is re-read anyway; evaluating the WHERE in Python would compare
            # SQLite's naive datetimes with aware ones.
            .execution_options(synchronize_session=False)
        )
        return rows_changed(result) == 1

    async def store_link(
        self, connection_id: int, link_url: str, expires_at: datetime, now: datetime
    ) -> None:
        await self.session.execute(
            update(FeedConnection)
            .where(FeedConnection.id == connection_id)
            .values(link_url=link_url, link_expires_at=expires_at, link_lease_until=None, confirmed_at=now)
        )

    async def release_link_lease(self, connection_id: int) -> None:
        await self.session.execute(
            update(FeedConnection).where(FeedConnection.id == connection_id).values(link_lease_until=None)
        )

    # Source accounts on a connection

    async def feed_accounts(self, connection_id: int) -> list[FeedAccountRow]:
        """The rows of the accounts offered on the connection (registered at Codat or not yet)."""
        rows = await self.session.execute(_FEED_ACCOUNT_ROWS, {"connection": connection_id})
        return [FeedAccountRow(*row) for row in rows]

    async def add_feed_account_intents(
        self, connection_id: int, business_id: str, account_ids: Sequence[str]
    ) -> list[FeedAccountRow]:
        """Rows (with their idempotency keys) for accounts not yet on the connection; existing rows win.
        Answers every row on the connection."""
        keys = [new_request_key() for _ in account_ids]
        if account_ids and self._on_postgres():
            params = {
                "connection": connection_id,
                "business": business_id,
                "account_ids": list(account_ids),
                "request_keys": keys,
            }
            await self.session.execute(_FEED_ACCOUNT_INTENTS, params)
        elif account_ids:
            rows = [
                {
                    "connection_id": connection_id,
                    "business_id": business_id,
                    "account_id": account_id,
                    "request_key": key,
                    "registered": False,
                }
                for account_id, key in zip(account_ids, keys, strict=True)
            ]
            await self.session.execute(
                ignoring_conflicts(self.session, FeedAccount, ["connection_id", "account_id"]), rows
            )
        return await self.feed_accounts(connection_id)

    async def record_connect_outcomes(
        self,
        business_id: str,
        connection_id: int | None,
        made: ConnectionOutcome | None,
        accounts: Sequence[FeedAccountOutcome],
        codat_company_id: str | None,
    ) -> None:
        """What Codat made in a connect (the connection, the source accounts, the company) and the business's
        feed_version bumped, in the lock order of every writer (connection, accounts, business last).

        On Postgres one statement: each write is a CTE that the business's UPDATE waits for (its WHERE counts
        their rows, so they run to completion before the business row is locked): one round trip and one
        statement to compile where there were four, and whole on its own, so it needs no transaction around
        it. SQLite runs them one by one.
        """
        assert connection_id is not None or (made is None and not accounts)  # None: only a company was made
        params: dict[str, Any] = {"business": business_id, "connection": connection_id}
        if made is not None:
            params |= {
                "made_id": made.codat_connection_id,
                "made_status": made.status,
                "made_link_url": made.link_url,
                "made_link_expires_at": made.link_expires_at,
            }
        if codat_company_id is not None:
            params["company"] = codat_company_id
        if not self._on_postgres():
            if made is not None:
                await self.session.execute(_CONNECTION_MADE, params)
            if accounts and connection_id is not None:
                await self.session.execute(update(FeedAccount), _feed_account_rows(connection_id, accounts))
            await self.session.execute(_bumped_business(codat_company_id is not None), params)
            return
        if accounts:
            params |= {
                "account_ids": [a.account_id for a in accounts],
                "statuses": [a.status for a in accounts],
                "feed_start_dates": [
                    a.feed_start_date.isoformat() if a.feed_start_date else None for a in accounts
                ],
            }
        statement = _connect_outcomes(made is not None, bool(accounts), codat_company_id is not None)
        await self.session.execute(statement, params)

    async def record_mapping(
        self, connection_id: int, account_id: str, target_id: str | None, target_name: str | None, status: str
    ) -> None:
        """The target an account was mapped to, and Codat's answer (`connecting`), unless the webhook saying
        it connected came first."""
        await self.session.execute(
            update(FeedAccount)
            .where(FeedAccount.connection_id == connection_id, FeedAccount.account_id == account_id)
            .values(
                target_account_id=target_id,
                target_account_name=target_name,
                status=case((FeedAccount.status == "connected", FeedAccount.status), else_=status),
            )
        )

    # Statuses from Codat (webhooks and reconciliation): never moved backwards by an older report.
    # They return the business whose view changed; the caller bumps its feed_version *last*, so every writer
    # locks rows in one order (connection, then accounts, then business) and none deadlocks another.

    async def apply_connection_status(
        self, codat_connection_id: str, status: str, at: datetime
    ) -> str | None:
        """Record the status if `at` is newer than what we have; the business id when something changed."""
        result = await self.session.execute(
            update(FeedConnection)
            .where(FeedConnection.codat_connection_id == codat_connection_id)
            .where(or_(FeedConnection.status_changed_at.is_(None), FeedConnection.status_changed_at < at))
            .values(status=status, status_changed_at=at)
            .returning(FeedConnection.business_id, FeedConnection.status)
        )
        return _business_of(result.one_or_none())

    async def apply_account_status(
        self,
        codat_connection_id: str,
        account_id: str,
        status: str | None,
        feed_start_date: date | None,
        at: datetime,
    ) -> str | None:
        connection_id = (
            select(FeedConnection.id)
            .where(FeedConnection.codat_connection_id == codat_connection_id)
            .scalar_subquery()
        )
        result = await self.session.execute(
            update(FeedAccount)
            .where(FeedAccount.connection_id == connection_id, FeedAccount.account_id == account_id)
            .where(or_(FeedAccount.status_changed_at.is_(None), FeedAccount.status_changed_at < at))
            .values(status=status, feed_start_date=feed_start_date, status_changed_at=at, registered=True)
            .returning(FeedAccount.business_id, FeedAccount.status)
        )
        return _business_of(result.one_or_none())

    async def unsettled_connections(self, confirmed_before: datetime, limit: int) -> Sequence[FeedConnection]:
        """Current connections whose state may still change and that nobody confirmed lately."""
        query = (
            select(FeedConnection)
            .where(FeedConnection.is_current.is_(True), FeedConnection.codat_connection_id.is_not(None))
            .where(or_(FeedConnection.confirmed_at.is_(None), FeedConnection.confirmed_at < confirmed_before))
            .order_by(FeedConnection.confirmed_at.is_not(None), FeedConnection.confirmed_at)
            .limit(limit)
        )
        return (await self.session.scalars(query)).all()

    async def feed_version(self, business_id: str) -> int | None:
        return await self.session.scalar(select(Business.feed_version).where(Business.id == business_id))

    async def view_stamp(self, business_id: str) -> tuple[object, ...] | None:
        """What the bank-feed view's cache compares (app/bankfeed/cache.py): feed_version, bumped with every
        change to the accounts, their statuses and the name, and what of the current connection the view
        shows, which changes without a bump. None when there is no such business."""
        query = (
            select(
                Business.feed_version,
                Business.created_at,
                FeedConnection.id,
                FeedConnection.codat_connection_id,
                FeedConnection.status,
                FeedConnection.confirmed_at,
            )
            .outerjoin(
                FeedConnection,
                (FeedConnection.business_id == Business.id) & FeedConnection.is_current.is_(True),
            )
            .where(Business.id == business_id)
        )
        row = (await self.session.execute(query)).one_or_none()
        return tuple(row) if row is not None else None


# Postgres: one statement over arrays (unnest) for every row, where executemany runs a statement per row
# (for 500 accounts, ~25 ms each way on the SMB's wait). SQLite keeps executemany: one prepared statement
# stepped in C. Every array is text[]: asyncpg knows its codec, where a varchar[] or date[] parameter costs
# a type introspection query (8-15 ms) on each connection's first use. Connect's statements are built once,
# with parameters: building an INSERT … SELECT or an UPDATE with CTEs cost more CPU than running it.


def _text_arrays(**columns: str) -> TableValuedAlias:
    """`unnest(array, array, …) AS rows(column, column, …)`: one text[] parameter per column, by name."""
    arrays = [bindparam(parameter, type_=postgresql.ARRAY(Text)) for parameter in columns.values()]
    return func.unnest(*arrays).table_valued(*columns).render_derived(name="rows")


# Connect's reads and writes before its first Codat call, built once (see above).
def _latest_first(
    connection: type[FeedConnection] | AliasedClass[FeedConnection],
) -> tuple[UnaryExpression[Any], ...]:
    """A business's latest connection first: the current one, else the newest kept as history."""
    return connection.is_current.desc(), connection.id.desc()


_LATEST_CONNECTION = (
    select(FeedConnection)
    .where(FeedConnection.business_id == bindparam("business"))
    .order_by(*_latest_first(FeedConnection))
    .limit(1)
)
_NEWEST = aliased(FeedConnection)
_CONNECT_READS = (
    select(
        Business,
        FeedConnection,
        # One string rather than rows: ids match app.inputs.ID_PATTERN, so never hold a space.
        select(func.aggregate_strings(BankAccount.id, " "))
        .where(BankAccount.business_id == Business.id)
        .correlate(Business)
        .scalar_subquery(),
    )
    .outerjoin(
        FeedConnection,
        FeedConnection.id
        == select(_NEWEST.id)
        .where(_NEWEST.business_id == Business.id)
        .order_by(*_latest_first(_NEWEST))
        .limit(1)
        .correlate(Business)
        .scalar_subquery(),
    )
    .where(Business.id == bindparam("business"))
)
_CLAIM_COMPANY_KEY = (
    update(Business)
    .where(Business.id == bindparam("business"), Business.codat_company_id.is_(None))
    .where(
        or_(
            Business.company_request_key.is_(None),
            Business.company_requested_at < bindparam("stale_before"),
        )
    )
    .values(company_request_key=bindparam("key"), company_requested_at=bindparam("now"))
    .returning(Business.company_request_key)
    .execution_options(synchronize_session=False)
)
_COMPANY_KEY = select(Business.company_request_key).where(Business.id == bindparam("business"))


# Core tables, not the ORM entities: a dict of parameters would make an ORM INSERT a bulk one, and connect
# records its outcomes in a session of its own that has none of these rows loaded (nothing to sync). No
# parameter is named as a column: Core would take it as a value to SET.
_BUSINESS = Base.metadata.tables["business"]
_CONNECTIONS = Base.metadata.tables["feed_connection"]
_FEED_ACCOUNTS = Base.metadata.tables["feed_account"]
_NEW = _text_arrays(account_id="account_ids", request_key="request_keys")
_BANK_ACCOUNTS = Base.metadata.tables["bank_account"]
_BANK_ACCOUNT_ROWS = (
    select(*(_BANK_ACCOUNTS.c[f.name] for f in fields(BankAccountRow)))
    .where(_BANK_ACCOUNTS.c.business_id == bindparam("business"))
    .order_by(_BANK_ACCOUNTS.c.id)
)
_FEED_ACCOUNT_ROWS = select(*(_FEED_ACCOUNTS.c[f.name] for f in fields(FeedAccountRow))).where(
    _FEED_ACCOUNTS.c.connection_id == bindparam("connection")
)
_FEED_ACCOUNT_INTENTS = (
    postgresql.insert(_FEED_ACCOUNTS)
    .from_select(
        ["connection_id", "business_id", "account_id", "request_key", "registered"],
        select(
            bindparam("connection", type_=Integer),
            bindparam("business", type_=Text),
            _NEW.c.account_id,
            _NEW.c.request_key,
            false(),
        ),
    )
    .on_conflict_do_nothing(index_elements=["connection_id", "account_id"])
)
_CONNECTION_MADE = (
    update(_CONNECTIONS)
    .where(_CONNECTIONS.c.id == bindparam("connection"))
    .values(
        codat_connection_id=bindparam("made_id"),
        status=bindparam("made_status"),
        link_url=bindparam("made_link_url"),
        link_expires_at=bindparam("made_link_expires_at"),
    )
)
_ANSWERS = _text_arrays(account_id="account_ids", status="statuses", feed_start_date="feed_start_dates")
_FEED_ACCOUNTS_REGISTERED = (
    update(_FEED_ACCOUNTS)
    .where(_FEED_ACCOUNTS.c.connection_id == bindparam("connection"))
    .where(_FEED_ACCOUNTS.c.account_id == _ANSWERS.c.account_id)
    .values(registered=True, status=_ANSWERS.c.status, feed_start_date=cast(_ANSWERS.c.feed_start_date, Date))
)


@cache
def _bumped_business(company_made: bool) -> Update:
    bumped = (
        update(_BUSINESS)
        .where(_BUSINESS.c.id == bindparam("business"))
        .values(feed_version=_BUSINESS.c.feed_version + 1)
    )
    return bumped.values(codat_company_id=bindparam("company")) if company_made else bumped


@cache
def _connect_outcomes(connection_made: bool, accounts: bool, company_made: bool) -> Update:
    """Postgres: the writes as CTEs the business's UPDATE waits for (their rows counted in its WHERE)."""
    business = _bumped_business(company_made)
    writes = [_CONNECTION_MADE] if connection_made else []
    if accounts:
        writes.append(_FEED_ACCOUNTS_REGISTERED)
    for number, write in enumerate(writes):
        done = write.returning(literal(1)).cte(f"write_{number}")
        business = business.where(select(func.count()).select_from(done).scalar_subquery() >= 0)
    return business


def _feed_account_rows(connection_id: int, accounts: Sequence[FeedAccountOutcome]) -> list[dict[str, Any]]:
    """Parameters of an UPDATE by primary key, a row each (executemany, SQLite)."""
    return [
        {
            "connection_id": connection_id,
            "account_id": a.account_id,
            "registered": True,
            "status": a.status,
            "feed_start_date": a.feed_start_date,
        }
        for a in accounts
    ]


def _business_of(row: tuple[str, str | None] | None) -> str | None:
    return row[0] if row is not None else None
