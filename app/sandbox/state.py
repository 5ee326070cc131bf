"""Everything a sandbox instance holds in memory, with the switches, knobs, clock and counters for tests.

The server reads and changes all state from one event loop, in code that does not await between reading
and writing, so each operation is atomic without a lock; Idempotency-Key claims its key in one synchronous
step before the operation runs.
"""

import random
import secrets
import string
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from app.sandbox.clock import SandboxClock, iso
from app.sandbox.config import SandboxConfig
from app.sandbox.idempotency import IdempotencyStore
from app.sandbox.models import Company, Connection, ConnectionStatus, Credentials, Otp
from app.sandbox.switches import Knobs, PortalSettings
from app.sandbox.webhooks import Consumer, Delivery, WebhookSender

if TYPE_CHECKING:
    from app.sandbox.pushes import PushOperation

_CREDENTIAL_ALPHABET = string.ascii_uppercase + string.digits


class UnknownOperations(ValueError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"unknown operationIds: {', '.join(names)}")


class SandboxState:
    def __init__(
        self, config: SandboxConfig, webhook_transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.clock = SandboxClock()
        self.counters: Counter[str] = Counter()
        self.operation_ids: frozenset[str] = frozenset()
        self.idempotency = IdempotencyStore(self.clock)
        self.webhooks = WebhookSender(config.webhook_timeout_seconds, webhook_transport)
        # Bumped whenever a connection is added, removed or changes status (and on reset): the count of active
        # companies, asked on every request, is recounted only after a bump.
        self._connections_generation = 0
        self._active_companies: tuple[int, int] = (-1, 0)  # (generation counted at, count)
        self.reset()

    def reset(self) -> None:
        """Back to a fresh instance: no data, config defaults, clock at real time, seeds restarted."""
        self.companies: dict[str, Company] = {}
        self.connections: dict[str, Connection] = {}
        self.push_operations: dict[str, PushOperation] = {}
        # The keys of those still Pending: what a timeout may end (looked at before every request).
        self.pending_pushes: set[str] = set()
        # Connections with a lag running (a disconnect made in QuickBooks, or all accounts disconnected).
        self.lagging: set[str] = set()
        # What QuickBooks has recorded per (connection id, source account id), in the order it was written.
        self.bank_transactions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # What Codat took for a feed already disconnected in QuickBooks (in the disconnect lag): never pulled.
        self.stranded: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # authorizationIds the Sage stand-in handed to the fintech's login page (app.sandbox.pages.sage).
        self.sage_authorization_ids: set[str] = set()
        self.portal = PortalSettings.from_config(self.config)
        self.knobs = Knobs.from_config(self.config)
        self.quota_used: Counter[tuple[str, date]] = Counter()
        # The day client.rateLimit.reached was sent, until client.rateLimit.reset follows it.
        self.quota_reached_on: date | None = None
        self.connections_changed()
        self.counters.clear()
        self.clock.reset()
        self.idempotency.clear()
        self.webhooks.reset()
        seed = self.config.seed
        self.fault_random = random.Random(seed)
        self._secret_random = random.Random(seed + 1) if seed is not None else secrets.SystemRandom()

    def set_settings(self, changes: Mapping[str, Any] | None = None, **fields: Any) -> PortalSettings:
        """Change Portal switches (camelCase, nested, partial); raises pydantic's ValidationError."""
        self.portal = self.portal.merged({**(changes or {}), **fields})
        return self.portal

    def set_knobs(self, changes: Mapping[str, Any] | None = None, **fields: Any) -> Knobs:
        knobs = self.knobs.merged({**(changes or {}), **fields})
        unknown = sorted(set(knobs.operations) - self.operation_ids)
        if unknown:
            raise UnknownOperations(unknown)
        self.knobs = knobs
        return self.knobs

    # Ids and secrets: reproducible when a seed is given.

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._secret_random.getrandbits(128), version=4))

    def new_otp(self) -> Otp:
        code = f"{self._secret_random.randrange(1_000_000):06d}"
        return Otp(code, self.clock.now() + timedelta(seconds=self.knobs.otp_lifetime_seconds))

    def issue_credentials(self, connection: Connection) -> Credentials:
        """A new one-time username and password for QuickBooks; earlier ones stay valid until revoked."""

        def chars(n: int) -> str:
            return "".join(self._secret_random.choice(_CREDENTIAL_ALPHABET) for _ in range(n))

        credentials = Credentials(username="-".join(chars(4) for _ in range(3)), password=chars(20))
        connection.credentials.append(credentials)
        return credentials

    # Connections: every change to which exist or to their status goes through these (the status through
    # app.sandbox.lifecycle, which calls connections_changed).

    def add_connection(self, company: Company, connection: Connection) -> None:
        company.connections[connection.id] = connection
        self.connections[connection.id] = connection
        self.connections_changed()

    def remove_connection(self, connection: Connection) -> None:
        del self.companies[connection.company_id].connections[connection.id]
        del self.connections[connection.id]
        self.connections_changed()

    def remove_company(self, company: Company) -> None:
        for connection_id in company.connections:
            del self.connections[connection_id]
        del self.companies[company.id]
        self.connections_changed()

    def connections_changed(self) -> None:
        self._connections_generation += 1

    def active_companies(self) -> int:
        """Codat's active connected companies: those with a Linked connection."""
        counted_at, count = self._active_companies
        if counted_at != self._connections_generation:
            linked = ConnectionStatus.linked
            count = len({c.company_id for c in self.connections.values() if c.status is linked})
            self._active_companies = (self._connections_generation, count)
        return count

    # Lookups.

    def find_connection(self, company_id: str, connection_id: str) -> Connection | None:
        connection = self.connections.get(connection_id)
        return connection if connection and connection.company_id == company_id else None

    def current_otp(self, connection: Connection) -> Otp:
        """The connection's link OTP; a fresh one once the old one has lapsed."""
        if not connection.otp.is_valid(self.clock.now()):
            connection.otp = self.new_otp()
        return connection.otp

    def mint_otp(self, connection: Connection) -> Otp:
        """A new OTP for the connection, as Codat's Get connection hands out; earlier ones live their hour."""
        now = self.clock.now()
        connection.earlier_otps = [o for o in [*connection.earlier_otps, connection.otp] if o.is_valid(now)]
        connection.otp = self.new_otp()
        return connection.otp

    def otp_accepted(self, connection: Connection, code: str) -> bool:
        now = self.clock.now()
        return any(
            otp.is_valid(now) and secrets.compare_digest(otp.code, code)
            for otp in [connection.otp, *connection.earlier_otps]
        )

    def connection_for_credentials(self, username: str, password: str) -> Connection | None:
        return self._holder(username, password, lambda connection: connection.credentials)

    def connection_for_revoked_credentials(self, username: str, password: str) -> Connection | None:
        return self._holder(username, password, lambda connection: connection.revoked_credentials)

    def _holder(
        self, username: str, password: str, held_by: Callable[[Connection], list[Credentials]]
    ) -> Connection | None:
        offered = Credentials(username.strip(), password.strip())
        for connection in self.connections.values():
            if any(_same_credentials(offered, held) for held in held_by(connection)):
                return connection
        return None

    # Webhooks.

    def emit(self, event_type: str, payload: dict[str, Any]) -> Delivery:
        event = {
            "id": self.new_id(),
            "eventType": event_type,
            "generatedDate": iso(self.clock.now()),
            "payload": payload,
        }
        return self.webhooks.send(event, self._consumer())

    def resend(self, event_id: str) -> Delivery | None:
        return self.webhooks.resend(event_id, self._consumer())

    def _consumer(self) -> Consumer | None:
        webhook = self.portal.webhook
        if not (webhook.url and webhook.secret):
            return None
        return Consumer(webhook.url, webhook.secret, tuple(self.knobs.webhook_retry_delays_seconds))


def _same_credentials(offered: Credentials, held: Credentials) -> bool:
    return secrets.compare_digest(offered.username, held.username) & secrets.compare_digest(
        offered.password, held.password
    )
