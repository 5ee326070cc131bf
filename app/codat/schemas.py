"""Codat's wire shapes (Bank Feeds 3.0.0 and Platform OpenAPI), snake_case in Python, camelCase on the wire.

Responses ignore unknown fields, so Codat adding one never breaks us. Request bodies are dumped with
``to_wire()``: aliases, no ``None`` fields, and decimals as JSON numbers.
"""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    TypeAdapter,
)
from pydantic.alias_generators import to_camel

from app.clock import as_utc


def _date_part(value: Any) -> Any:
    # v1 source accounts carry feedStartDate as a DateTime; v2 as a Date.
    return value[:10] if isinstance(value, str) and "T" in value else value


# A JSON number, not pydantic's default string. A float holds every balance under 10^13 to the cent exactly.
WireDecimal = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
LenientDate = Annotated[date, BeforeValidator(_date_part)]


class CodatModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready request body Codat expects."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ConnectionStatus(StrEnum):
    PENDING_AUTH = "PendingAuth"
    LINKED = "Linked"
    UNLINKED = "Unlinked"
    DEAUTHORIZED = "Deauthorized"


class AccountType(StrEnum):
    CHECKING = "checking"
    SAVINGS = "savings"
    LOAN = "loan"
    CREDIT_CARD = "creditCard"
    PREPAID_CARD = "prepaidCard"


class SourceAccountStatus(StrEnum):
    PENDING = "pending"
    CONNECTED = "connected"
    CONNECTING = "connecting"
    DISCONNECTED = "disconnected"
    UNKNOWN = "unknown"


class DataConnectionError(CodatModel):
    status_code: str | None = None
    status_text: str | None = None
    error_message: str | None = None
    errored_on_utc: datetime | None = None
    resolved_on_utc: datetime | None = None


class Connection(CodatModel):
    id: str
    integration_id: str
    integration_key: str | None = None
    source_id: str
    source_type: str
    platform_name: str
    # Carries a one-time password for QBO: kept out of repr so a logged model does not leak it.
    link_url: str = Field(repr=False)
    status: ConnectionStatus
    created: datetime
    last_sync: datetime | None = None
    data_connection_errors: list[DataConnectionError] | None = None


class ConnectionsPage(CodatModel):
    results: list[Connection]
    page_number: int
    page_size: int
    total_results: int


class Company(CodatModel):
    id: str
    name: str
    description: str | None = None
    redirect: str
    created: datetime | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    data_connections: list[Connection] = Field(default_factory=list)


class CompaniesPage(CodatModel):
    results: list[Company]
    page_number: int
    page_size: int
    total_results: int


class RoutingInfo(CodatModel):
    bank_code: str | None = None
    type: str | None = None


class AccountInfo(CodatModel):
    description: str | None = None
    nickname: str | None = None
    account_open_date: date | None = None
    available_balance: WireDecimal | None = None


class SourceAccountPrototype(CodatModel):
    """A v2 source account to create: ``id`` is our own id for the bank account."""

    id: str
    account_name: str
    account_type: AccountType
    account_number: str
    currency: str
    balance: WireDecimal
    routing_info: RoutingInfo | None = None
    sort_code: str | None = None
    account_info: AccountInfo | None = None


# A batch's prototypes validated, and dumped as the request body (like `to_wire`), in one call each.
SOURCE_ACCOUNT_PROTOTYPES = TypeAdapter(list[SourceAccountPrototype])


class SourceAccount(SourceAccountPrototype):
    status: SourceAccountStatus | None = None
    feed_start_date: LenientDate | None = None


class BatchItemResult(CodatModel):
    status_code: int  # Codat's error items carry it as a string: lax validation takes "409" as 409
    error: str | None = None
    account: SourceAccount | None = None


class BatchCreateResult(CodatModel):
    """One item of a batch create: ``{sourceAccountId, result: {statusCode, error, account}}``. Nested models
    rather than a Python validator flattening each item: pydantic-core parses a batch's answer on its own."""

    source_account_id: str
    result: BatchItemResult

    @property
    def status_code(self) -> int:
        return self.result.status_code

    @property
    def error(self) -> str | None:
        return self.result.error

    @property
    def account(self) -> SourceAccount | None:
        return self.result.account

    @property
    def created(self) -> bool:
        return 200 <= self.status_code < 300 and self.account is not None


class Credentials(CodatModel):
    """One-time QBO credentials; the password is a ``SecretStr`` so it never shows in repr or logs."""

    username: str
    password: SecretStr


class Integration(CodatModel):
    key: str
    name: str
    enabled: bool
    source_type: str | None = None
    integration_id: str | None = None


class SyncSetting(CodatModel):
    data_type: str
    fetch_on_first_link: bool = False
    sync_schedule: int = 0


class SyncSettings(CodatModel):
    client_id: str | None = None
    settings: list[SyncSetting] = Field(default_factory=list)

    def is_enabled(self, data_type: str) -> bool:
        """A data type is on when Codat fetches it on first link or on a schedule ("None" is 0)."""
        return any(
            s.data_type == data_type and (s.fetch_on_first_link or s.sync_schedule > 0) for s in self.settings
        )

    @property
    def bank_feeds_enabled(self) -> bool:
        """Whether both data types QBO Bank Feeds needs (``bankAccounts``, ``bankTransactions``) are on."""
        return self.is_enabled("bankAccounts") and self.is_enabled("bankTransactions")


class BankTransactionType(StrEnum):
    """The transaction types QBO Bank Feeds takes (Codat's enum has more, for other platforms)."""

    CREDIT = "Credit"
    DEBIT = "Debit"
    UNKNOWN = "Unknown"


class BankTransaction(CodatModel):
    """A cleared transaction to push; ``date`` is the bank's local date-time, sent without an offset."""

    id: str
    date: datetime
    description: str
    amount: WireDecimal
    balance: WireDecimal
    transaction_type: BankTransactionType


class PushOperationStatus(StrEnum):
    PENDING = "Pending"
    FAILED = "Failed"
    SUCCESS = "Success"
    TIMED_OUT = "TimedOut"


class PushValidationItem(CodatModel):
    item_id: str | None = None
    message: str | None = None
    validator_name: str | None = None


class PushValidation(CodatModel):
    errors: list[PushValidationItem] | None = None
    warnings: list[PushValidationItem] | None = None


class PushOperation(CodatModel):
    """A write to the accounting platform; ``push_operation_key`` follows it to Success or Failed."""

    push_operation_key: str
    company_id: str
    data_connection_key: str
    status: PushOperationStatus
    status_code: int
    requested_on_utc: datetime
    completed_on_utc: datetime | None = None
    error_message: str | None = None
    validation: PushValidation | None = None

    @property
    def validation_errors(self) -> list[PushValidationItem]:
        return (self.validation and self.validation.errors) or []


class TargetAccountOption(CodatModel):
    """An account in the SMB's books that a source account may feed."""

    id: str
    name: str | None = None
    balance: WireDecimal | None = None
    sort_code: str | None = None
    account_number: str | None = None


class BankFeedMapping(CodatModel):
    """A source account, its target (once mapped) and the targets it may map to (``null`` until the SMB has
    authorized). ``status`` is free text in Codat's spec (``pending``, ``connecting``, ``connected``, …)."""

    source_account_id: str
    source_account_name: str
    source_account_number: str
    source_balance: WireDecimal
    source_currency: str
    target_account_id: str | None = None
    target_account_name: str | None = None
    status: str | None = None
    target_account_options: list[TargetAccountOption] | None = None
    feed_start_date: LenientDate | None = None


class MappingPrototype(CodatModel):
    """A mapping to create; without ``target_account_id`` Codat creates a new target account. A ``date``
    feed start is sent as midnight, local to the SMB, as Codat's own examples write it."""

    source_account_id: str
    target_account_id: str | None = None
    feed_start_date: datetime | None = None


class MappingResult(CodatModel):
    """Codat's answer to a mapping: ``status`` is usually ``connecting``, which later turns ``connected``."""

    source_account_id: str
    target_account_id: str | None = None
    status: str | None = None
    error: str | None = None


class CompanyInformation(CodatModel):
    """The SMB's company as its accounting software tells it (Xero and NetSuite only)."""

    company_name: str
    base_currency: str
    plan_type: str | None = None
    # Absent means unknown: read as off, so nothing is offered in a foreign currency the books may refuse.
    multicurrency_enabled: bool = False
    currencies: list[str] | None = None


class Otp(CodatModel):
    """A one-time password the SMB types into Sage: a ``SecretStr``, so it never shows in repr or logs."""

    otp: SecretStr
    # Codat gives the expiry in UTC, with or without the offset.
    expiry: Annotated[datetime, AfterValidator(as_utc)]
