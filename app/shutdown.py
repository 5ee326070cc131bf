"""Tell the app when the server starts shutting down, so that open event streams end at once.

uvicorn, on SIGTERM or Ctrl-C, stops accepting connections and waits (up to `timeout_graceful_shutdown`)
for the requests in flight; but it tells an ASGI app nothing before its lifespan shutdown, which comes only
after every connection has closed. An event stream never closes by itself, so each one would hold the
process until the grace ran out and uvicorn cancelled it. Hence this: while the app runs, SIGTERM and SIGINT
also call `on_signal` (then uvicorn's own handler, as before), so the streams can say goodbye and end.
"""

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def on_shutdown_signal(on_signal: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGTERM/SIGINT run `on_signal` on the event loop, then the handler they had before."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (e.g. a test client's portal thread)
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(on_signal)
        before = previous[signum]
        if callable(before):
            before(signum, frame)
        else:  # no server's handler (SIG_DFL or SIG_IGN): what that would have done
            signal.signal(signum, before)
            signal.raise_signal(signum)

    for signum in SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for restored, before in previous.items():
            signal.signal(restored, before)
