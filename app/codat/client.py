"""The Codat adapter: typed methods over the one ``httpx.AsyncClient`` the app's lifespan owns.

Every call goes through ``CodatClient._request``, which:

* sends POST/PATCH with the caller's ``Idempotency-Key`` (the same on every retry), so a retry after a lost
  answer replays it instead of creating a second company, connection or account;
* retries network errors, timeouts, 408, 429 and 5xx with capped, jittered back-off, honouring
  ``Retry-After``, within the deadline of ``codat_deadline`` (or ``request_deadline_seconds`` per call);
* keeps at most ``max_in_flight_per_company`` calls in flight per Codat company;
* fails fast while the circuit breaker is open;
* logs one line per attempt and one warning per retry, with the path template and Codat's correlationId,
  never a body, a header, a linkUrl or a credential.
"""

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from app.codat import metrics
from app.codat.deadline import Clock, Deadline, current_deadline
from app.codat.exceptions import (
    CodatConflict,
    CodatError,
    CodatUnavailable,
    UnavailableReason,
    error_from_response,
    unavailable_from_transport,
)
from app.codat.quota import QuotaTracker, WallClock
from app.codat.resilience import CircuitBreaker, CompanyLimiter, backoff_seconds
from app.codat.schemas import (
    SOURCE_ACCOUNT_PROTOTYPES,
    BankFeedMapping,
    BankTransaction,
    BatchCreateResult,
    CompaniesPage,
    Company,
    CompanyInformation,
    Connection,
    ConnectionsPage,
    ConnectionStatus,
    Credentials,
    Integration,
    MappingPrototype,
    MappingResult,
    Otp,
    PushOperation,
    SourceAccount,
    SourceAccountPrototype,
    SyncSettings,
)
from app.config import CodatSettings
from app.transport import LeanTransport

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

COMPANIES = "/companies"
COMPANY = "/companies/{companyId}"
CONNECTIONS = COMPANY + "/connections"
CONNECTION = CONNECTIONS + "/{connectionId}"
AUTHORIZATION = CONNECTION + "/authorization"
MAPPING = CONNECTION + "/bankFeedAccounts/mapping"
COMPANY_INFORMATION = CONNECTION + "/bankFeeds/info"
OTP = CONNECTION + "/bankFeeds/otp"
SOURCE_ACCOUNTS = CONNECTION + "/connectionInfo/bankFeedAccounts"
SOURCE_ACCOUNTS_BATCH = SOURCE_ACCOUNTS + "/batch"
SOURCE_ACCOUNT = SOURCE_ACCOUNTS + "/{accountId}"
CREDENTIALS = SOURCE_ACCOUNTS + "/credentials"
BANK_TRANSACTIONS = CONNECTION + "/push/bankAccounts/{accountId}/bankTransactions"
PUSH_OPERATION = COMPANY + "/push/{pushOperationKey}"
INTEGRATION = "/integrations/{platformKey}"
SYNC_SETTINGS = "/profile/syncSettings"

# Account ids that would turn ".../bankFeedAccounts/{accountId}" into another endpoint (a DELETE on
# ".../credentials" revokes every credential set of the connection).
_RESERVED_ACCOUNT_IDS = frozenset({"", "batch", "credentials"})
_REPEATABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_RETRYABLE_REASONS = frozenset(
    {
        UnavailableReason.TRANSPORT_ERROR,
        UnavailableReason.TIMEOUT,
        UnavailableReason.REQUEST_TIMEOUT,
        UnavailableReason.RATE_LIMITED,
        UnavailableReason.SERVER_ERROR,
        UnavailableReason.REQUEST_IN_PROGRESS,
    }
)


def build_http_client(
    settings: CodatSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one ``httpx.AsyncClient`` for Codat: base URL, timeouts and ``Authorization`` set once.

    ``transport`` replaces the network, e.g. ``httpx.ASGITransport`` for the embedded sandbox.
    """
    if settings.api_key is None:
        raise ValueError("codat.api_key is not set (BANKFEEDS_CODAT__API_KEY)")
    token = base64.b64encode(settings.api_key.get_secret_value().encode()).decode()
    return httpx.AsyncClient(
        base_url=settings.base_url,
        headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
        timeout=httpx.Timeout(settings.read_timeout_seconds, connect=settings.connect_timeout_seconds),
        # Retries failed connects only, which never reached Codat; CodatClient retries everything else.
        transport=transport or LeanTransport(retries=2),
    )


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(shape: type[Any]) -> TypeAdapter[Any]:
    """One per answer shape: a TypeAdapter looks its schema up again each time one is made (a tenth of the
    client's own CPU per call)."""
    adapter = _ADAPTERS.get(shape)
    if adapter is None:
        adapter = _ADAPTERS[shape] = TypeAdapter(shape)
    return adapter


def _is_success(response: httpx.Response) -> bool:
    return response.is_success


def _is_batch_result(response: httpx.Response) -> bool:
    # When every item fails Codat answers 409 with the per-item list; a 409 error object is no result.
    return response.is_success or (response.status_code == 409 and response.content.lstrip().startswith(b"["))


@dataclass(frozen=True)
class _Call:
    operation: str
    method: str
    template: str
    path_params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str | int] | None = None
    body: Any = None  # JSON-ready, or JSON already encoded (bytes)
    idempotency_key: str | None = None
    is_result: Callable[[httpx.Response], bool] = _is_success
    # A PUT whose input Codat accepts once (Sage's authorizationId): a retry after a lost answer would turn
    # its success into a 404, so it is never retried.
    single_use: bool = False

    @property
    def path(self) -> str:
        return self.template.format_map(
            {name: quote(value, safe="") for name, value in self.path_params.items()}
        )

    @property
    def company_id(self) -> str | None:
        return self.path_params.get("companyId")

    @property
    def repeatable(self) -> bool:
        # POST and PATCH are retried only because their Idempotency-Key makes Codat replay the first answer.
        if self.single_use:
            return False
        return self.method in _REPEATABLE_METHODS or self.idempotency_key is not None

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Idempotency-Key": self.idempotency_key} if self.idempotency_key else {}
        if isinstance(self.body, bytes):
            headers["Content-Type"] = "application/json"
        return headers

    @property
    def content(self) -> dict[str, Any]:
        """httpx's arguments for the body: JSON the caller encoded already (bytes), or to encode."""
        return {"content": self.body} if isinstance(self.body, bytes) else {"json": self.body}


def _connection_params(company_id: str, connection_id: str) -> dict[str, str]:
    return {"companyId": company_id, "connectionId": connection_id}


def _account_params(company_id: str, connection_id: str, account_id: str) -> dict[str, str]:
    if account_id in _RESERVED_ACCOUNT_IDS:
        raise ValueError(f"{account_id!r} cannot be a source account id: it names another Codat endpoint")
    return {**_connection_params(company_id, connection_id), "accountId": account_id}


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _log_event(level: int, event: str, **fields: object) -> None:
    if not log.isEnabledFor(level):
        return  # e.g. each attempt's DEBUG line: not formatted for nothing, twice a push
    log.log(level, "%s %s", event, " ".join(f"{key}={value}" for key, value in fields.items()), extra=fields)


@dataclass(frozen=True)
class CallOutcome:
    """One Codat call as the audit trail records it: never its body, a link or a credential."""

    operation: str
    outcome: str  # ok, rejected, unavailable, error
    company_id: str | None
    correlation_id: str | None


class CodatClient:
    """Codat's Bank Feeds and Platform API as the BFF uses it; one instance per process.

    All methods raise ``CodatRejected`` (or its ``CodatNotFound``/``CodatConflict``) when Codat refuses the
    request and ``CodatUnavailable`` when it could not answer in time; a POST or PATCH may then be retried
    later with the same idempotency key.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: CodatSettings,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        wall_clock: WallClock | None = None,
        on_call: Callable[[CallOutcome], None] | None = None,
    ) -> None:
        self._on_call = on_call  # told of every call's outcome (the audit trail); must not block or raise
        self._http = http
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._breaker = CircuitBreaker(
            settings.circuit_breaker_threshold, settings.circuit_breaker_cooldown_seconds, clock
        )
        self._limiter = CompanyLimiter(settings.max_in_flight_per_company)
        # Codat's X-Rate-Limit-Reset is a date: compared with wall-clock time (the sandbox's, under it).
        self.quota = QuotaTracker(
            settings.quota_reserve, monotonic=clock, **({"now": wall_clock} if wall_clock else {})
        )

    async def create_company(
        self,
        name: str,
        *,
        idempotency_key: str,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Company:
        """Create a company: ``POST /companies``.

        Raises:
            CodatRejected: e.g. 402 when the plan's company limit is reached.
            CodatUnavailable: Codat did not answer in time.
        """
        body = _without_none({"name": name, "description": description, "tags": tags})
        call = _Call("create_company", "POST", COMPANIES, body=body, idempotency_key=idempotency_key)
        return await self._fetch(call, Company)

    async def get_company(self, company_id: str) -> Company:
        """Read a company and its connections: ``GET /companies/{companyId}``.

        Raises:
            CodatNotFound: no such company (or it was deleted).
            CodatRejected: any other refusal.
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call("get_company", "GET", COMPANY, {"companyId": company_id})
        return await self._fetch(call, Company)

    async def list_companies(
        self, *, tags: str | None = None, page: int = 1, page_size: int = 100
    ) -> CompaniesPage:
        """One page of companies: ``GET /companies``.

        ``tags`` filters in Codat's query language, e.g. ``businessId = biz-1``.

        Raises:
            CodatRejected: e.g. 400 for a malformed filter.
            CodatUnavailable: Codat did not answer in time.
        """
        params = _without_none({"page": page, "pageSize": page_size, "tags": tags})
        return await self._fetch(_Call("list_companies", "GET", COMPANIES, query=params), CompaniesPage)

    async def create_connection(
        self, company_id: str, platform_key: str, *, idempotency_key: str
    ) -> Connection:
        """Create a ``PendingAuth`` connection and its ``linkUrl``.

        Calls ``POST /companies/{companyId}/connections``.

        Raises:
            CodatNotFound: no such company.
            CodatRejected: any other refusal.
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call(
            "create_connection",
            "POST",
            CONNECTIONS,
            {"companyId": company_id},
            body={"platformKey": platform_key},
            idempotency_key=idempotency_key,
        )
        return await self._fetch(call, Connection)

    async def get_connection(self, company_id: str, connection_id: str) -> Connection:
        """Read a connection; for QBO its ``linkUrl`` carries a fresh OTP each time.

        Calls ``GET /companies/{companyId}/connections/{connectionId}``.

        Raises:
            CodatNotFound: no such company or connection.
            CodatRejected: any other refusal.
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call("get_connection", "GET", CONNECTION, _connection_params(company_id, connection_id))
        return await self._fetch(call, Connection)

    async def list_connections(
        self, company_id: str, *, page: int = 1, page_size: int = 100, query: str | None = None
    ) -> ConnectionsPage:
        """One page of a company's connections: ``GET /companies/{companyId}/connections``.

        ``query`` is in Codat's query language, e.g. ``sourceType=BankFeed``.

        Raises:
            CodatNotFound: no such company.
            CodatRejected: e.g. 400 for a malformed query.
            CodatUnavailable: Codat did not answer in time.
        """
        params = _without_none({"page": page, "pageSize": page_size, "query": query})
        call = _Call("list_connections", "GET", CONNECTIONS, {"companyId": company_id}, query=params)
        return await self._fetch(call, ConnectionsPage)

    async def update_connection_authorization(
        self, company_id: str, connection_id: str, authorization_id: str
    ) -> Connection:
        """Authorize a Sage connection with the ``authorizationId`` Sage passed to the fintech's login page.

        Calls ``PUT /companies/{companyId}/connections/{connectionId}/authorization`` with
        ``{"authorizationId": …}``. The connection stays ``PendingAuth`` until the SMB picks accounts in Sage.
        Never retried: Codat takes an id once, so a retry after a lost answer would be refused as not found.

        Raises:
            CodatNotFound: no such company or connection, or an authorizationId Sage did not issue (or that
                was already used); ``item_ids`` then names ``authorizationId``.
            CodatRejected: any other refusal (e.g. 400: the connection is not Sage Bank Feeds).
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call(
            "update_connection_authorization",
            "PUT",
            AUTHORIZATION,
            _connection_params(company_id, connection_id),
            body={"authorizationId": authorization_id},
            single_use=True,
        )
        return await self._fetch(call, Connection)

    async def unlink_connection(
        self, company_id: str, connection_id: str, *, idempotency_key: str
    ) -> Connection:
        """Deauthorize a connection without deleting it: its data stays readable and it can be linked again.

        Calls ``PATCH /companies/{companyId}/connections/{connectionId}`` with ``{"status": "Unlinked"}``.

        Raises:
            CodatNotFound: no such company or connection.
            CodatRejected: e.g. 400 naming ``status`` when the connection is not ``Linked``.
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call(
            "unlink_connection",
            "PATCH",
            CONNECTION,
            _connection_params(company_id, connection_id),
            body={"status": ConnectionStatus.UNLINKED.value},
            idempotency_key=idempotency_key,
        )
        return await self._fetch(call, Connection)

    async def list_source_accounts(self, company_id: str, connection_id: str) -> list[SourceAccount]:
        """All source accounts of a connection, with status and feed start date.

        Calls ``GET /companies/{companyId}/connections/{connectionId}/connectionInfo/bankFeedAccounts``.

        Raises:
            CodatNotFound: no such company or connection.
            CodatRejected: any other refusal.
            CodatUnavailable: Codat did not answer in time.
        """
        params = _connection_params(company_id, connection_id)
        call = _Call("list_source_accounts", "GET", SOURCE_ACCOUNTS, params)
        return await self._fetch(call, list[SourceAccount])

    async def create_source_account(
        self, company_id: str, connection_id: str, account: SourceAccountPrototype, *, idempotency_key: str
    ) -> SourceAccount:
        """Add one source account (v2 body).

        Calls ``POST /companies/{companyId}/connections/{connectionId}/connectionInfo/bankFeedAccounts``.

        Raises:
            CodatRejected: e.g. 400 when the account id already exists or a field is invalid.
            CodatNotFound: no such company or connection.
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call(
            "create_source_account",
            "POST",
            SOURCE_ACCOUNTS,
            _connection_params(company_id, connection_id),
            body=account.to_wire(),
            idempotency_key=idempotency_key,
        )
        return await self._fetch(call, SourceAccount)

    async def create_source_accounts(
        self,
        company_id: str,
        connection_id: str,
        accounts: list[SourceAccountPrototype],
        *,
        idempotency_key: str,
    ) -> list[BatchCreateResult]:
        """Add several source accounts at once; the result of each is in the returned list.

        Calls ``POST …/connections/{connectionId}/connectionInfo/bankFeedAccounts/batch``. Codat's 201 (all
        created), 207 (some) and 409 (none) all return the per-item list and do not raise.

        Raises:
            CodatRejected: the batch as a whole was refused (e.g. 400).
            CodatNotFound: no such company or connection.
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call(
            "create_source_accounts",
            "POST",
            SOURCE_ACCOUNTS_BATCH,
            _connection_params(company_id, connection_id),
            body=SOURCE_ACCOUNT_PROTOTYPES.dump_json(accounts, by_alias=True, exclude_none=True),
            idempotency_key=idempotency_key,
            is_result=_is_batch_result,
        )
        return await self._fetch(call, list[BatchCreateResult])

    async def rename_source_account(
        self, company_id: str, connection_id: str, account_id: str, account_name: str, *, idempotency_key: str
    ) -> SourceAccount:
        """Change a source account's ``accountName`` (the v1 body ``{id, accountName}``).

        Calls ``PATCH …/connections/{connectionId}/connectionInfo/bankFeedAccounts/{accountId}``.

        Raises:
            ValueError: ``account_id`` names another Codat endpoint ("credentials", "batch").
            CodatNotFound: no such company, connection or account.
            CodatRejected: any other refusal.
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call(
            "rename_source_account",
            "PATCH",
            SOURCE_ACCOUNT,
            _account_params(company_id, connection_id, account_id),
            body={"id": account_id, "accountName": account_name},
            idempotency_key=idempotency_key,
        )
        return await self._fetch(call, SourceAccount)

    async def delete_source_account(self, company_id: str, connection_id: str, account_id: str) -> None:
        """Remove a source account and its feed (the account in QBO stays).

        Calls ``DELETE …/connections/{connectionId}/connectionInfo/bankFeedAccounts/{accountId}``. A retry
        after a lost answer may get 404: callers can read ``CodatNotFound`` as "already deleted".

        Raises:
            ValueError: ``account_id`` names another Codat endpoint ("credentials", "batch").
            CodatNotFound: no such company, connection or account.
            CodatRejected: any other refusal.
            CodatUnavailable: Codat did not answer in time.
        """
        params = _account_params(company_id, connection_id, account_id)
        await self._request(_Call("delete_source_account", "DELETE", SOURCE_ACCOUNT, params))

    async def generate_credentials(
        self, company_id: str, connection_id: str, *, idempotency_key: str
    ) -> Credentials:
        """Mint a new set of one-time QBO credentials (QBO Bank Feeds only).

        Calls ``POST …/connections/{connectionId}/connectionInfo/bankFeedAccounts/credentials`` with ``{}``.

        Raises:
            CodatNotFound: no such company or connection.
            CodatRejected: any other refusal (e.g. the connection is not QBO Bank Feeds).
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call(
            "generate_credentials",
            "POST",
            CREDENTIALS,
            _connection_params(company_id, connection_id),
            body={},
            idempotency_key=idempotency_key,
        )
        return await self._fetch(call, Credentials)

    async def revoke_credentials(self, company_id: str, connection_id: str) -> None:
        """Revoke every credential set of the connection; feeds using them stop.

        Calls ``DELETE …/connections/{connectionId}/connectionInfo/bankFeedAccounts/credentials``.

        Raises:
            CodatNotFound: no such company or connection.
            CodatRejected: any other refusal.
            CodatUnavailable: Codat did not answer in time.
        """
        params = _connection_params(company_id, connection_id)
        await self._request(_Call("revoke_credentials", "DELETE", CREDENTIALS, params))

    async def get_bank_account_mapping(self, company_id: str, connection_id: str) -> list[BankFeedMapping]:
        """Each source account with its target and the targets it may map to (Xero, NetSuite, FreeAgent,
        Exact); ``target_account_options`` is None until the SMB has authorized.

        Calls ``GET /companies/{companyId}/connections/{connectionId}/bankFeedAccounts/mapping``.

        Raises:
            CodatNotFound: no such company or connection.
            CodatRejected: e.g. 400 for a platform that maps inside itself (QBO, Sage).
            CodatUnavailable: Codat did not answer in time.
        """
        params = _connection_params(company_id, connection_id)
        call = _Call("get_bank_account_mapping", "GET", MAPPING, params)
        return await self._fetch(call, list[BankFeedMapping])

    async def create_bank_account_mapping(
        self,
        company_id: str,
        connection_id: str,
        source_account_id: str,
        target_account_id: str | None,
        feed_start_date: datetime | date | None,
        *,
        idempotency_key: str,
    ) -> MappingResult:
        """Map a source account to a target account, or to a new one when ``target_account_id`` is None.

        Calls ``POST /companies/{companyId}/connections/{connectionId}/bankFeedAccounts/mapping``. The answer
        is usually ``connecting``; the account turns ``connected`` later, with the
        ``bankFeeds.sourceAccount.connected`` webhook.

        Raises:
            CodatRejected: 400 with ``item_ids`` naming the field and ``validation_errors`` the reason (a
                target in another currency or of another kind, or already fed: ``targetAccountId``).
            CodatNotFound: no such company, connection or source account.
            CodatUnavailable: Codat did not answer in time.
        """
        mapping = MappingPrototype(
            source_account_id=source_account_id,
            target_account_id=target_account_id,
            feed_start_date=feed_start_date,
        )
        call = _Call(
            "create_bank_account_mapping",
            "POST",
            MAPPING,
            _connection_params(company_id, connection_id),
            body=mapping.to_wire(),
            idempotency_key=idempotency_key,
        )
        return await self._fetch(call, MappingResult)

    async def get_company_information(self, company_id: str, connection_id: str) -> CompanyInformation:
        """The SMB's company name, base currency and currencies, read from its books (Xero and NetSuite).

        Calls ``GET /companies/{companyId}/connections/{connectionId}/bankFeeds/info``.

        Raises:
            CodatNotFound: no such company or connection.
            CodatRejected: e.g. 400 for another platform, or before the SMB has authorized.
            CodatUnavailable: Codat did not answer in time.
        """
        params = _connection_params(company_id, connection_id)
        call = _Call("get_company_information", "GET", COMPANY_INFORMATION, params)
        return await self._fetch(call, CompanyInformation)

    async def generate_otp(self, company_id: str, connection_id: str, *, idempotency_key: str) -> Otp:
        """A one-time password for the SMB to type into Sage with the connection id (Sage Bank Feeds only);
        each new one replaces the last.

        Calls ``POST /companies/{companyId}/connections/{connectionId}/bankFeeds/otp``. The same key replays
        the same password, so ask for a new one with a new key.

        Raises:
            CodatNotFound: no such company or connection.
            CodatRejected: e.g. 400 when the connection is not Sage Bank Feeds.
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call(
            "generate_otp",
            "POST",
            OTP,
            _connection_params(company_id, connection_id),
            idempotency_key=idempotency_key,
        )
        return await self._fetch(call, Otp)

    async def create_bank_transactions(
        self,
        company_id: str,
        connection_id: str,
        account_id: str,
        transactions: list[BankTransaction],
        *,
        idempotency_key: str,
    ) -> PushOperation:
        """Push up to 1,000 cleared transactions, earliest first, to one source account; Codat answers with a
        push operation, usually ``Pending``: follow it with ``get_push_operation``.

        Calls ``POST …/connections/{connectionId}/push/bankAccounts/{accountId}/bankTransactions``. The same
        key with the same transactions replays Codat's first answer (for 90 minutes) instead of writing twice.

        Raises:
            ValueError: ``account_id`` names another Codat endpoint ("credentials", "batch").
            CodatNotFound: no such company, connection or source account.
            CodatRejected: the request was refused (e.g. 400 with validation errors naming transactions).
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call(
            "create_bank_transactions",
            "POST",
            BANK_TRANSACTIONS,
            _account_params(company_id, connection_id, account_id),
            body={"accountId": account_id, "transactions": [t.to_wire() for t in transactions]},
            idempotency_key=idempotency_key,
        )
        return await self._fetch(call, PushOperation)

    async def get_push_operation(self, company_id: str, push_operation_key: str) -> PushOperation:
        """Read a push operation: ``GET /companies/{companyId}/push/{pushOperationKey}``.

        Raises:
            CodatNotFound: no such company or push operation.
            CodatRejected: any other refusal.
            CodatUnavailable: Codat did not answer in time.
        """
        params = {"companyId": company_id, "pushOperationKey": push_operation_key}
        return await self._fetch(_Call("get_push_operation", "GET", PUSH_OPERATION, params), PushOperation)

    async def get_integration(self, platform_key: str) -> Integration:
        """Read an integration, e.g. whether ``hcws`` is enabled: ``GET /integrations/{platformKey}``.

        Raises:
            CodatNotFound: no such integration.
            CodatRejected: any other refusal (401/403: a wrong API key).
            CodatUnavailable: Codat did not answer in time.
        """
        call = _Call("get_integration", "GET", INTEGRATION, {"platformKey": platform_key})
        return await self._fetch(call, Integration)

    async def get_sync_settings(self) -> SyncSettings:
        """Read the client's data type settings: ``GET /profile/syncSettings``.

        Raises:
            CodatRejected: Codat refused (401/403: a wrong API key).
            CodatUnavailable: Codat did not answer in time.
        """
        return await self._fetch(_Call("get_sync_settings", "GET", SYNC_SETTINGS), SyncSettings)

    async def _fetch(self, call: _Call, shape: type[T]) -> T:
        response = await self._request(call)
        try:
            adapter: TypeAdapter[T] = _adapter(shape)
            return adapter.validate_json(response.content)
        except ValidationError as exc:
            fields = [".".join(map(str, error["loc"])) for error in exc.errors(include_input=False)]
            _log_event(logging.ERROR, "codat.invalid_response", operation=call.operation, fields=fields)
            # Not chained: pydantic's message quotes the input, which may hold an OTP or a password.
            raise CodatUnavailable(
                UnavailableReason.INVALID_RESPONSE, status_code=response.status_code
            ) from None

    async def _request(self, call: _Call) -> httpx.Response:
        deadline = current_deadline() or Deadline.after(self._settings.request_deadline_seconds, self._clock)
        started = self._clock()
        outcome, correlation_id = "error", None
        try:
            response = await self._with_retries(call, deadline)
            outcome = "ok"
            return response
        except CodatError as exc:
            outcome = "unavailable" if isinstance(exc, CodatUnavailable) else "rejected"
            correlation_id = getattr(exc, "correlation_id", None)  # both subclasses carry it
            raise
        finally:
            metrics.observe(call.operation, outcome, self._clock() - started)
            if self._on_call is not None:
                self._on_call(CallOutcome(call.operation, outcome, call.company_id, correlation_id))

    # Hand-written rather than stamina.retry_context: stamina's sleep cannot be injected (its test mode zeroes
    # every wait, Retry-After included) and its timeout is per call and checked only after sleeping, while
    # here every attempt and every sleep must fit the one deadline a BFF request shares across its calls.
    async def _with_retries(self, call: _Call, deadline: Deadline) -> httpx.Response:
        attempt = 1
        while True:
            try:
                return await self._attempt(call, attempt, deadline)
            except CodatUnavailable as exc:
                delay = self._retry_delay(call, exc, attempt, deadline)
                if delay is None:
                    raise
                _log_event(
                    logging.WARNING,
                    "codat.retry",
                    method=call.method,
                    path=call.template,
                    attempt=attempt,
                    status=exc.status_code,
                    reason=str(exc.reason),
                    correlation_id=exc.correlation_id,
                    delay=round(delay, 3),
                )
                await self._sleep(delay)
                attempt += 1

    def _retry_delay(
        self, call: _Call, exc: CodatUnavailable, attempt: int, deadline: Deadline
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        attempts = self._settings.max_attempts if call.repeatable else 1
        if exc.reason not in _RETRYABLE_REASONS or attempt >= attempts:
            return None
        delay = float(exc.retry_after_seconds) if exc.retry_after_from_codat else backoff_seconds(attempt)
        # Never sleep past the deadline: giving up now lets the BFF answer 503 with Retry-After at once.
        return delay if delay < deadline.remaining() else None

    async def _attempt(self, call: _Call, attempt: int, deadline: Deadline) -> httpx.Response:
        started = self._clock()
        try:
            response = await self._send(call, deadline)
        except CodatUnavailable as exc:
            self._log_attempt(call, attempt, started, exc, status=exc.status_code)
            raise
        if call.is_result(response):
            self._log_attempt(call, attempt, started, status=response.status_code)
            return response
        error = error_from_response(response)
        # A replay of a keyed request Codat is still processing answers 409: it is worth asking again.
        if isinstance(error, CodatConflict) and attempt > 1 and call.idempotency_key:
            error = CodatUnavailable(
                UnavailableReason.REQUEST_IN_PROGRESS, status_code=409, correlation_id=error.correlation_id
            )
        self._log_attempt(call, attempt, started, error, status=response.status_code)
        raise error

    async def _send(self, call: _Call, deadline: Deadline) -> httpx.Response:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise CodatUnavailable(UnavailableReason.DEADLINE_EXCEEDED)
        await self.quota.wait_turn(remaining)
        remaining = deadline.remaining()
        with self._breaker.attempt() as outcome:
            try:
                async with asyncio.timeout(remaining), self._limiter.slot(call.company_id):
                    response = await self._http.request(
                        call.method, call.path, params=call.query, headers=call.headers, **call.content
                    )
            except TimeoutError as exc:
                raise CodatUnavailable(UnavailableReason.DEADLINE_EXCEEDED) from exc
            except httpx.TransportError as exc:
                outcome.healthy = False
                raise unavailable_from_transport(exc) from exc
            self.quota.observe(response.headers)
            # Any answer but 408/5xx, 429 included, comes from a Codat that works.
            outcome.healthy = response.status_code != 408 and response.status_code < 500
            return response

    def _log_attempt(
        self,
        call: _Call,
        attempt: int,
        started: float,
        error: CodatError | None = None,
        *,
        status: int | None = None,
    ) -> None:
        _log_event(
            logging.DEBUG if error is None else logging.INFO,
            "codat.attempt",
            method=call.method,
            path=call.template,
            attempt=attempt,
            status=status,
            outcome=getattr(error, "reason", "rejected" if error else "ok"),
            correlation_id=getattr(error, "correlation_id", None),
            elapsed_ms=round((self._clock() - started) * 1000),
        )
