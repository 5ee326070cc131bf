"""Codat's webhooks, sent by the sandbox over loopback HTTP, signed, to the BFF running under uvicorn."""

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from svix.webhooks import Webhook

from app.webhooks.models import WebhookEvent


async def eventually(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def connection_status(client, headers) -> str | None:  # type: ignore[no-untyped-def]
    view = (await client.get("/v1/bank-feed", headers=headers)).json()
    return view["connection"]["status"] if view["connection"] else None


async def set_status(client, connection_id: str, status: str) -> None:  # type: ignore[no-untyped-def]
    response = await client.post(
        f"/sandbox/_sandbox/connections/{connection_id}/status", json={"status": status}
    )
    assert response.status_code == 200, response.text


async def delivered(client, event_type: str) -> list[dict]:  # type: ignore[no-untyped-def]
    deliveries = (await client.get("/sandbox/_sandbox/webhooks/deliveries")).json()
    return [d for d in deliveries if d["eventType"] == event_type and d["status"] == "delivered"]


async def stored_events(app) -> int:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(WebhookEvent))


def webhook_count(event_type: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("bff_codat_webhooks_total", {"event_type": event_type, "outcome": outcome})
        or 0.0
    )


@pytest.fixture
async def connected(client, user_headers, business, live_url) -> dict:  # type: ignore[no-untyped-def]
    response = await client.post("/v1/bank-feed/connect", headers=user_headers(business))
    assert response.status_code == 200
    # What connect made Codat announce lands before the test starts: connect answers without waiting for it.
    for event_type in ("company.created", "connection.created"):
        assert await eventually(lambda event_type=event_type: delivered(client, event_type))
    return response.json()


class TestDelivery:
    async def test_a_signed_event_updates_the_view(self, client, user_headers, business, connected):
        await set_status(client, connected["connectionId"], "Linked")

        assert await eventually(lambda: _is(connection_status(client, user_headers(business)), "Linked"))
        assert await delivered(client, "connection.connected")

    async def test_the_same_event_twice_is_processed_once(
        self, app, client, user_headers, business, connected
    ):
        await set_status(client, connected["connectionId"], "Linked")
        [event] = await eventually(lambda: delivered(client, "connection.connected"))
        stored, duplicates = await stored_events(app), webhook_count("connection.connected", "duplicate")

        resent = await client.post(f"/sandbox/_sandbox/webhooks/{event['eventId']}/resend")
        await eventually(
            lambda: _count_above(lambda: webhook_count("connection.connected", "duplicate"), duplicates)
        )

        assert resent.status_code in (200, 202)
        assert webhook_count("connection.connected", "duplicate") == duplicates + 1
        assert await stored_events(app) == stored

    async def test_an_older_event_after_a_newer_one_changes_nothing(
        self, client, sandbox, user_headers, business, connected
    ):
        await set_status(client, connected["connectionId"], "Linked")
        [linked] = await eventually(lambda: delivered(client, "connection.connected"))
        sandbox.clock.advance(60)
        await set_status(client, connected["connectionId"], "Deauthorized")
        await eventually(lambda: _is(connection_status(client, user_headers(business)), "Deauthorized"))

        await client.post(f"/sandbox/_sandbox/webhooks/{linked['eventId']}/resend")
        await eventually(lambda: _delivered_twice(client, linked["eventId"]))

        assert await connection_status(client, user_headers(business)) == "Deauthorized"


class TestRefused:
    def event(self, connection_id: str) -> bytes:
        return json.dumps(
            {
                "id": "evt-forged",
                "eventType": "connection.connected",
                "generatedDate": datetime.now(UTC).isoformat(),
                "payload": {"connection": {"id": connection_id, "status": "Linked"}},
            }
        ).encode()

    def headers(self, secret: str, body: bytes, at: datetime) -> dict[str, str]:
        signature = Webhook(secret).sign("msg-forged", at, body.decode())
        return {
            "webhook-id": "msg-forged",
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature,
            "Content-Type": "application/json",
        }

    @pytest.mark.parametrize("case", ["bad signature", "stale timestamp", "no signature"])
    async def test_a_bad_signature_or_stale_timestamp_is_refused_and_changes_nothing(
        self, app, client, settings, user_headers, business, connected, live_url, case
    ):
        body = self.event(connected["connectionId"])
        secret = settings.webhooks.signing_secret.get_secret_value()
        headers = {
            "bad signature": self.headers("whsec_" + "QUJD" * 8, body, datetime.now(UTC)),
            "stale timestamp": self.headers(secret, body, datetime.now(UTC) - timedelta(minutes=10)),
            "no signature": {"Content-Type": "application/json"},
        }[case]
        stored_before = await stored_events(app)

        async with httpx.AsyncClient() as http:
            response = await http.post(f"{live_url}/webhooks/codat", content=body, headers=headers)

        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert await connection_status(client, user_headers(business)) == "PendingAuth"
        assert await stored_events(app) == stored_before


async def _is(awaitable, expected):  # type: ignore[no-untyped-def]
    return await awaitable == expected


async def _count_above(read, baseline: float) -> bool:  # type: ignore[no-untyped-def]
    return read() > baseline


async def _delivered_twice(client, event_id: str) -> bool:  # type: ignore[no-untyped-def]
    deliveries = (await client.get("/sandbox/_sandbox/webhooks/deliveries")).json()
    return sum(1 for d in deliveries if d["eventId"] == event_id and d["status"] == "delivered") >= 2 or any(
        d["eventId"] == event_id and len([a for a in d["attempts"] if a["statusCode"] == 204]) >= 2
        for d in deliveries
    )


class TestUnknownEvents:
    async def test_an_event_type_we_do_not_handle_is_stored_and_acknowledged(
        self, app, client, settings, live_url
    ):
        body = json.dumps(
            {
                "id": "e-1",
                "eventType": "company.product.added",
                "generatedDate": "2026-11-23T10:00:00Z",
                "payload": {"referenceCompany": {"id": "c"}},
            }
        ).encode()
        signature = Webhook(settings.webhooks.signing_secret.get_secret_value()).sign(
            "msg-unknown", datetime.now(UTC), body.decode()
        )
        headers = {
            "webhook-id": "msg-unknown",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": signature,
        }

        async with httpx.AsyncClient() as http:
            response = await http.post(f"{live_url}/webhooks/codat", content=body, headers=headers)

        assert response.status_code == 204
        async with app.state.sessionmaker() as session:
            stored = await session.get(WebhookEvent, "msg-unknown")
        assert stored is not None
        assert stored.processed_at is not None
        assert stored.event_type == "company.product.added"


class TestConcurrentWriters:
    async def test_refreshes_racing_account_webhooks_all_complete(self, app, client, user_headers, business):
        """Both lock the connection, the accounts and the business; in one order, so neither deadlocks."""
        from app.webhooks.service import WebhookProcessor
        from tests.factories import connect_in_quickbooks

        connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
        await connect_in_quickbooks(client, connected["linkUrl"], ["acc-1", "acc-2", "acc-3"])
        processor = WebhookProcessor(app.state.sessionmaker, app.state.changes)

        def event(n: int) -> dict:
            account = f"acc-{n % 3 + 1}"
            return {
                "id": f"race-{n}",
                "eventType": "bankFeeds.sourceAccount.connected",
                "generatedDate": (datetime.now(UTC) + timedelta(seconds=n)).isoformat(),
                "payload": {
                    "connectionId": connected["connectionId"],
                    "sourceAccount": {"id": account, "status": "connected"},
                },
            }

        results = await asyncio.gather(
            *(client.post("/v1/bank-feed/refresh", headers=user_headers(business)) for _ in range(15)),
            *(processor.receive(f"race-{n}", event(n), datetime.now(UTC)) for n in range(30)),
            return_exceptions=True,
        )

        assert [r for r in results if isinstance(r, BaseException)] == []
        assert {r.status_code for r in results if r is not None} == {200}
        view = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()
        assert view["connectedCount"] == 3
