"""Webhooks: Codat's events and payloads, signed the Standard Webhooks way (verified with svix), sent in the
background, retried on failure, logged, and re-sendable."""

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from svix.webhooks import Webhook, WebhookVerificationError

from app.config import DEV_WEBHOOK_SECRET
from app.sandbox import SandboxConfig
from app.sandbox.webhooks import IN_FLIGHT
from tests.contract import validate_webhook
from tests.sandbox.support import AUTH, serve_in_thread


class Receiver:
    """A webhook consumer: answers 500 to the first ``failures`` deliveries, then 204. It records every event
    but the ``company.*`` ones each test's company sends (test_codat_behaviours.py covers those)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.failures = 0
        self.delay_seconds = 0.0

    async def __call__(self, scope, receive, send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        await asyncio.sleep(self.delay_seconds)
        if not json.loads(body)["eventType"].startswith("company."):
            self.received.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        status = 500 if self.failures > 0 else 204
        self.failures -= 1
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def events(self) -> list[dict]:
        """Every received event, verified with svix and checked against Codat's schema."""
        events = []
        for headers, body in self.received:
            Webhook(DEV_WEBHOOK_SECRET).verify(body, headers)  # raises unless signed with the secret
            events.append(json.loads(body))
            validate_webhook(events[-1])
        return events


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    consumer = Receiver()
    with serve_in_thread(consumer) as url:
        yield consumer, url + "/webhooks/codat"


@pytest.fixture
def consumer(sandbox, receiver) -> Receiver:
    sandbox.state.set_settings(webhook={"url": receiver[1], "secret": DEV_WEBHOOK_SECRET})
    sandbox.state.set_knobs(webhookRetryDelaysSeconds=[0.01, 0.01])
    return receiver[0]


async def connection_deliveries(sandbox) -> list[dict]:
    deliveries = (await sandbox.client.get("/_sandbox/webhooks/deliveries")).json()
    return [d for d in deliveries if not d["eventType"].startswith("company.")]


def in_sent_order(sandbox, events: list[dict]) -> list[dict]:
    """Deliveries run concurrently and may arrive in any order (as with Codat): sort them as sent."""
    sent = [delivery.event_id for delivery in sandbox.state.webhooks.deliveries]
    return sorted(events, key=lambda event: sent.index(event["id"]))


async def set_status(sandbox, connection: dict, status: str) -> None:
    await sandbox.client.post(f"/_sandbox/connections/{connection['id']}/status", json={"status": status})


async def test_creating_a_connection_sends_a_signed_connection_created(sandbox, consumer) -> None:
    connection = await sandbox.connection()
    await sandbox.state.webhooks.wait_idle()
    [event] = consumer.events()
    assert event["eventType"] == "connection.created"
    assert event["payload"]["connection"]["id"] == connection["id"]
    assert event["payload"]["connection"]["status"] == "PendingAuth"
    assert event["payload"]["referenceCompany"]["id"] == connection["companyId"]
    assert consumer.received[0][0]["webhook-id"] == event["id"]


async def test_status_changes_send_the_matching_connection_events(sandbox, consumer) -> None:
    connection = await sandbox.connection()
    for status in ("Linked", "Deauthorized", "Unlinked", "Linked"):
        await set_status(sandbox, connection, status)
    await sandbox.client.delete(f"/companies/{connection['companyId']}/connections/{connection['id']}")
    await sandbox.state.webhooks.wait_idle()
    assert [
        (e["eventType"], e["payload"]["connection"]["status"])
        for e in in_sent_order(sandbox, consumer.events())
    ] == [
        ("connection.created", "PendingAuth"),
        ("connection.connected", "Linked"),
        ("connection.disconnected", "Deauthorized"),
        ("connection.reconnected", "Linked"),
        ("connection.deleted", "Linked"),
    ]


async def test_disconnecting_the_last_account_unlinks_the_connection_a_day_later(sandbox, consumer) -> None:
    connection = await sandbox.connection()
    await sandbox.account(connection, "ac-001")
    await set_status(sandbox, connection, "Linked")
    await sandbox.client.post(f"/_sandbox/connections/{connection['id']}/accounts/ac-001/disconnect")
    await sandbox.state.webhooks.wait_idle()
    latest = in_sent_order(sandbox, consumer.events())[-1]
    assert latest["eventType"] == "bankFeeds.sourceAccount.disconnected"
    await sandbox.client.post("/_sandbox/clock/advance", json={"seconds": 86400})
    await sandbox.state.webhooks.wait_idle()
    *_, account_event, unlinked = in_sent_order(sandbox, consumer.events())
    assert account_event["eventType"] == "bankFeeds.sourceAccount.disconnected"
    assert account_event["payload"]["connectionId"] == connection["id"]
    assert account_event["payload"]["companyId"] == connection["companyId"]
    assert account_event["payload"]["sourceAccount"]["status"] == "disconnected"
    assert (unlinked["eventType"], unlinked["payload"]["connection"]["status"]) == (
        "connection.disconnected",
        "Unlinked",
    )


async def test_failed_deliveries_are_retried_with_the_same_id(sandbox, consumer) -> None:
    company = await sandbox.company()
    await sandbox.state.webhooks.wait_idle()
    consumer.failures = 2
    await sandbox.connection(company["id"])
    await sandbox.state.webhooks.wait_idle()
    assert len({headers["webhook-id"] for headers, _ in consumer.received}) == 1
    [delivery] = await connection_deliveries(sandbox)
    assert delivery["status"] == "delivered"
    assert [a["statusCode"] for a in delivery["attempts"]] == [500, 500, 204]


async def test_a_delivery_fails_after_the_last_retry(sandbox, consumer) -> None:
    company = await sandbox.company()
    await sandbox.state.webhooks.wait_idle()
    consumer.failures = 10
    await sandbox.connection(company["id"])
    await sandbox.state.webhooks.wait_idle()
    [delivery] = await connection_deliveries(sandbox)
    assert (delivery["status"], len(delivery["attempts"])) == ("failed", 3)


async def test_an_unreachable_consumer_is_logged_with_the_error(sandbox) -> None:
    sandbox.state.set_settings(
        webhook={"url": "http://127.0.0.1:9/nothing-listens", "secret": DEV_WEBHOOK_SECRET}
    )
    sandbox.state.set_knobs(webhookRetryDelaysSeconds=[])
    await sandbox.connection()
    await sandbox.state.webhooks.wait_idle()
    [delivery] = [d for d in sandbox.state.webhooks.deliveries if d.event_type == "connection.created"]
    assert delivery.status == "failed"
    assert delivery.attempts[0].error == "ConnectError"


async def test_a_past_event_can_be_sent_again(sandbox, consumer) -> None:
    await sandbox.connection()
    await sandbox.state.webhooks.wait_idle()
    event_id = consumer.events()[0]["id"]
    resent = await sandbox.client.post(f"/_sandbox/webhooks/{event_id}/resend")
    assert resent.status_code == 202
    await sandbox.state.webhooks.wait_idle()
    assert [e["id"] for e in in_sent_order(sandbox, consumer.events())] == [event_id, event_id]
    assert consumer.received[0][1] == consumer.received[1][1]
    assert (await sandbox.client.post("/_sandbox/webhooks/nope/resend")).status_code == 404


async def test_delivery_does_not_hold_up_the_api(sandbox, consumer) -> None:
    consumer.delay_seconds = 0.5
    started = time.perf_counter()
    await sandbox.connection()
    assert time.perf_counter() - started < 0.4
    await sandbox.state.webhooks.wait_idle()
    assert len(consumer.received) == 1


async def test_a_burst_of_events_is_delivered_a_few_at_a_time_and_all_of_them(sandbox, consumer) -> None:
    in_flight, most = 0, 0

    async def slow(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await Receiver.__call__(consumer, scope, receive, send)
        finally:
            in_flight -= 1

    consumer.delay_seconds = 0.05
    with serve_in_thread(slow) as url:
        sandbox.state.set_settings(webhook={"url": url + "/webhooks/codat", "secret": DEV_WEBHOOK_SECRET})
        await asyncio.gather(*(sandbox.connection() for _ in range(30)))
        await sandbox.state.webhooks.wait_idle()
    assert len(consumer.events()) == 30  # one connection.created each
    assert most == IN_FLIGHT


async def test_without_a_consumer_events_are_only_logged(sandbox) -> None:
    await sandbox.connection()
    [delivery] = await connection_deliveries(sandbox)
    assert (delivery["eventType"], delivery["status"], delivery["attempts"]) == (
        "connection.created",
        "no consumer",
        [],
    )


async def test_a_signature_does_not_verify_with_another_secret(sandbox, consumer) -> None:
    await sandbox.connection()
    await sandbox.state.webhooks.wait_idle()
    headers, body = consumer.received[0]
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==").verify(body, headers)


async def test_webhooks_can_be_delivered_through_an_injected_transport(make_sandbox_app) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["eventType"] == "connection.created":
            seen.append(request)
        return httpx.Response(200)

    config = SandboxConfig(webhook_url="http://bff.test/webhooks/codat")
    app = make_sandbox_app(config, webhook_transport=httpx.MockTransport(handle))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://s", headers=AUTH
    ) as c:
        company = (await c.post("/companies", json={"name": "Dave"})).json()
        await c.post(f"/companies/{company['id']}/connections", json={"platformKey": "hcws"})
    await app.state.sandbox.webhooks.wait_idle()
    [request] = seen
    Webhook(DEV_WEBHOOK_SECRET).verify(request.content, dict(request.headers))
    assert json.loads(request.content)["eventType"] == "connection.created"
    assert str(request.url) == "http://bff.test/webhooks/codat"
