"""The bank-feed view the SPA, the mobile apps and internal services read, and the action it suggests."""

from collections.abc import Sequence
from functools import cached_property

from sqlalchemy.ext.asyncio import AsyncSession

from app.bankfeed.cache import ViewCache
from app.bankfeed.holds import BROKEN_CONNECTION, MESSAGES, hold_of
from app.bankfeed.models import BankAccount, FeedAccount, FeedConnection
from app.bankfeed.repository import BankFeedRepository
from app.bankfeed.schemas import BankFeedOut, ConnectionOut, FeedAccountOut, FeedAction
from app.http import Rendered

ACTION_MESSAGES: dict[FeedAction, str | None] = {
    "connect": "Connect your bank accounts to QuickBooks Online.",
    "finish_in_quickbooks": "Finish connecting your accounts in QuickBooks Online.",
    "connect_new_accounts": "You have accounts that are not in QuickBooks Online yet: connect them.",
    "reconnect": "Your bank feed to QuickBooks Online has stopped: reconnect to resume it.",
    "none": None,
}


def account_out(
    account: BankAccount, feed_account: FeedAccount | None, connection: FeedConnection | None = None
) -> FeedAccountOut:
    registered = feed_account if feed_account is not None and feed_account.registered else None
    hold = hold_of(connection, registered) if registered else None
    return FeedAccountOut(
        account_id=account.id,
        account_name=account.name,
        account_type=account.account_type,
        currency=account.currency,
        account_number_last4=account.account_number[-4:],
        status=(registered.status or "pending") if registered else "not_added",
        feed_start_date=registered.feed_start_date if registered else None,
        status_confirmed_at=registered.status_changed_at if registered else None,
        # Not yet connected is what `action` explains; a hold is about an account that was.
        writes_held=MESSAGES[hold] if hold and hold != "account_pending" else None,
    )


def suggested_action(connection: FeedConnection | None, accounts: Sequence[FeedAccountOut]) -> FeedAction:
    if not accounts:
        return "none"
    if connection is None or connection.codat_connection_id is None:
        return "connect"
    statuses = {a.status for a in accounts}
    if connection.status in BROKEN_CONNECTION or "disconnected" in statuses:
        return "reconnect"
    if connection.last_error or any(a.writes_held for a in accounts):
        return "reconnect"  # linking failed, or the account's credentials were revoked: link it again
    if statuses & {"pending", "connecting", "unknown"}:
        return "finish_in_quickbooks"
    if "not_added" in statuses:
        return "connect_new_accounts"
    return "none"


class RenderedBankFeed(BankFeedOut):
    """A view with its JSON body and ETag, made once. Cached and shared between requests: read-only."""

    @cached_property  # not a pydantic private attribute: reading one of those costs microseconds
    def rendered(self) -> Rendered:
        return Rendered.of(self)


async def served_bank_feed_view(session: AsyncSession, business_id: str) -> Rendered:
    """The business's view as served: stored or cached while current (app/bankfeed/cache.py)."""
    if session.in_transaction():
        return (await render_bank_feed_view(session, business_id)).rendered  # may hold uncommitted writes
    cache = ViewCache.of(session.bind)  # type: ignore[arg-type]

    async def render() -> Rendered:
        return (await render_bank_feed_view(session, business_id)).rendered

    rendered = await cache.served(business_id, render)
    assert rendered is not None  # given `render`, there always is one
    return rendered


async def render_bank_feed_view(session: AsyncSession, business_id: str) -> RenderedBankFeed:
    """The view rendered from the database now, through the ORM (what the stored and cached ones equal)."""
    repo = BankFeedRepository(session)
    business = await repo.require_business(business_id)
    connection = await repo.current_connection(business_id)
    offered = {f.account_id: f for f in await repo.feed_accounts(connection.id)} if connection else {}
    accounts = [
        account_out(a, offered.get(a.id), connection) for a in await repo.list_bank_accounts(business_id)
    ]
    action = suggested_action(connection, accounts)
    return RenderedBankFeed(
        business_id=business.id,
        business_name=business.name,
        connection=_connection_out(connection),
        accounts=accounts,
        connected_count=sum(a.status == "connected" for a in accounts),
        link_needed=action != "none",
        action=action,
        action_message=ACTION_MESSAGES[action],
        state_confirmed_at=connection.confirmed_at if connection else None,
    )


def _connection_out(connection: FeedConnection | None) -> ConnectionOut | None:
    if connection is None:
        return None
    return ConnectionOut(
        connection_id=connection.codat_connection_id,
        status=connection.status,
        created_at=connection.created_at,
        error=connection.last_error,
    )
