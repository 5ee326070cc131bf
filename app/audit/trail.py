"""Write and read the audit trail. Writers pass the session of the change they record, so the entry commits
with it (or not at all)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEntry

SYSTEM = "system"
CODAT = "codat"
# For a statement that writes an entry as part of what it records (a Core insert, compiled once, rather than
# an object flushed by the session: see app/webhooks/settled_push.py).
AUDIT_ENTRIES = cast(Table, AuditEntry.__table__)


def operator(name: str) -> str:
    return f"operator:{name}"


@dataclass(frozen=True)
class Audit:
    """One entry to write: who did what to which business, and how it went."""

    business_id: str | None
    actor: str
    action: str
    outcome: str
    detail: str = ""


def columns(entry: Audit, at: datetime) -> dict[str, Any]:
    """The entry's row: what every writer of an entry stores, whether it adds an object or inserts a row."""
    return {
        "business_id": entry.business_id,
        "at": at,
        "actor": entry.actor,
        "action": entry.action,
        "outcome": entry.outcome,
        "detail": entry.detail,
    }


def record(session: AsyncSession, entry: Audit, at: datetime) -> None:
    session.add(AuditEntry(**columns(entry, at)))


async def record_all(session: AsyncSession, entries: Sequence[Audit], at: datetime) -> None:
    """Many entries in one Core INSERT, without the session's unit of work (the events projector's)."""
    if entries:
        await session.execute(insert(AUDIT_ENTRIES), [columns(entry, at) for entry in entries])


async def timeline(
    session: AsyncSession, business_id: str, before: int | None = None, limit: int = 50
) -> Sequence[AuditEntry]:
    """The business's entries, newest first; `before` is the id the previous page ended at."""
    query = select(AuditEntry).where(AuditEntry.business_id == business_id)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return (await session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit))).all()


async def prune(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(delete(AuditEntry).where(AuditEntry.at < older_than))
    return result.rowcount  # type: ignore[attr-defined, no-any-return]
