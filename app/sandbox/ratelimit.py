"""Codat's daily quota (docs.codat.io using-the-api/rate-limits): ``1,000 x (1 + active connected companies)``
requests a day per client (``dailyQuota`` knob to set it instead), reset at 00:00 UTC on the sandbox clock.

Every answer to an authenticated call carries ``X-Rate-Limit-Limit``, ``-Remaining`` and ``-Reset`` (the date
the quota resets); a call over the quota is a 429 with ``Retry-After``. The call that spends the last request
sends ``client.rateLimit.reached``; the first request of the next day, after one, sends
``client.rateLimit.reset`` (the sandbox has no timer at midnight: it notices the new day when it is next
asked, or when a test moves its clock).
"""

from datetime import date, datetime, time, timedelta

from app.sandbox.clock import iso
from app.sandbox.errors import CodatError
from app.sandbox.state import SandboxState

QUOTA_PER_ACC = 1000


def daily_quota(state: SandboxState) -> int:
    if state.knobs.daily_quota is not None:
        return state.knobs.daily_quota
    return QUOTA_PER_ACC * (1 + state.active_companies())


def next_reset(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=now.tzinfo)


def spend(state: SandboxState, api_key: str) -> dict[str, str]:
    """Count one request against today's quota; its headers, or a 429 carrying them once it is spent."""
    now = state.clock.now()
    quota, used_key = daily_quota(state), (api_key, now.date())
    if state.quota_used[used_key] >= quota:
        headers = {**_headers(quota, 0, now), "Retry-After": str(_seconds_to_reset(now))}
        raise CodatError(
            429,
            f"You have exceeded your daily quota of {quota} requests; it resets at 00:00 UTC.",
            headers=headers,
        )
    state.quota_used[used_key] += 1
    remaining = quota - state.quota_used[used_key]
    if remaining == 0 and state.quota_reached_on != now.date():
        state.quota_reached_on = now.date()
        state.emit("client.rateLimit.reached", _payload(quota, 0, now))
    return _headers(quota, remaining, now)


def catch_up(state: SandboxState) -> None:
    """After the day the quota ran out: ``client.rateLimit.reset``, once. Called before every request."""
    now = state.clock.now()
    reached: date | None = state.quota_reached_on
    if reached is not None and now.date() > reached:
        state.quota_reached_on = None
        quota = daily_quota(state)
        state.emit("client.rateLimit.reset", _payload(quota, quota, now))


def _headers(quota: int, remaining: int, now: datetime) -> dict[str, str]:
    return {
        "X-Rate-Limit-Limit": str(quota),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": iso(next_reset(now)),
    }


def _payload(quota: int, remaining: int, now: datetime) -> dict[str, object]:
    return {"dailyQuota": quota, "quotaRemaining": remaining, "expiryDate": iso(next_reset(now))}


def _seconds_to_reset(now: datetime) -> int:
    return max(1, int((next_reset(now) - now).total_seconds()))
