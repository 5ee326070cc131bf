"""Push operations (Codat's write requests) of bank transactions, and what QuickBooks has recorded.

A push is answered ``Pending`` and completes ``pushCompletionSeconds`` later (a knob; real seconds), on a
timer of its own: it succeeds, and its transactions are recorded in the source account's ledger, unless a
rule of the connection's platform refuses it, and then it fails whole, naming each refused transaction.
Either way the ``bankTransactions.write.successful`` or ``.unsuccessful`` webhook follows.

The rules, as Codat documents them for QBO (other platforms: ``app.sandbox.platforms.PushRules``): the
connection is Linked (an Unlinked or Deauthorized one takes no new write); the source account is connected,
and the credentials it was linked with are not revoked; transactions are in chronological order; none is
older than the newest already in the account; none is in the future; each was cleared today or yesterday,
except on the account's first write, which may go back ``historyWindowDays`` (7) before its feed start date.
Dates are the bank's local date-times (an offset is ignored, as Codat does); with no time zone to go by,
"the future" means after today anywhere on Earth (UTC+14) and "yesterday" is yesterday somewhere on Earth
(UTC-12).

A push still Pending when its ``timeoutInMinutes`` (or the ``defaultPushTimeoutMinutes`` knob) has passed on
the sandbox clock ends ``TimedOut``, written or not, as Codat documents (using-the-api/push, Timeouts).
"""

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from app.sandbox.clock import iso
from app.sandbox.errors import ValidationItem
from app.sandbox.models import AccountStatus, Connection, ConnectionStatus, SourceAccount
from app.sandbox.platforms import Flow, profile
from app.sandbox.state import SandboxState
from app.sandbox.views import Presenter

PENDING, SUCCESS, FAILED, TIMED_OUT = "Pending", "Success", "Failed", "TimedOut"
# Codat does not say which statusCode a TimedOut operation carries; 504 says "gave up waiting".
STATUS_CODES = {PENDING: 202, SUCCESS: 200, FAILED: 400, TIMED_OUT: 504}
VALIDATOR = "BankTransactionsValidator"
EARLIEST_OFFSET = timedelta(hours=14)
LATEST_OFFSET = timedelta(hours=12)


def write_refusal(connection: Connection | None, account: SourceAccount | None) -> ValidationItem | None:
    """Why the source account takes no write now, if it does not; the item names what to mend."""
    if connection is None or connection.status is not ConnectionStatus.linked:
        status = connection.status.value if connection else "deleted"
        message = f"The connection is {status}: it takes no new write until it is linked again."
        return ValidationItem("connectionId", message, VALIDATOR)
    if account is None or account.status is not AccountStatus.connected:
        platform = profile(connection.platform_key).name
        return ValidationItem("accountId", f"The source account is not connected to {platform}.", VALIDATOR)
    if account.linked_with is not None and account.linked_with not in connection.credentials:
        message = "The credentials this account was linked with were revoked: link it again with new ones."
        return ValidationItem("accountId", message, VALIDATOR)
    return None


@dataclass
class PushOperation:
    key: str
    company_id: str
    connection_id: str
    account_id: str
    requested: datetime
    transactions: list[dict[str, Any]]
    timeout_in_minutes: int | None = None
    status: str = PENDING
    completed: datetime | None = None
    errors: list[ValidationItem] = field(default_factory=list)
    warnings: list[ValidationItem] = field(default_factory=list)


def local_date(value: str) -> datetime:
    """The local date-time of a pushed transaction; any offset is dropped, as Codat does."""
    return datetime.fromisoformat(value).replace(tzinfo=None)


def start(state: SandboxState, operation: PushOperation, present: Presenter) -> None:
    """Store a new Pending push and schedule its completion."""
    operation.warnings = list(_sign_warnings(operation.transactions))
    state.push_operations[operation.key] = operation
    state.pending_pushes.add(operation.key)
    asyncio.get_running_loop().call_later(
        state.knobs.push_completion_seconds, complete, state, operation.key, present
    )


def complete(state: SandboxState, key: str, present: Presenter) -> None:
    operation = state.push_operations.get(key)
    if operation is None or operation.status != PENDING:
        return  # the sandbox was reset meanwhile, or the push timed out
    if _timed_out(state, operation):
        _finish(state, operation, TIMED_OUT, present)
        return
    ledger = state.bank_transactions.setdefault((operation.connection_id, operation.account_id), [])
    operation.errors = _refusals(state, operation, ledger)
    if not operation.errors:
        _record(state, operation, ledger)
    _finish(state, operation, FAILED if operation.errors else SUCCESS, present)


def time_out_due(state: SandboxState, present: Presenter) -> None:
    """End TimedOut every Pending push whose timeout has passed on the sandbox clock."""
    for key in list(state.pending_pushes):
        operation = state.push_operations[key]
        if operation.status == PENDING and _timed_out(state, operation):
            _finish(state, operation, TIMED_OUT, present)


def _timed_out(state: SandboxState, operation: PushOperation) -> bool:
    minutes = operation.timeout_in_minutes or state.knobs.default_push_timeout_minutes
    return minutes is not None and state.clock.now() >= operation.requested + timedelta(minutes=minutes)


def _finish(state: SandboxState, operation: PushOperation, status: str, present: Presenter) -> None:
    operation.status = status
    operation.completed = state.clock.now()
    state.pending_pushes.discard(operation.key)
    _emit(state, operation, present)


def _refusals(
    state: SandboxState, operation: PushOperation, ledger: list[dict[str, Any]]
) -> list[ValidationItem]:
    connection = state.connections.get(operation.connection_id)
    account = connection.accounts.get(operation.account_id) if connection else None
    refusal = write_refusal(connection, account)
    if refusal is not None:
        return [refusal]
    assert connection is not None
    assert account is not None
    rules = profile(connection.platform_key).push
    now = state.clock.now()
    latest_day = (now + EARLIEST_OFFSET).date()
    earliest_day = _qbo_earliest_day(state, connection, account, now, first_write=not ledger)
    newest = local_date(ledger[-1]["date"]) if ledger and rules.not_older_than_newest else datetime.min
    refusals = []
    for transaction in operation.transactions:
        when = local_date(transaction["date"])
        reason = rules.date_refusal(when, latest_day, newest) or _window_refusal(when, earliest_day)
        if reason:
            refusals.append(ValidationItem(transaction["id"], reason, VALIDATOR))
        newest = max(newest, when)
    return refusals


def _qbo_earliest_day(
    state: SandboxState, connection: Connection, account: SourceAccount, now: datetime, *, first_write: bool
) -> date | None:
    """QBO: yesterday; on the first write, back to ``historyWindowDays`` before the feed start date. None for
    the other platforms (their age limit is ``PushRules.max_age_days``)."""
    if profile(connection.platform_key).flow is not Flow.platform_credentials:
        return None
    yesterday = (now - LATEST_OFFSET).date() - timedelta(days=1)
    if not first_write or account.feed_start_date is None:
        return yesterday
    return min(yesterday, account.feed_start_date - timedelta(days=state.knobs.history_window_days))


def _window_refusal(when: datetime, earliest_day: date | None) -> str | None:
    if earliest_day is None or when.date() >= earliest_day:
        return None
    return (
        f"The transaction date {when.isoformat()} is before {earliest_day.isoformat()}: QuickBooks takes"
        " transactions cleared today or yesterday, and on an account's first write some days of history"
        " before its feed start date."
    )


def _sign_warnings(transactions: list[dict[str, Any]]) -> list[ValidationItem]:
    expected = {"Credit": 1, "Debit": -1}
    return [
        ValidationItem(
            t["id"],
            f"A {t['transactionType']} usually has a {'positive' if sign > 0 else 'negative'} amount.",
            VALIDATOR,
        )
        for t in transactions
        if (sign := expected.get(t.get("transactionType") or "")) and t["amount"] * sign < 0
    ]


def _record(state: SandboxState, operation: PushOperation, ledger: list[dict[str, Any]]) -> None:
    connection = state.connections[operation.connection_id]
    account = connection.accounts[operation.account_id]
    rules = profile(connection.platform_key).push
    written = [{**rules.as_written(t), "pushOperationKey": operation.key} for t in operation.transactions]
    if account.disconnected_in_qbo_at is not None:
        # Codat took them, but QuickBooks no longer pulls this feed: they never reach its ledger.
        state.stranded.setdefault((operation.connection_id, operation.account_id), []).extend(written)
        return
    ledger.extend(written)
    # The balance of the last transaction pushed becomes the account's (QBO and Xero document it).
    account.balance = operation.transactions[-1]["balance"]


def _emit(state: SandboxState, operation: PushOperation, present: Presenter) -> None:
    company = state.companies.get(operation.company_id)
    if company is None:
        return
    outcome = "successful" if operation.status == SUCCESS else "unsuccessful"
    payload = {
        "id": operation.key,
        "type": "Create",
        "referenceCompany": present.company_reference(company),
        "connectionId": operation.connection_id,
        "requestedOnDate": iso(operation.requested),
        "completedOnDate": iso(operation.completed or operation.requested),
        "status": operation.status,
        "record": None,
        "attachmentId": None,
    }
    state.emit(f"bankTransactions.write.{outcome}", payload)


def view(operation: PushOperation) -> dict[str, Any]:
    """Codat's PushOperation; completedOnUtc is not nullable in the spec, so a Pending one leaves it out."""
    body: dict[str, Any] = {
        "changes": _changes(operation) if operation.status == SUCCESS else None,
        "dataType": "bankTransactions",
        "companyId": operation.company_id,
        "pushOperationKey": operation.key,
        "dataConnectionKey": operation.connection_id,
        "requestedOnUtc": iso(operation.requested),
        "timeoutInMinutes": operation.timeout_in_minutes,
        "timeoutInSeconds": operation.timeout_in_minutes * 60 if operation.timeout_in_minutes else None,
        "status": operation.status,
        "errorMessage": _error_message(operation),
        "validation": {
            "errors": [e.to_json() for e in operation.errors],
            "warnings": [w.to_json() for w in operation.warnings],
        },
        "statusCode": STATUS_CODES[operation.status],
    }
    if operation.completed is not None:
        body["completedOnUtc"] = iso(operation.completed)
    return body


def _changes(operation: PushOperation) -> list[dict[str, Any]]:
    return [
        {
            "type": "Created",
            "recordRef": {"id": t["id"], "dataType": "bankTransactions"},
            "attachmentId": None,
        }
        for t in operation.transactions
    ]


def _error_message(operation: PushOperation) -> str | None:
    if not operation.errors:
        return None
    refused, sent = len(operation.errors), len(operation.transactions)
    return f"{refused} of {sent} transactions were refused; none was written."
