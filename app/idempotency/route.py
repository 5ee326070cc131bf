"""Honour `Idempotency-Key` on our POST/PATCH endpoints, the way Codat does on its own.

The same key (per caller) replays the first response; the same key with another body is a 422; while the
first request is still being handled, a 409. Server errors, auth failures and 429s are not kept, so a retry
runs again (our onboarding resumes, so running again is safe).

By default the key is claimed, and the answer kept, each in a short transaction of its own around the
endpoint. An endpoint marked `claims_in_its_own_transactions` (connect, whose every commit is on the path
of the SMB's wait) is handed a `Claim` instead: it claims the key in the transaction of its first write, so
that the claim costs no commit of its own, and its success is kept once the response is sent (a retry in
between is told the first is in flight, as while it ran; should the process die in between, the claim's
lease lapses and the retry runs again: such an endpoint resumes what it did and answers the same). If it
never claimed (a 404 before any write), or failed, the route does the rest as it would by default.
"""

import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.background import BackgroundTask

from app.clock import as_utc
from app.db import insert_ignoring_conflicts, rows_changed
from app.errors import AppError, Conflict, InvalidInput, error_response
from app.idempotency.models import IdempotencyRecord

log = logging.getLogger(__name__)

KEEP_FOR = timedelta(hours=24)
IN_FLIGHT_LEASE = timedelta(seconds=60)  # a crashed first request stops blocking its key after this
KEY_MAX_LENGTH = 255


class IdempotencyKeyInFlight(Conflict):
    code = "idempotency_key_in_flight"


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"


class Replayed(Exception):  # noqa: N818 (not an error: the key's first answer, to send instead)
    """Raised by `Claim.take` when the key was already answered: the endpoint's work is not done again."""

    def __init__(self, response: Response) -> None:
        super().__init__("replayed")
        self.response = response


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
_CLAIMING_ENDPOINTS: set[Callable[..., Any]] = set()


def claims_in_its_own_transactions(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint that takes its `Claim` (`claim_of(request)`) in its own transactions."""
    _CLAIMING_ENDPOINTS.add(endpoint)
    return endpoint


def claim_of(request: Request) -> "Claim | None":
    """The request's Idempotency-Key for a marked endpoint to claim; None without one."""
    claim: Claim | None = getattr(request.state, "idempotency_claim", None)
    return claim


def caller_of(request: Request) -> str | None:
    """The verified caller, or None (the endpoint will answer 401 itself; nothing is kept)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    verifier = request.app.state.token_verifier
    token = header[7:]
    for kind, verify in (("user", verifier.end_user), ("service", verifier.service)):
        try:
            principal = verify(token)
        except AppError:
            continue
        return f"{kind}:{getattr(principal, 'business_id', None) or principal.name}"
    return None


class IdempotentRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def idempotent_handler(request: Request) -> Response:
            key = request.headers.get("idempotency-key")
            caller = caller_of(request) if key and request.method in ("POST", "PATCH") else None
            if key is None or caller is None:
                return await handler(request)
            if not 1 <= len(key) <= KEY_MAX_LENGTH:
                raise InvalidInput.for_field(
                    "header.Idempotency-Key", f"must be 1 to {KEY_MAX_LENGTH} characters"
                )
            store = IdempotencyStore(request.app.state.sessionmaker)
            request_hash = hashlib.sha256(
                request.method.encode() + request.url.path.encode() + await request.body()
            ).hexdigest()
            if self.endpoint in _CLAIMING_ENDPOINTS:
                return await _claimed_by_endpoint(handler, request, store, Claim(caller, key, request_hash))
            replay = await store.begin(caller, key, request_hash)
            if replay is not None:
                return replay
            response = await _run(handler, request)
            await store.finish(caller, key, response)
            return response

        return idempotent_handler


async def _claimed_by_endpoint(
    handler: Callable[[Request], Awaitable[Response]],
    request: Request,
    store: "IdempotencyStore",
    claim: "Claim",
) -> Response:
    request.state.idempotency_claim = claim
    try:
        response = await _run(handler, request)
    except Replayed as replayed:
        return replayed.response
    if claim.taken and 200 <= response.status_code < 300 and response.background is None:
        # Off the caller's wait: the answer is sent first (see the module's docstring).
        response.background = BackgroundTask(_keep_sent, store, claim, response)
        return response
    if claim.taken and await store.finish(claim.caller, claim.key, response, claimed=True):
        return response
    # Never claimed, or its transaction rolled back: claim and keep now, unless another request has the key.
    replay = await store.begin(claim.caller, claim.key, claim.request_hash)
    if replay is not None:
        return replay
    await store.finish(claim.caller, claim.key, response)
    return response


async def _keep_sent(store: "IdempotencyStore", claim: "Claim", response: Response) -> None:
    """Keep an answer already sent. Failing, the key stays claimed until its lease lapses (the retry then
    runs again, as after a crash): logged, not raised, since the caller has its answer."""
    try:
        await store.finish(claim.caller, claim.key, response, claimed=True)
    except Exception as exc:  # noqa: BLE001 - whatever the database raised; nothing of the request in it
        log.warning("idempotency.answer_not_kept", extra={"error": type(exc).__name__})


async def _run(handler: Callable[[Request], Awaitable[Response]], request: Request) -> Response:
    try:
        return await handler(request)
    except AppError as exc:
        return error_response(exc.status_code, exc.code, exc.detail, fields=exc.fields, headers=exc.headers)


class IdempotencyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def begin(self, caller: str, key: str, request_hash: str) -> Response | None:
        """Claim the key for this request, or answer for it: a replay, a 409 or a 422."""
        now = datetime.now(UTC)
        try:
            async with self.sessions.begin() as session:
                session.add(
                    IdempotencyRecord(
                        caller=caller,
                        key=key,
                        request_hash=request_hash,
                        locked_until=now + IN_FLIGHT_LEASE,
                        expires_at=now + KEEP_FOR,
                    )
                )
            return None
        except IntegrityError:
            return await self._existing(caller, key, request_hash, now)

    async def _existing(self, caller: str, key: str, request_hash: str, now: datetime) -> Response | None:
        async with self.sessions.begin() as session:
            record = await session.scalar(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.caller == caller, IdempotencyRecord.key == key
                )
            )
            if record is None or as_utc(record.expires_at) < now:
                await session.execute(
                    delete(IdempotencyRecord).where(
                        IdempotencyRecord.caller == caller, IdempotencyRecord.key == key
                    )
                )
                return await self.begin(caller, key, request_hash)
            if record.request_hash != request_hash:
                raise IdempotencyKeyReused("This Idempotency-Key was used with another request body.")
            if record.response_status is not None:
                return _replay(record)
            if as_utc(record.locked_until) > now:
                raise _in_flight()
            # The first request died without an answer: this one takes its place.
            await session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.caller == caller, IdempotencyRecord.key == key)
                .values(locked_until=now + IN_FLIGHT_LEASE)
            )
            return None

    async def finish(self, caller: str, key: str, response: Response, claimed: bool = False) -> bool:
        """Keep the answer (or let the key go, for one a retry should not get); with `claimed`, only if this
        request's claim is still there. False if it was not."""
        keep = response.status_code < 500 and response.status_code not in (401, 403, 429)
        async with self.sessions.begin() as session:
            where = [IdempotencyRecord.caller == caller, IdempotencyRecord.key == key]
            if claimed:
                where.append(IdempotencyRecord.response_status.is_(None))
            if keep:
                result = await session.execute(
                    update(IdempotencyRecord)
                    .where(*where)
                    .values(response_status=response.status_code, response_body=bytes(response.body).decode())
                )
            else:
                result = await session.execute(delete(IdempotencyRecord).where(*where))
        return rows_changed(result) == 1


@dataclass(slots=True)
class Claim:
    """An Idempotency-Key a marked endpoint claims in the transaction of its first write (`take`); the route
    keeps its answer."""

    caller: str
    key: str
    request_hash: str
    taken: bool = False  # by a transaction that may yet have rolled back: the route checks

    async def take(self, session: AsyncSession) -> None:
        """Claim the key in the caller's transaction, before its writes; raises `Replayed` with the key's
        answer, or the 409 or 422 the route would give (nothing is written then)."""
        now = datetime.now(UTC)
        if not await self._insert(session, now):
            await self._existing(session, now)
        self.taken = True

    async def _insert(self, session: AsyncSession, now: datetime) -> bool:
        # ON CONFLICT DO NOTHING: a unique violation would abort the caller's whole transaction on Postgres.
        row = {
            "caller": self.caller,
            "key": self.key,
            "request_hash": self.request_hash,
            "locked_until": now + IN_FLIGHT_LEASE,
            "expires_at": now + KEEP_FOR,
        }
        insert = insert_ignoring_conflicts(session, IdempotencyRecord, [row], ["caller", "key"])
        return rows_changed(await session.execute(insert)) == 1

    async def _existing(self, session: AsyncSession, now: datetime) -> None:
        where = (IdempotencyRecord.caller == self.caller, IdempotencyRecord.key == self.key)
        record = await session.scalar(select(IdempotencyRecord).where(*where).with_for_update())
        if record is None or as_utc(record.expires_at) < now:
            await session.execute(delete(IdempotencyRecord).where(*where))
            if not await self._insert(session, now):
                raise _in_flight()  # another request claimed it in between
            return
        if record.request_hash != self.request_hash:
            raise IdempotencyKeyReused("This Idempotency-Key was used with another request body.")
        if record.response_status is not None:
            raise Replayed(_replay(record))
        if as_utc(record.locked_until) > now:
            raise _in_flight()
        # The first request died without an answer: this one takes its place.
        record.locked_until = now + IN_FLIGHT_LEASE


def _in_flight() -> IdempotencyKeyInFlight:
    return IdempotencyKeyInFlight(
        "The first request with this Idempotency-Key is still being handled.", headers={"Retry-After": "1"}
    )


def _replay(record: IdempotencyRecord) -> Response:
    return Response(
        record.response_body,
        status_code=record.response_status or 200,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true", "Cache-Control": "no-store"},
    )
