"""Codat's daily quota, read from the ``X-Rate-Limit-*`` headers of every answer, used to slow down before
Codat answers 429 (docs.codat.io using-the-api/rate-limits).

Why per replica, from each replica's own answers, and not shared through the database: the headers already
are the shared state. Codat counts every request of the client, whichever replica sent it, so the
``X-Rate-Limit-Remaining`` a replica last saw is the whole client's remaining quota as of its last call; a
table would only hold an older copy of the same number, and cost a write per call. Each replica paces itself
on it: with ``reserve`` requests or fewer left before ``X-Rate-Limit-Reset``, calls are spaced so that what
is left lasts until the reset; with none left, a call fails at once as a retryable ``CodatUnavailable`` with
``Retry-After`` until the reset, instead of spending a request on a 429.

Gauges: ``bff_codat_quota_limit``, ``bff_codat_quota_remaining`` and ``bff_codat_rate_limited`` (1 while the
quota is spent), set from the headers and from the ``client.rateLimit.*`` webhooks.
"""

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from prometheus_client import Gauge

from app.codat.exceptions import CodatUnavailable, UnavailableReason

QUOTA_LIMIT = Gauge(
    "bff_codat_quota_limit", "Codat's daily request quota for this client (X-Rate-Limit-Limit)."
)
QUOTA_REMAINING = Gauge(
    "bff_codat_quota_remaining",
    "Requests left in Codat's daily quota, as last reported (X-Rate-Limit-Remaining).",
)
RATE_LIMITED = Gauge(
    "bff_codat_rate_limited", "1 while Codat's daily quota is spent (until X-Rate-Limit-Reset)."
)

WallClock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class QuotaTracker:
    def __init__(
        self, reserve: int, *, now: WallClock = _utc_now, monotonic: Callable[[], float] = time.monotonic
    ):
        self._reserve = reserve
        self._now = now
        self._monotonic = monotonic
        self._remaining: int | None = None
        self._reset: datetime | None = None
        self._last_paced_call = float("-inf")
        self._lock = asyncio.Lock()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Remember what Codat's answer says of the quota; answers without the headers change nothing."""
        limit, remaining, reset = (
            headers.get(f"X-Rate-Limit-{name}") for name in ("Limit", "Remaining", "Reset")
        )
        if remaining is None or not remaining.isdigit():
            return
        self._remaining = int(remaining)
        self._reset = _parse_date(reset)
        if limit is not None and limit.isdigit():
            QUOTA_LIMIT.set(int(limit))
        QUOTA_REMAINING.set(self._remaining)
        RATE_LIMITED.set(1 if self._remaining == 0 else 0)

    def seconds_to_reset(self) -> float:
        if self._reset is None:
            return 0.0
        return max(0.0, (self._reset - self._now()).total_seconds())

    def pause(self) -> float:
        """Seconds to wait before the next call; raises CodatUnavailable when none is left until the reset."""
        left = self.seconds_to_reset()
        if self._remaining is None or left <= 0:
            return 0.0  # nothing known, or the quota has been reset since
        if self._remaining == 0:
            raise CodatUnavailable(UnavailableReason.RATE_LIMITED, retry_after_seconds=max(1, round(left)))
        if self._remaining > self._reserve:
            return 0.0
        spacing = left / self._remaining
        return max(0.0, self._last_paced_call + spacing - self._monotonic())

    async def wait_turn(self, deadline_remaining: float) -> None:
        """Wait out the pacing (one paced call at a time), or fail retryably if it outlasts the deadline."""
        async with self._lock:
            delay = self.pause()
            if delay >= deadline_remaining:
                raise CodatUnavailable(
                    UnavailableReason.RATE_LIMITED, retry_after_seconds=max(1, round(delay))
                )
            if delay > 0:
                await asyncio.sleep(delay)
            if self._remaining is not None and self._remaining <= self._reserve:
                self._last_paced_call = self._monotonic()
                self._remaining = max(0, self._remaining - 1)  # until the answer says exactly


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
