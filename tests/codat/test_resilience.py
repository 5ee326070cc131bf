import asyncio

import httpx
import pytest

from app.codat.exceptions import MAX_RETRY_AFTER_SECONDS, retry_after_seconds
from app.codat.resilience import BACKOFF_MAX_SECONDS, CompanyLimiter, backoff_seconds


class TestCompanyLimiter:
    async def test_a_company_is_forgotten_once_its_calls_are_done(self) -> None:
        limiter = CompanyLimiter(2)

        async with limiter.slot("company-1"), limiter.slot("company-2"):
            assert len(limiter) == 2

        assert len(limiter) == 0

    async def test_failed_and_cancelled_calls_release_their_slots(self) -> None:
        limiter = CompanyLimiter(1)
        release = asyncio.Event()

        async def hold() -> None:
            async with limiter.slot("company-1"):
                await release.wait()

        holder = asyncio.create_task(hold())
        waiter = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(RuntimeError):
            async with limiter.slot("company-2"):
                raise RuntimeError("boom")
        release.set()
        await holder
        await asyncio.gather(waiter, return_exceptions=True)

        assert len(limiter) == 0

    async def test_calls_without_a_company_are_not_limited(self) -> None:
        limiter = CompanyLimiter(1)

        async with limiter.slot(None), limiter.slot(None):
            assert len(limiter) == 0


class TestBackoff:
    @pytest.mark.parametrize("attempt", [1, 2, 3, 10, 100])
    def test_is_jittered_within_half_of_a_capped_exponential(self, attempt: int) -> None:
        ceiling = min(BACKOFF_MAX_SECONDS, 0.5 * 2 ** (attempt - 1))

        assert ceiling / 2 <= backoff_seconds(attempt) <= ceiling


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("7", 7),
            (" 0 ", 0),
            ("86400", MAX_RETRY_AFTER_SECONDS),
            ("Wed, 21 Oct 2015 07:28:00 GMT", 0),
            ("soon", None),
            ("-3", None),
            ("", None),
        ],
    )
    def test_reads_seconds_or_an_http_date(self, header: str, expected: int | None) -> None:
        response = httpx.Response(429, headers={"Retry-After": header})

        assert retry_after_seconds(response) == expected

    def test_is_none_without_the_header(self) -> None:
        assert retry_after_seconds(httpx.Response(503)) is None
