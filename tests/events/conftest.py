"""A subscriber's receiver under uvicorn on loopback, and the events loop driven round by round."""

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from standardwebhooks import Webhook
from standardwebhooks.exceptions import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.events.delivery import DeliveryPolicy
from app.events.models import DeliveryStatus, EventDelivery
from app.events.worker import EventWorker, events_http_client
from tests.transactions.conftest import connected, tx_headers, worker  # noqa: F401 - fixtures

FAST = DeliveryPolicy(retry_base_seconds=1.0, retry_max_seconds=8.0)


@dataclass
class Receiver:
    """A subscriber: checks each delivery with the Standard Webhooks library, fails `failure_rate` of them."""

    failure_rate: float = 0.0
    secret: str | None = None
    accepted: list[dict[str, Any]] = field(default_factory=list)  # verified and answered 2xx, in order
    refused_signatures: int = 0
    failed: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(17))
    url: str = ""
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    port: int = 0

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        try:
            assert self.secret is not None
            Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.refused_signatures += 1
            return Response(status_code=400)
        if self.rng.random() < self.failure_rate:
            self.failed += 1
            return Response(status_code=503)
        event = json.loads(body)
        self.accepted.append({"webhook_id": request.headers["webhook-id"], **event})
        return Response(status_code=204)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/hook", self.handle, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        """Down: nothing listens on its port (connections are refused) until `start` again."""
        assert self._server is not None
        assert self._task is not None
        self._server.should_exit = True
        await self._task


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    subscriber = Receiver()
    await subscriber.start()
    yield subscriber
    if subscriber._server is not None and not subscriber._task.done():  # type: ignore[union-attr]
        await subscriber.stop()


@pytest.fixture
async def events(app) -> AsyncIterator[EventWorker]:  # type: ignore[no-untyped-def]
    """The events loop on the app's database and clock; the test runs its rounds."""
    async with events_http_client() as http:
        yield EventWorker(app.state.sessionmaker, http, app.state.clock, app.state.settings, FAST)


async def pending_deliveries(app) -> int:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        query = select(func.count()).where(EventDelivery.status == DeliveryStatus.PENDING)
        return int(await session.scalar(query) or 0)


async def pump(app, events: EventWorker, sandbox, seconds_per_round: float = 2.0, rounds: int = 400) -> None:  # type: ignore[no-untyped-def]
    """Run the events loop, moving the clock on, until nothing is left to deliver."""
    for _ in range(rounds):
        await events.run_once()
        if not await pending_deliveries(app) and not await events.project():
            return
        sandbox.clock.advance(seconds_per_round)
    raise AssertionError("deliveries still pending")


async def subscribe(
    client: httpx.AsyncClient, headers: dict[str, str], url: str, types: list[str]
) -> dict[str, Any]:
    response = await client.post(
        "/internal/v1/event-subscriptions", json={"url": url, "eventTypes": types}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()
