"""A subscriber gets every event type, once per webhook-id, verified with the Standard Webhooks library, in
order per business, through a receiver that fails 30% of the time and is down for a minute."""

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import select

from app.events.models import EventType, OutboundEvent
from tests.events.conftest import pending_deliveries, pump, subscribe
from tests.factories import register
from tests.transactions.conftest import post, transaction
from tests.transactions.test_delivery import settled

ALL_TYPES = [t.value for t in EventType]


async def outbox_order(app) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(OutboundEvent.business_id, OutboundEvent.id).order_by(OutboundEvent.seq)
            )
        ).all()
    order: dict[str, list[str]] = defaultdict(list)
    for business_id, event_id in rows:
        order[business_id].append(event_id)
    return order


async def test_every_event_type_reaches_a_flaky_subscriber_once_in_order(
    app, client, service_headers, user_headers, tx_headers, connected, sandbox, worker, receiver, events
):
    events.projector.stalled_after = timedelta(hours=1)  # onboarding.stalled after an hour pending
    subscription = await subscribe(client, service_headers("events:admin"), receiver.url, ALL_TYPES)
    receiver.secret = subscription["secret"]
    receiver.failure_rate = 0.3

    # biz-1 is connected (acc-1, acc-2; acc-3 pending): feed.connected, account.connected, feed.needs_action.
    await pump(app, events, sandbox)
    today = connected["today"]

    # A push delivered, and one where Codat refuses a transaction older than one already in the account.
    transactions_worker = worker()
    sandbox.bank_transactions[(connected["connection_id"], "acc-2")] = [
        {**transaction("other", f"{today}T11:00:00"), "amount": 1}
    ]
    assert (await post(client, tx_headers, [transaction("t1", f"{today}T09:00:00")])).status_code == 202
    assert (
        await post(client, tx_headers, [transaction("t2", f"{today}T10:00:00")], account="acc-2")
    ).status_code == 202
    await settled(client, tx_headers, 1, "acc-1")
    await settled(client, tx_headers, 1, "acc-2")

    # The receiver is down for a minute while things keep happening.
    await receiver.stop()
    await pump_for(app, events, sandbox, seconds=30)
    transactions_worker.cancel()
    assert (await post(client, tx_headers, [transaction("t3", f"{today}T12:00:00")])).status_code == 202
    # Held: acc-1 is disconnected in QuickBooks with t3 still queued.
    disconnect = f"/sandbox/_sandbox/connections/{connected['connection_id']}/accounts/acc-1/disconnect"
    assert (await client.post(disconnect)).status_code == 200
    assert (await client.post("/v1/bank-feed/refresh", headers=user_headers("biz-1"))).status_code == 200
    # biz-2 starts onboarding and stalls.
    await register(client, service_headers(), "biz-2")
    assert (await client.post("/v1/bank-feed/connect", headers=user_headers("biz-2"))).status_code == 200
    await pump_for(app, events, sandbox, seconds=30)
    await receiver.start()  # back, on the same port
    sandbox.clock.advance(2 * 3600)
    await pump(app, events, sandbox)

    assert receiver.refused_signatures == 0
    assert receiver.failed > 0  # it did fail, and the events still came through
    ids = [e["webhook_id"] for e in receiver.accepted]
    assert len(ids) == len(set(ids)), "a webhook-id was accepted twice"
    order = await outbox_order(app)
    for business_id, expected in order.items():
        got = [e["webhook_id"] for e in receiver.accepted if e["data"]["businessId"] == business_id]
        assert got == expected, business_id
    assert {e["type"] for e in receiver.accepted} == set(ALL_TYPES)
    by_type = {e["type"]: e["data"] for e in receiver.accepted if e["data"]["businessId"] == "biz-1"}
    assert by_type["feed.needs_action"]["action"] == "reconnect"
    assert by_type["transactions.held"]["count"] == 1
    assert by_type["transactions.failed"]["transactions"][0]["id"] == "t2"
    assert await pending_deliveries(app) == 0


async def pump_for(app, events, sandbox, seconds: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(seconds // 2):
        await events.run_once()
        sandbox.clock.advance(2)
