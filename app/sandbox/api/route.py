"""The path every Codat operation takes: count, catch up with the clock, authenticate, quota, faults,
idempotency, run, latency; the quota's headers go on every answer after authentication.

Done in a route class rather than middleware because each step needs the operation's operationId.
"""

import base64
import binascii
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, get_type_hints

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.sandbox import faults, pushes, ratelimit
from app.sandbox.context import lifecycle, sandbox_state
from app.sandbox.errors import CodatError
from app.sandbox.idempotency import run_idempotently
from app.sandbox.state import SandboxState

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class CodatRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        handler = _endpoint_handler(self)
        operation_id = self.operation_id
        assert operation_id is not None, "every Codat route names its operationId"

        async def guarded(request: Request) -> Response:
            return await _serve(request, operation_id, handler)

        return guarded


def _endpoint_handler(route: APIRoute) -> Handler:
    """The endpoint, called with the request and the path's parameters: a Codat endpoint takes nothing else
    (checked here) and returns its Response, so FastAPI's dependency solving, about a tenth of a call's CPU,
    had nothing to do but copy the path's strings."""
    endpoint = route.endpoint
    takes = {name: hint for name, hint in get_type_hints(endpoint).items() if name != "return"}
    expected = {"request": Request, **dict.fromkeys(route.param_convertors, str)}
    assert takes == expected, f"{route.operation_id} takes {takes}, not only the request and its path"
    assert not route.dependencies, f"{route.operation_id} has dependencies, which this call would skip"

    async def handler(request: Request) -> Response:
        response: Response = await endpoint(request, **request.path_params)
        return response

    return handler


async def _serve(request: Request, operation_id: str, handler: Handler) -> Response:
    state = sandbox_state(request)
    state.counters[operation_id] += 1
    catch_up(request)
    fault = None
    quota_headers: dict[str, str] = {}
    try:
        api_key = _authenticate(request, state)
        quota_headers = ratelimit.spend(state, api_key)
        fault = faults.draw(state.knobs, state.fault_random, operation_id)
        faults.refuse_early(fault, state.knobs)
        response = await run_idempotently(
            state.idempotency, request, api_key, lambda: _run(request, state, operation_id, handler)
        )
    except CodatError as exc:
        response = exc.to_response()
    if fault is faults.Fault.timeout:
        return await faults.lose_response(request, state.knobs)
    response.headers.update(quota_headers)
    return response


def catch_up(request: Request) -> None:
    """Apply what has come due on the sandbox clock: lagged disconnects, push timeouts, the quota's reset."""
    state = sandbox_state(request)
    # Only a lagging connection or a Pending push can come due: most requests have nothing to apply.
    if state.lagging or state.pending_pushes:
        life = lifecycle(request)
        life.catch_up()
        pushes.time_out_due(state, life.present)
    ratelimit.catch_up(state)


async def _run(request: Request, state: SandboxState, operation_id: str, handler: Handler) -> Response:
    try:
        response = await handler(request)
    except CodatError as exc:
        response = exc.to_response()
    # The latency after the work, not before: Codat serves concurrent calls side by side, where this one event
    # loop would queue each handler that came due at the end of its wait behind the others' (five batches of
    # source accounts sent at once came back a handler apart). Every answer still waits the full latency.
    await faults.add_latency(state.knobs, operation_id)
    return response


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
