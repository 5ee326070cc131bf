"""Signed webhook deliveries, sent in the background with retries, and a log of every attempt.

Signatures follow Standard Webhooks (what ``svix.webhooks.Webhook(secret).verify`` checks): ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed
with the base64 key after ``whsec_``. The timestamp is wall-clock time, not the sandbox clock: receivers
compare it with their own clock. A retry keeps the ``webhook-id``, so receivers can deduplicate. Each event is
delivered on its own, so, as with Codat, events may arrive out of order.
"""

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import ssl
import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from app.sandbox.clock import iso
from app.transport import LeanTransport

log = logging.getLogger(__name__)
# Deliveries in flight at once (a retry waits its turn too; the others wait for a slot before they are sent):
# httpx's pool walks every request waiting in it each time it hands out a connection, so a burst of a few
# hundred events (a push completing every few milliseconds) cost the sandbox more than the deliveries did.
IN_FLIGHT = 8


def signature_headers(secret: str, event_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": event_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{digest}"}


@dataclass(frozen=True)
class Consumer:
    url: str
    secret: str
    retry_delays_seconds: tuple[float, ...]


@dataclass
class Attempt:
    at: datetime
    status_code: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"at": iso(self.at), "statusCode": self.status_code, "error": self.error}


@dataclass
class Delivery:
    event_id: str
    event_type: str
    body: bytes
    url: str | None
    status: str = "pending"  # pending | delivered | failed | no consumer
    attempts: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "url": self.url,
            "status": self.status,
            "attempts": [a.to_json() for a in self.attempts],
            "event": json.loads(self.body),
        }


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One for every delivery: each client would load every CA certificate again (~25 ms of CPU), which was
    three quarters of the sandbox's work per push and made it the bottleneck of small pushes."""
    return httpx.create_ssl_context()


class WebhookSender:
    def __init__(self, timeout_seconds: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._timeout = timeout_seconds
        self._transport = transport
        self._tasks: set[asyncio.Task[None]] = set()
        # One client (and its kept-alive connections) and one set of slots per event loop: tests run the
        # sandbox on several.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self.deliveries: list[Delivery] = []

    def send(self, event: dict[str, Any], consumer: Consumer | None) -> Delivery:
        body = json.dumps(event, separators=(",", ":")).encode()
        return self._start(
            Delivery(event["id"], event["eventType"], body, consumer.url if consumer else None), consumer
        )

    def resend(self, event_id: str, consumer: Consumer | None) -> Delivery | None:
        first = next((d for d in self.deliveries if d.event_id == event_id), None)
        if first is None:
            return None
        return self._start(
            Delivery(first.event_id, first.event_type, first.body, consumer.url if consumer else None),
            consumer,
        )

    async def wait_idle(self) -> None:
        """Wait for every delivery started so far (and their retries) to finish; for in-process tests."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.deliveries.clear()

    def _start(self, delivery: Delivery, consumer: Consumer | None) -> Delivery:
        self.deliveries.append(delivery)
        if consumer is None:
            delivery.status = "no consumer"
            return delivery
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, consumer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    def _client(self) -> httpx.AsyncClient:
        """Kept across deliveries, as a webhook service keeps its connections: a client of its own for each
        delivery cost a connection (and the receiver an accept) per event."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            transport = self._transport or LeanTransport(verify=_tls_context())
            client = httpx.AsyncClient(timeout=self._timeout, transport=transport)
            self._clients[loop] = client
        return client

    async def _deliver(self, delivery: Delivery, consumer: Consumer) -> None:
        client = self._client()
        for delay in (0.0, *consumer.retry_delays_seconds):
            await asyncio.sleep(delay)
            if await self._attempt(client, delivery, consumer):
                delivery.status = "delivered"
                return
        delivery.status = "failed"
        log.info(
            "webhook %s (%s) not delivered after %d attempts",
            delivery.event_id,
            delivery.event_type,
            len(delivery.attempts),
        )

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery, consumer: Consumer) -> bool:
        async with self._slots.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(IN_FLIGHT)):
            attempt = Attempt(at=datetime.now(UTC))
            delivery.attempts.append(attempt)
            headers = signature_headers(consumer.secret, delivery.event_id, delivery.body, int(time.time()))
            try:
                response = await client.post(
                    consumer.url,
                    content=delivery.body,
                    headers={**headers, "content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                attempt.error = type(exc).__name__
                return False
        attempt.status_code = response.status_code
        return response.is_success
