"""Status changes of connections and source accounts, each with the webhook Codat sends for it."""

from collections.abc import Iterable
from datetime import date

from app.sandbox.models import AccountStatus, Connection, ConnectionStatus, SourceAccount
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
        event = _connection_event(previous, status)
        if event:
            self._emit_connection(event, connection)

    def connect_accounts(
        self, connection: Connection, accounts: Iterable[SourceAccount], start: date
    ) -> None:
        """Finishing the QuickBooks step: the connection becomes Linked, the chosen accounts connected."""
        self.set_connection_status(connection, ConnectionStatus.linked)
        for account in accounts:
            self.connect_account(connection, account, start)

    def connect_account(self, connection: Connection, account: SourceAccount, start: date) -> None:
        account.feed_start_date = start
        if account.status is not AccountStatus.connected:
            account.status = AccountStatus.connected
            self._emit_account("bankFeeds.sourceAccount.connected", connection, account)

    def disconnect_account(self, connection: Connection, account: SourceAccount) -> None:
        if account.status is AccountStatus.disconnected:
            return
        account.status = AccountStatus.disconnected
        account.target_account_id = None  # the feed is gone; its target may be mapped again
        self._emit_account("bankFeeds.sourceAccount.disconnected", connection, account)
        # Codat: a QBO connection becomes Unlinked once all of its source accounts are disconnected.
        qbo = profile(connection.platform_key).flow is Flow.platform_credentials
        if (
            qbo
            and connection.status is ConnectionStatus.linked
            and all(a.status is AccountStatus.disconnected for a in connection.accounts.values())
        ):
            self.set_connection_status(connection, ConnectionStatus.unlinked)

    def _emit_connection(self, event_type: str, connection: Connection) -> None:
        company = self._state.companies[connection.company_id]
        payload = {
            "referenceCompany": self.present.company_reference(company),
            "connection": self.present.connection(connection),
        }
        self._state.emit(event_type, payload)

    def _emit_account(self, event_type: str, connection: Connection, account: SourceAccount) -> None:
        company = self._state.companies[connection.company_id]
        payload = {
            "referenceCompany": self.present.company_reference(company),
            "companyId": company.id,
            "connectionId": connection.id,
            "sourceAccount": source_account(account),
        }
        self._state.emit(event_type, payload)
