"""Injected faults: latency, 429s, 5xx and timeouts, per operation or for all, reproducible with a seed.

One draw per call decides the fault, so a seeded sandbox fails the same calls every run. 429s and 5xx are
refused before the operation runs, like a gateway in front of Codat, and are never stored under an
Idempotency-Key. A timeout happens after the operation ran (and its response was stored): the response
is lost on the way back, which is exactly the case a client's Idempotency-Key retry must survive.
"""

import asyncio
import random
from enum import Enum

from fastapi import Request, Response

from app.sandbox.errors import CodatError
from app.sandbox.switches import Knobs


class Fault(Enum):
    rate_limited = "rate_limited"
    server_error = "server_error"
    timeout = "timeout"


def draw(knobs: Knobs, rng: random.Random, operation_id: str) -> Fault | None:
    if not knobs.applies_to(operation_id):
        return None
    roll = rng.random()
    for fault, rate in (
        (Fault.rate_limited, knobs.rate_limit_rate),
        (Fault.server_error, knobs.error_rate),
        (Fault.timeout, knobs.timeout_rate),
    ):
        if roll < rate:
            return fault
        roll -= rate
    return None


def refuse_early(fault: Fault | None, knobs: Knobs) -> None:
    if fault is Fault.rate_limited:
        raise CodatError(429, headers={"Retry-After": str(knobs.retry_after_seconds)})
    if fault is Fault.server_error:
        raise CodatError(500)


async def add_latency(knobs: Knobs, operation_id: str) -> None:
    if knobs.latency_ms and knobs.applies_to(operation_id):
        await asyncio.sleep(knobs.latency_ms / 1000)


async def lose_response(request: Request, knobs: Knobs) -> Response:
    """Hang for ``timeoutSeconds`` and answer 504, or with no limit set, until the client gives up."""
    if knobs.timeout_seconds is None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.05)
    else:
        await asyncio.sleep(knobs.timeout_seconds)
    return CodatError(504).to_response()
