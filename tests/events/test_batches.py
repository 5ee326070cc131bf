"""Finished pushes become events: several of them, of several accounts, projected in one round."""

import asyncio
import json
from datetime import timedelta

from sqlalchemy import select

from app.events.models import FeedState, OutboundEvent
from app.events.worker import EventWorker
from tests.transactions.conftest import post, transaction
from tests.transactions.test_delivery import settled


async def test_every_finished_batch_of_a_round_is_one_event_in_order_with_the_counts(
    app, client, tx_headers, connected, worker, events
):
    today = connected["today"]
    await events.project()  # the feed's own events first, so that the round below is the batches'
    worker(batch_size=2)
    ids = {"acc-1": ["a1", "a2", "a3"], "acc-2": ["b1", "b2"]}
    for account, tids in ids.items():
        body = [transaction(tid, f"{today}T0{n + 1}:00:00") for n, tid in enumerate(tids)]
        assert (await post(client, tx_headers, body, account=account)).status_code == 202
    await settled(client, tx_headers, 3, "acc-1")
    await settled(client, tx_headers, 2, "acc-2")

    assert await events.project() == 3  # a1+a2, a3, b1+b2: in one round
    assert await events.project() == 0  # and once

    async with app.state.sessionmaker() as session:
        bodies = (
            await session.scalars(
                select(OutboundEvent.body)
                .where(OutboundEvent.event_type == "transactions.delivered")
                .order_by(OutboundEvent.seq)
            )
        ).all()
    delivered = [json.loads(body)["data"] for body in bodies]
    by_account = {
        account: [tid for d in delivered if d["accountId"] == account for tid in d["transactionIds"]]
        for account in ids
    }
    assert by_account == ids
    assert [d["count"] for d in delivered if d["accountId"] == "acc-1"] == [2, 1]


async def test_the_held_and_failed_counts_follow_finished_batches_within_counts_every(
    app, client, tx_headers, connected, sandbox, worker, events
):
    """A count reads all of a business's transactions, so finished batches make it due, no sooner than
    `counts_every` after the last one, rather than taking it for every batch."""
    events.projector.counts_every = timedelta(minutes=5)  # longer than the deliveries below take
    today = connected["today"]
    sandbox.bank_transactions[(connected["connection_id"], "acc-1")] = [
        {**transaction("other", f"{today}T11:00:00"), "amount": 1}  # Codat refuses anything dated before it
    ]
    await events.project()  # the feed's own events, and its counts: none yet
    body = [transaction("t1", f"{today}T10:00:00"), transaction("t2", f"{today}T11:30:00")]
    assert (await post(client, tx_headers, body)).status_code == 202
    worker()
    await settled(client, tx_headers, 2)

    await events.project()
    assert await counts(app) == (0, 0)  # due, but not yet: they were taken a moment ago
    sandbox.clock.advance(5 * 60)
    assert await events.project() == 1  # the one business counted
    assert await counts(app) == (0, 1)  # t1 refused, t2 delivered
    assert await events.project() == 0  # and once


async def counts(app) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        state = await session.get_one(FeedState, "biz-1")
        return state.held_count, state.failed_count


async def test_two_workers_projecting_the_same_batches_at_once_make_each_event_once(
    app, client, tx_headers, connected, worker, events
):
    """Each stream's cursor is locked while its batches are projected: the second worker skips what the
    first projected, whichever gets there first, stream by stream."""
    today = connected["today"]
    await events.project()
    worker(batch_size=1)
    ids = {"acc-1": ["a1", "a2", "a3"], "acc-2": ["b1", "b2", "b3"]}
    for account, tids in ids.items():
        body = [transaction(tid, f"{today}T0{n + 1}:00:00") for n, tid in enumerate(tids)]
        assert (await post(client, tx_headers, body, account=account)).status_code == 202
        await settled(client, tx_headers, 3, account)
    other = EventWorker(app.state.sessionmaker, events.deliverer.http, app.state.clock, app.state.settings)

    await asyncio.gather(events.project(), other.project())

    async with app.state.sessionmaker() as session:
        bodies = (
            await session.scalars(
                select(OutboundEvent.body).where(OutboundEvent.event_type == "transactions.delivered")
            )
        ).all()
    delivered = sorted(tid for body in bodies for tid in json.loads(body)["data"]["transactionIds"])
    assert delivered == sorted(ids["acc-1"] + ids["acc-2"])
