"""Collapse concurrent calls for the same key in one process into one call whose result they all share."""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class SingleFlight:
    def __init__(self) -> None:
        self._calls: dict[Hashable, asyncio.Future[Any]] = {}

    def running(self, key: Hashable) -> bool:
        """Whether a call for `key` is under way (a `do` now would join it)."""
        return key in self._calls

    async def do(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        if key in self._calls:
            return await asyncio.shield(self._calls[key])
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls[key] = future
        try:
            result = await call()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers re-raise it, nobody else needs to
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._calls[key]
