"""Status changes of connections and source accounts, each with the webhook Codat sends for it.

Some changes are due later on the sandbox clock, as Codat documents them for QBO: a disconnect made in
QuickBooks shows after ``disconnectLagSeconds`` (10 days), and a connection whose accounts are all
disconnected turns Unlinked ``unlinkLagSeconds`` (up to a day) after. ``catch_up`` applies what is due; the
sandbox calls it before every request it serves and whenever a test moves the clock.
"""

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from app.sandbox.clock import iso
from app.sandbox.models import (
    AccountStatus,
    Company,
    Connection,
    ConnectionStatus,
    Credentials,
    SourceAccount,
)
from app.sandbox.platforms import Flow, profile
from app.sandbox.state import SandboxState
from app.sandbox.views import Presenter, source_account

_DISCONNECTED = {ConnectionStatus.unlinked, ConnectionStatus.deauthorized}


def _connection_event(previous: ConnectionStatus, new: ConnectionStatus) -> str | None:
    if new is ConnectionStatus.linked:
        return (
            "connection.connected" if previous is ConnectionStatus.pending_auth else "connection.reconnected"
        )
    if new in _DISCONNECTED and previous not in _DISCONNECTED:
        return "connection.disconnected"
    return None


class Lifecycle:
    def __init__(self, state: SandboxState, root: str) -> None:
        self._state = state
        self.present = Presenter(state, root)

    def connection_created(self, connection: Connection) -> None:
        self._emit_connection("connection.created", connection)

    def connection_deleted(self, connection: Connection) -> None:
        self._emit_connection("connection.deleted", connection)

    def set_connection_status(self, connection: Connection, status: ConnectionStatus) -> None:
        previous, connection.status = connection.status, status
        self._state.connections_changed()
        event = _connection_event(previous, status)
        if event:
            self._emit_connection(event, connection)

    def company_created(self, company: Company) -> None:
        self._state.emit("company.created", self.present.company_details(company))

    def company_deleted(self, company: Company) -> None:
        self._state.emit("company.deleted", self.present.company_details(company))

    def connection_failed(self, connection: Connection, status_code: str, message: str) -> None:
        """Linking failed (e.g. QuickBooks refused the credentials): the error is on the connection."""
        error = {
            "statusCode": status_code,
            "statusText": "Bad Request" if status_code == "400" else "Unauthorized",
            "errorMessage": message,
            "erroredOnUtc": iso(self._state.clock.now()),
            "status": "Active",
            "resolvedOnUtc": None,
        }
        connection.data_connection_errors.append(error)
        self._emit_connection("connection.failed", connection)

    def connect_accounts(
        self, connection: Connection, accounts: Iterable[SourceAccount], start: date, credentials: Credentials
    ) -> None:
        """Finishing the QuickBooks step: the connection becomes Linked, the chosen accounts connected.

        Linking an account again with new credentials (after the old ones were revoked) reconnects it."""
        self.set_connection_status(connection, ConnectionStatus.linked)
        for account in accounts:
            self.connect_account(connection, account, start, credentials)

    def connect_account(
        self,
        connection: Connection,
        account: SourceAccount,
        start: date,
        credentials: Credentials | None = None,
    ) -> None:
        """QBO: ``credentials`` are those the account is linked with; linking it again with new ones (after
        the old ones were revoked) reconnects it."""
        relinked = credentials is not None and account.linked_with not in (None, credentials)
        connection.all_disconnected_at = None
        account.feed_start_date = start
        account.linked_with = credentials
        account.disconnected_in_qbo_at = None
        if account.status is not AccountStatus.connected or relinked:
            account.status = AccountStatus.connected
            self._emit_account("bankFeeds.sourceAccount.connected", connection, account)

    def disconnect_in_quickbooks(self, connection: Connection, account: SourceAccount) -> None:
        """The SMB disconnects the feed in QuickBooks: Codat shows it only after the disconnect lag."""
        if account.status is AccountStatus.connected and account.disconnected_in_qbo_at is None:
            account.disconnected_in_qbo_at = self._state.clock.now()
            self._state.lagging.add(connection.id)

    def disconnect_account(self, connection: Connection, account: SourceAccount) -> None:
        if account.status is AccountStatus.disconnected:
            return
        account.status = AccountStatus.disconnected
        account.target_account_id = None  # the feed is gone; its target may be mapped again
        self._emit_account("bankFeeds.sourceAccount.disconnected", connection, account)
        # Codat: a QBO connection becomes Unlinked once all of its source accounts are disconnected,
        # which "can take up to a day" (catch_up does it after the unlink lag).
        qbo = profile(connection.platform_key).flow is Flow.platform_credentials
        if (
            qbo
            and connection.status is ConnectionStatus.linked
            and all(a.status is AccountStatus.disconnected for a in connection.accounts.values())
        ):
            connection.all_disconnected_at = self._state.clock.now()
            self._state.lagging.add(connection.id)
            self.catch_up()

    def catch_up(self) -> None:
        """Apply the changes that have come due on the sandbox clock (only connections with a lag running are
        looked at: this runs before every request)."""
        now = self._state.clock.now()
        knobs = self._state.knobs
        for connection_id in list(self._state.lagging):
            connection = self._state.connections.get(connection_id)
            if connection is None:
                self._state.lagging.discard(connection_id)
                continue
            for account in list(connection.accounts.values()):
                if _due(account.disconnected_in_qbo_at, knobs.disconnect_lag_seconds, now):
                    account.disconnected_in_qbo_at = None
                    self.disconnect_account(connection, account)
            if connection.status is ConnectionStatus.linked and _due(
                connection.all_disconnected_at, knobs.unlink_lag_seconds, now
            ):
                connection.all_disconnected_at = None
                self.set_connection_status(connection, ConnectionStatus.unlinked)
            if connection.all_disconnected_at is None and not any(
                a.disconnected_in_qbo_at for a in connection.accounts.values()
            ):
                self._state.lagging.discard(connection_id)

    def _emit_connection(self, event_type: str, connection: Connection) -> None:
        company = self._state.companies[connection.company_id]
        payload = {
            "referenceCompany": self.present.company_reference(company),
            "connection": self.present.connection(connection),
        }
        self._state.emit(event_type, payload)

    def revoke_credentials(self, connection: Connection) -> None:
        """Every credential set of the connection stops working, and so do writes from accounts linked with
        them; QuickBooks keeps them to recognise (and refuse) a later sign-in."""
        connection.revoked_credentials.extend(connection.credentials)
        connection.credentials.clear()

    def _emit_account(self, event_type: str, connection: Connection, account: SourceAccount) -> None:
        company = self._state.companies[connection.company_id]
        payload = {
            "referenceCompany": self.present.company_reference(company),
            "companyId": company.id,
            "connectionId": connection.id,
            "sourceAccount": source_account(account),
        }
        self._state.emit(event_type, payload)


def _due(since: datetime | None, lag_seconds: float, now: datetime) -> bool:
    return since is not None and now >= since + timedelta(seconds=lag_seconds)
