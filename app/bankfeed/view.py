"""The bank-feed view the SPA, the mobile apps and internal services read, and the action it suggests."""

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from app.bankfeed.cache import ViewCache
from app.bankfeed.holds import BROKEN_CONNECTION, hold_of, message
from app.bankfeed.models import Business, FeedConnection
from app.bankfeed.platforms import Flow, by_key
from app.bankfeed.repository import BankAccountRow, BankFeedRepository, FeedAccountRow
from app.bankfeed.schemas import BankFeedOut, ConnectionOut, FeedAccountOut, FeedAction
from app.http import Rendered

ACTION_MESSAGES: dict[FeedAction, str | None] = {  # {platform}: the name users know
    "connect": "Connect your bank accounts to your accounting software.",
    "authorize": "Sign in to {platform} and allow the connection.",
    "finish_in_quickbooks": "Finish connecting your accounts in QuickBooks Online.",
    "map_accounts": "Choose the account in {platform} that each bank account feeds.",
    "enter_code_in_sage": "In Sage, choose Connect bank and type the connection ID and a one-time code.",
    "confirm_in_sage": "Confirm the bank feed in Sage to start it.",
    "connect_new_accounts": "You have accounts that are not in {platform} yet: connect them.",
    "reconnect": "Your bank feed to {platform} has stopped: reconnect to resume it.",
    "none": None,
}
# The call that gives what each action needs; the view itself carries no secret (it is stored and shared).
ACTION_ENDPOINTS: dict[FeedAction, str | None] = {
    "connect": "POST /v1/bank-feed/connect",
    "authorize": "GET /v1/bank-feed/link",
    "finish_in_quickbooks": "GET /v1/bank-feed/link",
    "map_accounts": "GET /v1/bank-feed/mapping",
    "enter_code_in_sage": "POST /v1/bank-feed/sage-code",
    "confirm_in_sage": None,
    "connect_new_accounts": "POST /v1/bank-feed/accounts",
    "reconnect": "POST /v1/bank-feed/reconnect",
    "none": None,
}
UNSETTLED = frozenset({"pending", "connecting", "unknown"})
FEED_ACCOUNTS = TypeAdapter(list[FeedAccountOut])


def account_fields(
    account: BankAccountRow, feed_account: FeedAccountRow | None, connection: FeedConnection | None = None
) -> dict[str, Any]:
    """A `FeedAccountOut`'s fields, validated for every account at once by `bank_feed_view`."""
    registered = feed_account if feed_account is not None and feed_account.registered else None
    hold = hold_of(connection, registered) if registered else None
    target = registered.target_account_id if registered else None
    return {
        "account_id": account.id,
        "account_name": account.name,
        "account_type": account.account_type,
        "currency": account.currency,
        "account_number_last4": account.account_number[-4:],
        "status": (registered.status or "pending") if registered else "not_added",
        "feed_start_date": registered.feed_start_date if registered else None,
        "status_confirmed_at": registered.status_changed_at if registered else None,
        "target_account": {"id": target, "name": registered.target_account_name}
        if registered and target
        else None,
        # Not yet connected is what `action` explains; a hold is about an account that was.
        "writes_held": message(hold, connection) if hold and hold != "account_pending" else None,
    }


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
    unfinished = _unfinished_step(by_key(connection.platform).flow, connection, accounts)
    if unfinished is not None:
        return unfinished
    if "not_added" in statuses:
        return "connect_new_accounts"
    return "none"


def _unfinished_step(
    flow: Flow, connection: FeedConnection, accounts: Sequence[FeedAccountOut]
) -> FeedAction | None:
    """The step of the platform's onboarding flow the user has yet to take, if any."""
    authorized = connection.status != "PendingAuth"
    waiting = [a for a in accounts if a.status in UNSETTLED]
    if flow is Flow.QUICKBOOKS:
        return "finish_in_quickbooks" if waiting else None
    if flow is Flow.SAGE:
        if not authorized:
            return "enter_code_in_sage"
        return "confirm_in_sage" if waiting else None  # Sage 50 waits for Confirm; Accounting does not
    if not authorized:
        return "authorize"
    # Mapped accounts are `connecting` until Codat reports them connected: nothing left for the user.
    return (
        "map_accounts" if any(a.status == "pending" and a.target_account is None for a in waiting) else None
    )


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
    offered = await repo.feed_accounts(connection.id) if connection else []
    return bank_feed_view(business, connection, offered, await repo.bank_accounts(business_id))


def bank_feed_view(
    business: Business,
    connection: FeedConnection | None,
    feed_accounts: Sequence[FeedAccountRow],
    bank_accounts: Sequence[BankAccountRow],
) -> RenderedBankFeed:
    """The view of the business's rows as the caller has them: its current connection, the rows of the
    accounts offered on it, and every registered bank account."""
    offered = {f.account_id: f for f in feed_accounts}
    # One validation for the list: a model built at a time cost ~5 µs more each (500 accounts: 2.5 ms).
    accounts = FEED_ACCOUNTS.validate_python(
        [account_fields(a, offered.get(a.id), connection) for a in bank_accounts]
    )
    action = suggested_action(connection, accounts)
    platform = by_key(connection.platform) if connection else None
    label = platform.label if platform else None
    template = ACTION_MESSAGES[action]
    return RenderedBankFeed(
        business_id=business.id,
        business_name=business.name,
        platform=platform.name if platform else None,
        platform_name=label,
        connection=_connection_out(connection),
        accounts=accounts,
        connected_count=sum(a.status == "connected" for a in accounts),
        link_needed=action != "none",
        action=action,
        action_message=template.format(platform=label or "your accounting software") if template else None,
        action_endpoint=ACTION_ENDPOINTS[action],
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
