"""Mapping source accounts to accounts in the SMB's books, on the platforms Codat maps (Xero, NetSuite,
FreeAgent, Exact): the books an organisation starts with, the target options Codat offers, and a mapping's
way from ``connecting`` to ``connected``.

Codat filters the options by the source account's currency and type (a USD credit card maps only to USD
credit-card accounts), leaves out targets another source account already feeds, and refuses the rest with a
400 (docs: bank-feeds/mapping/api-mapping, blog 260624-xero-duplicate-feedconnection-prevention).
"""

import asyncio
from dataclasses import dataclass
from datetime import date

from app.sandbox.lifecycle import Lifecycle
from app.sandbox.models import (
    AccountStatus,
    Books,
    Connection,
    ConnectionStatus,
    SourceAccount,
    TargetAccount,
)
from app.sandbox.platforms import profile
from app.sandbox.state import SandboxState

VALIDATOR = "BankFeedMappingValidator"
_CARD_TYPES = {"creditCard", "prepaidCard"}
_MAIN_CURRENCIES = ("GBP", "USD", "EUR")


@dataclass
class MappingRefused(Exception):
    field: str | None
    message: str
    status_code: int = 400


def target_kind(account: SourceAccount) -> str:
    """The kind of target a source account may feed: card accounts feed credit-card accounts, others banks."""
    return "creditCard" if account.account_type in _CARD_TYPES else "bank"


def open_books(state: SandboxState, connection: Connection) -> Books:
    """The organisation the SMB authorizes: a few bank and card accounts, and one account feeds never use."""
    if connection.books is None:
        base = profile(connection.platform_key).base_currency
        others = [c for c in _MAIN_CURRENCIES if c != base]
        accounts = [
            TargetAccount(state.new_id(), "Business Current Account", base, "bank", "10001001", "40-47-84"),
            TargetAccount(state.new_id(), "Business Savings", base, "bank", "10001002", "40-47-84"),
            TargetAccount(state.new_id(), "Business Credit Card", base, "creditCard", "4929"),
            *(
                TargetAccount(state.new_id(), f"{c} Account", c, "bank", f"2000{i}")
                for i, c in enumerate(others)
            ),
            TargetAccount(state.new_id(), "Sales", base, "revenue"),
        ]
        company = state.companies[connection.company_id]
        connection.books = Books(company.name, base, True, [base, *others], {a.id: a for a in accounts})
    return connection.books


def require_mapping_platform(connection: Connection) -> None:
    platform = profile(connection.platform_key)
    if not platform.maps_via_codat:
        raise MappingRefused(
            None, f"Account mapping is not available for {platform.name}: accounts are mapped inside it."
        )


def require_mapping(connection: Connection) -> Books:
    """The books of a Linked connection on a platform Codat maps; else why not."""
    require_mapping_platform(connection)
    if connection.status is not ConnectionStatus.linked or connection.books is None:
        raise MappingRefused(
            None, f"The connection is {connection.status.value}: the SMB must authorize it before mapping."
        )
    return connection.books


def options(connection: Connection, account: SourceAccount) -> list[TargetAccount] | None:
    """The targets ``account`` may feed; None while the books cannot be read (not Linked)."""
    require_mapping_platform(connection)
    if connection.status is not ConnectionStatus.linked or connection.books is None:
        return None
    return [
        target
        for target in connection.books.accounts.values()
        if target.currency == account.currency
        and target.kind == target_kind(account)
        and _fed_by(connection, target.id) in (None, account)
    ]


def map_account(
    state: SandboxState,
    life: Lifecycle,
    connection: Connection,
    account_id: str,
    target_id: str | None,
    feed_start: date,
) -> SourceAccount:
    """Save a mapping (a new target account when ``target_id`` is None); it turns connected shortly after."""
    books = require_mapping(connection)
    account = connection.accounts.get(account_id)
    if account is None:
        raise MappingRefused("sourceAccountId", f"Source account {account_id} not found", 404)
    if account.status in (AccountStatus.connecting, AccountStatus.connected):
        if target_id == account.target_account_id:
            return account  # the same mapping again succeeds, unchanged
        raise MappingRefused(
            "sourceAccountId", f"Source account {account_id} is already mapped to another target account."
        )
    target = _new_target(state, books, account) if target_id is None else books.accounts.get(target_id)
    if target is None:
        raise MappingRefused("targetAccountId", f"No target account {target_id} in the company's books.")
    _check_target(connection, account, target)
    account.target_account_id, account.status = target.id, AccountStatus.connecting
    asyncio.get_running_loop().call_soon(_settle, life, connection, account, target.id, feed_start)
    return account


def _check_target(connection: Connection, account: SourceAccount, target: TargetAccount) -> None:
    if target.currency != account.currency:
        raise MappingRefused(
            "targetAccountId",
            f"The target account is in {target.currency} but the source account is in {account.currency}: "
            "a source account maps only to a target account in the same currency.",
        )
    if target.kind != target_kind(account):
        raise MappingRefused(
            "targetAccountId",
            f"The target account is a {target.kind} account: a {account.account_type} source account maps "
            f"only to a {target_kind(account)} account.",
        )
    if _fed_by(connection, target.id) not in (None, account):
        raise MappingRefused("targetAccountId", "A feed connection already exists to this account.")


def _new_target(state: SandboxState, books: Books, account: SourceAccount) -> TargetAccount:
    if account.currency != books.base_currency and not books.multicurrency:
        raise MappingRefused(
            "sourceAccountId",
            f"Multicurrency is not enabled in the company's books: a new account must be in "
            f"{books.base_currency}, not {account.currency}.",
        )
    target = TargetAccount(state.new_id(), account.account_name, account.currency, target_kind(account))
    books.accounts[target.id] = target
    return target


def _fed_by(connection: Connection, target_id: str) -> SourceAccount | None:
    return next((a for a in connection.accounts.values() if a.target_account_id == target_id), None)


def _settle(
    life: Lifecycle, connection: Connection, account: SourceAccount, target_id: str, start: date
) -> None:
    """The platform confirms the feed: connected, with the bankFeeds.sourceAccount.connected webhook."""
    still_mapped = account.status is AccountStatus.connecting and account.target_account_id == target_id
    if still_mapped and connection.accounts.get(account.id) is account:
        life.connect_account(connection, account, start)
