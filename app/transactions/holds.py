"""Held deliveries: when Codat would refuse an account's transactions, they wait here instead of failing.

Codat takes no write on an Unlinked or Deauthorized connection, none for an account that is not connected,
and none from an account whose QuickBooks credentials were revoked. Transactions accepted for such an account
are kept queued, in order, and the worker leaves them alone until the feed is mended (a reconnect, or the
account linked again with new credentials); then they go out in the order accepted, once each.

Why an account is held, and what mends it: app/bankfeed/holds.py.
"""

from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.bankfeed.models import FeedAccount, FeedConnection
from app.bankfeed.platforms import BY_NAME, Platform, by_key
from app.bankfeed.repository import BankFeedRepository, FeedAccountRow
from app.clock import as_utc

# Codat names the target, not a transaction, when it refuses a push because of the account or connection.
TARGET_ITEMS = frozenset({"accountId", "connectionId"})
QUICKBOOKS = BY_NAME["quickbooks-online"]
# Where it is latest on Earth (UTC+14). Codat gives Xero's year no time zone: counted from the date there, the
# window never takes a transaction that is a year old by some other time zone's date.
LATEST_ON_EARTH = timedelta(hours=14)
# QuickBooks takes history up to this many days before the feed start date, on an account's first write.
HISTORY_DAYS = 7
# A disconnect made in QuickBooks reaches Codat this long after (Codat's QBO Bank Feeds page).
DISCONNECT_LAG = timedelta(days=10)
UNPULLED_WARNING = (
    "Codat took it, but the account was disconnected in QuickBooks up to 10 days before Codat reported it: "
    "QuickBooks may never have pulled it. Send it again after reconnecting if it is missing there."
)


async def current_feed(
    session: AsyncSession, business_id: str, account_id: str
) -> tuple[FeedConnection | None, FeedAccountRow | None]:
    repo = BankFeedRepository(session)
    connection = await repo.current_connection(business_id)
    if connection is None:
        return None, None
    feeds = await repo.feed_accounts(connection.id)
    return connection, next((f for f in feeds if f.account_id == account_id), None)


async def current_platform(session: AsyncSession, business_id: str) -> Platform:
    """The platform the business's current connection feeds; QuickBooks Online until it has one."""
    query = select(FeedConnection.platform).where(
        FeedConnection.business_id == business_id, FeedConnection.is_current.is_(True)
    )
    return by_key(await session.scalar(query))


def unpulled_since(platform: Platform, feed: FeedAccountRow | None) -> datetime | None:
    """For a QuickBooks account Codat reports disconnected: from when a transaction Codat took may never have
    been pulled by QuickBooks (the disconnect may have happened up to the lag before the report). Codat
    documents the lag for QuickBooks only."""
    if platform != QUICKBOOKS:
        return None
    if feed is None or feed.status != "disconnected" or feed.status_changed_at is None:
        return None
    return as_utc(feed.status_changed_at) - DISCONNECT_LAG


async def latest_feed_start(session: AsyncSession, business_id: str, account_id: str) -> date | None:
    """The feed start date the account was given most recently (by QuickBooks, or at mapping or in Sage);
    None if it was never connected."""
    query = (
        select(FeedAccount.feed_start_date)
        .where(FeedAccount.business_id == business_id, FeedAccount.account_id == account_id)
        .where(FeedAccount.feed_start_date.is_not(None))
        .order_by(FeedAccount.connection_id.desc())
        .limit(1)
    )
    return await session.scalar(query)


def earliest_date(
    platform: Platform,
    now: datetime,
    local_now: datetime,
    newest: datetime | None,
    feed_start: date | None,
) -> date | None:
    """The earliest cleared date the account takes now; None when the platform has no such window (Sage,
    NetSuite, FreeAgent, Exact: only "not in the future, never older than the newest").

    QuickBooks: yesterday in the business's time zone (``local_now``); on its first write (nothing accepted
    yet), back to 7 days before its feed start date. A platform with ``history_days`` (Xero: 365): that many
    days before today where it is latest on Earth, which is the business's today or the day after."""
    if platform == QUICKBOOKS:
        return _quickbooks_earliest(local_now, newest, feed_start)
    if platform.history_days is not None:
        latest_today = (as_utc(now) + LATEST_ON_EARTH).date()
        return latest_today - timedelta(days=platform.history_days)
    return None


def _quickbooks_earliest(local_now: datetime, newest: datetime | None, feed_start: date | None) -> date:
    yesterday = local_now.date() - timedelta(days=1)
    if newest is not None or feed_start is None:
        return yesterday
    return min(yesterday, feed_start - timedelta(days=HISTORY_DAYS))
