"""The SPA learns of a change without polling: the SMB connects in QuickBooks, Codat's webhook arrives,
and the SPA's event stream says the bank feed changed."""

import asyncio
import json

import httpx

from tests.factories import connect_in_quickbooks


async def next_event(lines) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    event = None
    async for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event:
            return event, json.loads(line.removeprefix("data: "))
    raise AssertionError("the stream ended")


async def test_the_spa_hears_of_the_connection_within_a_second(client, user_headers, business, live_url):
    connected = (await client.post("/v1/bank-feed/connect", headers=user_headers(business))).json()

    async with (
        httpx.AsyncClient(base_url=live_url, timeout=10) as spa,
        spa.stream("GET", "/v1/bank-feed/events", headers=user_headers(business)) as stream,
    ):
        lines = stream.aiter_lines()
        ready, _ = await next_event(lines)
        await connect_in_quickbooks(client, connected["linkUrl"], ["acc-1"])
        events = await asyncio.wait_for(
            events_until_connected(lines, client, user_headers(business)), timeout=1.0
        )

    assert ready == "ready"
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert {name for name, _ in events} == {"bank-feed-changed"}


async def events_until_connected(lines, client, headers) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    """What the SPA does: on each event, re-read the view, until acc-1 shows connected."""
    events = []
    while True:
        events.append(await next_event(lines))
        view = (await client.get("/v1/bank-feed", headers=headers)).json()
        if {a["accountId"]: a["status"] for a in view["accounts"]}["acc-1"] == "connected":
            return events


async def test_the_stream_needs_a_token(live_url):
    async with httpx.AsyncClient(base_url=live_url) as spa:
        response = await spa.get("/v1/bank-feed/events")

    assert response.status_code == 401
