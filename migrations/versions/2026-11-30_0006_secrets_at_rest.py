"""Secrets at rest: stored links and replayable answers are now encrypted; drop the ones kept in clear.

A link is minted again when next asked for (one read at Codat); an answer no longer replayable runs again
(onboarding resumes; credentials are minted anew). Nothing else is lost.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _drop_stored_secrets()


def downgrade() -> None:
    _drop_stored_secrets()  # now encrypted: code before this revision could not read them


def _drop_stored_secrets() -> None:
    op.execute(
        "UPDATE feed_connection SET link_url = NULL, link_expires_at = NULL WHERE link_url IS NOT NULL"
    )
    op.execute("DELETE FROM idempotency_record WHERE response_body IS NOT NULL")
