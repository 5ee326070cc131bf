"""Limits on what one business or one service may ask of us (and so of Codat) in a while.

Every endpoint that calls Codat or mints credentials counts against its caller: a business (end users) or a
service (internal callers). Over the limit is a 429 with Retry-After, and nothing is sent to Codat. The
counters live where `limits.storage_url` says: `memory://` (one process: dev and tests) or `redis://…`
(shared by every replica), through the maintained `limits` library (moving windows).
Event streams are capped per business too, per process: a stream is a held connection to this process.
"""

import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from app.auth.dependencies import CurrentUser
from app.auth.principals import EndUser
from app.config import RateLimitSettings
from app.errors import AppError, UpstreamUnavailable

log = logging.getLogger(__name__)


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"


class Limiter:
    def __init__(self, settings: RateLimitSettings) -> None:
        storage = storage_from_string(f"async+{settings.storage_url}", key_prefix="bankfeeds")
        self._strategy = MovingWindowRateLimiter(storage)
        self._limits: dict[str, RateLimitItem] = {
            "codat": parse(settings.codat_calls_per_business),
            "credentials": parse(settings.credentials_per_business),
            "service": parse(settings.per_service),
        }
        self.streams_per_business = settings.event_streams_per_business
        self._streams: Counter[str] = Counter()

    async def codat_call(self, business_id: str) -> None:
        """Count one call a business's request is about to make to Codat; RateLimited (429) over its limit."""
        await self.hit_business("codat", business_id)

    async def hit_business(self, name: str, business_id: str) -> None:
        await self.hit(name, f"business:{business_id}")

    async def hit(self, name: str, key: str) -> None:
        """Count one request of `key` against the limit `name`; RateLimited (429) once it is used up."""
        limit = self._limits[name]
        try:
            if await self._strategy.hit(limit, name, key):
                return
            reset_at = (await self._strategy.get_window_stats(limit, name, key)).reset_time
        except Exception as exc:  # noqa: BLE001 - whatever the store raised: refuse (fail closed), retryably
            log.warning("ratelimit.store_unavailable", extra={"error": type(exc).__name__})
            raise UpstreamUnavailable("The rate-limit store is unavailable; retry shortly.") from exc
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(
            f"Too many requests ({limit}); retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )

    async def stream(self, business_id: str, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """`events`, counted as one of the business's open streams while it runs; RateLimited over the cap."""
        if self._streams[business_id] >= self.streams_per_business:
            raise RateLimited(
                f"At most {self.streams_per_business} open event streams per business.",
                headers={"Retry-After": "30"},
            )
        self._streams[business_id] += 1
        return self._counted(business_id, events)

    async def _counted(self, business_id: str, events: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            async for event in events:
                yield event
        finally:
            self._streams[business_id] -= 1
            if self._streams[business_id] <= 0:
                del self._streams[business_id]


def limiter(request: Request) -> Limiter:
    return request.app.state.limiter  # type: ignore[no-any-return]


def business_limit(name: str) -> Callable[..., Coroutine[Any, Any, EndUser]]:
    """A dependency: the end user, once their business's request counted against the limit `name`."""

    async def within_limit(request: Request, user: CurrentUser) -> EndUser:
        await limiter(request).hit_business(name, user.business_id)
        return user

    return within_limit


async def service_limit(request: Request) -> None:
    """A dependency of internal routers: count the calling service's request (by its token's name). A token
    that does not verify is left to the endpoint's own scope check, which answers 401."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return
    try:
        service = request.app.state.token_verifier.service(header[7:])
    except AppError:
        return
    await limiter(request).hit("service", f"service:{service.name}")


ServiceLimit = Depends(service_limit)
CodatCallsLimit = Depends(business_limit("codat"))
CredentialsLimit = Depends(business_limit("credentials"))
LimitedUser = Annotated[EndUser, CodatCallsLimit]
