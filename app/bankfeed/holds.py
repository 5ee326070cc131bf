"""Why Codat would take no write from a bank-feed account now (its "hold"), from what we know of the feed.

- ``no_connection``: the business has no live connection (Codat deleted the company, or none was made);
- ``connection_unlinked`` / ``connection_deauthorized``: Codat's status for the current connection;
- ``account_pending`` / ``account_disconnected``: the account is not connected on the current connection
  (after a reconnect, until the user finishes connecting it in the books);
- ``credentials_revoked`` / ``refused_by_codat``: ``feed_account.write_hold``: it shows connected, but we
  revoked its (QuickBooks) credentials, or Codat refused a push for the account (e.g. a disconnect in the
  books that Codat had not reported yet). Cleared when Codat reports the account connected again.

The view shows the message; app/transactions holds the account's transactions while there is one.
"""

from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.bankfeed.models import FeedAccount, FeedConnection
from app.bankfeed.platforms import by_key

BROKEN_CONNECTION = ("Unlinked", "Deauthorized")  # Codat: no new read or write until re-linked

CREDENTIALS_REVOKED = "credentials_revoked"
REFUSED_BY_CODAT = "refused_by_codat"

MESSAGES = {  # {platform}: the name users know (app/bankfeed/platforms.py)
    "no_connection": "There is no live {platform} connection: connect again to resume.",
    "connection_unlinked": "The {platform} connection was unlinked: reconnect to resume.",
    "connection_deauthorized": "Codat lost access to {platform} (Deauthorized): reconnect to resume.",
    "account_pending": "The account is not connected in {platform} yet: finish connecting it.",
    "account_disconnected": "The account was disconnected in {platform}: reconnect to resume.",
    CREDENTIALS_REVOKED: "The {platform} credentials were revoked: link the account again with new ones.",
    REFUSED_BY_CODAT: "Codat refused writes for this account: reconnect to resume.",
}


class ConnectionOfFeed(Protocol):
    """What a hold depends on of the business's current connection (an ORM row or a plain one)."""

    @property
    def codat_connection_id(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...


class AccountOnFeed(Protocol):
    """What a hold depends on of an account's row on the connection (an ORM row or a plain one)."""

    @property
    def registered(self) -> bool: ...
    @property
    def status(self) -> str | None: ...
    @property
    def write_hold(self) -> str | None: ...


def message(hold: str, connection: FeedConnection | None) -> str:
    """The hold's message for the user, naming the connection's platform."""
    return MESSAGES[hold].format(platform=by_key(connection.platform if connection else None).label)


def hold_of(connection: ConnectionOfFeed | None, feed: AccountOnFeed | None) -> str | None:
    """Why the account's writes are held now; None when they may go."""
    if connection is None or connection.codat_connection_id is None:
        return "no_connection"
    if connection.status in BROKEN_CONNECTION:
        return f"connection_{str(connection.status).lower()}"
    if feed is None or not feed.registered or feed.status != "connected":
        return (
            "account_disconnected"
            if feed is not None and feed.status == "disconnected"
            else "account_pending"
        )
    return feed.write_hold


async def set_write_hold(
    session: AsyncSession, codat_connection_id: str, account_ids: list[str] | None, hold: str | None
) -> None:
    """Hold (or release) writes from these accounts of the connection (all of its accounts when None)."""
    connection_id = (
        select(FeedConnection.id)
        .where(FeedConnection.codat_connection_id == codat_connection_id)
        .scalar_subquery()
    )
    query = update(FeedAccount).where(FeedAccount.connection_id == connection_id)
    if account_ids is not None:
        query = query.where(FeedAccount.account_id.in_(account_ids))
    await session.execute(query.values(write_hold=hold))
