"""feed_account's pages half filled (Postgres), so that Codat's answers update the rows in place.

Connect inserts its accounts' rows, then records Codat's answers in all of them in one statement moments
later. With full pages each new row version went to a new page and into both indexes, and the table doubled.
Each page needs room for a second version of every row on it (as bank_transaction's, 0011): then no indexed
column changes and the update is HOT. For 500 accounts the UPDATE took 8-14 ms of Postgres on the SMB's wait,
4-9 ms so (a copy of the table, this 2-core host). Later status updates from webhooks stay HOT too.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE feed_account SET (fillfactor = 50)")  # pages written from now on


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE feed_account RESET (fillfactor)")
