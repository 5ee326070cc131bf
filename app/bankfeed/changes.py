"""Tell open event streams that a business's bank feed changed, or that the server is shutting down.

Within a process a change wakes its subscribers at once; streams also re-check the database every few
seconds, so a change made by another replica reaches them too.
"""

import asyncio
from collections import defaultdict


class ChangeFeed:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.closed = False

    def notify(self, business_id: str) -> None:
        for event in self._waiters.get(business_id, ()):
            event.set()

    def close(self) -> None:
        """The server is shutting down: wake every stream, so that each ends (see app/shutdown.py)."""
        self.closed = True
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def wait(self, business_id: str, timeout: float) -> None:
        """Return when the business changes here, the feed closes, or after `timeout` seconds."""
        if self.closed:
            return
        event = asyncio.Event()
        self._waiters[business_id].add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters[business_id].discard(event)
            if not self._waiters[business_id]:
                del self._waiters[business_id]
