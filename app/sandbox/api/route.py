"""The path every Codat operation takes: count, authenticate, quota, faults, idempotency, latency, run.

Done in a route class rather than middleware because each step needs the operation's operationId.
"""

import base64
import binascii
import secrets
from collections.abc import Callable, Coroutine
from datetime import datetime, time, timedelta
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.sandbox import faults
from app.sandbox.context import sandbox_state
from app.sandbox.errors import CodatError
from app.sandbox.idempotency import run_idempotently
from app.sandbox.state import SandboxState

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class CodatRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        operation_id = self.operation_id
        assert operation_id is not None, "every Codat route names its operationId"

        async def guarded(request: Request) -> Response:
            return await _serve(request, operation_id, handler)

        return guarded


async def _serve(request: Request, operation_id: str, handler: Handler) -> Response:
    state = sandbox_state(request)
    state.counters[operation_id] += 1
    fault = None
    try:
        api_key = _authenticate(request, state)
        _count_against_quota(state, api_key)
        fault = faults.draw(state.knobs, state.fault_random, operation_id)
        faults.refuse_early(fault, state.knobs)
        response = await run_idempotently(
            state.idempotency, request, api_key, lambda: _run(request, state, operation_id, handler)
        )
    except CodatError as exc:
        return exc.to_response()
    if fault is faults.Fault.timeout:
        return await faults.lose_response(request, state.knobs)
    return response


async def _run(request: Request, state: SandboxState, operation_id: str, handler: Handler) -> Response:
    await faults.add_latency(state.knobs, operation_id)
    try:
        return await handler(request)
    except CodatError as exc:
        return exc.to_response()


def _authenticate(request: Request, state: SandboxState) -> str:
    """The API key from ``Authorization: Basic <base64(api key)>``, or a 401."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    try:
        offered = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        offered = None
    if scheme.lower() == "basic" and offered:
        for key in state.config.api_keys:
            if secrets.compare_digest(offered.encode(), key.encode()):
                return key
    raise CodatError(401)


def _count_against_quota(state: SandboxState, api_key: str) -> None:
    """Codat's daily quota per client, reset at 00:00 UTC (sandbox clock)."""
    quota = state.knobs.daily_quota
    if quota is None:
        return
    now = state.clock.now()
    used_key = (api_key, now.date())
    if state.quota_used[used_key] >= quota:
        raise CodatError(
            429,
            f"You have exceeded your daily quota of {quota} requests; it resets at 00:00 UTC.",
            headers={"Retry-After": str(_seconds_to_midnight(now))},
        )
    state.quota_used[used_key] += 1


def _seconds_to_midnight(now: datetime) -> int:
    midnight = datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=now.tzinfo)
    return max(1, int((midnight - now).total_seconds()))
