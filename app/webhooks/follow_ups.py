"""What some Codat events change beyond the statuses `apply` records: one small handler per event type.

- ``connection.failed``: the error of its ``dataConnectionErrors`` is kept on the connection (the view shows
  it, with the action ``reconnect``) until the connection links;
- ``company.deleted``: the business's company is gone at Codat, and its connections with it: they are
  retired as history, so the view offers ``connect`` and the next connect starts afresh;
- ``bankFeeds.sourceAccount.connected``: QuickBooks linked the account (again): writes Codat refused for it,
  or stopped by revoked credentials, may go (app/transactions/holds.py);
- ``client.rateLimit.reached`` / ``.reset``: the quota Codat reports, as gauges beside the client's own.

Each returns the business whose bank-feed view changed, if any.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from app.bankfeed.holds import set_write_hold
from app.bankfeed.models import Business, FeedConnection
from app.bankfeed.repository import BankFeedRepository
from app.codat.quota import QUOTA_LIMIT, QUOTA_REMAINING, RATE_LIMITED

FollowUp = Callable[[BankFeedRepository, dict[str, Any], datetime], Awaitable[str | None]]


async def connection_failed(repo: BankFeedRepository, payload: dict[str, Any], at: datetime) -> str | None:
    connection = payload.get("connection") or {}
    errors = connection.get("dataConnectionErrors") or []
    message = next((e.get("errorMessage") for e in reversed(errors) if isinstance(e, dict)), None)
    result = await repo.session.execute(
        update(FeedConnection)
        .where(FeedConnection.codat_connection_id == str(connection.get("id")))
        .values(last_error=message or "Codat reported that linking failed.")
        .returning(FeedConnection.business_id)
    )
    return result.scalar_one_or_none()


async def connection_linked(repo: BankFeedRepository, payload: dict[str, Any], at: datetime) -> str | None:
    connection = payload.get("connection") or {}
    result = await repo.session.execute(
        update(FeedConnection)
        .where(FeedConnection.codat_connection_id == str(connection.get("id")))
        .where(FeedConnection.last_error.is_not(None))
        .values(last_error=None)
        .returning(FeedConnection.business_id)
    )
    return result.scalar_one_or_none()


async def company_deleted(repo: BankFeedRepository, payload: dict[str, Any], at: datetime) -> str | None:
    business_id = await repo.session.scalar(
        select(Business.id).where(Business.codat_company_id == str(payload.get("id")))
    )
    if business_id is None:
        return None
    current = await repo.current_connection(business_id)
    if current is not None:
        await repo.retire_connection(current.id, "Deleted")
    await repo.session.execute(
        update(Business)
        .where(Business.id == business_id)
        .values(codat_company_id=None, company_request_key=None, company_requested_at=None)
    )
    return business_id


async def account_connected(repo: BankFeedRepository, payload: dict[str, Any], at: datetime) -> str | None:
    account = payload.get("sourceAccount") or {}
    await set_write_hold(repo.session, str(payload.get("connectionId")), [str(account.get("id"))], None)
    return None  # the status change itself is recorded (and announced) by `apply`


async def rate_limit(repo: BankFeedRepository, payload: dict[str, Any], at: datetime) -> str | None:
    if isinstance(payload.get("dailyQuota"), int):
        QUOTA_LIMIT.set(payload["dailyQuota"])
    if isinstance(payload.get("quotaRemaining"), int):
        QUOTA_REMAINING.set(payload["quotaRemaining"])
    RATE_LIMITED.set(1 if payload.get("quotaRemaining") == 0 else 0)
    return None


FOLLOW_UPS: dict[str, FollowUp] = {
    "connection.failed": connection_failed,
    "connection.connected": connection_linked,
    "connection.reconnected": connection_linked,
    "company.deleted": company_deleted,
    "bankFeeds.sourceAccount.connected": account_connected,
    "client.rateLimit.reached": rate_limit,
    "client.rateLimit.reset": rate_limit,
}
