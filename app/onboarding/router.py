"""End-user endpoints (the SPA and mobile apps) and internal-service endpoints of the onboarding domain."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse

from app.auth.dependencies import BankFeedReader, BusinessesWriter, CurrentUser
from app.bankfeed.exceptions import AccountNotFound, BusinessNotFound, NotConnected, UpstreamRejected
from app.bankfeed.models import BankAccount
from app.bankfeed.repository import BankFeedRepository
from app.bankfeed.schemas import BankFeedOut, FeedAccountOut, TargetAccountOut
from app.bankfeed.stream import bank_feed_events, feed_version
from app.bankfeed.view import render_bank_feed_view, served_bank_feed_view
from app.codat.schemas import Credentials
from app.db import SessionDep
from app.errors import Forbidden, InvalidInput, Unauthorized, UpstreamUnavailable, error_responses
from app.http import NO_STORE, etag_response, no_store
from app.idempotency.route import IdempotentRoute, claim_of, claims_in_its_own_transactions
from app.inputs import IdPath
from app.onboarding.dependencies import ServiceDep
from app.onboarding.exceptions import NotAuthorized, NotForThisPlatform, PlatformInUse
from app.onboarding.flows import Handover, Link, Operation, SageCode
from app.onboarding.mapping import AccountMapping
from app.onboarding.schemas import (
    AddAccountsIn,
    BankAccountIn,
    BankAccountOut,
    BusinessIn,
    BusinessOut,
    ConnectIn,
    ConnectOut,
    CredentialsOut,
    LinkOut,
    MappingAccountOut,
    MappingIn,
    MappingOut,
    ReconnectIn,
    RenameAccountIn,
    SageAuthorizationIn,
    SageCodeOut,
    TargetOptionOut,
)
from app.ratelimit import CodatCallsLimit, CredentialsLimit, RateLimited, ServiceLimit, limiter

UPSTREAM_ERRORS = (UpstreamUnavailable, UpstreamRejected)
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: `If-None-Match` is current."}
}
router = APIRouter(
    prefix="/v1/bank-feed",
    tags=["bank feed"],
    responses=error_responses(Unauthorized, InvalidInput, RateLimited),
    route_class=IdempotentRoute,
)
internal_router = APIRouter(
    prefix="/internal/v1/businesses",
    tags=["internal"],
    responses=error_responses(Unauthorized, Forbidden, InvalidInput, RateLimited),
    dependencies=[ServiceLimit],
)


def link_out(link: Link) -> LinkOut:
    return LinkOut(
        link_url=link.url,
        expires_at=link.expires_at,
        connection_id=link.connection.codat_connection_id or "",
        connection_status=link.connection.status,
    )


def credentials_out(credentials: Credentials) -> CredentialsOut:
    return CredentialsOut(username=credentials.username, password=credentials.password.get_secret_value())


def sage_code_out(code: SageCode) -> SageCodeOut:
    return SageCodeOut(
        connection_id=code.connection_id, code=code.code.get_secret_value(), expires_at=code.expires_at
    )


def connect_out(handover: Handover) -> ConnectOut:
    view, link, connection = handover.view, handover.link, handover.connection
    assert view is not None  # connect answers the view it left
    return ConnectOut(
        platform=handover.platform.name,
        action=view.action,
        link_url=link.url if link else None,
        expires_at=link.expires_at if link else None,
        connection_id=connection.codat_connection_id or "",
        connection_status=connection.status,
        accounts=view.accounts,
        sage_code=sage_code_out(handover.sage_code) if handover.sage_code else None,
    )


def mapping_account_out(found: AccountMapping) -> MappingAccountOut:
    account, mapping = found.account, found.mapping
    target = mapping.target_account_id
    return MappingAccountOut(
        account_id=account.id,
        account_name=account.name,
        account_type=account.account_type,
        currency=account.currency,
        status=mapping.status,
        target_account=TargetAccountOut(id=target, name=mapping.target_account_name) if target else None,
        options=[
            TargetOptionOut(id=o.id, name=o.name, balance=o.balance)
            for o in mapping.target_account_options or []
        ],
    )


async def account_view(session: SessionDep, business_id: str, account_id: str) -> FeedAccountOut:
    view = await render_bank_feed_view(session, business_id)
    return next(a for a in view.accounts if a.account_id == account_id)


@router.get("", response_model=BankFeedOut, responses={**error_responses(BusinessNotFound), **NOT_MODIFIED})
async def get_bank_feed(user: CurrentUser, session: SessionDep, request: Request) -> Response:
    """The business's bank feed; send `If-None-Match` with the last `ETag` to get a cheap `304`."""
    return etag_response(request, await served_bank_feed_view(session, user.business_id))


@router.post(
    "/refresh",
    response_model=BankFeedOut,
    responses={**error_responses(NotConnected, *UPSTREAM_ERRORS), **NOT_MODIFIED},
    dependencies=[CodatCallsLimit],
)
async def refresh_bank_feed(
    user: CurrentUser, service: ServiceDep, session: SessionDep, request: Request
) -> Response:
    """Re-read the statuses from Codat now (webhooks normally keep them current), then the view."""
    await service.refresh(user.business_id)
    return etag_response(request, await served_bank_feed_view(session, user.business_id))


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "`bank-feed-changed` events"}},
)
async def stream_bank_feed_events(user: CurrentUser, request: Request) -> StreamingResponse:
    """Server-sent events: `bank-feed-changed` whenever the view changes; re-read `GET /v1/bank-feed` then."""
    state = request.app.state
    version = await feed_version(state.sessionmaker, user.business_id)
    events = bank_feed_events(request, state.sessionmaker, state.changes, user.business_id, version)
    stream = await limiter(request).stream(user.business_id, events)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/connect",
    response_model=ConnectOut,
    responses=error_responses(BusinessNotFound, InvalidInput, PlatformInUse, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit],
)
@claims_in_its_own_transactions
async def connect(
    request: Request,
    user: CurrentUser,
    service: ServiceDep,
    body: Annotated[ConnectIn | None, Body()] = None,
) -> Response:
    """Start or resume onboarding to a platform for the chosen registered accounts (all of them by default).

    Answers what the SMB needs next: a link (QuickBooks Online, Xero, NetSuite, FreeAgent, Exact), or for
    Sage the connection id and a one-time code to type into Sage (`sageCode`; no link).
    """
    handover = await service.connect(
        user.business_id,
        body.platform if body else None,
        body.account_ids if body else None,
        claim_of(request),
    )
    rendered = connect_out(handover).model_dump_json(by_alias=True).encode()
    return Response(rendered, media_type="application/json", headers=NO_STORE)


@router.post(
    "/reconnect",
    response_model=ConnectOut,
    responses=error_responses(BusinessNotFound, NotForThisPlatform, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit],
)
async def reconnect(
    request: Request,
    user: CurrentUser,
    service: ServiceDep,
    response: Response,
    body: Annotated[ReconnectIn | None, Body()] = None,
) -> ConnectOut:
    """Mend a broken feed in one step: the same accounts and platform, on a new connection if Codat's is dead;
    a link, or a Sage code.

    With `withCredentials` (QuickBooks Online only), also one-time QuickBooks credentials, for an in-app flow.
    """
    if body and body.with_credentials:  # refused or counted before anything is done, like POST /credentials
        await service.require(user.business_id, Operation.CREDENTIALS)
        await limiter(request).hit("credentials", f"business:{user.business_id}")
    handover = await service.reconnect(user.business_id)
    no_store(response)
    out = connect_out(handover)
    if body and body.with_credentials:
        credentials = await service.generate_credentials(user.business_id)
        out.credentials = credentials_out(credentials)
    return out


@router.get(
    "/link",
    response_model=LinkOut,
    responses=error_responses(NotConnected, NotForThisPlatform, *UPSTREAM_ERRORS),
)
async def get_link(user: CurrentUser, service: ServiceDep, response: Response) -> LinkOut:
    """A Link URL with time left on its one-time password, fresh if the stored one has lapsed.

    Only a refresh counts against the business's limit on Codat calls (requests waiting for the same
    refresh share it): a stored link is served however often it is asked for."""
    no_store(response)
    return link_out(await service.link(user.business_id))


@router.get(
    "/link/redirect",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses=error_responses(NotConnected, NotForThisPlatform, *UPSTREAM_ERRORS),
)
async def redirect_to_link(user: CurrentUser, service: ServiceDep) -> RedirectResponse:
    """A `302` to a valid Link URL."""
    link = await service.link(user.business_id)
    return RedirectResponse(link.url, status_code=status.HTTP_302_FOUND, headers=NO_STORE)


@router.post(
    "/credentials",
    response_model=CredentialsOut,
    responses=error_responses(NotConnected, NotForThisPlatform, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit, CredentialsLimit],
)
async def generate_credentials(user: CurrentUser, service: ServiceDep, response: Response) -> CredentialsOut:
    """One-time QuickBooks credentials for an in-app flow; each call makes a new set."""
    credentials = await service.generate_credentials(user.business_id)
    no_store(response)
    return credentials_out(credentials)


@router.delete(
    "/credentials",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(NotConnected, NotForThisPlatform, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit],
)
async def revoke_credentials(user: CurrentUser, service: ServiceDep) -> None:
    """Revoke every set of one-time credentials of the connection."""
    await service.revoke_credentials(user.business_id)


@router.post(
    "/accounts",
    response_model=ConnectOut,
    responses=error_responses(BusinessNotFound, InvalidInput, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit],
)
async def add_accounts(
    user: CurrentUser, service: ServiceDep, body: AddAccountsIn, response: Response
) -> ConnectOut:
    """Offer more registered accounts to the platform, with a fresh link (or Sage code) to connect them."""
    handover = await service.connect(user.business_id, None, body.account_ids)
    no_store(response)
    return connect_out(handover)


@router.patch(
    "/accounts/{account_id}",
    response_model=FeedAccountOut,
    responses=error_responses(AccountNotFound, InvalidInput, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit],
)
async def rename_account(
    user: CurrentUser, service: ServiceDep, session: SessionDep, account_id: IdPath, body: RenameAccountIn
) -> FeedAccountOut:
    """Rename an account (`accountName` only), here and at Codat."""
    await service.rename_account(user.business_id, account_id, body.account_name)
    return await account_view(session, user.business_id, account_id)


@router.post(
    "/sage-code",
    response_model=SageCodeOut,
    responses=error_responses(NotConnected, NotForThisPlatform, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit, CredentialsLimit],
)
async def generate_sage_code(user: CurrentUser, service: ServiceDep, response: Response) -> SageCodeOut:
    """Sage only: a new one-time code to type into Sage with the connection id; it replaces the last one."""
    code = await service.sage_code(user.business_id)
    no_store(response)
    return sage_code_out(code)


@router.post(
    "/sage/authorization",
    response_model=BankFeedOut,
    responses=error_responses(NotConnected, NotForThisPlatform, InvalidInput, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit],
)
async def authorize_sage(
    user: CurrentUser, service: ServiceDep, session: SessionDep, body: SageAuthorizationIn
) -> BankFeedOut:
    """Sage only: the SMB signed in on the fintech's page Sage sent it to; hand on its `authorizationId`."""
    await service.authorize_sage(user.business_id, body.authorization_id)
    return await render_bank_feed_view(session, user.business_id)


@router.get(
    "/mapping",
    response_model=MappingOut,
    responses=error_responses(NotConnected, NotForThisPlatform, NotAuthorized, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit],
)
async def get_mapping(user: CurrentUser, service: ServiceDep, response: Response) -> MappingOut:
    """Xero, NetSuite, FreeAgent, Exact: each account on the feed, its account in the books, and the ones it
    may feed (same currency and kind, fed by no other account), live from Codat."""
    mappings = await service.mapping(user.business_id)
    no_store(response)
    return MappingOut(accounts=[mapping_account_out(m) for m in mappings])


@router.post(
    "/accounts/{account_id}/mapping",
    response_model=FeedAccountOut,
    responses=error_responses(
        AccountNotFound, NotConnected, NotForThisPlatform, NotAuthorized, InvalidInput, *UPSTREAM_ERRORS
    ),
    dependencies=[CodatCallsLimit],
)
async def map_account(
    user: CurrentUser, service: ServiceDep, session: SessionDep, account_id: IdPath, body: MappingIn
) -> FeedAccountOut:
    """Choose the account in the books this account feeds (one of its `options`; null: a new one)."""
    await service.map_account(user.business_id, account_id, body.target_account_id, body.feed_start_date)
    return await account_view(session, user.business_id, account_id)


@router.post(
    "/disconnect",
    response_model=BankFeedOut,
    responses=error_responses(NotConnected, *UPSTREAM_ERRORS),
    dependencies=[CodatCallsLimit],
)
async def disconnect(user: CurrentUser, service: ServiceDep, session: SessionDep) -> BankFeedOut:
    """Stop the feed: Codat unlinks the connection. Connect again (to any platform) for a new connection."""
    await service.disconnect(user.business_id)
    return await render_bank_feed_view(session, user.business_id)


@internal_router.put(
    "/{business_id}",
    response_model=BusinessOut,
    responses={**error_responses(InvalidInput), 201: {"model": BusinessOut, "description": "Registered"}},
)
async def put_business(
    business_id: IdPath, body: BusinessIn, _: BusinessesWriter, session: SessionDep, response: Response
) -> BusinessOut:
    """Register or update a business (US or CA)."""
    repo = BankFeedRepository(session)
    if await repo.get_business(business_id) is None:
        response.status_code = status.HTTP_201_CREATED
    business = await repo.upsert_business(business_id, body.name, body.country, body.time_zone)
    return BusinessOut(
        business_id=business.id, name=business.name, country=business.country, time_zone=business.time_zone
    )


@internal_router.put(
    "/{business_id}/accounts/{account_id}",
    response_model=BankAccountOut,
    responses={
        **error_responses(BusinessNotFound, InvalidInput),
        201: {"model": BankAccountOut, "description": "Registered"},
    },
)
async def put_bank_account(
    business_id: IdPath,
    account_id: IdPath,
    body: BankAccountIn,
    _: BusinessesWriter,
    session: SessionDep,
    response: Response,
) -> BankAccountOut:
    """Register or update a bank account's details; these are the source of truth for Codat."""
    repo = BankFeedRepository(session)
    await repo.require_business(business_id)
    if await repo.get_bank_account(business_id, account_id) is None:
        response.status_code = status.HTTP_201_CREATED
    account = await repo.save_bank_account(
        BankAccount(business_id=business_id, id=account_id, **body.model_dump())
    )
    return BankAccountOut(
        account_id=account.id,
        name=account.name,
        account_type=account.account_type,
        account_number_last4=account.account_number[-4:],
        currency=account.currency,
        balance=account.balance,
    )


@internal_router.get(
    "/{business_id}/bank-feed",
    response_model=BankFeedOut,
    responses={**error_responses(BusinessNotFound), **NOT_MODIFIED},
)
async def get_business_bank_feed(
    business_id: IdPath, _: BankFeedReader, session: SessionDep, request: Request
) -> Response:
    """The same bank-feed view the business's users see."""
    return etag_response(request, await served_bank_feed_view(session, business_id))
