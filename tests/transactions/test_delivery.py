"""The worker delivers the outbox to Codat (the sandbox): per account, in order, at most 1,000 a push, under a
stored idempotency key; it follows each push to Success or Failed and records the outcome per transaction."""

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.clock import as_utc
from app.codat.schemas import PushOperationStatus
from app.rawpool import RawPool
from app.transactions.models import BatchStatus, TransactionBatch, TransactionStream
from app.transactions.repository import (
    CUT,
    Fence,
    LeaseLost,
    RawStatement,
    StreamState,
    TransactionRepository,
)
from app.transactions.service import TIMED_OUT
from app.transactions.worker import UNKNOWN_OUTCOME
from app.webhooks import service as webhooks_service
from app.webhooks.models import WebhookEvent
from app.webhooks.router import webhook_processor
from tests.transactions.conftest import days, eventually, ledger, listing, post, transaction
from tests.webhooks.test_failure_paths import event, sign
from tests.webhooks.test_webhooks import webhook_count


async def statuses(client, headers, account="acc-1") -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        t["id"]: t["status"] for t in (await listing(client, headers, account, limit=1000))["transactions"]
    }


async def settled(
    client, headers, count: int, account: str = "acc-1", timeout: float = 10.0
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The listing once `count` transactions are no longer queued or sending."""

    async def done() -> dict[str, Any] | None:
        page = await listing(client, headers, account, limit=1000)
        counts, rows = page["counts"], page["transactions"]
        # The counts and the rows are read one after the other: both must say so.
        finished = counts["queued"] + counts["sending"] == 0 and sum(counts.values()) >= count
        return page if finished and all(t["status"] not in ("queued", "sending") for t in rows) else None

    page = await eventually(done, timeout)
    assert page, await listing(client, headers, account)
    return page


class TestDelivery:
    async def test_in_order_and_at_most_1000_a_push(self, client, tx_headers, connected, sandbox, worker):
        today = connected["today"]
        ids = [f"t{n:04d}" for n in range(2500)]
        for start, day in ((0, today - days(1)), (1000, today), (2000, today)):
            response = await post(
                client, tx_headers, [transaction(tid, day) for tid in ids[start : start + 1000]]
            )
            assert response.status_code == 202

        worker()
        page = await settled(client, tx_headers, 2500)

        assert ledger(sandbox, connected["connection_id"]) == ids
        assert [len(o.transactions) for o in sandbox.push_operations.values()] == [1000, 1000, 500]
        assert page["counts"]["delivered"] == 2500
        assert {t["pushOperationKey"] for t in page["transactions"]} == {next(iter(sandbox.push_operations))}

    async def test_each_account_on_its_own(self, client, tx_headers, connected, sandbox, worker):
        today = connected["today"]
        await post(client, tx_headers, [transaction("a1", today), transaction("a2", today)])
        await post(client, tx_headers, [transaction("b1", today)], account="acc-2")

        worker()
        await settled(client, tx_headers, 2)
        await settled(client, tx_headers, 1, account="acc-2")

        assert ledger(sandbox, connected["connection_id"]) == ["a1", "a2"]
        assert ledger(sandbox, connected["connection_id"], "acc-2") == ["b1"]

    async def test_transactions_accepted_while_delivering_follow_in_order(
        self, client, tx_headers, connected, sandbox, worker
    ):
        today = connected["today"]
        worker()
        for n in range(5):
            await post(client, tx_headers, [transaction(f"t{n}", today)])
            await asyncio.sleep(0.03)

        await settled(client, tx_headers, 5)

        assert ledger(sandbox, connected["connection_id"]) == [f"t{n}" for n in range(5)]


class TestRetries:
    async def test_a_lost_answer_is_sent_again_under_the_same_key_and_written_once(
        self, client, tx_headers, connected, sandbox, worker
    ):
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        sandbox.set_knobs(timeoutRate=1.0, timeoutSeconds=0, operations=["create-bank-transactions"])
        worker()
        await eventually(lambda: _at_least(sandbox, "create-bank-transactions", 3))
        sandbox.set_knobs(timeoutRate=0.0)

        await settled(client, tx_headers, 1)

        assert ledger(sandbox, connected["connection_id"]) == ["t1"]
        assert len(sandbox.push_operations) == 1

    async def test_codat_unavailable_keeps_them_sending_until_it_answers(
        self, client, tx_headers, connected, sandbox, worker
    ):
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        sandbox.set_knobs(errorRate=1.0, operations=["create-bank-transactions"])
        worker()
        await eventually(lambda: _at_least(sandbox, "create-bank-transactions", 3))

        assert await statuses(client, tx_headers) == {"t1": "sending"}
        sandbox.set_knobs(errorRate=0.0)
        await settled(client, tx_headers, 1)
        assert ledger(sandbox, connected["connection_id"]) == ["t1"]

    async def test_a_pending_push_is_asked_about_again(self, client, tx_headers, connected, sandbox, worker):
        sandbox.set_knobs(pushCompletionSeconds=0.3)
        await post(client, tx_headers, [transaction("t1", connected["today"])])

        worker()
        await settled(client, tx_headers, 1)

        assert sandbox.counters["get-create-operation"] >= 2
        assert ledger(sandbox, connected["connection_id"]) == ["t1"]

    async def test_a_batch_unsent_past_codats_replay_window_is_failed_not_risked(
        self, client, tx_headers, connected, sandbox, worker
    ):
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        sandbox.set_knobs(errorRate=1.0, operations=["create-bank-transactions"])
        first = worker()
        await eventually(lambda: _at_least(sandbox, "create-bank-transactions", 2))
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        sandbox.clock.advance(86 * 60)
        sandbox.set_knobs(errorRate=0.0)
        worker(name="the-next-worker")

        page = await settled(client, tx_headers, 1)

        assert [(t["status"], t["error"]) for t in page["transactions"]] == [("failed", UNKNOWN_OUTCOME)]
        assert sandbox.push_operations == {}


class TestOutcomes:
    async def test_a_failed_push_fails_what_codat_named_and_sends_the_rest_again(
        self, client, tx_headers, connected, sandbox, worker
    ):
        today = connected["today"]
        # Another writer already put a transaction of 11:00 in the account.
        sandbox.bank_transactions[(connected["connection_id"], "acc-1")] = [
            {**transaction("other", f"{today}T11:00:00"), "amount": 1}
        ]
        await post(
            client,
            tx_headers,
            [transaction("t1", f"{today}T10:00:00"), transaction("t2", f"{today}T11:30:00")],
        )

        worker()
        page = await settled(client, tx_headers, 2)

        by_id = {t["id"]: t for t in page["transactions"]}
        assert by_id["t1"]["status"] == "failed"
        assert by_id["t1"]["error"].startswith("Codat refused it: ")
        assert "earlier than" in by_id["t1"]["error"]
        assert (by_id["t2"]["status"], by_id["t2"]["error"]) == ("delivered", None)
        assert ledger(sandbox, connected["connection_id"]) == ["other", "t2"]

    async def test_a_push_codat_refuses_for_the_account_is_held_not_failed(
        self, client, tx_headers, connected, sandbox, worker
    ):
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        # Disconnected in QuickBooks; no webhook has told us yet.
        sandbox.connections[connected["connection_id"]].accounts["acc-1"].status = "disconnected"

        worker()

        async def held() -> dict[str, Any] | None:
            page = await listing(client, tx_headers)
            return page if page["held"] and page["transactions"][0]["status"] == "held" else None

        page = await eventually(held)
        [only] = page["transactions"]
        assert (only["status"], only["error"], page["held"]["reason"]) == ("held", None, "refused_by_codat")
        await asyncio.sleep(0.5)  # several of the worker's looks at the account
        assert sandbox.counters["create-bank-transactions"] == 1  # not sent again while held

    async def test_a_timed_out_push_is_failed_and_not_sent_again(
        self, app, client, tx_headers, connected, sandbox, worker, monkeypatch
    ):
        real_read = app.state.codat.get_push_operation

        async def timed_out(company_id: str, key: str):  # type: ignore[no-untyped-def]
            read = await real_read(company_id, key)
            return read.model_copy(update={"status": PushOperationStatus.TIMED_OUT})

        monkeypatch.setattr(app.state.codat, "get_push_operation", timed_out)
        await post(client, tx_headers, [transaction("t1", connected["today"])])

        worker()
        page = await settled(client, tx_headers, 1)

        assert [(t["status"], t["error"]) for t in page["transactions"]] == [("failed", TIMED_OUT)]
        assert sandbox.counters["create-bank-transactions"] == 1


class TestWebhooks:
    async def test_a_success_webhook_settles_the_push_without_asking_again(
        self, client, tx_headers, connected, sandbox, worker, live_url
    ):
        sandbox.set_knobs(pushCompletionSeconds=0.3)
        await post(client, tx_headers, [transaction("t1", connected["today"])])

        worker(retry_base_seconds=30, retry_max_seconds=30)  # it would not ask again for 30 s
        await settled(client, tx_headers, 1, timeout=5)

        assert sandbox.counters["get-create-operation"] == 1
        assert ledger(sandbox, connected["connection_id"]) == ["t1"]

    async def test_a_failure_webhook_wakes_the_worker_to_read_codats_reasons(
        self, client, tx_headers, connected, sandbox, worker, live_url
    ):
        today = connected["today"]
        sandbox.bank_transactions[(connected["connection_id"], "acc-1")] = [
            transaction("other", f"{today}T11:00:00")
        ]
        sandbox.set_knobs(pushCompletionSeconds=0.3)
        await post(client, tx_headers, [transaction("t1", f"{today}T10:00:00")])

        worker(retry_base_seconds=30, retry_max_seconds=30)
        page = await settled(client, tx_headers, 1, timeout=5)

        assert page["transactions"][0]["status"] == "failed"
        assert sandbox.counters["get-create-operation"] == 2


async def push_webhook(client, settings, webhook_id: str, push_key: str, generated: datetime | None = None):  # type: ignore[no-untyped-def]
    """Codat's signed `bankTransactions.write.successful` for the push operation `push_key`."""
    dated = {"generatedDate": generated.isoformat()} if generated else {}
    body = json.dumps(
        event("bankTransactions.write.successful", {"id": push_key, "status": "Success"}, **dated)
    ).encode()
    return await client.post("/webhooks/codat", content=body, headers=sign(settings, webhook_id, body))


async def stored_webhook(app, webhook_id: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:  # type: ignore[no-untyped-def]
    """The webhook's event rows (status, processed_at, attempts) and its audit entries."""
    async with app.state.sessionmaker() as session:
        events = await session.execute(
            select(WebhookEvent.status, WebhookEvent.processed_at, WebhookEvent.attempts).where(
                WebhookEvent.id == webhook_id
            )
        )
        entries = await session.execute(
            select(AuditEntry.business_id, AuditEntry.actor, AuditEntry.outcome, AuditEntry.detail).where(
                AuditEntry.detail.endswith(f"({webhook_id})")
            )
        )
        return [tuple(row) for row in events], [tuple(row) for row in entries]


def applied_entry(webhook_id: str) -> tuple[Any, ...]:
    return (None, "codat", "applied", f"bankTransactions.write.successful ({webhook_id})")


class TestPushOutcomeWebhooks:
    """What the BFF does with Codat's webhook for a push: on Postgres, one statement when the worker has
    recorded the outcome already (app/webhooks/settled_push.py), the usual transaction otherwise."""

    async def test_for_a_settled_push_one_applied_event_one_audit_entry_and_a_redelivery_changes_nothing(
        self, app, settings, client, tx_headers, connected, worker
    ):
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        worker()
        key = (await settled(client, tx_headers, 1))["transactions"][0]["pushOperationKey"]
        duplicates = webhook_count("bankTransactions.write.successful", "duplicate")

        assert (await push_webhook(client, settings, "wh-settled", key)).status_code == 204
        first = await stored_webhook(app, "wh-settled")
        assert (await push_webhook(client, settings, "wh-settled", key)).status_code == 204  # redelivered

        [(status, _, attempts)], entries = first
        assert (status, attempts, entries) == ("applied", 0, [applied_entry("wh-settled")])
        assert await stored_webhook(app, "wh-settled") == first
        assert webhook_count("bankTransactions.write.successful", "duplicate") == duplicates + 1
        assert await statuses(client, tx_headers) == {"t1": "delivered"}

    async def test_for_a_push_still_pending_the_success_is_recorded_and_the_stream_woken(
        self, app, settings, client, tx_headers, connected, sandbox, worker
    ):
        sandbox.set_knobs(pushCompletionSeconds=60)  # Codat answers Pending until the webhook
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        delivering = worker(retry_base_seconds=30, retry_max_seconds=30)
        key = await eventually(lambda: _pending_push(app))
        delivering.cancel()  # it would read the push again only in 30 s; the webhook is first
        await asyncio.gather(delivering, return_exceptions=True)
        generated = app.state.clock.now()

        response = await push_webhook(client, settings, "wh-pending", key, generated)

        assert response.status_code == 204
        assert await statuses(client, tx_headers) == {"t1": "delivered"}
        async with app.state.sessionmaker() as session:
            woken = await session.scalar(select(TransactionStream.next_attempt_at))
        assert as_utc(woken) == generated  # due at once, for whatever the account has queued
        [(status, _, _)], entries = await stored_webhook(app, "wh-pending")
        assert (status, entries) == ("applied", [applied_entry("wh-pending")])

    @pytest.mark.parametrize("written", [False, True], ids=["before-writing", "answer-lost-after-writing"])
    async def test_a_failure_of_the_one_statement_is_acknowledged_and_the_event_kept_until_applied(
        self, app, settings, client, sandbox, monkeypatch, written
    ):
        if settings.uses_sqlite:
            pytest.skip("SQLite stores every webhook the usual way")
        store_if_settled = webhooks_service.store_if_settled

        async def failing(*args: Any) -> bool:
            if written:
                await store_if_settled(*args)
            raise ConnectionResetError("the database went away")

        monkeypatch.setattr(webhooks_service, "store_if_settled", failing)
        response = await push_webhook(client, settings, "wh-failing", "push-settled-long-ago")
        [(status, _, attempts)], _ = await stored_webhook(app, "wh-failing")
        monkeypatch.undo()
        sandbox.clock.advance(3600)  # past the retry's backoff
        await webhook_processor(app.state).process_backlog()

        assert response.status_code == 204
        assert (status, attempts) == (("applied", 0) if written else ("received", 1))
        [(status, _, _)], entries = await stored_webhook(app, "wh-failing")
        assert (status, entries) == ("applied", [applied_entry("wh-failing")])


async def _pending_push(app) -> str | None:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        return await session.scalar(
            select(TransactionBatch.push_operation_key).where(
                TransactionBatch.status == BatchStatus.PENDING.value
            )
        )


class TestLeases:
    async def test_a_leased_account_is_left_alone_until_the_lease_lapses_and_then_fenced(
        self, app, client, tx_headers, connected, sandbox
    ):
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        now = app.state.clock.now()

        async with app.state.sessionmaker.begin() as session:
            [(claimed, _)] = await TransactionRepository(session).claim(
                "a", now, now + timedelta(seconds=30), 10
            )
        async with app.state.sessionmaker.begin() as session:
            assert await TransactionRepository(session).claim("b", now, now + timedelta(seconds=30), 10) == []
        later = now + timedelta(seconds=31)
        async with app.state.sessionmaker.begin() as session:
            assert [
                c.stream.id
                for c in await TransactionRepository(session).claim(
                    "b", later, later + timedelta(seconds=30), 10
                )
            ] == [claimed.id]

        async with app.state.sessionmaker.begin() as session:
            with pytest.raises(LeaseLost):
                await TransactionRepository(session).renew_lease(claimed.id, "a", later)

    async def test_on_postgres_claims_skip_the_accounts_another_worker_is_claiming(
        self, app, settings, client, tx_headers, connected
    ):
        if settings.uses_sqlite:
            pytest.skip("FOR UPDATE SKIP LOCKED is Postgres's; SQLite has one writer at a time")
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        await post(client, tx_headers, [transaction("t2", connected["today"])], account="acc-2")
        now = app.state.clock.now()
        until = now + timedelta(seconds=30)

        async with app.state.sessionmaker.begin() as first:
            [(mine, _)] = await TransactionRepository(first).claim("a", now, until, 1)
            async with app.state.sessionmaker.begin() as second:
                claiming = TransactionRepository(second).claim("b", now, until, 10)
                theirs = await asyncio.wait_for(claiming, timeout=5)  # no waiting on the first's row

        assert [c.stream.account_id for c in theirs] == [
            {"acc-1": "acc-2", "acc-2": "acc-1"}[mine.account_id]
        ]

    async def test_an_account_with_nothing_to_send_is_not_claimed(
        self, app, client, tx_headers, connected, worker
    ):
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        worker()
        await settled(client, tx_headers, 1)

        async def handed_back_idle() -> bool:
            """The worker hands the account back once it finds the queue's end (a push still Pending when
            first asked is settled, and the queue's end found, a step later)."""
            async with app.state.sessionmaker() as session:
                stream = await session.scalar(select(TransactionStream))
                assert stream is not None
                return stream.lease_owner is None and stream.next_attempt_at is None

        assert await eventually(handed_back_idle)
        now = app.state.clock.now() + timedelta(hours=1)
        async with app.state.sessionmaker.begin() as session:
            assert await TransactionRepository(session).claim("x", now, now, 10) == []

    async def test_the_last_batch_hands_the_account_back_idle_unless_more_was_accepted_meanwhile(
        self, app, client, tx_headers, connected
    ):
        async def claim(owner: str) -> list[int]:
            now = app.state.clock.now()
            async with app.state.sessionmaker.begin() as session:
                repo = TransactionRepository(session)
                return [c.stream.id for c in await repo.claim(owner, now, now + timedelta(seconds=30), 10)]

        async def cut_and_hand_back(owner: str, stream_id: int, during: Any = None) -> None:
            """The queue's end cut; `during` runs before the hand-back, as an acceptance racing the push."""
            now = app.state.clock.now()
            async with app.state.sessionmaker.begin() as session:
                repo = TransactionRepository(session)
                state = await repo.state(stream_id)
                stream = await session.get_one(TransactionStream, stream_id)
                lease = Fence(stream_id, owner, now + timedelta(seconds=30))
                assert await repo.cut_batch(stream, state, 1000, now, lease) is not None
            if during is not None:
                await during()
            async with app.state.sessionmaker.begin() as session:
                repo = TransactionRepository(session)
                assert await repo.release(stream_id, owner, now, 0, state.acceptances)

        await post(client, tx_headers, [transaction("t1", connected["today"])])
        [stream_id] = await claim("a")
        await cut_and_hand_back("a", stream_id)
        assert await claim("b") == []  # idle: nothing accepted since the cut

        await post(client, tx_headers, [transaction("t2", connected["today"])])
        assert await claim("b") == [stream_id]  # the acceptance made it due again
        t3 = transaction("t3", connected["today"])
        await cut_and_hand_back("b", stream_id, during=lambda: post(client, tx_headers, [t3]))
        assert await claim("c") == [stream_id]  # t3 came after the cut: still due

    @pytest.mark.parametrize("raw", [False, True], ids=["session", "raw"])
    async def test_a_worker_whose_lease_was_taken_over_neither_cuts_nor_settles(
        self, app, settings, client, tx_headers, connected, raw
    ):
        """Also with the steps on raw connections, outside any transaction, as the worker runs them on
        Postgres: each statement's fence must hold on its own."""
        if raw and settings.uses_sqlite:
            pytest.skip("the raw connections are Postgres's")
        pool = RawPool.of(app.state.sessionmaker.kw["bind"]) if raw else None
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        now = app.state.clock.now()
        a = Fence(0, "a", now + timedelta(seconds=30))
        async with app.state.sessionmaker.begin() as session:
            repo = TransactionRepository(session, pool)
            [(stream, _)] = await repo.claim("a", now, a.until, 10)
            a = Fence(stream.id, "a", a.until)
            cut = await repo.cut_batch(stream, await repo.fenced_state(a, now), 1000, now, a)
            assert cut is not None
        await post(client, tx_headers, [transaction("t2", connected["today"])])
        later = now + timedelta(seconds=31)
        async with app.state.sessionmaker.begin() as session:
            [(_, claimed)] = await TransactionRepository(session, pool).claim("b", later, later, 10)
        if not settings.uses_sqlite:  # the claim read the state b's first step starts from: a's open batch
            assert claimed is not None
            assert claimed.open_batch is not None
            assert (claimed.open_batch.id, claimed.open_batch.status) == (cut[0].id, "sending")
            assert claimed.target is not None
            assert claimed.hold is None

        async def as_a(step: Any) -> None:
            with pytest.raises(LeaseLost):
                async with app.state.sessionmaker.begin() as session:
                    await step(TransactionRepository(session, pool))

        await as_a(lambda repo: repo.fenced_state(a, later))
        state = await _state(app, stream.id)
        await as_a(lambda repo: repo.cut_batch(stream, state, 1000, later, a))
        await as_a(lambda repo: repo.deliver(cut[0].id, later, "push-1", a))
        await as_a(lambda repo: repo.deliver(cut[0].id, later, "push-1", replace(a, hand_back=True)))
        assert await statuses(client, tx_headers) == {"t1": "sending", "t2": "queued"}
        # b, the lease holder now, finds a's batch open, with its transaction, and settles it.
        b = Fence(stream.id, "b", later + timedelta(seconds=30))
        async with app.state.sessionmaker.begin() as session:
            repo = TransactionRepository(session, pool)
            state = await repo.fenced_state(b, later)
            assert state.open_batch is not None
            assert state.open_batch.id == cut[0].id
            assert [t.transaction_id for t in await repo.batch_transactions(cut[0].id)] == ["t1"]
            await repo.deliver(cut[0].id, later, "push-1", b)
        assert await statuses(client, tx_headers) == {"t1": "delivered", "t2": "queued"}

    @pytest.mark.parametrize("raw", [False, True], ids=["session", "raw"])
    async def test_a_worker_does_not_claim_again_an_account_it_is_still_delivering(
        self, app, settings, client, tx_headers, connected, raw
    ):
        if raw and settings.uses_sqlite:
            pytest.skip("the raw connections are Postgres's")
        pool = RawPool.of(app.state.sessionmaker.kw["bind"]) if raw else None
        await post(client, tx_headers, [transaction("t1", connected["today"])])
        now = app.state.clock.now()
        async with app.state.sessionmaker.begin() as session:
            [(stream, _)] = await TransactionRepository(session, pool).claim("a", now, now, 10)
        assert (stream.account_id, stream.lease_owner, as_utc(stream.lease_until)) == ("acc-1", "a", now)
        later = now + timedelta(seconds=1)  # the lease lapsed, the task delivering it still runs

        async with app.state.sessionmaker.begin() as session:
            repo = TransactionRepository(session, pool)
            assert await repo.claim("a", later, later, 10, busy=[stream.id]) == []
            assert [c.stream.id for c in await repo.claim("a", later, later, 10)] == [stream.id]


def test_a_raw_statement_refuses_to_run_without_one_of_its_parameters() -> None:
    """Rather than send NULL for it: a cut without its owner would match no stream, and look lease-lost."""
    statement = RawStatement(CUT)
    params = dict.fromkeys(statement.names, 1)
    assert len(statement.args(params)) == len(statement.names)
    del params["owner"]
    with pytest.raises(KeyError):
        statement.args(params)


async def _state(app: Any, stream_id: int) -> StreamState:
    async with app.state.sessionmaker() as session:
        return await TransactionRepository(session).state(stream_id)


async def _at_least(sandbox: Any, operation: str, calls: int) -> bool:
    return sandbox.counters[operation] >= calls
