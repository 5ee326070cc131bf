"""Delivering does not grow bank_transaction (Postgres): a status change is a HOT update, on the same page and
with no new index entry, because only columns that never change are indexed and pages are half filled."""

import pytest
from sqlalchemy import text

from tests.transactions.conftest import post, transaction
from tests.transactions.test_delivery import settled

SIZE = text("SELECT pg_relation_size('bank_transaction'), pg_total_relation_size('bank_transaction')")


@pytest.fixture(autouse=True)
def _postgres_only(settings):  # type: ignore[no-untyped-def]
    if settings.uses_sqlite:
        pytest.skip("HOT updates, fillfactor and page sizes are Postgres's")


async def sizes(app) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        heap, total = (await session.execute(SIZE)).one()
    return int(heap), int(total)


async def test_delivering_3000_transactions_leaves_the_table_its_size(
    app, client, tx_headers, connected, sandbox, worker
):  # type: ignore[no-untyped-def]
    for start in range(0, 3000, 1000):
        ids = [f"t{n:04d}" for n in range(start, start + 1000)]
        assert (
            await post(client, tx_headers, [transaction(t, connected["today"]) for t in ids])
        ).status_code == 202
    accepted = await sizes(app)

    worker()
    page = await settled(client, tx_headers, 3000, timeout=30)

    assert page["counts"]["delivered"] == 3000
    heap, total = await sizes(app)
    # Two updates a row; with a new version on a new page and in every index each time, this was 2.3x.
    assert heap <= 1.2 * accepted[0], (accepted, (heap, total))
    assert total <= 1.2 * accepted[1], (accepted, (heap, total))
