"""Codat webhook events, stored before they are processed."""

from datetime import datetime
from typing import cast

from sqlalchemy import DateTime, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class WebhookEvent(Base):
    __tablename__ = "webhook_event"

    # Codat's `webhook-id`: the same across retries, so a redelivery is the same row.
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100))
    generated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # The event as received, less the connection's linkUrl (its one-time password is a secret).
    body: Mapped[str] = mapped_column(Text)
    # received (waiting to be applied, or to be retried at next_attempt_at), applied, rejected (did not parse;
    # never applied) or dead (failed every attempt; an operator may re-apply it). Only `received` is backlog.
    status: Mapped[str] = mapped_column(String(16), default="received", server_default="received", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Why it was rejected, or the last apply failure (scrubbed of secrets).
    error: Mapped[str | None] = mapped_column(Text)


EVENTS_TABLE = cast(Table, WebhookEvent.__table__)  # for Core statements, compiled once
