"""The bank-feed view every surface reads (camelCase on the wire), and the base models of every API body."""

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.bankfeed.platforms import PlatformName
from app.clock import as_utc
from app.inputs import Id, Name

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


FeedStatus = Literal["not_added", "pending", "connecting", "connected", "disconnected", "unknown"]


FeedAction = Literal[
    "connect",
    "authorize",
    "finish_in_quickbooks",
    "map_accounts",
    "enter_code_in_sage",
    "confirm_in_sage",
    "connect_new_accounts",
    "reconnect",
    "none",
]


class TargetAccountOut(ApiModel):
    id: str
    name: str | None = None


class FeedAccountOut(ApiModel):
    account_id: str
    account_name: str
    account_type: AccountTypeName
    currency: str
    account_number_last4: str
    status: FeedStatus = Field(description="`not_added` until the account is offered to the platform.")
    feed_start_date: date | None = None
    status_confirmed_at: UtcDateTime | None = Field(
        None,
        description="When Codat last reported this status. A disconnect made in QuickBooks reaches Codat up "
        "to 10 days later: until then the account shows connected.",
    )
    target_account: TargetAccountOut | None = Field(
        None,
        description="The account in the books this account feeds, once mapped through Codat (Xero, NetSuite, "
        "FreeAgent, Exact); QuickBooks and Sage map inside the platform and do not say.",
    )
    writes_held: str | None = Field(
        None,
        description="Why the platform takes no transactions from the account now, and the fix; its "
        "transactions are held and resume in order once it is mended.",
    )


class ConnectionOut(ApiModel):
    connection_id: str | None
    status: ConnectionStatus | None = Field(description="Codat's status of the connection.")
    created_at: UtcDateTime
    error: str | None = Field(
        None, description="Why linking failed (Codat's connection.failed), until it links."
    )


class BankFeedOut(ApiModel):
    business_id: str
    business_name: str
    platform: PlatformName | None = Field(
        description="The accounting platform the feed goes to; null until the business connects."
    )
    platform_name: str | None = Field(description="The same, as users know it (e.g. `QuickBooks Online`).")
    connection: ConnectionOut | None
    accounts: list[FeedAccountOut]
    connected_count: int
    link_needed: bool = Field(description="True while the user has something to do (see `action`).")
    action: FeedAction = Field(
        description="What the user should do next; `none` when all is well. `authorize` and "
        "`finish_in_quickbooks`: open the link (`GET /v1/bank-feed/link`); `map_accounts`: choose each "
        "account's account in the books (`GET /v1/bank-feed/mapping`); `enter_code_in_sage`: type the "
        "connection id and a code (`POST /v1/bank-feed/sage-code`) into Sage; `confirm_in_sage`: click "
        "Confirm in Sage."
    )
    action_message: str | None = Field(description="The same, as a sentence for the user.")
    action_endpoint: str | None = Field(
        description="The call that gives what the action needs (a link, a code, the accounts to choose "
        "from), e.g. `GET /v1/bank-feed/link`; null when it needs none. Secrets are never in the view itself."
    )
    state_confirmed_at: UtcDateTime | None = Field(description="When Codat last confirmed these statuses.")
