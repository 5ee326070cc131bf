"""Secrets at rest: columns whose values are encrypted before they reach the database.

A stored linkUrl carries a live one-time password, and an idempotent replay of `POST …/credentials`
carries one-time QuickBooks credentials: both are kept (to reuse the link; to replay the answer), so both
are encrypted with Fernet (`cryptography`: AES-128-CBC with HMAC-SHA256, authenticated). The key comes from
settings (`BANKFEEDS_DATABASE__ENCRYPTION_KEY`, comma-separated for rotation, the first encrypts); every
engine is built by app.db.create_engine, which installs it.
"""

from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Dialect, Text
from sqlalchemy.types import TypeDecorator

_cipher: MultiFernet | None = None


def use_keys(keys: str) -> None:
    """Install the Fernet key(s): comma-separated, newest first (older ones still decrypt)."""
    global _cipher  # one per process, like the settings it comes from; the column type has no other way in
    _cipher = MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])


def _installed() -> MultiFernet:
    if _cipher is None:
        raise RuntimeError("no encryption key installed: engines are built by app.db.create_engine")
    return _cipher


class EncryptedText(TypeDecorator[str]):
    """Text, Fernet-encrypted in the database (so never compared there: each encryption differs)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _installed().encrypt(value.encode()).decode()

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _installed().decrypt(str(value).encode()).decode()
