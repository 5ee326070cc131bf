"""On Postgres, each process trusts its cached views while its LISTEN connection tells it of every change
(app/bankfeed/cache.py): a read is then served without a query, a change made anywhere drops the entry,
and while the listener is down every read compares the stamp again. The views are stored in Postgres, so a
view is rendered once per change for every replica."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from sqlalchemy import select

import app.bankfeed.cache as cache_module
import app.bankfeed.view as view_module
from app.bankfeed.cache import ViewCache
from app.bankfeed.models import StoredBankFeedView
from app.bankfeed.repository import BankFeedRepository
from app.db import create_engine, create_sessionmaker
from app.http import Rendered
from app.main import create_app
from app.onboarding.link_cache import VALID_LINK_SQL, LinkCache
from app.rawpool import RawPool
from tests.contract import contract_checked


@pytest.fixture(autouse=True)
def _postgres_only(settings):  # type: ignore[no-untyped-def]
    if settings.uses_sqlite:
        pytest.skip("LISTEN/NOTIFY and the stored views are Postgres's (SQLite readers compare the stamp)")


@pytest.fixture
def renders(monkeypatch):  # type: ignore[no-untyped-def]
    calls: list[str] = []
    render = view_module.render_bank_feed_view

    async def counted(session, business_id):  # type: ignore[no-untyped-def]
        calls.append(business_id)
        return await render(session, business_id)

    monkeypatch.setattr(view_module, "render_bank_feed_view", counted)
    return calls


@pytest.fixture
def queries(monkeypatch):  # type: ignore[no-untyped-def]
    """The businesses whose stamp (and stored view) each process read from Postgres."""
    calls: list[str] = []
    current = ViewCache._current

    async def counted(self, business_id):  # type: ignore[no-untyped-def]
        calls.append(business_id)
        return await current(self, business_id)

    monkeypatch.setattr(ViewCache, "_current", counted)
    return calls


def cache_of(app) -> ViewCache:  # type: ignore[no-untyped-def]
    return ViewCache.of(app.state.sessionmaker.kw["bind"])


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the time allowed")


async def listening(app) -> None:  # type: ignore[no-untyped-def]
    cache = cache_of(app)
    await eventually(lambda: cache.trusted_epoch() is not None)


async def read(client, headers) -> httpx.Response:  # type: ignore[no-untyped-def]
    response = await client.get("/v1/bank-feed", headers=headers)
    assert response.status_code == 200, response.text
    return response


async def sql(database_url: str, statement: str, *args: object) -> None:
    """A write from outside this process: another replica, an operator, a migration."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(statement, *args)
    finally:
        await connection.close()


async def store_link_from_another_replica(settings, business_id: str, link_url: str) -> None:  # type: ignore[no-untyped-def]
    """Through the repository, as the replica refreshing it would store it, on an engine of its own."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            repo = BankFeedRepository(session)
            connection = await repo.current_connection(business_id)
            assert connection is not None
            assert connection.link_expires_at is not None
            await repo.store_link(connection.id, link_url, connection.link_expires_at, datetime.now(UTC))
    finally:
        await engine.dispose()


async def test_the_stored_view_is_the_one_the_orm_renders(app, client, user_headers, business):
    headers = user_headers(business)
    await client.post("/v1/bank-feed/connect", headers=headers)
    served = await read(client, headers)

    async with app.state.sessionmaker() as session:
        stored = await session.scalar(
            select(StoredBankFeedView).where(StoredBankFeedView.business_id == business)
        )
        fresh = Rendered.of(await view_module.render_bank_feed_view(session, business))

    assert stored is not None
    assert (stored.body, stored.etag) == (fresh.body, fresh.etag) == (served.content, served.headers["etag"])


async def test_a_view_one_replica_rendered_is_served_by_another_without_rendering(
    app, client, settings, sandbox_app, user_headers, business, renders
):
    headers = user_headers(business)
    first = await read(client, headers)
    replica = create_app(settings, sandbox_app=contract_checked(sandbox_app))
    async with (
        replica.router.lifespan_context(replica),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://test") as other,
    ):
        elsewhere = await read(other, headers)

    assert (elsewhere.content, elsewhere.headers["etag"]) == (first.content, first.headers["etag"])
    assert renders == [business]


async def test_while_listening_a_cached_view_is_served_without_a_query(
    app, client, user_headers, business, queries
):
    headers = user_headers(business)
    await read(client, headers)
    await listening(app)
    await read(client, headers)  # checked once against the stamp, then trusted
    queries.clear()

    again = [await read(client, headers) for _ in range(3)]
    not_modified = await client.get(
        "/v1/bank-feed", headers={**headers, "If-None-Match": again[0].headers["etag"]}
    )

    assert queries == []
    assert not_modified.status_code == 304
    assert len({r.content for r in again}) == 1


async def test_a_change_committed_elsewhere_drops_the_entry_and_shows(
    app, client, settings, user_headers, business, queries
):
    headers = user_headers(business)
    await read(client, headers)
    await listening(app)
    await read(client, headers)
    cache = cache_of(app)
    assert business in cache._entries

    await sql(
        settings.database.url,
        "UPDATE bank_account SET name = 'Renamed elsewhere' WHERE business_id = $1 AND id = 'acc-1'",
        business,
    )
    await sql(
        settings.database.url, "UPDATE business SET feed_version = feed_version + 1 WHERE id = $1", business
    )
    await eventually(lambda: business not in cache._entries)

    assert (await read(client, headers)).json()["accounts"][0]["accountName"] == "Renamed elsewhere"


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO feed_account (connection_id, business_id, account_id, request_key, registered)"
        " SELECT connection_id, business_id, 'acc-2', 'k', false FROM feed_account WHERE business_id = $1",
        "UPDATE feed_account SET status = 'connected' WHERE business_id = $1",
        "DELETE FROM feed_account WHERE business_id = $1",
    ],
)
async def test_a_change_to_its_feed_accounts_committed_elsewhere_drops_the_entry(
    app, client, settings, user_headers, business, statement
):
    """feed_account notifies once per statement (the statement's transition table names the businesses)."""
    headers = user_headers(business)
    await client.post("/v1/bank-feed/connect", json={"accountIds": ["acc-1"]}, headers=headers)
    await read(client, headers)
    await listening(app)
    await read(client, headers)
    cache = cache_of(app)
    assert business in cache._entries

    await sql(settings.database.url, statement, business)

    await eventually(lambda: business not in cache._entries)


async def test_a_write_of_this_process_shows_on_its_next_read(app, client, user_headers, business):
    headers = user_headers(business)
    await read(client, headers)
    await listening(app)
    await read(client, headers)

    for name in ("First", "Second", "Third"):
        renamed = await client.patch(
            "/v1/bank-feed/accounts/acc-1", json={"accountName": name}, headers=headers
        )
        assert renamed.status_code == 200
        assert (await read(client, headers)).json()["accounts"][0]["accountName"] == name


async def test_a_write_of_this_process_shows_even_before_its_notification_arrives(
    app, client, user_headers, business, monkeypatch
):
    headers = user_headers(business)
    await read(client, headers)
    await listening(app)
    await read(client, headers)
    listener = cache_of(app)._listener
    held: list[str] = []
    caught_up = asyncio.Event()
    sync = cache_module._Listener._sync

    async def slow_sync(self):  # type: ignore[no-untyped-def]
        await caught_up.wait()
        await sync(self)

    monkeypatch.setattr(cache_module._Listener, "_sync", slow_sync)
    monkeypatch.setattr(listener, "_changed", held.append)  # the notification is late, as it may be

    renamed = await client.patch(
        "/v1/bank-feed/accounts/acc-1", json={"accountName": "Mine"}, headers=headers
    )
    assert renamed.status_code == 200
    assert (await read(client, headers)).json()["accounts"][0]["accountName"] == "Mine"

    caught_up.set()
    await eventually(lambda: listener.unsynced == 0)
    assert held == [business]


async def test_while_the_listener_is_down_every_read_checks_the_stamp(
    app, client, settings, user_headers, business, queries, monkeypatch
):
    headers = user_headers(business)
    await read(client, headers)
    await listening(app)
    listener = cache_of(app)._listener
    assert listener is not None

    async def refused(self):  # type: ignore[no-untyped-def]
        raise OSError("connection refused")

    monkeypatch.setattr(cache_module, "LISTEN_RETRY_SECONDS", 0.05)
    monkeypatch.setattr(cache_module._Listener, "_connect", refused)
    pid = listener._connection.get_server_pid()  # type: ignore[union-attr]
    await sql(settings.database.url, "SELECT pg_terminate_backend($1)", pid)
    await eventually(lambda: listener.epoch is None)
    before = await read(client, headers)
    queries.clear()
    unchanged = await read(client, headers)
    assert queries == [business]  # no longer trusted: checked against the stamp
    await sql(
        settings.database.url,
        "UPDATE business SET name = 'Renamed while deaf', feed_version = feed_version + 1 WHERE id = $1",
        business,
    )
    after = await read(client, headers)

    assert before.json()["businessName"] == unchanged.json()["businessName"] == f"{business} LLC"
    assert after.json()["businessName"] == "Renamed while deaf"

    monkeypatch.undo()  # the listener connects again: entries are checked once, then trusted
    await listening(app)
    await read(client, headers)
    queries.clear()
    assert (await read(client, headers)).json()["businessName"] == "Renamed while deaf"
    assert queries == []


async def test_a_listener_that_stops_answering_is_no_longer_trusted(
    app, client, user_headers, business, monkeypatch
):
    headers = user_headers(business)
    monkeypatch.setattr(cache_module, "HEARTBEAT_SECONDS", 0.05)
    await read(client, headers)
    await listening(app)
    listener = cache_of(app)._listener
    assert listener is not None
    silent = listener._connection
    first_epoch = listener.epoch

    execute = asyncpg.Connection.execute

    async def silent_peer(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self is silent:  # a peer gone without a word: no answer, no error
            await asyncio.sleep(3600)
        return await execute(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", silent_peer)
    await eventually(lambda: listener.epoch != first_epoch)

    assert silent.is_closed()
    await listening(app)  # on a new connection
    assert listener.epoch not in (None, first_epoch)


async def test_the_listener_stops_with_the_engine(settings, sandbox_app, user_headers, business):
    replica = create_app(settings, sandbox_app=contract_checked(sandbox_app))
    async with (
        replica.router.lifespan_context(replica),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://test") as other,
    ):
        await read(other, user_headers(business))
        await listening(replica)
        cache = cache_of(replica)

    assert cache._listener is not None
    assert (cache._listener.epoch, cache._listener._connection) == (None, None)
    assert not RawPool.of(replica.state.sessionmaker.kw["bind"]).is_open


async def test_a_link_changed_elsewhere_is_served_as_changed(app, client, settings, user_headers, business):
    headers = user_headers(business)
    await client.post("/v1/bank-feed/connect", headers=headers)
    await listening(app)
    first = [(await client.get("/v1/bank-feed/link", headers=headers)).json()["linkUrl"] for _ in range(2)]
    links = LinkCache.of(app.state.sessionmaker.kw["bind"])
    assert business in links._entries

    await store_link_from_another_replica(settings, business, "http://test/sandbox/link?otp=new")
    await eventually(lambda: business not in links._entries)

    assert first[0] == first[1] != "http://test/sandbox/link?otp=new"
    assert (await client.get("/v1/bank-feed/link", headers=headers)).json()["linkUrl"].endswith("otp=new")


@pytest.mark.parametrize(
    ("statement", "may_change_a_view"),
    [
        ("SELECT business.id FROM business WHERE business.id = $1", False),
        ("UPDATE business SET feed_version=(business.feed_version + $1) WHERE business.id = $2", True),
        ("INSERT INTO feed_account (connection_id, account_id) VALUES ($1, $2)", True),
        ('DELETE FROM "feed_connection" WHERE id = $1', True),
        ("INSERT INTO bank_transaction (business_id, account_id) VALUES ($1, $2)", False),
        ("UPDATE webhook_event SET processed_at=$1 WHERE id = $2", False),
        ("WITH moved AS (UPDATE business SET name = $1 RETURNING id) SELECT * FROM moved", True),
    ],
)
def test_which_writes_of_this_process_make_it_wait_for_its_listener(statement, may_change_a_view):
    """Writes to other tables (transactions, webhooks, idempotency keys) leave the cached views trusted."""
    assert cache_module.writes_to_the_view(statement) is may_change_a_view


async def test_the_raw_reads_survive_their_connections_being_cut(
    app, client, settings, user_headers, business
):
    """A restarted server or an idle timeout ends the kept connections: the next read opens new ones."""
    headers = user_headers(business)
    first = await read(client, headers)
    pool = RawPool.of(app.state.sessionmaker.kw["bind"])
    pids = [c.get_server_pid() for c in pool._connections]
    assert pids
    for pid in pids:
        await sql(settings.database.url, "SELECT pg_terminate_backend($1)", pid)
    await asyncio.sleep(0.1)

    stamps = [await pool.fetchrow("SELECT $1::text AS business", business) for _ in range(6)]

    assert [row["business"] for row in stamps] == [business] * 6  # type: ignore[index]
    assert (await read(client, headers)).content == first.content
    assert not {c.get_server_pid() for c in pool._connections} & set(pids)


async def test_a_new_replica_serves_stored_views_it_never_read_without_a_query(
    app, client, settings, sandbox_app, service_headers, user_headers, business, queries
):
    from tests.factories import register

    await register(client, service_headers(), "biz-stale")
    await read(client, user_headers(business))
    await read(client, user_headers("biz-stale"))
    # Changed behind every cache's back after its view was stored: that stored view is no longer current.
    rename = "UPDATE business SET name = 'Renamed LLC', feed_version = feed_version + 1 WHERE id = $1"
    await sql(settings.database.url, rename, "biz-stale")
    queries.clear()
    replica = create_app(settings, sandbox_app=contract_checked(sandbox_app))
    async with (
        replica.router.lifespan_context(replica),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://test") as other,
    ):
        await listening(replica)  # it listens from its start, and took in the current views then
        await eventually(lambda: business in cache_of(replica)._entries)
        warm = await read(other, user_headers(business))
        stale = await read(other, user_headers("biz-stale"))

    assert warm.json()["businessId"] == business
    assert stale.json()["businessName"] == "Renamed LLC"
    assert business not in queries  # its current view came with the warm-up
    assert "biz-stale" in queries  # the stored one was stale: read, rendered and stored again


async def test_a_new_replica_serves_live_links_it_never_read_without_a_query_and_decrypts_only_those(
    app, client, settings, sandbox_app, service_headers, user_headers, business, monkeypatch
):
    from tests.factories import register

    await register(client, service_headers(), "biz-other")
    links = {}
    for business_id in (business, "biz-other"):
        await client.post("/v1/bank-feed/connect", headers=user_headers(business_id))
        links[business_id] = (
            await client.get("/v1/bank-feed/link", headers=user_headers(business_id))
        ).json()
    link_reads: list[object] = []
    fetchrow = RawPool.fetchrow

    async def counted(self, query, *args):  # type: ignore[no-untyped-def]
        if query == VALID_LINK_SQL:
            link_reads.append(args)
        return await fetchrow(self, query, *args)

    monkeypatch.setattr(RawPool, "fetchrow", counted)
    replica = create_app(settings, sandbox_app=contract_checked(sandbox_app))
    async with (
        replica.router.lifespan_context(replica),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://test") as other,
    ):
        taken_in = LinkCache.of(replica.state.sessionmaker.kw["bind"])._entries
        # Taken in as it started, as stored: encrypted, so the link's one-time password is nowhere in clear.
        assert {business, "biz-other"} <= taken_in.keys()
        assert all(entry.body is None for entry in taken_in.values())
        assert "otp=" not in str(taken_in[business].row["link_url"])
        served = await other.get("/v1/bank-feed/link", headers=user_headers(business))

        assert served.status_code == 200
        assert served.json() == links[business]
        assert served.headers["cache-control"] == "no-store"
        assert link_reads == []  # no query: the link came with the start
        assert taken_in["biz-other"].body is None  # never asked for here: still encrypted
