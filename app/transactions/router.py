"""Internal-service endpoints: send an account's cleared transactions, and see what became of them."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from app.auth.dependencies import require_scopes
from app.auth.principals import Service
from app.bankfeed.exceptions import AccountNotFound, BusinessNotFound
from app.errors import Conflict, Forbidden, InvalidInput, Unauthorized, error_responses
from app.idempotency.route import IdempotentRoute
from app.inputs import IdPath
from app.ratelimit import RateLimited, ServiceLimit
from app.transactions.schemas import (
    MAX_PER_REQUEST,
    StatusFilter,
    TransactionsAccepted,
    TransactionsIn,
    TransactionsPage,
)
from app.transactions.service import AccountNotConnected, TransactionService, TransactionsRefused


def get_transaction_service(request: Request) -> TransactionService:
    return TransactionService(request.app.state.sessionmaker, request.app.state.clock)


ServiceDep = Annotated[TransactionService, Depends(get_transaction_service)]
TransactionsWriter = Annotated[Service, Depends(require_scopes("transactions:write"))]
TransactionsReader = Annotated[Service, Depends(require_scopes("transactions:read"))]

router = APIRouter(
    prefix="/internal/v1/businesses/{business_id}/accounts/{account_id}/transactions",
    tags=["transactions"],
    responses=error_responses(
        Unauthorized, Forbidden, InvalidInput, BusinessNotFound, AccountNotFound, RateLimited
    ),
    dependencies=[ServiceLimit],
    route_class=IdempotentRoute,  # Idempotency-Key on the POST, as on every other POST/PATCH
)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TransactionsAccepted,
    responses=error_responses(AccountNotConnected, Conflict, TransactionsRefused),
)
async def post_transactions(
    business_id: IdPath, account_id: IdPath, body: TransactionsIn, _: TransactionsWriter, service: ServiceDep
) -> TransactionsAccepted:
    """Queue cleared transactions for the accounting platform the business feeds, earliest first, up to
    1,000 a request.

    The platform's rules are checked first: the account is connected; each date is not in the future in the
    business's time zone, not older than the newest transaction already accepted for the account, and not
    earlier than the one before it in the request; it is within the platform's window (`acceptsFrom`:
    QuickBooks Online takes today or yesterday, Xero up to 365 days back, the others state no window); a
    Credit's amount is positive, a Debit's negative. One broken rule refuses the whole request
    (`transactions_refused`, nothing queued), naming each transaction and rule. Ids accepted before are
    acknowledged in `duplicates` and not queued again.
    """
    return await service.accept(business_id, account_id, body.transactions)


@router.get("", response_model=TransactionsPage)
async def list_transactions(
    business_id: IdPath,
    account_id: IdPath,
    _: TransactionsReader,
    service: ServiceDep,
    status: Annotated[
        StatusFilter | None, Query(description="`pending` is queued and sending together; all when omitted.")
    ] = None,
    after: Annotated[
        str | None, Query(pattern=r"^\d{1,18}$", description="`nextCursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PER_REQUEST)] = 100,
) -> TransactionsPage:
    """The account's transactions in the order accepted: delivered, pending or refused by Codat, and why."""
    return await service.page(business_id, account_id, status, int(after or 0), limit)
