"""The guards around each Codat attempt: a circuit breaker, a per-company in-flight cap, back-off."""

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from app.codat.deadline import Clock
from app.codat.exceptions import CodatUnavailable, UnavailableReason

log = logging.getLogger(__name__)

BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0


def backoff_seconds(attempt: int) -> float:
    """Capped exponential back-off after try number ``attempt``, with "equal jitter" (half fixed)."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


@dataclass
class Outcome:
    """What one attempt told us about Codat's health: True, False, or None (nothing, e.g. cancelled)."""

    healthy: bool | None = None
    is_trial: bool = False


class CircuitBreaker:
    """Fails fast after ``threshold`` consecutive unhealthy attempts, for ``cooldown_seconds``.

    Then it is half-open: one trial attempt goes through while the others keep failing fast; the trial's
    outcome closes the circuit or opens it again.
    """

    def __init__(self, threshold: int, cooldown_seconds: float, clock: Clock) -> None:
        self._threshold = threshold
        self._cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @contextmanager
    def attempt(self) -> Iterator[Outcome]:
        """Admit one attempt (or raise ``CodatUnavailable``) and record the outcome the caller sets."""
        outcome = Outcome(is_trial=self._admit())
        try:
            yield outcome
        finally:
            self._settle(outcome)

    def _admit(self) -> bool:
        if self._opened_at is None:
            return False
        open_for = self._opened_at + self._cooldown_seconds - self._clock()
        if open_for > 0 or self._trial_in_flight:
            raise CodatUnavailable(
                UnavailableReason.CIRCUIT_OPEN, retry_after_seconds=max(1, math.ceil(open_for))
            )
        self._trial_in_flight = True
        return True

    def _settle(self, outcome: Outcome) -> None:
        if outcome.is_trial:
            self._trial_in_flight = False
        if outcome.healthy is True:
            self._close()
        elif outcome.healthy is False:
            self._record_failure(failed_trial=outcome.is_trial)

    def _record_failure(self, *, failed_trial: bool) -> None:
        self._failures += 1
        if self._failures < self._threshold:
            return
        if self._opened_at is None or failed_trial:
            log.warning("codat.circuit_open failures=%d", self._failures, extra={"failures": self._failures})
        self._opened_at = self._clock()

    def _close(self) -> None:
        if self._opened_at is not None:
            log.info("codat.circuit_closed")
        self._failures = 0
        self._opened_at = None


@dataclass
class _CompanySlots:
    semaphore: asyncio.Semaphore
    users: int = 0


class CompanyLimiter:
    """At most ``limit`` Codat calls in flight per company; a company's semaphore lives only while used."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, _CompanySlots] = {}

    def __len__(self) -> int:
        """How many companies have calls in flight or waiting."""
        return len(self._slots)

    @asynccontextmanager
    async def slot(self, company_id: str | None) -> AsyncIterator[None]:
        if company_id is None:
            yield
            return
        slots = self._slots.get(company_id) or self._slots.setdefault(
            company_id, _CompanySlots(asyncio.Semaphore(self._limit))
        )
        slots.users += 1
        try:
            async with slots.semaphore:
                yield
        finally:
            slots.users -= 1
            if slots.users == 0:
                del self._slots[company_id]
