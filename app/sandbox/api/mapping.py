"""Account mapping (``…/bankFeedAccounts/mapping``) and company information (``…/bankFeeds/info``), for the
platforms Codat maps (``app.sandbox.mapping``)."""

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request

from app.sandbox import mapping
from app.sandbox.api.connections import CONNECTION, require_connection
from app.sandbox.api.route import CodatRoute
from app.sandbox.api.schemas import BankFeedAccountMapping, parse_body
from app.sandbox.context import lifecycle, sandbox_state
from app.sandbox.errors import CodatError, invalid
from app.sandbox.models import Connection, ConnectionStatus, SourceAccount, TargetAccount
from app.sandbox.platforms import profile
from app.sandbox.responses import JSONResponse

router = APIRouter(route_class=CodatRoute)

MAPPING = CONNECTION + "/bankFeedAccounts/mapping"


def _refused(exc: mapping.MappingRefused) -> CodatError:
    if exc.status_code == 404:
        return CodatError(404, exc.message)
    return invalid(exc.message, item_id=exc.field, validator=mapping.VALIDATOR)


@router.get(MAPPING, operation_id="get-bank-account-mapping")
async def get_bank_account_mapping(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    connection = require_connection(sandbox_state(request), companyId, connectionId)
    try:
        mapping.require_mapping_platform(connection)
        body = [_mapping_view(connection, account) for account in connection.accounts.values()]
    except mapping.MappingRefused as exc:
        raise _refused(exc) from None
    return JSONResponse(body)


@router.post(MAPPING, operation_id="create-bank-account-mapping")
async def create_bank_account_mapping(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    state = sandbox_state(request)
    connection = require_connection(state, companyId, connectionId)
    body = await parse_body(request, BankFeedAccountMapping, validator=mapping.VALIDATOR)
    start = datetime.fromisoformat(body.feed_start_date).date() if body.feed_start_date else None
    try:
        account = mapping.map_account(
            state,
            lifecycle(request),
            connection,
            body.source_account_id,
            body.target_account_id,
            start or state.clock.now().date(),
        )
    except mapping.MappingRefused as exc:
        raise _refused(exc) from None
    answer = {
        "sourceAccountId": account.id,
        "targetAccountId": account.target_account_id,
        "status": account.status.value,
        "error": None,
    }
    return JSONResponse(answer)


@router.get(CONNECTION + "/bankFeeds/info", operation_id="get-company-information")
async def get_company_information(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    connection = require_connection(sandbox_state(request), companyId, connectionId)
    platform = profile(connection.platform_key)
    if not platform.company_information:
        raise invalid(
            f"Company information is not available for {platform.name} (only Oracle NetSuite and Xero).",
            item_id=None,
            validator="CompanyInformationValidator",
        )
    books = connection.books
    if connection.status is not ConnectionStatus.linked or books is None:
        raise invalid(
            f"The connection is {connection.status.value}: the SMB must authorize it first.",
            item_id=None,
            validator="CompanyInformationValidator",
        )
    return JSONResponse(
        {
            "companyName": books.company_name,
            "baseCurrency": books.base_currency,
            "planType": None,
            "multicurrencyEnabled": books.multicurrency,
            "currencies": books.currencies,
        }
    )


def _mapping_view(connection: Connection, account: SourceAccount) -> dict[str, Any]:
    """Codat's BankFeedMapping (additionalProperties: false); targetAccountName only once mapped, and no
    options (null) until the SMB has authorized and the books can be read."""
    targets = mapping.options(connection, account)
    body: dict[str, Any] = {
        "sourceAccountId": account.id,
        "sourceAccountName": account.account_name,
        "sourceAccountNumber": account.account_number,
        "sourceBalance": account.balance,
        "sourceCurrency": account.currency,
        "targetAccountId": account.target_account_id,
        "status": account.status.value,
        "targetAccountOptions": None if targets is None else [_option(t) for t in targets],
        "feedStartDate": _date_time(account.feed_start_date),
    }
    books = connection.books
    target = books.accounts.get(account.target_account_id or "") if books else None
    if target is not None:
        body["targetAccountName"] = target.name
    return body


def _option(target: TargetAccount) -> dict[str, Any]:
    return {
        "id": target.id,
        "name": target.name,
        "balance": target.balance,
        "sortCode": target.sort_code,
        "accountNumber": target.account_number,
    }


def _date_time(day: date | None) -> str | None:
    # Codat's example writes the mapping's feedStartDate as a local date-time: "2023-09-12T00:00:00".
    return f"{day.isoformat()}T00:00:00" if day else None
