"""A push-outcome webhook (`bankTransactions.write.*`) whose push no batch is pending on: one statement.

The common case: the worker reads each push operation right after sending it, so by the time Codat's webhook
arrives the outcome is recorded and the webhook's only effects are its event row (applied) and its audit
entry. Through the session that cost five round trips (BEGIN, the event's INSERT, the pending batch's
SELECT, the entry's flush, COMMIT) and ~1.8 ms of the BFF's CPU. Here it is one statement, whole on its own
(Postgres runs a statement with data-modifying CTEs atomically, so it needs no transaction around it), run
on the raw pool (app/rawpool.py) and compiled once.

It writes only when the event is new and no batch is pending under its push operation: a pending batch (the
webhook beat the worker) or a redelivery is left to the usual path (WebhookProcessor._store_applied), which
records the outcome under the repository's lock order, or handles the duplicate. Both CTEs see one
snapshot, as the usual path's INSERT and SELECT did in one transaction: a batch recorded as pending after it
is the worker's to settle, as before. It reads the batch without locking it and writes none of the outcome's
rows, so the repository's lock order (stream, batch, transactions) is not in play.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, bindparam, exists, func, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import BindParameter

from app.audit.trail import AUDIT_ENTRIES, Audit, columns
from app.rawpool import RawPool
from app.transactions.repository import PENDING_BATCH, RawStatement
from app.webhooks.models import EVENTS_TABLE

EVENT_COLUMNS = ("id", "event_type", "generated_at", "received_at", "processed_at", "status", "body")
ENTRY_COLUMNS = tuple(columns(Audit(None, "", "", ""), datetime.min))


def _parameter(table: Table, column: str, prefix: str) -> BindParameter[Any]:
    """A parameter typed as its column: asyncpg is told each one's type (a cast), as a SELECT list needs."""
    return bindparam(f"{prefix}{column}", type_=table.c[column].type)


def _statement() -> Select[int]:
    new_event = (
        postgresql.insert(EVENTS_TABLE)
        .from_select(
            EVENT_COLUMNS,
            select(*(_parameter(EVENTS_TABLE, c, "event_") for c in EVENT_COLUMNS)).where(
                ~exists(PENDING_BATCH)
            ),
            include_defaults=False,  # the server's (attempts 0): a Python-side one is no parameter here
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(EVENTS_TABLE.c.id)
        .cte("new_event")
    )
    new_entry = (
        insert(AUDIT_ENTRIES)
        .from_select(
            ENTRY_COLUMNS,
            select(*(_parameter(AUDIT_ENTRIES, c, "entry_") for c in ENTRY_COLUMNS)).select_from(new_event),
        )
        .returning(AUDIT_ENTRIES.c.id)
        .cte("new_entry")
    )
    # Postgres runs every data-modifying CTE, but SQLAlchemy renders only those the statement reads.
    return select(func.count()).select_from(new_entry)


STORE_IF_SETTLED = RawStatement(_statement())


async def store_if_settled(
    raw: RawPool, push_operation_key: str, event_row: dict[str, Any], entry: Audit, at: datetime
) -> bool:
    """Store the event (its columns in `event_row`) as applied at `at`, with its audit entry, if it is new and
    no batch is pending under the push operation; True when it did (the webhook is then done)."""
    params = {f"event_{column}": value for column, value in event_row.items()}
    params |= {f"entry_{column}": value for column, value in columns(entry, at).items()}
    params["key"] = push_operation_key
    row = await raw.fetchrow(STORE_IF_SETTLED.sql, *STORE_IF_SETTLED.args(params))
    return row is not None and row[0] == 1
