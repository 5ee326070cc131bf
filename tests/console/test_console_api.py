"""The console's API: lists by health that page correctly, and actions that are audited with who did them."""

from sqlalchemy import select, update

from app.audit.models import AuditEntry
from app.audit.trail import SYSTEM, Audit, record
from app.auth.tokens import mint_service_token
from app.events.models import DeliveryStatus, EventDelivery
from app.transactions.models import BankTransaction, TransactionStatus, TransactionStream
from app.transactions.service import TIMED_OUT
from tests.events.conftest import subscribe
from tests.factories import register
from tests.transactions.conftest import eventually, ledger, post, transaction
from tests.transactions.test_delivery import settled

FEEDS = "/internal/v1/console/feeds"


async def audit_of(app, business_id):  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.business_id == business_id).order_by(AuditEntry.id)
        )
        return [(e.actor, e.action, e.outcome, e.detail) for e in rows]


async def test_a_health_list_pages_by_id_each_business_once_and_searches(
    app, client, service_headers, events
):
    for n in (3, 1, 5, 2, 4):
        await register(client, service_headers(), f"shop-{n}")
    await register(client, service_headers(), "other-9", accounts={})  # nothing to connect: no action
    await events.project()
    reader = service_headers("console:read")

    pages, after = [], None
    while True:
        page = (
            await client.get(
                FEEDS, params={"limit": 2, **({"after": after} if after else {})}, headers=reader
            )
        ).json()
        pages.append([f["businessId"] for f in page["feeds"]])
        if (after := page["nextCursor"]) is None:
            break
    assert pages == [["shop-1", "shop-2"], ["shop-3", "shop-4"], ["shop-5"]]
    assert {f["action"] for f in (await client.get(FEEDS, headers=reader)).json()["feeds"]} == {"connect"}

    found = (await client.get(FEEDS, params={"health": "all", "q": "other"}, headers=reader)).json()
    assert [f["businessId"] for f in found["feeds"]] == ["other-9"]
    assert (await client.get(FEEDS, params={"health": "broken"}, headers=reader)).json()["feeds"] == []
    bad = await client.get(FEEDS, params={"health": "sad", "limit": 0}, headers=reader)
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["fields"]} >= {"query.health", "query.limit"}


async def test_transactions_accepted_while_the_feed_is_broken_are_counted_held(
    client, service_headers, user_headers, tx_headers, connected, worker, events
):
    """Support looks for businesses whose transactions wait on a broken feed: those accepted after it broke
    count too, not only those queued when it did."""
    await events.project()
    disconnect = f"/sandbox/_sandbox/connections/{connected['connection_id']}/accounts/acc-1/disconnect"
    assert (await client.post(disconnect)).status_code == 200
    assert (await client.post("/v1/bank-feed/refresh", headers=user_headers("biz-1"))).status_code == 200
    worker()
    reader = service_headers("console:read")

    async def held(count: int) -> bool:
        await events.project()
        page = (await client.get(FEEDS, params={"health": "held"}, headers=reader)).json()
        return [(f["businessId"], f["heldCount"]) for f in page["feeds"]] == [("biz-1", count)]

    today = connected["today"]
    assert (await post(client, tx_headers, [transaction("t1", f"{today}T01:00:00")])).status_code == 202
    assert await eventually(lambda: held(1))
    assert (await post(client, tx_headers, [transaction("t2", f"{today}T02:00:00")])).status_code == 202
    assert await eventually(lambda: held(2))


async def test_the_console_needs_its_scopes(client, service_headers, business):
    assert (await client.get(FEEDS)).status_code == 401
    assert (await client.get(FEEDS, headers=service_headers("bank-feed:read"))).status_code == 403
    act = await client.post(
        f"/internal/v1/console/businesses/{business}/refresh", headers=service_headers("console:read")
    )
    assert act.status_code == 403


async def test_retry_queues_again_only_what_codat_refused_and_the_audit_names_the_operator(
    app, client, service_headers, tx_headers, connected
):
    today = connected["today"]
    posted = await post(
        client,
        tx_headers,
        [transaction(t, f"{today}T0{n}:00:00") for n, t in enumerate(["refused", "failed", "timed-out"], 1)],
    )
    assert posted.status_code == 202
    outcomes = {
        "refused": (TransactionStatus.REFUSED_BY_CODAT, "Codat refused the push: account not connected"),
        "failed": (TransactionStatus.FAILED, "Codat refused it: date earlier than the newest"),
        "timed-out": (TransactionStatus.FAILED, TIMED_OUT),  # it may have been written: never again
    }
    async with app.state.sessionmaker.begin() as session:
        for tid, (status, error) in outcomes.items():
            await session.execute(
                update(BankTransaction)
                .where(BankTransaction.transaction_id == tid)
                .values(status=status, error=error)
            )
        await session.execute(
            update(TransactionStream).values(next_attempt_at=app.state.clock.now().replace(year=2100))
        )

    writer = service_headers("console:read", "console:write")
    page = (await client.get("/internal/v1/console/businesses/biz-1", headers=writer)).json()
    assert {t["transactionId"]: t["retryable"] for t in page["transactions"]} == {
        "refused": True,
        "failed": True,
        "timed-out": False,
    }
    done = await client.post("/internal/v1/console/businesses/biz-1/transactions/retry", headers=writer)

    assert done.status_code == 200, done.text
    async with app.state.sessionmaker() as session:
        rows = dict(
            (await session.execute(select(BankTransaction.transaction_id, BankTransaction.status))).all()
        )
        woken = await session.scalar(select(TransactionStream.next_attempt_at))
    assert rows == {"refused": "queued", "failed": "queued", "timed-out": "failed"}
    assert woken is not None
    assert woken.year < 2100
    assert (
        "operator:test-service",
        "transactions.retried",
        "ok",
        "2 transactions Codat had refused queued again",
    ) in await audit_of(app, "biz-1")


async def test_what_a_retry_queues_again_is_delivered_though_the_account_moved_past_it(
    client, service_headers, tx_headers, connected, sandbox, worker
):
    """Codat refused t1 (an entry of 11:00 was already in the account) and took t2, after it. Once the
    entry is gone from QuickBooks, the support agent's retry sends t1 again."""
    today, account = connected["today"], (connected["connection_id"], "acc-1")
    sandbox.bank_transactions[account] = [{**transaction("other", f"{today}T11:00:00"), "amount": 1}]
    body = [transaction("t1", f"{today}T10:00:00"), transaction("t2", f"{today}T11:30:00")]
    assert (await post(client, tx_headers, body)).status_code == 202
    worker()
    await settled(client, tx_headers, 2)
    sandbox.bank_transactions[account] = []  # the SMB deleted the entries in QuickBooks

    writer = service_headers("console:read", "console:write")
    done = await client.post("/internal/v1/console/businesses/biz-1/transactions/retry", headers=writer)
    assert done.json()["detail"] == "1 transactions Codat had refused queued again"

    page = await settled(client, tx_headers, 2)
    assert {t["id"]: (t["status"], t["error"]) for t in page["transactions"]} == {
        "t1": ("delivered", None),
        "t2": ("delivered", None),
    }
    assert ledger(sandbox, connected["connection_id"]) == ["t1"]


async def test_resend_an_event_and_disable_a_subscription_are_audited(
    app, client, service_headers, business, events, receiver
):
    subscription = await subscribe(
        client, service_headers("events:admin"), receiver.url, ["feed.needs_action"]
    )
    receiver.secret = subscription["secret"]
    await events.run_once()
    await events.run_once()
    writer = service_headers("console:read", "console:write")
    page = (await client.get(f"/internal/v1/console/businesses/{business}", headers=writer)).json()
    [sent] = page["events"]
    assert (sent["eventType"], sent["status"]) == ("feed.needs_action", "delivered")

    resend = await client.post(
        f"/internal/v1/console/businesses/{business}/events/{sent['eventId']}/resend",
        params={"subscription": subscription["id"]},
        headers=writer,
    )
    assert resend.status_code == 200, resend.text
    await events.run_once()
    assert [e["webhook_id"] for e in receiver.accepted] == [
        sent["eventId"],
        sent["eventId"],
    ]  # same webhook-id

    other = await client.post(
        f"/internal/v1/console/businesses/biz-unknown/events/{sent['eventId']}/resend",
        params={"subscription": subscription["id"]},
        headers=writer,
    )
    assert other.status_code == 404
    disabled = await client.post(
        f"/internal/v1/console/subscriptions/{subscription['id']}/disable", headers=writer
    )
    assert disabled.status_code == 200
    listed = (
        await client.get("/internal/v1/event-subscriptions", headers=service_headers("events:admin"))
    ).json()
    assert (listed[0]["enabled"], listed[0]["disabledReason"]) == (False, "disabled by operator:test-service")
    async with app.state.sessionmaker() as session:
        resent = (await session.scalars(select(EventDelivery).order_by(EventDelivery.id))).all()
    assert [d.status for d in resent] == [DeliveryStatus.DELIVERED, DeliveryStatus.DELIVERED]
    assert ("operator:test-service", "event.resent", "ok") in [a[:3] for a in await audit_of(app, business)]


async def test_codat_calls_reach_the_business_timeline_without_links_or_credentials(
    app, client, service_headers, connected
):
    reader = service_headers("console:read")

    async def codat_entries():  # type: ignore[no-untyped-def]
        page = (await client.get("/internal/v1/console/businesses/biz-1", headers=reader)).json()
        entries = [e for e in page["timeline"] if e["actor"] == "codat"]
        return entries if "codat.list_source_accounts" in {e["action"] for e in entries} else None

    # Calls on the business's company (the one creating it names no company yet, and is not in it).
    entries = await eventually(codat_entries)
    assert {"codat.create_connection", "codat.create_source_accounts"} <= {e["action"] for e in entries}
    assert all(e["outcome"] == "ok" for e in entries)
    text = str(entries)
    assert "otp" not in text.lower()
    assert "http" not in text


async def test_the_page_pages_the_timeline_back_in_time(app, client, auth_settings, business):
    async with app.state.sessionmaker.begin() as session:
        for n in range(60):
            record(session, Audit(business, SYSTEM, f"step-{n:02d}", "ok", ""), app.state.clock.now())
    client.cookies.set(
        "bff_console", mint_service_token(auth_settings, "bob", ["console:read"]), path="/console"
    )

    first = await client.get(f"/console/businesses/{business}")
    assert first.status_code == 200
    assert "step-59" in first.text
    assert "step-09" not in first.text
    older = first.text.split('id="older" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    second = await client.get(older)
    assert "step-09" in second.text
    assert "step-59" not in second.text
    assert 'id="older"' not in second.text


async def test_a_console_action_from_another_site_is_refused(app, client, auth_settings, business):
    token = mint_service_token(auth_settings, "bob", ["console:read", "console:write"])
    client.cookies.set("bff_console", token, path="/console")
    action = f"/console/businesses/{business}/transactions/retry"

    refused = await client.post(action, headers={"sec-fetch-site": "cross-site"})
    assert refused.status_code == 403
    assert await audit_of(app, business) == []

    done = await client.post(action, headers={"sec-fetch-site": "same-origin"})
    assert done.status_code == 303
    assert [a[:2] for a in await audit_of(app, business)] == [("operator:bob", "transactions.retried")]
