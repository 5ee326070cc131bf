"""Webhooks on a bad day: unauthenticated junk, signed garbage, and an event that will not apply."""

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from svix.webhooks import Webhook

from app.onboarding.dependencies import onboarding_service
from app.webhooks import service as webhooks_service
from app.webhooks.models import WebhookEvent
from app.webhooks.reconcile import reconcile_once
from app.webhooks.router import webhook_processor
from tests.factories import connect_in_quickbooks


def sign(settings, webhook_id: str, body: bytes) -> dict[str, str]:  # type: ignore[no-untyped-def]
    secret = settings.webhooks.signing_secret.get_secret_value()
    signature = Webhook(secret).sign(webhook_id, datetime.now(UTC), body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
    }


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def stored(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        rows = await session.execute(select(WebhookEvent.id, WebhookEvent.status).order_by(WebhookEvent.id))
        return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, seeing uvicorn's loggers too (they do not propagate to the root under uvicorn's log config)."""
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    yield caplog
    uvicorn_logger.removeHandler(caplog.handler)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def junk(settings) -> dict[str, tuple[bytes, dict[str, str]]]:  # type: ignore[no-untyped-def]
    now = str(int(time.time()))
    body = b'{"id": "x", "eventType": "connection.connected"}'
    good = sign(settings, "junk-1", body)
    return {
        "non-UTF-8 body": (b"\xff\xfe\x00junk", {**good}),
        "signature without a comma": (body, {**good, "webhook-signature": "v1abcdef"}),
        "v1,a,b": (body, {**good, "webhook-signature": "v1,a,b"}),
        "not base64": (body, {**good, "webhook-signature": "v1,!!!not-base64!!!"}),
        "empty signature": (body, {**good, "webhook-signature": ""}),
        "timestamp not a number": (body, {**good, "webhook-timestamp": "soon"}),
        "stale timestamp": (body, {**good, "webhook-timestamp": str(int(time.time()) - 3600)}),
        "no headers": (body, {}),
        "wrong secret": (body, {**good, "webhook-signature": "v1,c2lnbmF0dXJl"}),
        "huge timestamp": (body, {**good, "webhook-timestamp": "9" * 40}),
        "timestamp only": (body, {"webhook-timestamp": now}),
    }


class TestUnauthenticatedJunk:
    async def test_every_variant_is_a_4xx_changes_nothing_and_logs_no_traceback(
        self, app, settings, live_url, caplog
    ):
        caplog.set_level(logging.DEBUG)
        before = await stored(app)

        async with httpx.AsyncClient(base_url=live_url) as http:
            answers = {
                name: (await http.post("/webhooks/codat", content=body, headers=headers)).status_code
                for name, (body, headers) in junk(settings).items()
            }

        assert {name: status for name, status in answers.items() if not 400 <= status < 500} == {}
        assert await stored(app) == before
        assert tracebacks(caplog) == []


def event(event_type: str, payload: object, **overrides: object) -> dict[str, object]:
    return {
        "id": "evt-1",
        "eventType": event_type,
        "generatedDate": datetime.now(UTC).isoformat(),
        "payload": payload,
        **overrides,
    }


def malformed(connection_id: str) -> dict[str, object]:
    account = {"connectionId": connection_id, "sourceAccount": {"id": "acc-1", "status": "suspended"}}
    return {
        "account status suspended": event("bankFeeds.sourceAccount.connected", account),
        "connection status Hacked": event(
            "connection.connected", {"connection": {"id": connection_id, "status": "Hacked"}}
        ),
        "dated year 9999": event(
            "connection.connected",
            {"connection": {"id": connection_id, "status": "Unlinked"}},
            generatedDate="9999-12-31T00:00:00Z",
        ),
        "over-long event id": event(
            "connection.connected", {"connection": {"id": connection_id, "status": "Unlinked"}}, id="e" * 5000
        ),
        "over-long event type": event("connection." + "x" * 5000, {}),
        "payload not an object": event("connection.connected", ["a"]),
        "no payload": {
            "id": "e",
            "eventType": "connection.connected",
            "generatedDate": "2026-11-29T00:00:00Z",
        },
        "body a list": [1, 2, 3],
        "NUL in an id": event(
            "connection.connected", {"connection": {"id": connection_id + "\x00", "status": "Unlinked"}}
        ),
        "feed start not a date": event(
            "bankFeeds.sourceAccount.connected",
            {"connectionId": connection_id, "sourceAccount": {"id": "acc-1", "feedStartDate": "yesterday"}},
        ),
    }


class TestSignedButMalformed:
    async def test_each_is_a_422_stored_as_rejected_counted_and_never_applied(
        self, app, client, settings, user_headers, business, live_url, caplog
    ):
        caplog.set_level(logging.DEBUG)
        connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
        view_before = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()
        rejected_before = counter("bff_webhooks_rejected_total")
        cases = malformed(connected["connectionId"])

        answers = {}
        async with httpx.AsyncClient(base_url=live_url) as http:
            for n, (name, body) in enumerate(cases.items()):
                raw = json.dumps(body).encode()
                response = await http.post(
                    "/webhooks/codat", content=raw, headers=sign(settings, f"bad-{n}", raw)
                )
                answers[name] = (response.status_code, response.json()["fields"][0]["field"])

        assert {name: status for name, (status, _) in answers.items() if status != 422} == {}
        assert answers["account status suspended"][1] == "payload.sourceAccount.status"
        assert answers["connection status Hacked"][1] == "payload.connection.status"
        assert answers["dated year 9999"][1] == "generatedDate"
        ours = [row for row in await stored(app) if row[0].startswith("bad-")]
        assert ours == sorted((f"bad-{n}", "rejected") for n in range(len(cases)))
        assert counter("bff_webhooks_rejected_total") - rejected_before == len(cases)
        view_after = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()
        assert view_after["connection"] == view_before["connection"]
        assert view_after["accounts"] == view_before["accounts"]
        assert tracebacks(caplog) == []

    async def test_a_genuine_event_after_a_far_future_one_still_applies(
        self, app, client, settings, user_headers, business, live_url
    ):
        connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
        future = event(
            "connection.connected",
            {"connection": {"id": connected["connectionId"], "status": "Unlinked"}},
            generatedDate="9999-12-31T00:00:00Z",
        )
        genuine = event(
            "connection.connected", {"connection": {"id": connected["connectionId"], "status": "Linked"}}
        )

        async with httpx.AsyncClient(base_url=live_url) as http:
            for webhook_id, body in [("future", future), ("genuine", genuine)]:
                raw = json.dumps(body).encode()
                await http.post("/webhooks/codat", content=raw, headers=sign(settings, webhook_id, raw))

        view = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()
        assert view["connection"]["status"] == "Linked"


class TestPoisonEvent:
    async def test_the_missed_one_is_repaired_and_the_poison_ends_dead_visible_to_an_operator(
        self, app, client, sandbox, settings, user_headers, service_headers, business, monkeypatch
    ):
        connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()
        processor = webhook_processor(app.state)
        real_apply = webhooks_service.apply

        async def apply_failing_for_the_poison(repo, body, at):  # type: ignore[no-untyped-def]
            if body["payload"].get("connection", {}).get("id") == "poisoned-connection":
                raise RuntimeError("cannot apply this one")
            return await real_apply(repo, body, at)

        monkeypatch.setattr(webhooks_service, "apply", apply_failing_for_the_poison)
        poison = event(
            "connection.connected", {"connection": {"id": "poisoned-connection", "status": "Linked"}}
        )
        await processor.receive("poison", poison, datetime.now(UTC))  # acknowledged: stored, retried later
        # The missed webhook: the SMB connects in QuickBooks; there is no webhook consumer, nothing arrives.
        await connect_in_quickbooks(client, connected["linkUrl"], ["acc-1"])
        dead_before = counter("bff_webhooks_dead_total")

        await reconcile_once(onboarding_service(app).sync, processor, timedelta(0))
        view = (await client.get("/v1/bank-feed", headers=user_headers(business))).json()
        assert view["connection"]["status"] == "Linked"  # repaired though the poison failed again this round

        for _ in range(settings.webhooks.apply_attempts):
            sandbox.clock.advance(24 * 3600)  # past any backoff
            await reconcile_once(onboarding_service(app).sync, processor, timedelta(0))

        admin = service_headers("webhooks:admin")
        dead = (await client.get("/internal/v1/webhooks/events", headers=admin)).json()
        assert [(e["id"], e["attempts"]) for e in dead] == [("poison", settings.webhooks.apply_attempts)]
        assert "cannot apply this one" in dead[0]["error"]
        assert counter("bff_webhooks_dead_total") - dead_before == 1
        async with app.state.sessionmaker() as session:
            backlog = await session.scalar(
                select(func.count()).select_from(WebhookEvent).where(WebhookEvent.processed_at.is_(None))
            )
        assert backlog == 0

        monkeypatch.setattr(webhooks_service, "apply", real_apply)  # the bug is fixed
        reapplied = await client.post("/internal/v1/webhooks/events/poison/reapply", headers=admin)
        assert reapplied.status_code == 200
        assert reapplied.json()["status"] == "applied"
        assert (await client.get("/internal/v1/webhooks/events", headers=admin)).json() == []

    async def test_the_operator_api_needs_its_own_scope(
        self, client, service_headers, user_headers, business
    ):
        for headers in (service_headers("bank-feed:read"), user_headers(business)):
            response = await client.get("/internal/v1/webhooks/events", headers=headers)
            assert response.status_code in (401, 403)
        missing = await client.post(
            "/internal/v1/webhooks/events/nope/reapply", headers=service_headers("webhooks:admin")
        )
        assert missing.status_code == 404
