"""Subscriptions: only services with `events:admin`; no loopback or private targets in prod (no SSRF)."""

import pytest
from sqlalchemy import select, text

from app.config import Settings
from app.events.models import EventSubscription
from app.events.ssrf import TargetRefused, check_target
from tests.events.conftest import subscribe
from tests.factories import prod_settings_values


def prod_settings(**overrides: object) -> Settings:
    return Settings(**prod_settings_values(), **overrides)


PRIVATE = [
    "http://127.0.0.1:9000/hook",
    "http://localhost/hook",
    "http://10.1.2.3/",
    "http://[::1]/x",
    "http://169.254.169.254/latest/meta-data",
    "http://192.168.0.7/",
    "http://[::ffff:127.0.0.1]/",
]


@pytest.mark.parametrize("url", PRIVATE)
async def test_prod_refuses_a_loopback_or_private_target(url):
    prod = prod_settings()
    with pytest.raises(TargetRefused, match="private, loopback or reserved"):
        await check_target(url, allow_private=prod.private_targets_allowed)


async def test_dev_allows_loopback_and_prod_allows_it_only_when_told():
    assert Settings(environment="dev").private_targets_allowed
    await check_target(
        "http://127.0.0.1:9000/hook", allow_private=Settings(environment="dev").private_targets_allowed
    )
    allowed = prod_settings(events={"allow_private_targets": True})
    assert allowed.private_targets_allowed


async def test_a_refused_target_is_a_422_naming_the_url_and_stores_nothing(app, client, service_headers):
    app.state.settings.events.allow_private_targets = False
    response = await client.post(
        "/internal/v1/event-subscriptions",
        json={"url": "http://127.0.0.1:1/hook", "eventTypes": ["feed.connected"]},
        headers=service_headers("events:admin"),
    )
    assert response.status_code == 422, response.text
    [field] = response.json()["fields"]
    assert field["field"] == "url"
    assert "127.0.0.1" in field["reason"]
    async with app.state.sessionmaker() as session:
        assert (await session.scalars(select(EventSubscription))).all() == []


async def test_bad_input_and_missing_scope_are_refused(client, service_headers):
    headers = service_headers("events:admin")
    bad = await client.post(
        "/internal/v1/event-subscriptions", json={"url": "ftp://x", "eventTypes": ["nope"]}, headers=headers
    )
    assert bad.status_code == 422
    assert "eventTypes" in bad.text
    scheme = await client.post(
        "/internal/v1/event-subscriptions",
        json={"url": "ftp://example.com/", "eventTypes": ["feed.connected"]},
        headers=headers,
    )
    assert scheme.status_code == 422
    assert "http" in scheme.json()["fields"][0]["reason"]
    denied = await client.post(
        "/internal/v1/event-subscriptions",
        json={"url": "http://127.0.0.1/", "eventTypes": ["feed.connected"]},
        headers=service_headers("bank-feed:read"),
    )
    assert denied.status_code == 403


async def test_the_secret_is_shown_once_and_stored_encrypted(app, client, service_headers):
    created = await subscribe(
        client, service_headers("events:admin"), "http://127.0.0.1:9/hook", ["feed.connected"]
    )
    assert created["secret"].startswith("whsec_")
    listed = (
        await client.get("/internal/v1/event-subscriptions", headers=service_headers("events:admin"))
    ).json()
    assert "secret" not in listed[0]
    assert created["secret"] not in str(listed)
    async with app.state.sessionmaker() as session:
        stored = await session.scalar(text("SELECT signing_secret FROM event_subscription"))
    assert stored
    assert created["secret"] not in stored  # encrypted at rest (app/crypto.py)
