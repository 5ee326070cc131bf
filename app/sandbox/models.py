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


@dataclass
class Connection:
    id: str
    company_id: str
    created: datetime
    otp: Otp
    # OTPs handed out before the current one stay valid until they lapse: an open Link page keeps working.
    earlier_otps: list[Otp] = field(default_factory=list)
    status: ConnectionStatus = ConnectionStatus.pending_auth
    accounts: dict[str, SourceAccount] = field(default_factory=dict)
    credentials: list[Credentials] = field(default_factory=list)


@dataclass
class Company:
    id: str
    name: str
    created: datetime
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    connections: dict[str, Connection] = field(default_factory=dict)
