"""Codat events beyond status changes, sent by the sandbox to the BFF over HTTP: connection.failed and
company.deleted move the view to a state it explains with the one-step fix; client.rateLimit.* are surfaced
as gauges, and the Codat client stops calling before a 429 once the quota is spent."""

from datetime import UTC, datetime, time, timedelta
from typing import Any

from prometheus_client import REGISTRY

from tests.factories import CODAT_AUTH, connect_in_quickbooks
from tests.transactions.conftest import eventually


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def view(client, user) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await client.get("/v1/bank-feed", headers=user)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def view_until(client, user, check) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async def seen() -> dict[str, Any] | None:
        current = await view(client, user)
        return current if check(current) else None

    return await eventually(seen) or await view(client, user)


async def test_a_failed_link_shows_its_error_and_reconnect_until_it_links(
    client, live_url, user_headers, business
) -> None:
    user = user_headers(business)
    connected = (await client.post("/v1/bank-feed/connect", headers=user)).json()

    failed = await client.post(
        f"/sandbox/_sandbox/connections/{connected['connectionId']}/fail",
        json={"statusCode": "401", "message": "QuickBooks refused revoked credentials."},
    )
    assert failed.status_code == 200

    broken = await view_until(client, user, lambda v: v["connection"]["error"])
    assert broken["connection"]["error"] == "QuickBooks refused revoked credentials."
    assert broken["action"] == "reconnect"

    mended = (await client.post("/v1/bank-feed/reconnect", headers=user)).json()
    await connect_in_quickbooks(client, mended["linkUrl"], ["acc-1"])
    linked = await view_until(client, user, lambda v: v["connection"]["status"] == "Linked")
    assert (linked["connection"]["status"], linked["connection"]["error"]) == ("Linked", None)


async def test_a_deleted_company_asks_to_connect_again_and_connect_starts_afresh(
    client, live_url, user_headers, business
) -> None:
    user = user_headers(business)
    connected = (await client.post("/v1/bank-feed/connect", headers=user)).json()
    companies = (await client.get("/sandbox/companies", headers=CODAT_AUTH)).json()["results"]
    [company] = [
        c for c in companies if any(d["id"] == connected["connectionId"] for d in c["dataConnections"])
    ]

    deleted = await client.delete(f"/sandbox/companies/{company['id']}", headers=CODAT_AUTH)
    assert deleted.status_code == 204

    gone = await view_until(client, user, lambda v: v["connection"] is None)
    assert (gone["connection"], gone["action"]) == (None, "connect")
    again = await client.post("/v1/bank-feed/connect", headers=user)
    assert again.status_code == 200, again.text
    assert again.json()["connectionId"] != connected["connectionId"]


async def test_a_spent_quota_stops_calls_before_a_429_and_the_webhooks_show_in_gauges(
    client, live_url, user_headers, business, sandbox
) -> None:
    user = user_headers(business)
    now = sandbox.clock.now()
    sandbox.clock.advance((datetime.combine(now.date(), time(12), tzinfo=UTC) - now).total_seconds() % 86400)
    await client.post("/v1/bank-feed/connect", headers=user)
    used = sum(sandbox.quota_used.values())
    sandbox.set_knobs(dailyQuota=used + 1)

    reached = _events("client.rateLimit.reached")
    assert (await client.post("/v1/bank-feed/refresh", headers=user)).status_code in (200, 503)
    assert await eventually(lambda: _is_set("bff_codat_rate_limited", 1.0))
    # The client's own headers set the gauge first; the webhook is applied before the day turns, so that it
    # cannot land after the reset's (webhooks come in any order: applied later, it would set the gauge back).
    assert await eventually(lambda: _more_than(reached, "client.rateLimit.reached"))
    assert gauge("bff_codat_quota_remaining") == 0
    assert gauge("bff_codat_quota_limit") == used + 1

    calls = sum(sandbox.counters.values())
    refused = await client.post("/v1/bank-feed/refresh", headers=user)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) > 0
    assert sum(sandbox.counters.values()) == calls  # the client did not spend a request on a 429

    # Midnight UTC at the sandbox: Codat sends client.rateLimit.reset.
    await client.post(
        "/sandbox/_sandbox/clock/advance", json={"seconds": timedelta(hours=12).total_seconds()}
    )
    assert await eventually(lambda: _is_set("bff_codat_rate_limited", 0.0))
    assert gauge("bff_codat_quota_remaining") == used + 1


async def _is_set(name: str, value: float) -> bool:
    return gauge(name) == value


def _events(event_type: str) -> float:
    counted = REGISTRY.get_sample_value("bff_codat_rate_limit_events_total", {"event_type": event_type})
    return counted or 0.0


async def _more_than(before: float, event_type: str) -> bool:
    return _events(event_type) > before
