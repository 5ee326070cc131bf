"""Responses to our own POST/PATCH requests that carried an Idempotency-Key, kept for replay."""

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedText
from app.db import Base


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_record"

    # Who asked ("user:<business>" or "service:<name>"): one caller's key never replays for another.
    caller: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    # Null while the first request is still being handled.
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(EncryptedText)
    locked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
