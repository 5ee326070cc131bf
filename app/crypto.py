"""Secrets at rest: columns whose values are encrypted before they reach the database.

A stored linkUrl carries a live one-time password, and an idempotent replay of `POST …/credentials`
carries one-time QuickBooks credentials: both are kept (to reuse the link; to replay the answer), so both
are encrypted with Fernet (`cryptography`: AES-128-CBC with HMAC-SHA256, authenticated). The key comes from
settings (`BANKFEEDS_DATABASE__ENCRYPTION_KEY`, comma-separated for rotation, the first encrypts); every
engine is built by app.db.create_engine, which installs it.

A long value is compressed before it is encrypted (zlib's fastest level; a marker says so, and a value stored
without one is read as it is). A kept answer of a 500-account connect is ~130 KB of JSON: encrypted as it is,
~170 KB that Postgres moves to TOAST and writes to its log on the SMB's wait; compressed, ~7 KB. The
ciphertext's length then depends on how repetitive the value is. Only those who can read the tables see it,
and turning it into a secret (as CRIME and BREACH do) takes placing chosen text beside that secret and
comparing lengths many times over, which no caller can do with another business's values.
"""

import zlib
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


COMPRESSED_FROM = 1024  # bytes: a link or a signing secret is stored as it is, an answer's body compressed
# Leads a compressed plaintext. No value stored here (a URL, JSON, a `whsec_` secret) starts with a NUL.
_COMPRESSED = b"\x00zlib:"


def seal(value: str) -> str:
    data = value.encode()
    if len(data) >= COMPRESSED_FROM:
        data = _COMPRESSED + zlib.compress(data, 1)
    return _installed().encrypt(data).decode()


def unseal(token: str) -> str:
    data = _installed().decrypt(token.encode())
    if data.startswith(_COMPRESSED):
        data = zlib.decompress(data[len(_COMPRESSED) :])
    return data.decode()


class EncryptedText(TypeDecorator[str]):
    """Text, Fernet-encrypted in the database (so never compared there: each encryption differs)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else unseal(str(value))
