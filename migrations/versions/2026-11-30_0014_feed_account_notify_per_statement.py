"""feed_account's NOTIFY once per statement, not once per row.

Connect writes its accounts in one statement each way (their intents, then Codat's answers): the row trigger
of 0009 ran its function, and `to_jsonb` of the whole row, for each of them (for 500 accounts, ~4 ms of an
8 ms UPDATE on the SMB's wait). A statement trigger reads the business ids from the statement's transition
table. Postgres takes a transition table on one event per trigger: one trigger per event.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRANSITION_TABLES = {"INSERT": "NEW", "UPDATE": "NEW", "DELETE": "OLD"}  # business_id never changes


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no triggers here (0009)
    op.execute("DROP TRIGGER feed_account_notify_bank_feed_changed ON feed_account")
    op.execute(
        """
        CREATE FUNCTION notify_feed_accounts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('bank_feed_changed', business_id)
            FROM (SELECT DISTINCT business_id FROM changed) AS businesses;
            RETURN NULL;
        END
        $$
        """
    )
    for event, table in TRANSITION_TABLES.items():
        op.execute(
            f"CREATE TRIGGER feed_account_{event.lower()}_notify_bank_feed_changed"
            f" AFTER {event} ON feed_account REFERENCING {table} TABLE AS changed"
            " FOR EACH STATEMENT EXECUTE FUNCTION notify_feed_accounts_changed()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for event in TRANSITION_TABLES:
        op.execute(f"DROP TRIGGER feed_account_{event.lower()}_notify_bank_feed_changed ON feed_account")
    op.execute("DROP FUNCTION notify_feed_accounts_changed()")
    op.execute(
        "CREATE TRIGGER feed_account_notify_bank_feed_changed"
        " AFTER INSERT OR UPDATE OR DELETE ON feed_account"
        " FOR EACH ROW EXECUTE FUNCTION notify_bank_feed_changed('business_id')"
    )
