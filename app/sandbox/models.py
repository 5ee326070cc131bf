"""What the sandbox stores: companies, their connections, source accounts, credentials and link OTPs."""

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class ConnectionStatus(StrEnum):
    pending_auth = "PendingAuth"
    linked = "Linked"
    unlinked = "Unlinked"
    deauthorized = "Deauthorized"


class AccountStatus(StrEnum):
    pending = "pending"
    # A mapping saved through Codat, not yet confirmed by the accounting platform.
    connecting = "connecting"
    connected = "connected"
    disconnected = "disconnected"


@dataclass
class Otp:
    code: str
    expires_at: datetime

    def is_valid(self, now: datetime) -> bool:
        return now < self.expires_at


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass
class SourceAccount:
    id: str
    account_name: str
    account_type: str
    account_number: str
    currency: str
    balance: int | float
    sort_code: str | None = None
    routing_info: dict[str, Any] | None = None
    account_info: dict[str, Any] | None = None
    modified_date: str | None = None
    status: AccountStatus = AccountStatus.pending
    feed_start_date: date | None = None
    # The account in the books it feeds, on platforms mapped through Codat (app.sandbox.mapping).
    target_account_id: str | None = None


@dataclass
class TargetAccount:
    """An account in the SMB's books. ``kind``: "bank", "creditCard", or any other (never fed)."""

    id: str
    name: str
    currency: str
    kind: str
    account_number: str | None = None
    sort_code: str | None = None
    balance: int | float | None = None


@dataclass
class Books:
    """The SMB's organisation in a mapping platform, readable once the SMB has authorized Codat."""

    company_name: str
    base_currency: str
    multicurrency: bool
    currencies: list[str]
    accounts: dict[str, TargetAccount] = field(default_factory=dict)


@dataclass
class SageSignIn:
    """What the Sage stand-in knows of a connection: its OTP or authorizationId, the signed-in session, and
    the accounts awaiting Confirm."""

    otp: Otp | None = None
    authorization_id: str | None = None
    session: str | None = None
    product: str = ""
    awaiting_confirmation: list[str] = field(default_factory=list)


@dataclass
class Connection:
    id: str
    company_id: str
    created: datetime
    otp: Otp
    # OTPs handed out before the current one stay valid until they lapse: a Link page already open keeps working.
    earlier_otps: list[Otp] = field(default_factory=list)
    status: ConnectionStatus = ConnectionStatus.pending_auth
    accounts: dict[str, SourceAccount] = field(default_factory=dict)
    credentials: list[Credentials] = field(default_factory=list)
    platform_key: str = "hcws"
    books: Books | None = None
    sage: SageSignIn = field(default_factory=SageSignIn)


@dataclass
class Company:
    id: str
    name: str
    created: datetime
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    connections: dict[str, Connection] = field(default_factory=dict)
