"""Bank transactions: push them to a source account, and read the push operations that follow them.

The request is checked at once (its shape, at most 1,000 transactions, the transaction types the platform
takes, a Linked connection, a connected source account whose credentials still stand) and answered with a
Pending push operation; the platform's date rules are applied when the push completes (see
``app.sandbox.pushes`` and ``app.sandbox.platforms``).
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.alias_generators import to_camel

from app.sandbox import pushes
from app.sandbox.api import query
from app.sandbox.api.companies import require_company
from app.sandbox.api.connections import CONNECTION, require_connection
from app.sandbox.api.paging import Paging
from app.sandbox.api.route import CodatRoute
from app.sandbox.api.schemas import Number, parse_body
from app.sandbox.context import presenter, sandbox_state
from app.sandbox.errors import CodatError, invalid
from app.sandbox.platforms import TRANSACTION_TYPES, PlatformProfile, profile
from app.sandbox.responses import JSONResponse

router = APIRouter(route_class=CodatRoute)

MAX_TRANSACTIONS = 1000


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, strict=True)


class BankTransaction(_Wire):
    """What QBO Bank Feeds requires of a transaction: id, date, description, amount and balance (Xero, Sage,
    NetSuite, Exact and FreeAgent require balance too)."""

    id: Annotated[str, StringConstraints(min_length=1)]
    date: str
    description: str
    counterparty: str | None = None
    reference: str | None = None
    reconciled: bool | None = None
    amount: Number
    balance: Number
    transaction_type: str | None = None

    @field_validator("date")
    @classmethod
    def _is_local_date_time(cls, value: str) -> str:
        datetime.fromisoformat(value)
        return value

    @field_validator("transaction_type")
    @classmethod
    def _is_codat_type(cls, value: str | None) -> str | None:
        if value is not None and value not in TRANSACTION_TYPES:
            raise ValueError(
                f"must be one of Codat's transaction types: {', '.join(sorted(TRANSACTION_TYPES))}"
            )
        return value


class CreateBankTransactions(_Wire):
    account_id: str
    transactions: list[BankTransaction] = Field(min_length=1, max_length=MAX_TRANSACTIONS)


@router.post(
    CONNECTION + "/push/bankAccounts/{accountId}/bankTransactions", operation_id="create-bank-transactions"
)
async def create_bank_transactions(
    request: Request, companyId: str, connectionId: str, accountId: str
) -> JSONResponse:
    state = sandbox_state(request)
    connection = require_connection(state, companyId, connectionId)
    body = await parse_body(request, CreateBankTransactions, validator=pushes.VALIDATOR)
    if body.account_id != accountId:
        raise invalid(
            "accountId must be the source account in the path.",
            item_id="accountId",
            validator=pushes.VALIDATOR,
        )
    account = connection.accounts.get(accountId)
    if account is None:
        raise CodatError(404, f"Source account {accountId} not found")
    refusal = pushes.write_refusal(connection, account)
    if refusal is not None:
        raise CodatError(400, refusal.message, errors=[refusal])
    _require_platform_types(profile(connection.platform_key), body.transactions)
    transactions = [t.model_dump(by_alias=True, exclude_none=True) for t in body.transactions]
    operation = pushes.PushOperation(
        state.new_id(),
        companyId,
        connectionId,
        accountId,
        state.clock.now(),
        transactions,
        _timeout_in_minutes(request),
    )
    pushes.start(state, operation, presenter(request))
    data = {"accountId": accountId, "transactions": transactions}
    return JSONResponse({**pushes.view(operation), "data": data})


def _require_platform_types(platform: PlatformProfile, transactions: list[BankTransaction]) -> None:
    allowed = platform.push.transaction_types
    for index, transaction in enumerate(transactions):
        if allowed is not None and transaction.transaction_type not in (None, *allowed):
            raise invalid(
                f"transactions.{index}.transactionType: {platform.name} takes only "
                f"{', '.join(sorted(allowed))}, not {transaction.transaction_type}.",
                item_id=f"transactions.{index}.transactionType",
                validator=pushes.VALIDATOR,
            )


def _timeout_in_minutes(request: Request) -> int | None:
    raw = request.query_params.get("timeoutInMinutes")
    if raw is None:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise invalid(
            "timeoutInMinutes must be a positive integer.",
            item_id="timeoutInMinutes",
            validator="QueryValidator",
        )
    return int(raw)


@router.get("/companies/{companyId}/push", operation_id="list-create-operations")
async def list_create_operations(request: Request, companyId: str) -> JSONResponse:
    paging = Paging.from_request(request)
    state = sandbox_state(request)
    company = require_company(state, companyId)
    operations = [o for o in state.push_operations.values() if o.company_id == company.id]
    operations = query.from_request(request, operations, _PUSH_FIELDS.get)
    return JSONResponse(paging.envelope(operations, pushes.view, f"/companies/{company.id}/push"))


@router.get("/companies/{companyId}/push/{pushOperationKey}", operation_id="get-create-operation")
async def get_create_operation(request: Request, companyId: str, pushOperationKey: str) -> JSONResponse:
    state = sandbox_state(request)
    require_company(state, companyId)
    operation = state.push_operations.get(pushOperationKey)
    if operation is None or operation.company_id != companyId:
        raise CodatError(404, f"Push operation {pushOperationKey} not found")
    return JSONResponse(pushes.view(operation))


_PUSH_FIELDS: dict[str, query.Field[pushes.PushOperation]] = {
    "pushOperationKey": query.Field(query.Kind.string, lambda o: o.key),
    "dataConnectionKey": query.Field(query.Kind.string, lambda o: o.connection_id),
    "status": query.Field(query.Kind.string, lambda o: o.status),
    "requestedOnUtc": query.Field(query.Kind.date, lambda o: o.requested),
    "completedOnUtc": query.Field(query.Kind.date, lambda o: o.completed),
}
