"""One time budget for all the Codat calls a BFF request makes.

    with codat_deadline(settings.codat.request_deadline_seconds):
        company = await codat.create_company(...)
        connection = await codat.create_connection(...)

Both calls, their retries and their back-off sleeps share the budget. The budget lives in a context
variable, so tasks started inside the block share it too.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class Deadline:
    expires_at: float
    clock: Clock

    @classmethod
    def after(cls, seconds: float, clock: Clock) -> "Deadline":
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return self.expires_at - self.clock()


_current: ContextVar[Deadline | None] = ContextVar("codat_deadline", default=None)


@contextmanager
def codat_deadline(seconds: float, *, clock: Clock = time.monotonic) -> Iterator[Deadline]:
    """Give the Codat calls made inside the block ``seconds`` in total; a nested block never extends it."""
    deadline = Deadline.after(seconds, clock)
    outer = _current.get()
    if outer is not None and outer.expires_at <= deadline.expires_at:
        deadline = outer
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def current_deadline() -> Deadline | None:
    return _current.get()
