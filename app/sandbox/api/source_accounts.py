"""Source accounts (``…/connectionInfo/bankFeedAccounts``) and the one-time QuickBooks credentials.

The removed ``PUT …/bankFeedAccounts`` is deliberately absent: it answers 405 in Codat's error shape.
"""

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response

from app.sandbox import views
from app.sandbox.api.connections import CONNECTION, require_connection
from app.sandbox.api.route import CodatRoute
from app.sandbox.api.schemas import (
    SourceAccountV1Update,
    SourceAccountV2Prototype,
    parse,
    parse_body,
    read_json,
)
from app.sandbox.context import lifecycle, sandbox_state
from app.sandbox.errors import CodatError, ValidationItem, invalid
from app.sandbox.models import AccountStatus, Connection, SourceAccount
from app.sandbox.platforms import QBO, profile
from app.sandbox.responses import JSONResponse

router = APIRouter(route_class=CodatRoute)

ACCOUNTS = CONNECTION + "/connectionInfo/bankFeedAccounts"
VALIDATOR = "SourceAccountValidator"


def _connection(request: Request, company_id: str, connection_id: str) -> Connection:
    return require_connection(sandbox_state(request), company_id, connection_id)


def _require_account(connection: Connection, account_id: str) -> SourceAccount:
    account = connection.accounts.get(account_id)
    if account is None:
        raise CodatError(404, f"Source account {account_id} not found")
    return account


def _new_account(connection: Connection, body: SourceAccountV2Prototype) -> SourceAccount:
    account = SourceAccount(
        id=body.id,
        account_name=body.account_name,
        account_type=body.account_type,
        account_number=body.account_number,
        currency=body.currency,
        balance=body.balance,
        sort_code=body.sort_code,
        routing_info=body.routing_info.model_dump(by_alias=True) if body.routing_info else None,
        account_info=body.account_info.model_dump(by_alias=True) if body.account_info else None,
        modified_date=body.modified_date,
    )
    connection.accounts[account.id] = account
    return account


def _duplicate(account_id: str) -> str:
    return f"A source account with ID '{account_id}' already exists for this connection."


@router.get(ACCOUNTS, operation_id="list-source-accounts")
async def list_source_accounts(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    connection = _connection(request, companyId, connectionId)
    return JSONResponse([views.source_account(a) for a in connection.accounts.values()])


@router.post(ACCOUNTS, operation_id="create-source-account")
async def create_source_account(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    connection = _connection(request, companyId, connectionId)
    body = await parse_body(request, SourceAccountV2Prototype, validator=VALIDATOR)
    if body.id in connection.accounts:
        raise invalid(_duplicate(body.id), item_id="id", validator=VALIDATOR)
    return JSONResponse(views.source_account(_new_account(connection, body)))


@router.post(ACCOUNTS + "/batch", operation_id="create-batch-source-account")
async def create_batch_source_account(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    connection = _connection(request, companyId, connectionId)
    items = await read_json(request)
    if not isinstance(items, list) or not items:
        raise invalid(
            "The request body must be a non-empty JSON array of source accounts.",
            item_id=None,
            validator=VALIDATOR,
        )
    results = [_create_batch_item(connection, item) for item in items]
    created = sum(ok for ok, _ in results)
    status = 201 if created == len(results) else 207 if created else 409
    return JSONResponse([body for _, body in results], status_code=status)


def _create_batch_item(connection: Connection, item: Any) -> tuple[bool, dict[str, Any]]:
    """(created?, SourceAccountV2BatchCreateResponse or SourceAccountBatchErrorResponse)."""
    given_id = item["id"] if isinstance(item, dict) and isinstance(item.get("id"), str) else ""
    try:
        body = parse(SourceAccountV2Prototype, item, validator=VALIDATOR)
    except CodatError as exc:
        return False, _batch_error(given_id, "400", exc.error)
    if body.id in connection.accounts:
        return False, _batch_error(body.id, "409", _duplicate(body.id))
    account = _new_account(connection, body)
    result = {"statusCode": 201, "error": None, "account": views.source_account(account)}
    return True, {"sourceAccountId": account.id, "result": result}


def _batch_error(account_id: str, status_code: str, error: str) -> dict[str, Any]:
    # Codat types this statusCode as a string, unlike the created items' integer.
    return {"sourceAccountId": account_id, "result": {"statusCode": status_code, "error": error}}


def _require_qbo(connection: Connection) -> None:
    # Codat: "Only call this endpoint when onboarding SMBs that use QuickBooks Online".
    platform = profile(connection.platform_key)
    if platform is not QBO:
        raise invalid(
            f"Credentials are only for QuickBooks Online Bank Feeds; this connection is {platform.name}.",
            item_id=None,
            validator=VALIDATOR,
        )


@router.post(ACCOUNTS + "/credentials", operation_id="generate-credentials")
async def generate_credentials(request: Request, companyId: str, connectionId: str) -> JSONResponse:
    connection = _connection(request, companyId, connectionId)
    _require_qbo(connection)
    credentials = sandbox_state(request).issue_credentials(connection)
    return JSONResponse({"username": credentials.username, "password": credentials.password})


@router.delete(ACCOUNTS + "/credentials", operation_id="delete-bank-feed-credentials", status_code=204)
async def delete_bank_feed_credentials(request: Request, companyId: str, connectionId: str) -> Response:
    connection = _connection(request, companyId, connectionId)
    _require_qbo(connection)
    lifecycle(request).revoke_credentials(connection)
    return Response(status_code=204)


@router.patch(ACCOUNTS + "/{accountId}", operation_id="update-source-account")
async def update_source_account(
    request: Request,
    companyId: str,
    connectionId: str,
    accountId: str,
) -> JSONResponse:
    connection = _connection(request, companyId, connectionId)
    account = _require_account(connection, accountId)
    update = await parse_body(request, SourceAccountV1Update, validator=VALIDATOR)
    changes = update.model_dump(by_alias=True, include=update.model_fields_set)
    refused = list(_refused_changes(account, changes))
    if refused:
        raise CodatError(400, "; ".join(item.message for item in refused), errors=refused)
    _apply(request, connection, account, changes)
    return JSONResponse(views.source_account_v1(account))


def _refused_changes(account: SourceAccount, changes: dict[str, Any]) -> Iterator[ValidationItem]:
    """Codat allows accountName, status -> disconnected, and balance while not connected; nothing else."""
    current = views.source_account_v1(account)
    for field, value in changes.items():
        if value == current[field]:
            continue
        reason = _why_refused(account, field, value)
        if reason:
            yield ValidationItem(field, reason, VALIDATOR)


def _why_refused(account: SourceAccount, field: str, value: Any) -> str | None:
    if field == "id":
        return "id must match the account in the path."
    if field == "accountName":
        return None if value else "accountName cannot be empty."
    if field == "status":
        return (
            None if value == AccountStatus.disconnected else "status can only be changed to 'disconnected'."
        )
    if field == "balance":
        if value is None:
            return "balance cannot be null."
        return (
            "balance cannot be changed while the account is connected."
            if (account.status is AccountStatus.connected)
            else None
        )
    return f"{field} cannot be changed."


def _apply(request: Request, connection: Connection, account: SourceAccount, changes: dict[str, Any]) -> None:
    account.account_name = changes.get("accountName", account.account_name)
    account.balance = changes.get("balance", account.balance)
    if changes.get("status") == AccountStatus.disconnected:
        lifecycle(request).disconnect_account(connection, account)


@router.delete(ACCOUNTS + "/{accountId}", operation_id="delete-source-account", status_code=204)
async def delete_source_account(
    request: Request,
    companyId: str,
    connectionId: str,
    accountId: str,
) -> Response:
    connection = _connection(request, companyId, connectionId)
    del connection.accounts[_require_account(connection, accountId).id]
    return Response(status_code=204)
