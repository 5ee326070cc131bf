"""The client's reading of Codat's X-Rate-Limit-* headers: pace the last requests of the day, stop at none."""

from datetime import UTC, datetime, timedelta

import pytest

from app.codat.exceptions import CodatUnavailable
from app.codat.quota import QuotaTracker

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def tracker(remaining: int, reserve: int = 10, hours_to_reset: float = 12) -> QuotaTracker:
    quota = QuotaTracker(reserve, now=lambda: NOW, monotonic=lambda: 1000.0)
    reset = (NOW + timedelta(hours=hours_to_reset)).isoformat().replace("+00:00", "Z")
    quota.observe(
        {"X-Rate-Limit-Limit": "2000", "X-Rate-Limit-Remaining": str(remaining), "X-Rate-Limit-Reset": reset}
    )
    return quota


def test_plenty_left_means_no_pause() -> None:
    assert tracker(remaining=11).pause() == 0


def test_within_the_reserve_calls_are_spaced_to_last_until_the_reset() -> None:
    quota = tracker(remaining=10)
    assert quota.pause() == 0  # the first paced call goes at once
    quota._last_paced_call = 1000.0  # as wait_turn records it
    assert quota.pause() == pytest.approx(12 * 3600 / 10)


async def test_a_pause_longer_than_the_deadline_fails_retryably_at_once() -> None:
    quota = tracker(remaining=4)
    await quota.wait_turn(deadline_remaining=20)
    with pytest.raises(CodatUnavailable) as refused:
        await quota.wait_turn(deadline_remaining=20)
    assert refused.value.retry_after_seconds == round(12 * 3600 / 3)


def test_none_left_fails_with_retry_after_until_the_reset() -> None:
    with pytest.raises(CodatUnavailable) as refused:
        tracker(remaining=0, hours_to_reset=2).pause()
    assert refused.value.retry_after_seconds == 7200


def test_once_the_reset_has_passed_nothing_holds_calls_back() -> None:
    assert tracker(remaining=0, hours_to_reset=-1).pause() == 0


def test_answers_without_the_headers_change_nothing() -> None:
    quota = tracker(remaining=0)
    quota.observe({})
    with pytest.raises(CodatUnavailable):
        quota.pause()
