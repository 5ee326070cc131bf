"""Bodies of the onboarding endpoints: registering businesses and accounts, connecting, links, credentials."""

import re
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from app.bankfeed.currencies import ISO_4217
from app.bankfeed.schemas import (
    ACCOUNT_TYPE_ALIASES,
    SUPPORTED_COUNTRIES,
    AccountTypeName,
    ApiModel,
    ConnectionStatus,
    DisplayName,
    FeedAccountOut,
    Identifier,
    StrictApiModel,
    UtcDateTime,
)
from app.inputs import Flag, Money


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


class ConnectOut(LinkOut):
    accounts: list[FeedAccountOut]
    credentials: CredentialsOut | None = Field(None, description="Only when asked for (`withCredentials`).")


class ReconnectIn(StrictApiModel):
    with_credentials: Flag = Field(
        False, description="Also make one-time QuickBooks credentials (in-app flow)."
    )
