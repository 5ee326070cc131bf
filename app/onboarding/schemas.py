"""Bodies of the onboarding endpoints: registering businesses and accounts, connecting, links, credentials."""

import re
from datetime import date
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from app.bankfeed.currencies import ISO_4217
from app.bankfeed.platforms import PlatformName
from app.bankfeed.schemas import (
    ACCOUNT_TYPE_ALIASES,
    SUPPORTED_COUNTRIES,
    AccountTypeName,
    ApiModel,
    ConnectionStatus,
    DisplayName,
    FeedAccountOut,
    FeedAction,
    Identifier,
    StrictApiModel,
    TargetAccountOut,
    UtcDateTime,
)
from app.inputs import Flag, Money, Name


def _account_type(value: object) -> object:
    if not isinstance(value, str):
        return value
    key = re.sub(r"[\s_-]", "", value).lower()
    if key not in ACCOUNT_TYPE_ALIASES:
        raise ValueError(f"must be one of checking, savings, loan, creditCard, prepaidCard (got {value!r})")
    return ACCOUNT_TYPE_ALIASES[key]


def _country(value: str) -> str:
    code = value.upper()
    if code not in SUPPORTED_COUNTRIES:
        raise ValueError("QuickBooks Online Bank Feeds is available to businesses in the US and Canada only")
    return code


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone, e.g. America/New_York") from None
    return value


def _currency(value: str) -> str:
    code = value.upper()
    if code not in ISO_4217:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return code


class BusinessIn(StrictApiModel):
    name: DisplayName
    country: Annotated[str, StringConstraints(min_length=2, max_length=2), AfterValidator(_country)] = Field(
        description="US or CA."
    )
    time_zone: Annotated[str, StringConstraints(max_length=64), AfterValidator(_time_zone)] | None = Field(
        None, description="IANA name; decides the business's today for its transactions. Default: by country."
    )


class BusinessOut(ApiModel):
    business_id: str
    name: str
    country: str
    time_zone: str


class BankAccountIn(StrictApiModel):
    name: DisplayName
    account_type: Annotated[AccountTypeName, BeforeValidator(_account_type)]
    account_number: Annotated[str, StringConstraints(min_length=4, max_length=34, pattern=r"^[A-Za-z0-9]+$")]
    routing_number: Annotated[str, StringConstraints(pattern=r"^\d{8,9}$")] | None = Field(
        None, description="ABA routing transit number (US, 9 digits) or Canadian routing number (8–9 digits)."
    )
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3), AfterValidator(_currency)]
    balance: Money


class BankAccountOut(ApiModel):
    account_id: str
    name: str
    account_type: AccountTypeName
    account_number_last4: str
    currency: str
    balance: Decimal


class ConnectIn(StrictApiModel):
    platform: PlatformName | None = Field(
        None,
        description="The accounting platform to feed; default: the current connection's, else "
        "quickbooks-online. Another platform while the connection is live is a `409 platform_in_use`.",
    )
    account_ids: list[Identifier] | None = Field(
        None, min_length=1, max_length=200, description="Registered accounts to feed; all of them if omitted."
    )


class AddAccountsIn(StrictApiModel):
    account_ids: list[Identifier] = Field(min_length=1, max_length=200)


class RenameAccountIn(StrictApiModel):
    account_name: DisplayName


class LinkOut(ApiModel):
    link_url: str = Field(
        description="Codat's Link URL; carries a one-time password. Do not store or share it."
    )
    expires_at: UtcDateTime
    connection_id: str
    connection_status: ConnectionStatus | None


class CredentialsOut(ApiModel):
    username: str
    password: str


class SageCodeOut(ApiModel):
    connection_id: str = Field(description="Typed into Sage with the code.")
    code: str = Field(
        description="A one-time code for Sage; a new one replaces it. Do not store or share it."
    )
    expires_at: UtcDateTime


class ConnectOut(ApiModel):
    platform: PlatformName
    action: FeedAction = Field(description="What the user does next, as in the view.")
    link_url: str | None = Field(
        description="Codat's Link URL (QuickBooks Online and the platforms mapped through Codat); carries a "
        "one-time password: do not store or share it. Null for Sage, which takes `sageCode` instead."
    )
    expires_at: UtcDateTime | None
    connection_id: str
    connection_status: ConnectionStatus | None
    accounts: list[FeedAccountOut]
    credentials: CredentialsOut | None = Field(None, description="Only when asked for (`withCredentials`).")
    sage_code: SageCodeOut | None = Field(
        None, description="Sage only: the connection id and a one-time code to type into Sage."
    )


class SageAuthorizationIn(StrictApiModel):
    authorization_id: Name = Field(
        description="The `authorizationId` Sage put on the fintech's login-page URL."
    )


class TargetOptionOut(ApiModel):
    id: str
    name: str | None
    balance: Decimal | None


class MappingAccountOut(ApiModel):
    account_id: str
    account_name: str
    account_type: AccountTypeName
    currency: str
    status: str | None = Field(description="Codat's mapping status: `pending`, `connecting`, `connected`, …")
    target_account: TargetAccountOut | None
    options: list[TargetOptionOut] = Field(
        description="Accounts in the books this account may feed (same currency and kind, as Codat offers)."
    )


class MappingOut(ApiModel):
    accounts: list[MappingAccountOut]


class MappingIn(StrictApiModel):
    target_account_id: Name | None = Field(
        description="One of the account's `options`; null: create a new account in the books."
    )
    feed_start_date: date | None = Field(None, description="The first day the books take transactions for.")


class ReconnectIn(StrictApiModel):
    with_credentials: Flag = Field(
        False, description="Also make one-time QuickBooks credentials (in-app flow)."
    )
