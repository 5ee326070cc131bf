"""The per-process cache of the bank-feed view (app/bankfeed/cache.py): a read is served from it only while
the business's stamp is unchanged, so every change shows on the next read, on every replica, and a business
only ever gets its own view."""

import json
from datetime import datetime

import httpx
import pytest
from sqlalchemy import update

import app.bankfeed.view as view_module
from app.bankfeed.cache import ViewCache
from app.bankfeed.models import BankAccount
from app.bankfeed.repository import BankFeedRepository
from app.main import create_app
from app.rawpool import RawPool
from tests.contract import contract_checked
from tests.factories import ACCOUNTS, register


@pytest.fixture
def renders(monkeypatch):  # type: ignore[no-untyped-def]
    """How many times the view was rendered from the database rather than taken from the cache."""
    calls: list[str] = []
    render = view_module.render_bank_feed_view

    async def counted(session, business_id):  # type: ignore[no-untyped-def]
        calls.append(business_id)
        return await render(session, business_id)

    monkeypatch.setattr(view_module, "render_bank_feed_view", counted)
    return calls


async def fresh_render(app, business_id: str) -> dict:  # type: ignore[no-untyped-def]
    """The view rendered from the database now, bypassing the cache."""
    async with app.state.sessionmaker() as session:
        return (await view_module.render_bank_feed_view(session, business_id)).model_dump(
            mode="json", by_alias=True
        )


def comparable(stamp: object) -> list[str]:
    """A stamp as text fields: Postgres's is one text, times as epoch seconds; SQLite's is the ORM's tuple."""
    if isinstance(stamp, str):
        return [_exact_decimal(field) for field in stamp.split("|")]
    return [
        f"{int(v.timestamp())}.{v.microsecond:06d}" if isinstance(v, datetime) else str(v or "")
        for v in stamp  # type: ignore[attr-defined]
    ]


def _exact_decimal(field: str) -> str:
    whole, dot, fraction = field.partition(".")
    return f"{whole}.{fraction.ljust(6, '0')}" if dot else field


async def read(client, headers) -> dict:  # type: ignore[no-untyped-def]
    response = await client.get("/v1/bank-feed", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


class TestHits:
    async def test_an_unchanged_view_is_rendered_once_and_served_with_the_same_etag(
        self, client, user_headers, business, renders
    ):
        first = await client.get("/v1/bank-feed", headers=user_headers(business))
        second = await client.get("/v1/bank-feed", headers=user_headers(business))
        not_modified = await client.get(
            "/v1/bank-feed", headers={**user_headers(business), "If-None-Match": first.headers["etag"]}
        )

        assert (first.status_code, second.status_code, not_modified.status_code) == (200, 200, 304)
        assert second.content == first.content
        assert second.headers["etag"] == not_modified.headers["etag"] == first.headers["etag"]
        assert renders == [business]

    async def test_the_internal_view_and_the_users_share_the_entry(
        self, client, user_headers, service_headers, business, renders
    ):
        mine = await client.get("/v1/bank-feed", headers=user_headers(business))
        internal = await client.get(
            f"/internal/v1/businesses/{business}/bank-feed", headers=service_headers()
        )

        assert internal.content == mine.content
        assert renders == [business]


class TestEveryChangeShowsOnTheNextRead:
    async def test_through_the_whole_onboarding(
        self, app, client, sandbox, user_headers, service_headers, business
    ):
        headers = user_headers(business)

        async def matches_the_database() -> dict:
            view = await read(client, headers)
            assert view == await fresh_render(app, business)
            return view

        assert (await matches_the_database())["action"] == "connect"

        connected = (
            await client.post("/v1/bank-feed/connect", json={"accountIds": ["acc-1"]}, headers=headers)
        ).json()
        view = await matches_the_database()
        assert view["connection"]["status"] == "PendingAuth"
        assert {a["accountId"]: a["status"] for a in view["accounts"]} == {
            "acc-1": "pending",
            "acc-2": "not_added",
            "acc-3": "not_added",
        }

        await client.patch("/v1/bank-feed/accounts/acc-1", json={"accountName": "Main"}, headers=headers)
        assert (await matches_the_database())["accounts"][0]["accountName"] == "Main"

        await client.put(
            f"/internal/v1/businesses/{business}",
            json={"name": "Renamed LLC", "country": "US"},
            headers=service_headers(),
        )
        assert (await matches_the_database())["businessName"] == "Renamed LLC"

        await client.put(
            f"/internal/v1/businesses/{business}/accounts/acc-4",
            json=ACCOUNTS["acc-2"],
            headers=service_headers(),
        )
        assert [a["accountId"] for a in (await matches_the_database())["accounts"]][-1] == "acc-4"

        await client.post("/v1/bank-feed/accounts", json={"accountIds": ["acc-2"]}, headers=headers)
        assert (await matches_the_database())["accounts"][1]["status"] == "pending"

        linked = await client.post(
            f"/sandbox/_sandbox/connections/{connected['connectionId']}/status", json={"status": "Linked"}
        )
        assert linked.status_code == 200
        await client.post("/v1/bank-feed/refresh", headers=headers)
        assert (await matches_the_database())["connection"]["status"] == "Linked"

        before = await matches_the_database()
        sandbox.clock.advance(3600)
        await client.get("/v1/bank-feed/link", headers=headers)  # a fresh link: the state is confirmed anew
        after = await matches_the_database()
        assert after["stateConfirmedAt"] != before["stateConfirmedAt"]

    async def test_a_connection_recorded_without_a_feed_version_bump_shows(
        self, app, client, sandbox, user_headers, business
    ):
        headers = user_headers(business)
        assert (await read(client, headers))["connection"] is None
        sandbox.set_knobs(errorRate=1.0, operations=["create-batch-source-account"])

        failed = await client.post(
            "/v1/bank-feed/connect", headers=headers
        )  # the connection is made, no account
        view = await read(client, headers)

        assert failed.status_code == 503
        assert view["connection"]["status"] == "PendingAuth"
        assert view == await fresh_render(app, business)

    async def test_a_change_made_by_another_replica_shows_at_once(
        self, app, client, settings, sandbox_app, user_headers, business
    ):
        headers = user_headers(business)
        assert (await read(client, headers))["accounts"][0]["accountName"] == ACCOUNTS["acc-1"]["name"]
        replica = create_app(settings, sandbox_app=contract_checked(sandbox_app))
        async with (
            replica.router.lifespan_context(replica),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://test") as other,
        ):
            renamed = await other.patch(
                "/v1/bank-feed/accounts/acc-1", json={"accountName": "Renamed"}, headers=headers
            )
            assert renamed.status_code == 200

            assert (await read(client, headers))["accounts"][0]["accountName"] == "Renamed"

    async def test_a_view_rendered_from_uncommitted_writes_is_not_kept(
        self, app, client, user_headers, business
    ):
        headers = user_headers(business)
        before = await read(client, headers)
        async with app.state.sessionmaker() as session:
            await session.execute(
                update(BankAccount)
                .where(BankAccount.business_id == business, BankAccount.id == "acc-1")
                .values(name="Draft")
            )
            await BankFeedRepository(session).bump_feed_version(business)

            seen_inside = json.loads((await view_module.served_bank_feed_view(session, business)).body)
            await session.rollback()

        assert seen_inside["accounts"][0]["accountName"] == "Draft"
        assert await read(client, headers) == before


class TestIsolation:
    async def test_each_business_gets_its_own_view_from_the_cache(
        self, client, user_headers, service_headers, business
    ):
        await register(client, service_headers(), "biz-2", accounts={"other-1": ACCOUNTS["acc-3"]})

        for _ in range(3):
            mine = await read(client, user_headers(business))
            theirs = await read(client, user_headers("biz-2"))
            assert (mine["businessId"], [a["accountId"] for a in mine["accounts"]]) == (
                business,
                ["acc-1", "acc-2", "acc-3"],
            )
            assert (theirs["businessId"], [a["accountId"] for a in theirs["accounts"]]) == (
                "biz-2",
                ["other-1"],
            )

    async def test_a_business_nobody_registered_is_a_404_each_time(self, client, user_headers):
        for _ in range(2):
            response = await client.get("/v1/bank-feed", headers=user_headers("ghost"))
            assert response.status_code == 404
            assert response.json()["error"] == "business_not_found"


class TestStamp:
    async def test_the_cache_reads_the_same_stamp_as_the_repository(
        self, app, client, user_headers, business
    ):
        await client.post("/v1/bank-feed/connect", headers=user_headers(business))
        from_cache = await ViewCache.of(app.state.sessionmaker.kw["bind"]).stamp(business)
        async with app.state.sessionmaker() as session:
            from_repository = await BankFeedRepository(session).view_stamp(business)

        assert from_repository is not None
        assert from_repository[3] is not None  # the connection is part of it
        assert comparable(from_cache) == comparable(from_repository)

    async def test_the_stamp_connections_close_with_the_engine(
        self, settings, sandbox_app, user_headers, business
    ):
        replica = create_app(settings, sandbox_app=contract_checked(sandbox_app))
        async with (
            replica.router.lifespan_context(replica),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://test") as other,
        ):
            assert (await other.get("/v1/bank-feed", headers=user_headers(business))).status_code == 200
            engine = replica.state.sessionmaker.kw["bind"]

        assert not RawPool.of(engine).is_open
