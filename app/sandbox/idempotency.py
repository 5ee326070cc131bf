"""Codat's ``Idempotency-Key`` on POST and PATCH.

The first response is replayed for 90 minutes (on the sandbox clock), errors included; the same key with
another request is a 422; the same key while the first request is still running is a 409. A 429 is not kept:
quota and rate-limit refusals are answered before a key is claimed, so the key can be retried after them.
Keys are scoped per API key.
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request, Response

from app.sandbox.clock import SandboxClock
from app.sandbox.errors import CodatError

REPLAY_WINDOW = timedelta(minutes=90)

Scope = tuple[str, str]  # (API key, Idempotency-Key)


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes
    headers: list[tuple[str, str]]

    @classmethod
    def of(cls, response: Response) -> "StoredResponse":
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return cls(response.status_code, bytes(response.body), headers)

    def to_response(self) -> Response:
        response = Response(self.body, status_code=self.status_code)
        for key, value in self.headers:
            response.headers[key] = value
        return response


@dataclass
class _Entry:
    fingerprint: str
    response: StoredResponse | None = None
    stored_at: datetime | None = None


class IdempotencyStore:
    def __init__(self, clock: SandboxClock) -> None:
        self._clock = clock
        self._entries: dict[Scope, _Entry] = {}

    def clear(self) -> None:
        self._entries.clear()

    def claim(self, scope: Scope, fingerprint: str) -> StoredResponse | None:
        """The response to replay, or None once the caller owns the key; 409/422 when it may not run."""
        entry = self._live_entry(scope)
        if entry is None:
            self._entries[scope] = _Entry(fingerprint)
            return None
        if entry.fingerprint != fingerprint:
            raise CodatError(422, "This Idempotency-Key was already used with a different request.")
        if entry.response is None:
            raise CodatError(409, "A request with this Idempotency-Key is still in progress.")
        return entry.response

    def complete(self, scope: Scope, response: StoredResponse) -> None:
        entry = self._entries[scope]
        entry.response, entry.stored_at = response, self._clock.now()

    def release(self, scope: Scope) -> None:
        self._entries.pop(scope, None)

    def _live_entry(self, scope: Scope) -> _Entry | None:
        entry = self._entries.get(scope)
        if entry and entry.stored_at and self._clock.now() - entry.stored_at >= REPLAY_WINDOW:
            del self._entries[scope]
            return None
        return entry


async def run_idempotently(
    store: IdempotencyStore, request: Request, api_key: str, execute: Callable[[], Awaitable[Response]]
) -> Response:
    key = request.headers.get("Idempotency-Key")
    if request.method not in ("POST", "PATCH") or not key:
        return await execute()
    scope = (api_key, key)
    replay = store.claim(scope, await _fingerprint(request))
    if replay is not None:
        return replay.to_response()
    try:
        response = await execute()
    except BaseException:
        store.release(scope)
        raise
    store.complete(scope, StoredResponse.of(response))
    return response


async def _fingerprint(request: Request) -> str:
    # The path as the server decoded it, not request.url's (which builds the whole URL to escape it again).
    digest = hashlib.sha256(f"{request.method} {request.scope['path']}\n".encode())
    digest.update(await request.body())
    return digest.hexdigest()
