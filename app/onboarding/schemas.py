"""The BFF's own request and response bodies (camelCase on the wire), shaped for the apps, not for Codat."""

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from app.clock import as_utc
from app.inputs import Flag, Id, Money, Name
from app.onboarding.currencies import ISO_4217

SUPPORTED_COUNTRIES = ("US", "CA")
# A business that names no time zone gets its country's most populous one.
DEFAULT_TIME_ZONES = {"US": "America/New_York", "CA": "America/Toronto"}

# Codat's source-account enum, and the names internal services commonly use for each.
ACCOUNT_TYPE_ALIASES = {
    "checking": "checking",
    "current": "checking",
    "savings": "savings",
    "loan": "loan",
    "mortgage": "loan",
    "creditcard": "creditCard",
    "credit": "creditCard",
    "prepaidcard": "prepaidCard",
    "prepaid": "prepaidCard",
}
AccountTypeName = Literal["checking", "savings", "loan", "creditCard", "prepaidCard"]
ConnectionStatus = Literal["PendingAuth", "Linked", "Unlinked", "Deauthorized"]  # Codat's enum


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, str_strip_whitespace=True)


class StrictApiModel(ApiModel):
    model_config = ConfigDict(extra="forbid")


Identifier = Id  # one rule for ids and text at the boundary: app/inputs.py
DisplayName = Name
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


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


FeedStatus = Literal["not_added", "pending", "connecting", "connected", "disconnected", "unknown"]


FeedAction = Literal["connect", "finish_in_quickbooks", "connect_new_accounts", "reconnect", "none"]


class FeedAccountOut(ApiModel):
    account_id: str
    account_name: str
    account_type: AccountTypeName
    currency: str
    account_number_last4: str
    status: FeedStatus = Field(description="`not_added` until the account is offered to QuickBooks.")
    feed_start_date: date | None = None


class ConnectionOut(ApiModel):
    connection_id: str | None
    status: ConnectionStatus | None = Field(description="Codat's status of the connection.")
    created_at: UtcDateTime


class BankFeedOut(ApiModel):
    business_id: str
    business_name: str
    connection: ConnectionOut | None
    accounts: list[FeedAccountOut]
    connected_count: int
    link_needed: bool = Field(
        description="True while the user has something to do in QuickBooks (see `action`)."
    )
    action: FeedAction = Field(description="What the user should do next; `none` when all is well.")
    action_message: str | None = Field(description="The same, as a sentence for the user.")
    state_confirmed_at: UtcDateTime | None = Field(description="When Codat last confirmed these statuses.")


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
