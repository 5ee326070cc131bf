"""Honour `Idempotency-Key` on our POST/PATCH endpoints, the way Codat does on its own.

The same key (per caller) replays the first response; the same key with another body is a 422; while the
first request is still being handled, a 409. Server errors, auth failures and 429s are not kept, so a retry
runs again (our onboarding resumes, so running again is safe).
"""

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.clock import as_utc
from app.errors import AppError, Conflict, InvalidInput, error_response
from app.idempotency.models import IdempotencyRecord

KEEP_FOR = timedelta(hours=24)
IN_FLIGHT_LEASE = timedelta(seconds=60)  # a crashed first request stops blocking its key after this
KEY_MAX_LENGTH = 255


class IdempotencyKeyInFlight(Conflict):
    code = "idempotency_key_in_flight"


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"


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
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
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
            replay = await store.begin(caller, key, request_hash)
            if replay is not None:
                return replay
            return await store.finish(caller, key, await _run(handler, request))

        return idempotent_handler


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
                return Response(
                    record.response_body,
                    status_code=record.response_status,
                    media_type="application/json",
                    headers={"Idempotent-Replayed": "true", "Cache-Control": "no-store"},
                )
            if as_utc(record.locked_until) > now:
                raise IdempotencyKeyInFlight(
                    "The first request with this Idempotency-Key is still being handled.",
                    headers={"Retry-After": "1"},
                )
            # The first request died without an answer: this one takes its place.
            await session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.caller == caller, IdempotencyRecord.key == key)
                .values(locked_until=now + IN_FLIGHT_LEASE)
            )
            return None

    async def finish(self, caller: str, key: str, response: Response) -> Response:
        keep = response.status_code < 500 and response.status_code not in (401, 403, 429)
        async with self.sessions.begin() as session:
            where = (IdempotencyRecord.caller == caller, IdempotencyRecord.key == key)
            if keep:
                await session.execute(
                    update(IdempotencyRecord)
                    .where(*where)
                    .values(response_status=response.status_code, response_body=bytes(response.body).decode())
                )
            else:
                await session.execute(delete(IdempotencyRecord).where(*where))
        return response
