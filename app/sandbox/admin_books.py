"""Test knob: the SMB's books on a mapping platform (company information and target accounts), under
``/_sandbox`` like the other knobs (``app.sandbox.admin``).

- ``GET /_sandbox/connections/{connectionId}/books``: ``{companyName, baseCurrency, multicurrencyEnabled,
  currencies, accounts: [{id, name, currency, kind (bank|creditCard|any other: never fed), accountNumber,
  sortCode, balance}]}``; 404 until the SMB has authorized (the books open then, with a default chart) or
  books were PUT.
- ``PUT`` the same shape (``id`` optional on new accounts): replaces the books, which authorizing then keeps.
  422 names a bad field.
"""

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from app.sandbox.context import sandbox_state
from app.sandbox.currencies import ISO_4217
from app.sandbox.errors import CodatError, from_validation_error, invalid
from app.sandbox.models import Books, Connection, TargetAccount
from app.sandbox.responses import JSONResponse
from app.sandbox.state import SandboxState

router = APIRouter(prefix="/_sandbox")


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _currency(value: str) -> str:
    if value not in ISO_4217:
        raise ValueError("must be an ISO 4217 currency code, e.g. GBP")
    return value


class _Account(_Wire):
    id: str | None = Field(None, min_length=1)
    name: str = Field(min_length=1)
    currency: str
    kind: str = Field(min_length=1)
    account_number: str | None = None
    sort_code: str | None = None
    balance: float | None = None

    _currency = field_validator("currency")(_currency)


class _Books(_Wire):
    company_name: str = Field(min_length=1)
    base_currency: str
    multicurrency_enabled: bool
    currencies: list[str]
    accounts: list[_Account]

    _currency = field_validator("base_currency")(_currency)


def _connection(state: SandboxState, connection_id: str) -> Connection:
    connection = state.connections.get(connection_id)
    if connection is None:
        raise CodatError(404, f"Data connection {connection_id} not found")
    return connection


def _books_json(books: Books) -> dict[str, Any]:
    return {
        "companyName": books.company_name,
        "baseCurrency": books.base_currency,
        "multicurrencyEnabled": books.multicurrency,
        "currencies": books.currencies,
        "accounts": [
            {
                "id": a.id,
                "name": a.name,
                "currency": a.currency,
                "kind": a.kind,
                "accountNumber": a.account_number,
                "sortCode": a.sort_code,
                "balance": a.balance,
            }
            for a in books.accounts.values()
        ],
    }


@router.get("/connections/{connectionId}/books")
async def get_books(request: Request, connectionId: str) -> JSONResponse:
    books = _connection(sandbox_state(request), connectionId).books
    if books is None:
        raise CodatError(404, "The SMB has not authorized this connection: its books are not open.")
    return JSONResponse(_books_json(books))


@router.put("/connections/{connectionId}/books")
async def put_books(request: Request, connectionId: str) -> JSONResponse:
    state = sandbox_state(request)
    connection = _connection(state, connectionId)
    try:
        given = _Books.model_validate_json(await request.body())
    except ValidationError as exc:
        raise from_validation_error(exc, validator="BooksValidator", status_code=422) from None
    accounts = [
        TargetAccount(
            a.id or state.new_id(), a.name, a.currency, a.kind, a.account_number, a.sort_code, a.balance
        )
        for a in given.accounts
    ]
    if len({a.id for a in accounts}) != len(accounts):
        raise invalid(
            "Account ids must be unique.", item_id="accounts", validator="BooksValidator", status_code=422
        )
    connection.books = Books(
        given.company_name,
        given.base_currency,
        given.multicurrency_enabled,
        given.currencies,
        {a.id: a for a in accounts},
    )
    return JSONResponse(_books_json(connection.books))
