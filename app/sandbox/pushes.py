"""Push operations (Codat's write requests) of bank transactions, and what QuickBooks has recorded.

A push is answered ``Pending`` and completes ``pushCompletionSeconds`` later (a knob; real seconds), on a
timer of its own: it succeeds, and its transactions are recorded in the source account's ledger, unless a
rule of the connection's platform refuses it, and then it fails whole, naming each refused transaction.
Either way the ``bankTransactions.write.successful`` or ``.unsuccessful`` webhook follows.

The rules, as Codat documents them for QBO (other platforms: ``app.sandbox.platforms.PushRules``): the
source account is connected; transactions are in chronological order; none is older than the newest already
in the account; none is in the future. Dates are the bank's local date-times (an offset is ignored, as Codat
does); with no time zone to go by, "the future" means after today anywhere on Earth (UTC+14).
"""

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.sandbox.clock import iso
from app.sandbox.errors import ValidationItem
from app.sandbox.models import AccountStatus
from app.sandbox.platforms import profile
from app.sandbox.state import SandboxState
from app.sandbox.views import Presenter

PENDING, SUCCESS, FAILED = "Pending", "Success", "Failed"
STATUS_CODES = {PENDING: 202, SUCCESS: 200, FAILED: 400}
VALIDATOR = "BankTransactionsValidator"
EARLIEST_OFFSET = timedelta(hours=14)


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
    asyncio.get_running_loop().call_later(
        state.knobs.push_completion_seconds, complete, state, operation.key, present
    )


def complete(state: SandboxState, key: str, present: Presenter) -> None:
    operation = state.push_operations.get(key)
    if operation is None or operation.status != PENDING:
        return  # the sandbox was reset meanwhile
    ledger = state.bank_transactions.setdefault((operation.connection_id, operation.account_id), [])
    operation.errors = _refusals(state, operation, ledger)
    operation.status = FAILED if operation.errors else SUCCESS
    operation.completed = state.clock.now()
    if operation.status == SUCCESS:
        _record(state, operation, ledger)
    _emit(state, operation, present)


def _refusals(
    state: SandboxState, operation: PushOperation, ledger: list[dict[str, Any]]
) -> list[ValidationItem]:
    connection = state.connections.get(operation.connection_id)
    account = connection.accounts.get(operation.account_id) if connection else None
    if connection is None or account is None or account.status is not AccountStatus.connected:
        return [ValidationItem(operation.account_id, "The source account is not connected.", VALIDATOR)]
    rules = profile(connection.platform_key).push
    latest_day = (state.clock.now() + EARLIEST_OFFSET).date()
    newest = local_date(ledger[-1]["date"]) if ledger and rules.not_older_than_newest else datetime.min
    refusals = []
    for transaction in operation.transactions:
        when = local_date(transaction["date"])
        reason = rules.date_refusal(when, latest_day, newest)
        if reason:
            refusals.append(ValidationItem(transaction["id"], reason, VALIDATOR))
        newest = max(newest, when)
    return refusals


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
    rules = profile(connection.platform_key).push
    ledger.extend({**rules.as_written(t), "pushOperationKey": operation.key} for t in operation.transactions)
    account = connection.accounts[operation.account_id]
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
